"""The build pipeline: one line per stage, each commented with its type change."""

from __future__ import annotations

import gc
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

from .cache import (
    cache_dir, cache_folders, cached_module_path, fall_back, hold, known_digest, let_go, load_module, loaded_module,
    remember_digest,
)  # fmt: skip
from .deep import deep_retry
from .errors import CacheWarning, DyngenError, DyngenWarning, OutputError, external_stacklevel
from .ir import BuildOptions, FlatModel, Kernel, ModelSpec, ModuleSource
from .naming import module_name, sanitize
from .progress import Progress, history_file
from .runtime.fingerprint import dependencies_unchanged, library_dependencies
from .write import check_module, check_output, module_hash, write_module


class _Front:
    """The traced and flattened model, or how to get them when a warm start skipped them."""

    __slots__ = ("_stages", "_again")

    def __init__(
        self, stages: tuple[ModelSpec, FlatModel] | None, again: Callable[[], tuple[ModelSpec, FlatModel]] | None = None
    ) -> None:
        self._stages = stages
        self._again = again

    def get(self) -> tuple[ModelSpec, FlatModel]:
        if self._stages is None:
            assert self._again is not None
            self._stages = self._again()
        return self._stages


@dataclass(frozen=True)
class BuildResult:
    """Every intermediate of one build, so any stage can be shown or tested."""

    front: _Front
    kernel: Kernel | None  # None when an up-to-date module was reused
    source: ModuleSource | None
    path: Path
    module: ModuleType
    reused: bool  # an up-to-date module from the cache was loaded
    written: bool  # the file was (re)written by this build
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # the module and its compiled code stay loaded while this lives (let go in __del__:
        # a weakref.finalize per result costs a fresh Simulation of a model built before 2 us more)
        object.__setattr__(self, "_held", hold(self.module))

    def __del__(self) -> None:
        if self.__dict__.get("_held") and callable(let_go):  # (None at interpreter exit)
            let_go(self.module)

    @classmethod
    def reused_module(cls, front: _Front, path: Path, module: ModuleType, timings: dict[str, float]) -> "BuildResult":
        """``BuildResult(front, None, None, path, module, True, False, timings)``, made
        without the frozen dataclass's __init__ (a setattr per field: a fresh Simulation
        of a model built before makes one)."""
        self = object.__new__(cls)
        self.__dict__.update(
            front=front, kernel=None, source=None, path=path, module=module, reused=True, written=False, timings=timings,
            _held=hold(module),  # (__post_init__)
        )  # fmt: skip
        return self

    @property
    def spec(self) -> ModelSpec:
        """The traced model (traced now if the module was found by its structure key)."""
        return self.front.get()[0]

    @property
    def flat(self) -> FlatModel:
        """The flattened model (traced now if the module was found by its structure key)."""
        return self.front.get()[1]

    @property
    def digest(self) -> str:
        """The module's hash (the model's and the generator's): MODEL_HASH, the cache key."""
        return str(self.module.MODEL_HASH)


def default_name(systems: list[Any]) -> str:
    """A module name for a model that has no file: its first system's class."""
    return _class_module_name(type(systems[0]).__name__) if systems else "model"


@lru_cache(maxsize=256)
def _class_module_name(class_name: str) -> str:
    return sanitize(class_name).lower()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while the pipeline builds millions of sympy objects.

    Each full collection walks every live object, which makes tracing and lowering a
    large model grow quadratically; nothing the stages create is cyclic garbage.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def _timed(timings: dict[str, float], stage: str, progress: Progress) -> Iterator[None]:
    start = time.perf_counter()
    with progress.stage(stage):
        yield
    timings[stage] = time.perf_counter() - start


