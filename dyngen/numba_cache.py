"""numba's on-disk cache of a generated module's functions, made to heal itself.

numba loads a function's cache (``<function>-<line>.pyXY.nbi`` index and its
``.nbc`` data files, in ``__pycache__`` next to the module) lazily, at the first
call.  A truncated or garbled file there makes numba raise a raw ``UnpicklingError``
or ``EOFError`` at every call, in every process, until the files are deleted; a
full disk makes its save raise ``OSError``.  ``guard`` wraps the cache object of each
of a module's dispatchers so that a damaged entry is removed (with a
``CacheWarning`` naming the files) and the function compiled again, and a failed
save only costs compiling again in the next process.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numba

from .errors import CacheWarning

# Frames a warning does not point at: dyngen's and numba's.
_SKIPPED = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (sys.modules[__package__], numba))

_GUARDED = "_dyngen_guarded"


def guard(module: ModuleType) -> None:
    """Make the numba caches of ``module``'s ``@njit(cache=True)`` functions heal
    themselves (a numba without the expected cache object is left as it is)."""
    for value in list(vars(module).values()):
        cache = getattr(value, "_cache", None)
        if cache is None or getattr(cache, _GUARDED, False):
            continue
        load, save = getattr(cache, "_load_overload", None), getattr(cache, "_save_overload", None)
        cache_file = getattr(cache, "_cache_file", None)
        if not (callable(load) and callable(save) and hasattr(cache_file, "_index_path")):
            continue
        cache._load_overload = _healing_load(cache, load)
        cache._save_overload = _tolerant_save(cache, save)
        setattr(cache, _GUARDED, True)


def entry_files(cache: Any) -> list[Path]:
    """The index and data files of one function's numba cache."""
    index = Path(cache._cache_file._index_path)
    stem = index.name[: -len(".nbi")]
    return [index, *sorted(index.parent.glob(f"{stem}.*.nbc"))]


def _name(cache: Any) -> str:
    func = getattr(cache, "_py_func", None)
    return getattr(func, "__qualname__", None) or repr(cache)


def _healing_load(cache: Any, load: Callable) -> Callable:
    def load_overload(sig: Any, target_context: Any) -> Any:
        try:
            return load(sig, target_context)
        except Exception as exc:  # any failure to read an entry: the entry is damaged
            files = [path for path in entry_files(cache) if path.exists()]
            removed = []
            for path in files:
                try:
                    os.unlink(path)
                    removed.append(path.name)
                except OSError:
                    pass
            warnings.warn(
                f"numba's cache of {_name(cache)} in {Path(cache._cache_file._index_path).parent} was damaged "
                f"({type(exc).__name__}: {exc}); removed {', '.join(removed) or 'nothing (it cannot be written)'} "
                "and compiling it again",
                CacheWarning,
                stacklevel=_stacklevel(),
            )
            return None  # a cache miss: numba compiles, and saves a new entry

    return load_overload


def _tolerant_save(cache: Any, save: Callable) -> Callable:
    def save_overload(sig: Any, data: Any) -> None:
        try:
            save(sig, data)
        except OSError as exc:  # numba removes its temporary file; nothing half-written stays
            warnings.warn(
                f"numba could not save its compiled {_name(cache)} to "
                f"{Path(cache._cache_file._index_path).parent}: {exc.strerror or exc}; it is compiled again "
                "in the next process",
                CacheWarning,
                stacklevel=_stacklevel(),
            )

    return save_overload


def _stacklevel() -> int:
    """The ``stacklevel`` that names the first frame outside dyngen and numba."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_SKIPPED):
        frame, level = frame.f_back, level + 1
    return level
