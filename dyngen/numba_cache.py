"""numba's on-disk cache of a generated module's functions, made to heal itself.

numba loads a function's cache (``<function>-<line>.pyXY.nbi`` index and its
``.nbc`` data files, in ``__pycache__`` next to the module) lazily, at the first
call.  A truncated or garbled file there makes numba raise a raw ``UnpicklingError``
or ``EOFError`` at every call, in every process, until the files are deleted; a
full disk makes its save raise ``OSError``.  numba imports the module of a
function it compiles or loads from the cache: a generated module is in
``sys.modules`` only then (``cache.load_module``).  ``guard`` wraps the cache file object of
each of a module's dispatchers so that a damaged entry is removed (with a
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
    themselves, and register ``module`` in ``sys.modules`` while numba compiles or
    loads one of them (a numba without the expected objects is left as it is)."""
    for value in list(vars(module).values()):
        cache_file = getattr(getattr(value, "_cache", None), "_cache_file", None)
        compile_ = getattr(value, "compile", None)
        if cache_file is None or getattr(cache_file, _GUARDED, False) or not callable(compile_):
            continue
        load, save = getattr(cache_file, "load", None), getattr(cache_file, "save", None)
        if not (callable(load) and callable(save) and isinstance(getattr(cache_file, "_index_path", None), str)):
            continue
        name = getattr(getattr(value, "py_func", None), "__qualname__", None) or repr(value)
        value.compile = _registered(module, compile_)
        cache_file.load = _healing_load(cache_file, name, load)
        cache_file.save = _tolerant_save(cache_file, name, save)
        setattr(cache_file, _GUARDED, True)


def _registered(module: ModuleType, compile_: Callable) -> Callable:
    """A dispatcher's ``compile`` with ``module`` in ``sys.modules`` while it runs:
    numba imports the module of the function it compiles or loads from its cache
    (for its globals, by name; a module it cannot import gives cache entries that
    cannot be loaded)."""

    def compile_with_module(sig: Any) -> Any:
        name = module.__name__
        if sys.modules.get(name) is not None:
            return compile_(sig)
        sys.modules[name] = module
        try:
            return compile_(sig)
        finally:
            sys.modules.pop(name, None)

    return compile_with_module


def entry_files(cache_file: Any) -> list[Path]:
    """The index and data files of one function's numba cache."""
    index = Path(cache_file._index_path)
    stem = index.name[: -len(".nbi")]
    return [index, *sorted(index.parent.glob(f"{stem}.*.nbc"))]


def _healing_load(cache_file: Any, name: str, load: Callable) -> Callable:
    def load_entry(key: Any) -> Any:
        try:
            return load(key)
        except ImportError:  # a module the entry names is missing: not damage of the files
            raise
        except Exception as exc:  # anything else reading or unpickling them: damaged files
            removed = []
            for path in entry_files(cache_file):
                try:
                    path.unlink()
                    removed.append(path.name)
                except OSError:
                    pass
            warnings.warn(
                f"numba's cache of {name} in {Path(cache_file._index_path).parent} was damaged "
                f"({type(exc).__name__}: {exc}); removed {', '.join(removed) or 'nothing (it cannot be written)'} "
                "and compiling it again",
                CacheWarning,
                stacklevel=_stacklevel(),
            )
            return None  # a cache miss: numba compiles, and saves a new entry

    return load_entry


def _tolerant_save(cache_file: Any, name: str, save: Callable) -> Callable:
    def save_entry(key: Any, data: Any) -> None:
        try:
            save(key, data)
        except OSError as exc:  # numba removes its temporary file; nothing half-written stays
            warnings.warn(
                f"numba could not save its compiled {name} to {Path(cache_file._index_path).parent}: "
                f"{exc.strerror or exc}; it is compiled again in the next process",
                CacheWarning,
                stacklevel=_stacklevel(),
            )

    return save_entry


def _stacklevel() -> int:
    """The ``stacklevel`` that names the first frame outside dyngen and numba."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_SKIPPED):
        frame, level = frame.f_back, level + 1
    return level


def release(module: ModuleType) -> None:
    """Drop the compiled code of ``module``'s functions, so that the module can be
    collected: numba keeps a dispatcher's compiled overloads (which reach the module
    and so the dispatcher itself) alive from a finalizer it registers, until they are
    cleared.  A function called again afterwards is compiled or loaded again."""
    for value in list(vars(module).values()):
        overloads, reset = getattr(value, "overloads", None), getattr(value, "_reset_overloads", None)
        if not isinstance(overloads, dict) or not callable(reset):
            continue
        remove = getattr(getattr(value, "targetctx", None), "remove_user_function", None)
        for result in list(overloads.values()):
            try:
                remove(result.entry_point)
            except (KeyError, AttributeError, TypeError):
                pass
        reset()
