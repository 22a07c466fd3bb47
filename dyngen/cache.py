"""Where generated modules live, and importing them."""

from __future__ import annotations

import atexit
import importlib.util
import json
import marshal
import os
import py_compile
import shutil
import sys
import tempfile
import warnings
import weakref
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from . import numba_cache
from .errors import CacheWarning, DyngenError, external_stacklevel
from .write import absolute, write_text_atomic

# The generated modules this process loaded, least recently used first.  A module
# that no BuildResult holds (``hold``) is "unused"; the UNUSED_KEPT most recent of
# those stay loaded (a loop that makes a new Simulation of the same model reuses its
# compiled code), older ones are released (``numba_cache.release``): a long-lived
# process that builds many models does not keep every one it ever loaded.
_LOADED: OrderedDict[tuple[str, str], ModuleType] = OrderedDict()
_HOLDERS: dict[int, int] = {}  # id(module) -> how many live holders
UNUSED_KEPT = 4


def hold(module: ModuleType, holder: object | None = None) -> bool:
    """Keep ``module`` loaded (with its compiled code) while ``holder`` lives, or (no
    holder) until a ``let_go(module)``; False, and nothing to let go, when it is not
    one of the cache's (or already released)."""
    if id(module) not in _HOLDERS:
        return False
    _HOLDERS[id(module)] += 1
    if holder is not None:
        weakref.finalize(holder, _let_go, id(module))
    return True


def let_go(module: ModuleType) -> None:
    """Undo one ``hold(module)`` without a holder that returned True."""
    _let_go(id(module))


def _let_go(module_id: int) -> None:
    if _HOLDERS.get(module_id, 0) > 0:
        _HOLDERS[module_id] -= 1


def _release_unused() -> None:
    """Release the unused modules beyond the UNUSED_KEPT most recently used."""
    unused = [key for key, module in _LOADED.items() if _HOLDERS.get(id(module), 0) == 0]
    for key in unused[: max(0, len(unused) - UNUSED_KEPT)]:
        module = _LOADED.pop(key)
        del _HOLDERS[id(module)]
        for alias in [a for a, k in _RESOLVED.items() if k == key]:
            del _RESOLVED[alias]
        numba_cache.release(module)


