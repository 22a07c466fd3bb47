

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


# --- hypothesis: the fuzz profile (more random model trees against dynode, on demand) --
from hypothesis import settings as _settings

FUZZ_EXAMPLES = int(_os.environ.get("DYNGEN_FUZZ_EXAMPLES") or 400)
_settings.register_profile("fuzz", max_examples=FUZZ_EXAMPLES, deadline=None, print_blob=True)


def fuzz_examples(default: int) -> int:
    """``max_examples`` of a test that compares random models against dynode: ``default``,
    or many more with ``pytest --hypothesis-profile=fuzz`` (400, or DYNGEN_FUZZ_EXAMPLES)
    or with DYNGEN_FUZZ_EXAMPLES=N alone."""
    if _os.environ.get("DYNGEN_FUZZ_EXAMPLES") or _settings.default is _settings.get_profile("fuzz"):
        return FUZZ_EXAMPLES
    return default
