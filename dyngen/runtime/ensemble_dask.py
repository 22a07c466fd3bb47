"""Ensembles on a Dask cluster: chunks of members are tasks, the module travels as text.

``run_dask`` (what ``Simulation.ensemble(client=...)`` runs instead of threads) makes one
task per chunk of members (``chunk_bounds``).  A task gets the chunk's rows of the plan
(a smaller ``EnsemblePlan``) and the generated module as its source text, with its name
and hash (``ModuleText``): never a pickled module or numba object.  On the worker,
``worker_module`` writes the text into the worker's own module cache (a file already
there with the right hash is reused, any other is replaced atomically), imports it
through dyngen's loading path (``cache.load_module``) once per process and hash, and
``run_chunk`` runs the chunk in compiled code.  The client copies each chunk's blocks
into its rows by chunk index, so a chunk that Dask ran again after its worker died
lands exactly once.
"""

from __future__ import annotations

import threading
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

from ..cache import cache_dir, cached_module_path, fall_back, hold, load_module
from ..errors import ArgumentError, CacheWarning, DyngenError
from ..extras import require
from ..write import ModuleCheck, _check_text, check_module, write_text_atomic
from .ensemble import COMPILED_METHODS, Blocks, EnsemblePlan, chunk_bounds, default_threads, run_chunk



def check_text(text: str) -> ModuleCheck:
    """``write.check_module`` for a module's text, not a file (write.py's own check: that
    file is part of the generator's hash, so the function is not added there)."""
    return _check_text(text.encode("utf-8"))


@dataclass(frozen=True)
class ModuleText:
    """A generated module as it travels to a worker: its cache name, hash and text."""

    name: str  # the cache file is <name>_<hash16>.py
    digest: str  # MODEL_HASH, repeated in the text's header and last line
    text: str

    @classmethod
    def of(cls, module: ModuleType) -> "ModuleText":
        """The text of a loaded module's file, checked to be that module's."""
        path = Path(module.__file__)
        digest = str(module.MODEL_HASH)
        text = path.read_text(encoding="utf-8")
        check = check_text(text)
        if check.digest != digest:
            raise DyngenError(
                f"ensemble: the generated module {path} is no longer the one this simulation loaded "
                f"({check.problem or 'it holds another model'}); call Simulation.rebuild() and run again"
            )
        suffix = f"_{digest[:16]}"
        name = path.stem[: -len(suffix)] if path.stem.endswith(suffix) else path.stem
        return cls(name, digest, text)


def require_distributed() -> Any:
    """``dask.distributed``, or the error that names the extra to install."""
    return require("distributed", "dask", "ensemble(client=...) (it runs on Dask)")


# --------------------------------------------------------------------------------------
# On the worker
# --------------------------------------------------------------------------------------
class _Holder:
    """Keeps a module this worker loaded in the cache's hands (``cache.hold``)."""


_WORKER_MODULES: dict[str, tuple[ModuleType, _Holder]] = {}  # by hash: loaded once per process
_worker_lock = threading.Lock()


def worker_module(source: ModuleText, directory: str | Path | None = None) -> ModuleType:
    """The module ``source`` holds, from this process's module cache (``directory``, else
    ``$DYNGEN_CACHE_DIR`` or the user cache): written there first unless the file with
    its hash is there and intact; imported once per process and hash."""
    known = _WORKER_MODULES.get(source.digest)
    if known is not None:
        return known[0]
    with _worker_lock:  # a worker with several threads imports it once
        known = _WORKER_MODULES.get(source.digest)
        if known is not None:
            return known[0]
        check = check_text(source.text)
        if check.digest != source.digest:
            raise DyngenError(
                f"ensemble: the module text this worker received is not module {source.name} "
                f"{source.digest[:16]} ({check.problem or 'its header names another hash'})"
            )
        module = load_module(cached_copy(source, cache_dir(directory)), source.digest)
        holder = _Holder()
        hold(module, holder)
        _WORKER_MODULES[source.digest] = (module, holder)
        return module


def cached_copy(source: ModuleText, directory: Path) -> Path:
    """The path of ``source`` in the cache ``directory``: the file there when its text
    is intact and has the hash (not written again), else written atomically over
    whatever was there (a private cache when ``directory`` cannot be written)."""
    path = cached_module_path(directory, source.name, source.digest)
    check = check_module(path)
    if check.digest == source.digest:
        return path
    if check.header is not None:  # a module file, but not this one intact: never run it
        warnings.warn(f"{path}: {check.problem or 'it holds another model'}; replacing it with the module's text "
                      "the ensemble sent", CacheWarning, stacklevel=2)  # fmt: skip
    try:
        write_text_atomic(path, source.text)
    except OSError as exc:
        path = fall_back(directory, exc.strerror or str(exc)) / path.name
        write_text_atomic(path, source.text)
    if check_module(path).digest != source.digest:
        raise DyngenError(f"ensemble: {path} does not read back as the module written there; check the disk")
    return path