# What every generated module defines; a module without them is damaged.
REQUIRED = ("MODEL_HASH", "N_STATES", "N_OBSERVED", "STATES", "OBSERVED", "DERIVATIVE_KEYS", "rhs", "jac", "jac_values", "observe")


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The module cache: ``override``, else ``$DYNGEN_CACHE_DIR``, else the user cache."""
    if override is not None:
        return _path(os.fspath(override))
    env = os.environ.get("DYNGEN_CACHE_DIR")
    if env:
        return _path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return _path(os.path.join(base, "dyngen"))


# Paths made once per text: a Path keeps its parsed parts, string and hash, which
# every fresh Simulation's cache lookup would otherwise compute again.
@lru_cache(maxsize=256)
def _path(text: str) -> Path:
    return Path(text)


# Per cache folder that could not be written in this process: the private one used instead.
_PRIVATE: dict[str, Path] = {}


def cache_folders(directory: Path) -> list[Path]:
    """Where modules of the cache ``directory`` are looked for: the folder itself, then
    the private folder that replaces it in this process when it could not be written."""
    private = _PRIVATE.get(absolute(directory)) if _PRIVATE else None
    return [directory] if private is None else [directory, private]


def fall_back(directory: Path, reason: str) -> Path:
    """A private temporary cache (removed at exit) that replaces ``directory`` in this
    process, which cannot be written (``reason``); made, and warned about, once."""
    key = os.path.abspath(directory)
    private = _PRIVATE.get(key)
    if private is None:
        private = _PRIVATE[key] = Path(tempfile.mkdtemp(prefix="dyngen-cache-"))
        atexit.register(shutil.rmtree, private, ignore_errors=True)
        warnings.warn(
            f"the module cache {directory} cannot be written ({reason}); this process keeps its modules in a "
            f"private temporary cache, {private}, removed at exit, and builds them again in every process: point "
            "DYNGEN_CACHE_DIR (or Simulation(cache_dir=...)) at a folder you can write",
            CacheWarning,
            stacklevel=external_stacklevel(),
        )
    return private


@lru_cache(maxsize=1024)
def cached_module_path(directory: Path, name: str, digest: str) -> Path:
    """Cache files are keyed by the model hash: ``<name>_<hash16>.py``."""
    return directory / f"{name}_{digest[:16]}.py"


@lru_cache(maxsize=1024)
def _structure_entry(directory: Path, name: str, structure: str) -> Path:
    return directory / "structures" / f"{name}_{structure[:32]}"


def known_digest(directory: Path, name: str, structure: str) -> tuple[str, list[str], dict[str, str]] | None:
    """The module hash a model of this structure key was built to, the warnings its
    build gave, and the library files (path -> SHA-256) its traced code depends on,
    if it was built."""
    path = str(_structure_entry(directory, name, structure))
    try:
        status = os.stat(path)
    except OSError:
        return None
    stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
    known = _ENTRIES.get(path)
    if known is not None and known[0] == stamp:  # read before, and not written since
        return known[1]
    try:
        with open(path, encoding="utf-8") as handle:
            entry = json.loads(handle.read())
        digest, messages, depends = entry["digest"], entry["warnings"], entry.get("depends", {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    valid = isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
    valid = valid and isinstance(messages, list) and isinstance(depends, dict)
    valid = valid and all(isinstance(k, str) and isinstance(v, str) for k, v in depends.items())
    found = (digest, [str(w) for w in messages], depends) if valid else None
    if len(_ENTRIES) >= 1024:
        _ENTRIES.clear()
    _ENTRIES[path] = (stamp, found)
    return found


# known_digest's entries read in this process, by path: (mtime_ns, size, inode) and what was read.
_ENTRIES: dict[str, tuple[tuple[int, int, int], tuple[str, list[str], dict[str, str]] | None]] = {}


def remember_digest(
    directory: Path, name: str, structure: str, digest: str, messages: list[str], depends: dict[str, str] | None = None
) -> None:
    """Record that a model of this structure key builds to the module ``digest`` (while
    the library files ``depends`` are unchanged)."""
    entry = {"digest": digest, "warnings": messages, "depends": depends or {}}
    try:
        write_text_atomic(_structure_entry(directory, name, structure), json.dumps(entry))
    except OSError:
        pass  # a read-only cache: the next start traces again


def _ensure_bytecode(path: Path) -> None:
    """Write the module's ``.pyc`` even under ``PYTHONDONTWRITEBYTECODE``.

    A large model's module has megabytes of tables: compiling its source takes
    longer than everything else a warm start does, so it is done once.
    """
    try:
        if not Path(importlib.util.cache_from_source(str(path))).exists():
            py_compile.compile(str(path), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    except (OSError, py_compile.PyCompileError):
        pass  # a read-only folder or a broken file: the import compiles (and reports) it


def import_file(module_name: str, path: Path) -> ModuleType:
    """Execute the Python file ``path`` as module ``module_name`` (registered in
    ``sys.modules``; unregistered again if it fails, and the exception propagates).

    A damaged ``.pyc`` (truncated or garbled after its header, which Python reports
    as "marshal data too short" or "bad marshal data" at every import) is removed,
    with a ``CacheWarning``, and the module imported again from its source.
    """
    _ensure_bytecode(path)
    try:
        return _execute(module_name, path)
    except (EOFError, ValueError, TypeError) as exc:
        pyc = Path(importlib.util.cache_from_source(str(path)))
        if not _damaged_bytecode(pyc):
            raise
        pyc.unlink(missing_ok=True)
        warnings.warn(
            f"the bytecode {pyc} of the cached module {path.name} was damaged ({exc}); removed it and "
            "compiled the module again",
            CacheWarning,
            stacklevel=external_stacklevel(),
        )
        _ensure_bytecode(path)
        return _execute(module_name, path)


def _damaged_bytecode(pyc: Path) -> bool:
    """Whether ``pyc`` exists and its code (after the 16-byte header) cannot be read."""
    try:
        data = pyc.read_bytes()
    except OSError:
        return False
    try:
        marshal.loads(data[16:])
    except Exception:
        return True
    return False


def _execute(module_name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def load_module(path: Path, digest: str) -> ModuleType:
    """Import a generated module from its file (once per process and hash, while it
    is used: see ``hold``).

    The module is not left in ``sys.modules`` (which would keep every model a process
    ever built, with its compiled code): numba, which looks it up there when it loads
    a function from its on-disk cache, finds it there while it does (``numba_cache``).
    """
    known = loaded_module(path, digest)
    if known is not None:
        return known
    key = (str(path.resolve()), digest)
    _release_unused()
    module_name = f"dyngen_generated.{path.stem}_{digest[:16]}"
    try:
        module = import_file(module_name, path)
    except Exception as exc:
        raise DyngenError(f"the generated module {path} failed to import: {exc}") from exc
    del sys.modules[module_name]
    if getattr(module, "MODEL_HASH", None) != digest:
        raise DyngenError(f"{path} holds another model (hash mismatch); delete it and rebuild")
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise DyngenError(f"{path} is damaged (it lacks {', '.join(missing)}); delete it and rebuild")
    numba_cache.guard(module)  # numba loads its cache at the first call: make it heal itself
    _LOADED[key] = module
    _HOLDERS[id(module)] = 0
    _RESOLVED[(str(path), digest)] = key
    return module


# The _LOADED key of a module by the path it was asked for as (without resolving it again;
# a path that now leads elsewhere leads to a module of the same hash: the same model).
_RESOLVED: dict[tuple[str, str], tuple[str, str]] = {}


def loaded_module(path: Path, digest: str) -> ModuleType | None:
    """The module ``load_module(path, digest)`` loaded before in this process, if it is
    still loaded (its file is not looked at again)."""
    key = _RESOLVED.get((str(path), digest))
    known = None if key is None else _LOADED.get(key)
    if known is None:
        key = (str(path.resolve()), digest)
        known = _LOADED.get(key)
        if known is None:
            return None
        _RESOLVED[(str(path), digest)] = key
    _LOADED.move_to_end(key)
    return known