def build(
    systems: list[Any],
    *,
    name: str,
    source_root: str,
    model_file: str,
    options: BuildOptions = BuildOptions(),
    progress: Progress | None = None,
    structure: str | None = None,
    retrace: bool = False,
) -> BuildResult:
    """Build (or reuse) the generated module of a model.

    With ``options.output_dir`` the module is written as ``<output_dir>/<name>.py``
    (as ``dyngen build`` does); otherwise it goes to the cache as ``<name>_<hash>.py``
    and a module already there is reused without lowering or rendering again.
    ``structure`` (``runtime.fingerprint.structure_key``) names the model across
    processes: when the cache knows the module it builds to, that module is loaded
    without tracing (``spec`` and ``flat`` are then traced only if asked for);
    ``retrace`` traces all the same (and records what the model builds to now).
    A build slower than a second reports its stages on stderr (``progress``).
    """
    if options.output_dir is not None:  # a user's folder: never over a file dyngen did not write
        _check_output(name, source_root, model_file, options)
    if progress is None:
        label = module_name(name)
        progress = Progress(label, options.progress, history=history_file(options.cache_dir, label, model_file))
    cached = None if retrace else _by_structure(name, options, structure, progress)
    if cached is not None:
        return _found(systems, name, source_root, options, *cached)
    from .calls import recording_library_calls  # the tracer (and sympy): not needed by a warm start

    with _gc_paused(), recording_library_calls() as called:
        result = deep_retry(
            lambda: _build(systems, name=name, source_root=source_root, model_file=model_file, options=options,
                           progress=progress),
            f"building {module_name(name)}",
        )  # fmt: skip
    if structure is not None and options.output_dir is None:
        # next to the module: in the private cache when the cache folder cannot be written
        notes = list(result.kernel.notes) if result.kernel is not None else []  # (a module loaded from the cache: none)
        remember_digest(result.path.parent, module_name(name), structure, result.digest, list(result.flat.warnings) + notes,
                        library_dependencies(called))  # fmt: skip
        _REUSED.clear()  # the key may name another module now (rebuild())
    return result


def _found(
    systems: list[Any], name: str, source_root: str, options: BuildOptions, module: ModuleType, path: Path,
    timings: dict[str, float],
) -> BuildResult:  # fmt: skip
    """The BuildResult of a module found by the model's structure key (spec and flat traced when asked for)."""

    def again() -> tuple[ModelSpec, FlatModel]:
        from .render import module_digest

        with _gc_paused():
            spec, flat = deep_retry(lambda: _trace_flatten(systems, name, source_root, options), f"tracing {name}")
        if module_digest(flat.digest, options.kernels, options.standalone) != module.MODEL_HASH:
            raise DyngenError(
                f"{path.name} was loaded by the model's structure key, but the model traced now builds to "
                "another module: either the model changed since (take spec and flat from a new compile()) "
                "or the structure key missed a change (call Simulation.rebuild(), and please report it)"
            )
        return spec, flat

    return BuildResult.reused_module(_Front(None, again), path, module, timings)


def reuse_loaded(
    systems: list[Any], *, name: str, source_root: str, options: BuildOptions, structure: str | None
) -> BuildResult | None:  # fmt: skip
    """What ``build`` returns when the module the structure key ``structure`` names is
    loaded in this process already (after the checks of the cache entry, the library
    files and the module file, the first time: see ``_REUSED``); None when ``build``
    has more to do (trace, or import the module: it reports those stages).  A fresh
    Simulation of a model built before needs no ``Progress`` then."""
    if structure is None or options.output_dir is not None or options.always_render:
        return None
    label = module_name(name)
    for directory in cache_folders(cache_dir(options.cache_dir)):
        slot = (directory, label, structure)
        known = _REUSED.get(slot)
        module = None
        if known is not None and dependencies_unchanged(known[3]):
            module = loaded_module(known[0], known[1])
        if module is None:
            known = _known_module(directory, label, structure)
            if known is None:
                continue
            module = loaded_module(known[0], known[1])
            if module is None:
                return None
            if len(_REUSED) >= 1024:
                _REUSED.clear()
            _REUSED[slot] = known
        path, digest, messages, _ = known
        for message in messages:  # what the model's first build warned about still holds
            warnings.warn(message, DyngenWarning, stacklevel=external_stacklevel())
        return _found(systems, name, source_root, options, module, path, {"load": 0.0})
    return None


