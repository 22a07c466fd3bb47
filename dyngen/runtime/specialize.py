"""A model's own compiled integrators, for models that run long enough to pay for them.

dyngen's shared integrators (``compiled_methods``) need no compile per model, but call
the model's functions through a pointer (its raw entries) and, above 8 states, loop to
a length known only at run time: on a model of a few states a run takes up to 1.3x as
long as with integrators compiled for that model (1.5x before the raw entries and the
small-state loops; benchmarks/README.md, ``call_forms.py``).  Compiling those costs about 3 s per method,
so it is done only for small models that have already spent ``SPECIALIZE_AFTER``
seconds in the shared integrators in this process: the routines (the templates, as a
``--standalone`` module has them) are written beside the cached module as
``<module>_own_integrators.py`` and executed in the module's namespace.  A later process
finds that file (hash-checked) and uses it from the start, from numba's cache.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from types import ModuleType

from .. import numba_cache
from ..write import check_module, trailer, write_text_atomic

# Shared-integrator seconds after which a small model gets its own integrators: their
# compile (about 3 s) pays after some 9 s of runs (a run takes 0.67-0.77 of the time);
# switching after 5 s never makes the whole take more than about 1.6x the best choice.
SPECIALIZE_AFTER = 5.0
# The largest model that gets them: at 16 states the shared ones are as fast (benchmarks/README.md).
SPECIALIZE_MAX_STATES = 8

_SECONDS = "_dyngen_shared_integration_seconds"
_OWN = "_dyngen_own_integrators"
_LOOKED = "_dyngen_own_integrators_looked_for"
_lock = threading.Lock()


def add_time(module: ModuleType, seconds: float) -> None:
    """Count ``seconds`` spent integrating ``module`` in the shared integrators."""
    module.__dict__[_SECONDS] = module.__dict__.get(_SECONDS, 0.0) + seconds


def own_decision(namespace: dict) -> bool | None:
    """What ``own_integrators`` decided for the module of ``namespace`` (None: nothing yet)."""
    return namespace.get(_OWN)


def decision_stands(namespace: dict, own: bool | None, specialize: bool) -> bool:
    """Whether ``own_integrators`` (called when ``specialize``) would still decide ``own``
    for the module of ``namespace``: ``own`` is its decision now (``None``: not made)
    and nothing may change it yet (the shared integrators have not run the model
    ``SPECIALIZE_AFTER`` seconds, and its file was looked for)."""
    if namespace.get(_OWN) is not own:
        return False
    return own is not None or not specialize or (namespace.get(_SECONDS, 0.0) <= SPECIALIZE_AFTER and _LOOKED in namespace)


def own_integrators(module: ModuleType) -> bool:
    """Whether ``module`` has (now) its own compiled integrators: a ``--standalone``
    module, one already given them, one whose file of them an earlier process wrote,
    or a small one that has run long enough in the shared ones."""
    namespace = module.__dict__
    state = namespace.get(_OWN)
    if state is not None:
        return state
    if namespace.get(_SECONDS, 0.0) <= SPECIALIZE_AFTER and _LOOKED in namespace:  # the common case, quickly
        return False
    if "run_dopri5" in namespace:  # written with them (--standalone)
        namespace[_OWN] = True
        return True
    path = _path(module)
    if path is None:  # too large to gain, or not a module of dyngen's cache
        namespace[_OWN] = False
        return False
    digest = _digest(module)
    first_look = _LOOKED not in namespace  # the file is looked for once per process
    namespace[_LOOKED] = True
    if (first_look and check_module(path).digest == digest) or namespace.get(_SECONDS, 0.0) > SPECIALIZE_AFTER:
        with _lock:
            if namespace.get(_OWN) is None:
                namespace[_OWN] = _execute(module, path, digest)
        return namespace[_OWN]
    return False


def _path(module: ModuleType) -> Path | None:
    """Where the module's own integrators are (beside it), for a small model whose
    module dyngen's cache holds (``<name>_<hash16>.py``); else None."""
    if int(module.N_STATES) > SPECIALIZE_MAX_STATES:
        return None
    file = getattr(module, "__file__", None)
    if not file or not Path(file).stem.endswith(str(module.MODEL_HASH)[:16]):
        return None
    return Path(file).with_name(f"{Path(file).stem}_own_integrators.py")


def _digest(module: ModuleType) -> str:
    return hashlib.sha256(f"{module.MODEL_HASH}:own integrators".encode("ascii")).hexdigest()


def _execute(module: ModuleType, path: Path, digest: str) -> bool:
    """Write (unless the checked file is there) and execute the module's own integrators
    in its namespace; False when that fails (the shared ones then go on)."""
    try:
        if check_module(path).digest != digest:
            write_text_atomic(path, own_integrators_text(Path(module.__file__).name, digest))
            if check_module(path).digest != digest:
                return False
        code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
        exec(code, module.__dict__)  # noqa: S102 - dyngen's own file, hash-checked just above
    except (OSError, SyntaxError):  # a cache that cannot be written: the shared integrators serve
        return False
    numba_cache.guard(module)  # the new dispatchers' caches heal themselves too
    return True


def own_integrators_text(module_file: str, digest: str) -> str:
    """The text of a module's own-integrators file (the templates' integrators)."""
    from ..render import environment
    from ..version import __version__

    text = environment().get_template("own_integrators.py.j2").render(
        version=__version__, module_file=module_file, digest=digest, generic=False
    )
    return text + trailer(digest, text)
