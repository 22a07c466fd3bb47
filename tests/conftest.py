

# --- shared: a private module cache for the whole test session ----------------------
import os as _os

import pytest as _pytest


@_pytest.fixture(scope="session", autouse=True)
def dyngen_cache_dir(tmp_path_factory):
    """Point DYNGEN_CACHE_DIR at a fresh temporary folder for the whole session.

    Generated modules (and numba's cache next to them) then never touch the user's
    cache, and every session compiles from scratch.  Yields the folder.
    """
    folder = tmp_path_factory.mktemp("dyngen-cache")
    previous = _os.environ.get("DYNGEN_CACHE_DIR")
    _os.environ["DYNGEN_CACHE_DIR"] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            _os.environ.pop("DYNGEN_CACHE_DIR", None)
        else:
            _os.environ["DYNGEN_CACHE_DIR"] = previous