# reuse_loaded's finds: per (cache folder, module name, structure key), the module file,
# its hash, the warnings of its build and the library files its traced code calls, once
# checked (_known_module) and loaded in this process.  The entry and module files are
# not looked at again for them: the module in memory is the one the key names, whatever
# happens to the files (a damaged file is healed by the next process that loads it, which
# checks them); the library files are (an edited library is a new build).  Cleared by
# every build that records a structure key (Simulation.rebuild() may map one anew).
_REUSED: dict[tuple[Path, str, str], tuple[Path, str, list[str], dict[str, str]]] = {}


def _trace_flatten(systems: list[Any], name: str, source_root: str, options: BuildOptions) -> tuple[ModelSpec, FlatModel]:
    from .flatten import flatten
    from .trace import trace

    spec = trace(systems, module_name(name), source_root, options.arrays, options.parameters)
    return spec, flatten(spec)


def _elsewhere(options: BuildOptions) -> str:
    """How to write the module somewhere else."""
    if options.output_dir is not None:
        return "choose another output folder with -o DIR"
    return (f"the module cache is {cache_dir(options.cache_dir)}: point DYNGEN_CACHE_DIR (or "
            "Simulation(cache_dir=...)) at a folder you can write")  # fmt: skip


def _check_output(name: str, source_root: str, model_file: str, options: BuildOptions) -> None:
    """Refuse (OutputError) to write ``<output_dir>/<name>.py`` over a file dyngen did not
    generate, or over the model file or a source file of the user's it imports."""
    from .runtime.fingerprint import user_source_files

    assert options.output_dir is not None
    path = Path(options.output_dir) / f"{module_name(name)}.py"
    model = Path(source_root) / model_file if not model_file.startswith("<") else None
    check_output(path, model_file, model, user_source_files(), options.force)


def _by_structure(
    name: str, options: BuildOptions, structure: str | None, progress: Progress
) -> tuple[ModuleType, Path, dict[str, float]] | None:
    """The cached module a model of this structure key was built to, loaded, if any."""
    if structure is None or options.output_dir is not None or options.always_render:
        return None
    name = module_name(name)
    for directory in cache_folders(cache_dir(options.cache_dir)):
        found = _load_known(directory, name, structure, progress)
        if found is not None:
            return found
    return None


def _known_module(directory: Path, name: str, structure: str) -> tuple[Path, str, list[str], dict[str, str]] | None:
    """The module file (path, hash, the warnings of its build, the library files its
    traced code calls) the cache entry of this structure key names in ``directory``,
    while the entry, those library files and the module's text are as they were; else None."""
    known = known_digest(directory, name, structure)
    if known is None:
        return None
    digest, messages, depends = known
    if not dependencies_unchanged(depends):  # a library the traced code calls was changed
        return None
    path = cached_module_path(directory, name, digest)
    try:  # read again only when its (mtime, size, inode) changed: an edited or damaged file is rebuilt
        if module_hash(path) != digest:
            return None
    except OSError:  # unreadable: the full build reports or replaces it
        return None
    return path, digest, messages, depends


def _load_known(
    directory: Path, name: str, structure: str, progress: Progress
) -> tuple[ModuleType, Path, dict[str, float]] | None:
    """``_by_structure`` in one cache folder."""
    known = _known_module(directory, name, structure)
    if known is None:
        return None
    path, digest, messages, _ = known
    loaded = loaded_module(path, digest)
    if loaded is not None:  # loaded before in this process: not imported again
        for message in messages:  # what the model's first build warned about still holds
            warnings.warn(message, DyngenWarning, stacklevel=external_stacklevel())
        return loaded, path, {"load": 0.0}
    timings: dict[str, float] = {}
    with _timed(timings, "load", progress):
        try:
            module = load_module(path, digest)
        except DyngenError:  # damaged: the full build replaces it
            return None
    for message in messages:  # what the model's first build warned about still holds
        warnings.warn(message, DyngenWarning, stacklevel=external_stacklevel())
    return module, path, timings