def run_chunk_task(source: ModuleText, plan: EnsemblePlan, index: int, specialize: bool = True) -> tuple[int, Blocks]:
    """A task: all members of ``plan`` (one chunk's rows) on this worker; the chunk's
    index and blocks.  ``specialize``: as ``ensemble.run_chunk``."""
    module = worker_module(source)
    return index, run_chunk(module, plan, 0, plan.count, specialize=specialize)


# --------------------------------------------------------------------------------------
# On the client
# --------------------------------------------------------------------------------------
def run_dask(
    module: ModuleType, plan: EnsemblePlan, blocks: Blocks, client: Any, threads: int | None,
    chunk_size: int | None, progress: Callable[[int, int], None] | None, specialize: bool = True,
) -> None:  # fmt: skip
    """All members of ``plan`` into ``blocks``, in chunks, as tasks of a Dask cluster:
    ``client`` is a ``distributed.Client``, an address (``"tcp://host:8786"``) or
    ``"local"`` (a ``LocalCluster`` of ``threads`` one-thread worker processes, default
    one per core, closed after the run)."""
    if not plan.compiled:
        raise DyngenError(_not_compiled(plan.method))
    distributed = require_distributed()
    source = ModuleText.of(module)
    with connected(client, threads, distributed) as dask_client:
        workers = sum(dask_client.nthreads().values()) or 1
        bounds = chunk_bounds(plan.count, workers, chunk_size)
        run = f"dyngen-ensemble-{source.digest[:12]}-{uuid.uuid4().hex[:12]}"
        futures = {
            dask_client.submit(
                run_chunk_task, source, replace(plan, y0=plan.y0[a:b], p=plan.p[a:b]), i, specialize, key=f"{run}-{i}"
            ): i
            for i, (a, b) in enumerate(bounds)
        }  # fmt: skip
        try:
            _gather(futures, bounds, blocks, plan.count, progress, distributed)
        finally:
            dask_client.cancel(list(futures))


def _gather(futures: dict, bounds: list[tuple[int, int]], blocks: Blocks, total: int,
            progress: Callable[[int, int], None] | None, distributed: Any) -> None:  # fmt: skip
    """Copy each finished chunk into its rows of ``blocks``, by chunk index."""
    landed: set[int] = set()
    done = 0
    finished = distributed.as_completed(list(futures), with_results=True, raise_errors=False)
    for future, outcome in finished:  # the results are fetched in the background, as chunks finish
        i = futures[future]
        a, b = bounds[i]
        if future.status == "error":
            _, error, traceback = outcome
            if isinstance(error, distributed.KilledWorker):
                raise DyngenError(
                    f"ensemble: the chunk of members {a}..{b - 1} killed every Dask worker that ran it ({error}); "
                    "see the workers' logs"
                ) from error
            raise error.with_traceback(traceback)  # the task's own exception
        index, result = outcome
        future.release()
        if index != i or i in landed or result.Y.shape[0] != b - a:
            raise DyngenError(f"ensemble: chunk {i} came back as chunk {index} of {result.Y.shape[0]} members; "
                              "this is a dyngen bug")  # fmt: skip
        landed.add(i)
        for target, block in zip(blocks.rows(a, b), result):
            target[...] = block
        done += b - a
        if progress is not None:
            progress(done, total)


@contextmanager
def connected(client: Any, threads: int | None, distributed: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for ``client=``: the one given; one connected to an
    address (closed after); or one on a new ``LocalCluster`` (both closed after)."""
    if isinstance(client, distributed.Client):
        yield client
    elif client == "local":
        with distributed.LocalCluster(
            n_workers=threads or default_threads(), threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster, distributed.Client(cluster) as local:  # fmt: skip
            yield local
    elif isinstance(client, str):
        try:
            remote = distributed.Client(client)
        except (OSError, ValueError) as error:
            raise DyngenError(f"ensemble: cannot connect to a Dask scheduler at {client!r}: {error}") from None
        with remote:
            yield remote
    else:
        raise ArgumentError(
            f"ensemble: client= takes a dask.distributed.Client, a scheduler address (\"tcp://host:8786\") or "
            f"\"local\", not {client!r}"
        )


def _not_compiled(method: str) -> str:
    if method in COMPILED_METHODS:  # rodas4 with a sparse LU
        why = f"integrator {method!r} factorises this model's sparse Jacobian with SuperLU, member by member in Python"
        instead = "'dopri5' or 'dop853'"
    else:
        why = f"integrator {method!r} is scipy's and runs member by member in Python"
        instead = ", ".join(map(repr, COMPILED_METHODS))
    return (f"ensemble(client=...): {why}, in this process only; on Dask use a compiled method ({instead}), "
            "or run it on threads (leave client=None)")  # fmt: skip