def _build(
    systems: list[Any],
    *,
    name: str,
    source_root: str,
    model_file: str,
    options: BuildOptions,
    progress: Progress,
) -> BuildResult:
    """``build`` with the garbage collector paused."""
    from .flatten import flatten  # the tracer, the lowering and the templates: a warm start needs none
    from .lower import lower
    from .render import module_digest, render
    from .trace import trace

    name = module_name(name)  # it names a file and appears in the module: identifier characters only
    timings: dict[str, float] = {}
    with _timed(timings, "trace", progress):
        spec = trace(systems, name, source_root, options.arrays, options.parameters)  # system tree -> ModelSpec
    with _timed(timings, "flatten", progress):
        flat = flatten(spec)  # ModelSpec -> FlatModel
    digest = module_digest(flat.digest, options.kernels, options.standalone)  # the model's hash and the generator's
    for message in flat.warnings:
        warnings.warn(message, DyngenWarning, stacklevel=external_stacklevel())
    if options.output_dir is not None:
        path = Path(options.output_dir) / f"{name}.py"
    else:
        for folder in cache_folders(cache_dir(options.cache_dir)):  # the cache, then a private one
            path = cached_module_path(folder, name, digest)
            check = check_module(path)
            if check.header == digest and check.problem is not None:  # ours, but edited or damaged
                warnings.warn(f"{path}: {check.problem}; rebuilding it", CacheWarning, stacklevel=external_stacklevel())
            if not options.always_render and check.digest == digest:
                with _timed(timings, "load", progress):
                    try:
                        module = load_module(path, digest)
                    except DyngenError:  # a damaged cache entry: build it again
                        path.unlink(missing_ok=True)
                    else:
                        return BuildResult(_Front((spec, flat)), None, None, path, module, True, False, timings)
    with _timed(timings, "lower", progress):
        kernel = lower(flat, options.kernels)  # FlatModel -> Kernel
    for message in kernel.notes:
        warnings.warn(message, DyngenWarning, stacklevel=external_stacklevel())
    with _timed(timings, "render", progress):
        source = render(kernel, model_file, digest, options.standalone)  # Kernel -> ModuleSource
    with _timed(timings, "write", progress):
        path, written = _write(source, path, options)  # ModuleSource -> <dir>/<name>.py (atomic)
    with _timed(timings, "load", progress):
        try:
            module = load_module(path, digest)  # file -> module
        except DyngenError:
            if options.output_dir is None:  # never leave a module that fails in the cache
                path.unlink(missing_ok=True)
            raise
    return BuildResult(_Front((spec, flat)), kernel, source, path, module, False, written, timings)


def _write(source: ModuleSource, path: Path, options: BuildOptions) -> tuple[Path, bool]:
    """Write the module to ``path`` (atomically); a module cache that cannot be
    written (read-only, a file, a full disk) is replaced by a private temporary one,
    with a warning.  Returns where the module is and whether it was written."""
    try:
        return path, write_module(source, path)
    except OutputError as error:
        if options.output_dir is not None:
            raise OutputError(f"{error}; {_elsewhere(options)}") from None
        reason = _why_unwritable(path.parent, error)
    private = fall_back(path.parent, str(reason)) / path.name
    try:
        return private, write_module(source, private)
    except OutputError as error:
        raise OutputError(
            f"the module cache {path.parent} cannot be written ({reason}), nor a private one: {error}; {_elsewhere(options)}"
        ) from None


def _why_unwritable(folder: Path, error: OutputError) -> str:
    """Why ``folder`` could not be written: a file on its way, or the system's reason."""
    existing = folder
    while not existing.exists() and existing != existing.parent:  # the nearest part that exists
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    return str(error)
