"""Simulation.ensemble(client=...): the chunks run on a Dask cluster of worker processes,
which load the module from its source text into their own cache, and the Dataset is
the threaded run's, bit for bit — also when a worker dies mid-run.

The threaded run is itself checked member by member against single simulate() runs
(tests/test_ensemble.py); here one member is checked against simulate() as well.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

import numpy as np
import pytest

import ensemble_model as model
from dyngen import ArgumentError, DyngenError, Recorder
from dyngen.runtime.ensemble_dask import ModuleText, cached_copy
from dyngen.write import check_module

distributed = pytest.importorskip("distributed")
xr = pytest.importorskip("xarray")

pytestmark = pytest.mark.slow  # worker processes, numba compiles in them

GRID = {"VanDerPol.inputs.mu": [0.5, 1.0, 2.5], "VanDerPol.states.x": [-1.0, 2.0]}


def local_cluster(cache: os.PathLike) -> distributed.LocalCluster:
    """Two one-thread worker processes whose module cache is ``cache`` (not the client's)."""
    return distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
        env={"DYNGEN_CACHE_DIR": str(cache)}, silence_logs=50,
    )  # fmt: skip


@pytest.fixture(scope="module")
def worker_cache(tmp_path_factory):
    """The workers' module cache (of every cluster here: numba compiles there once), holding
    at first a tampered copy of the model's module: its header and hash line are the
    module's, one line more would create the file ``ran``.  Yields (folder, module text, ran)."""
    cache = tmp_path_factory.mktemp("worker-cache")
    sim = model.build()
    sim.compile()
    source = ModuleText.of(sim._model.module)
    ran = cache.parent / f"{cache.name}-the-tampered-module-ran"
    tampered = source.text.replace("import numpy as np\n", f"import numpy as np\nopen({str(ran)!r}, 'w').close()\n", 1)
    assert tampered != source.text
    (cache / f"{source.name}_{source.digest[:16]}.py").write_text(tampered, encoding="utf-8")
    return cache, source, ran


@pytest.fixture(scope="module")
def cluster(worker_cache):
    with local_cluster(worker_cache[0]) as cluster, distributed.Client(cluster) as client:
        yield client


def simulate_member(mu: float, x0: float, t: float, dt: float, integrator: str) -> np.ndarray:
    """One simulate() with a Recorder: VanDerPol's x."""
    sim = model.build()
    sim.systems[0].inputs.mu = mu
    sim.systems[0].states.x = x0
    recorder = Recorder()
    recorder.store(sim.systems[0], "states.x")
    sim.add_observer(recorder)
    sim.simulate(t, dt, integrator=integrator)
    return np.array(recorder.results[sim.systems[0]]["states.x"])


@pytest.mark.parametrize("integrator", ["dopri5", "rodas4"])
def test_dask_dataset_is_the_threaded_one_bit_for_bit(cluster, integrator):
    client = cluster
    sim = model.build()
    threaded = sim.ensemble(3.0, 0.1, grid=GRID, integrator=integrator, threads=2, chunk_size=2)
    calls = []
    ds = sim.ensemble(3.0, 0.1, grid=GRID, integrator=integrator, client=client, chunk_size=2,
                      progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    xr.testing.assert_identical(ds, threaded)  # every value, coordinate and attribute
    assert sorted(calls) == [(2, 6), (4, 6), (6, 6)]  # one call per chunk
    member = 4  # mu = 2.5, x0 = -1
    expected = simulate_member(2.5, -1.0, 3.0, 0.1, integrator)
    np.testing.assert_array_equal(ds["VanDerPol.states.x"].values[member], expected)


def test_a_tampered_module_in_the_worker_cache_is_replaced_not_run(cluster, worker_cache, dyngen_cache_dir):
    cache, source, ran = worker_cache
    sim = model.build()
    ds = sim.ensemble(1.0, 0.25, grid=GRID, client=cluster, chunk_size=3)
    xr.testing.assert_identical(ds, sim.ensemble(1.0, 0.25, grid=GRID, threads=1))
    assert not ran.exists()  # the workers never imported the tampered file...
    path = cache / f"{source.name}_{source.digest[:16]}.py"
    assert path.read_text(encoding="utf-8") == source.text  # ...they wrote the module's text over it
    assert check_module(path).digest == source.digest
    assert cache != dyngen_cache_dir and not (cache / "structures").exists()  # no build ran there
    loaded = {tuple(hashes) for hashes in cluster.run(loaded_hashes).values()}  # kept per worker, by hash
    assert (source.digest,) in loaded and loaded <= {(), (source.digest,)}


def loaded_hashes() -> list[str]:
    """On a worker: the hashes of the modules its tasks loaded."""
    from dyngen.runtime import ensemble_dask

    return list(ensemble_dask._WORKER_MODULES)


def test_an_address_connects_a_client(cluster):
    client = cluster
    sim = model.build()
    ds = sim.ensemble(1.0, 0.5, members={"VanDerPol.inputs.mu": [1.0, 2.0, 3.0]}, client=client.scheduler.address)
    threaded = sim.ensemble(1.0, 0.5, members={"VanDerPol.inputs.mu": [1.0, 2.0, 3.0]}, threads=1)
    xr.testing.assert_identical(ds, threaded)


def exit_on_the_first_chunk(marker: str) -> None:
    """Run on every worker: the first chunk any of them starts ends its process (os._exit),
    once (``marker`` records which process); the nanny starts a fresh worker."""
    import dyngen.runtime.ensemble_dask as ensemble_dask

    original = ensemble_dask.run_chunk_task

    def dying(source, plan, index, *rest):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return original(source, plan, index, *rest)
        os.write(fd, f"{os.getpid()} {index}".encode())
        os.close(fd)
        os._exit(1)

    ensemble_dask.run_chunk_task = dying  # tasks name the function: unpickling finds this one


def test_a_killed_worker_loses_and_duplicates_nothing(tmp_path, worker_cache):
    marker = tmp_path / "killed"
    members = {"VanDerPol.inputs.mu": np.linspace(0.5, 3.0, 24), "VanDerPol.states.x": np.linspace(-2, 2, 24)}
    sim = model.build()
    threaded = sim.ensemble(5.0, 0.1, members=members, threads=2, chunk_size=2)
    with local_cluster(worker_cache[0]) as cluster, distributed.Client(cluster) as client:
        before = set(client.run(os.getpid).values())
        client.run(exit_on_the_first_chunk, str(marker))
        calls = []
        ds = sim.ensemble(5.0, 0.1, members=members, client=client, chunk_size=2,
                          progress=lambda done, total: calls.append(done))  # fmt: skip
        killed, chunk = map(int, marker.read_text().split())
        client.wait_for_workers(2)
        after = set(client.run(os.getpid).values())
    assert killed in before and killed not in after  # that worker process died mid-run
    xr.testing.assert_identical(ds, threaded)  # its chunk was run again, and landed once
    assert sorted(calls) == list(range(2, 25, 2)) and 0 <= chunk < 12


def test_an_intact_module_in_the_cache_is_reused_not_written(tmp_path):
    sim = model.build()
    sim.compile()
    source = ModuleText.of(sim._model.module)
    path = cached_copy(source, tmp_path)  # written
    stamp = os.stat(path)
    assert cached_copy(source, tmp_path) == path
    again = os.stat(path)
    assert (again.st_ino, again.st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)
    with pytest.raises(DyngenError, match="is no longer the one this simulation loaded"):
        ModuleText.of(type("M", (), {"__file__": str(path), "MODEL_HASH": "0" * 64}))


def test_a_method_that_runs_in_python_is_refused_on_dask(cluster):
    client = cluster
    with pytest.raises(DyngenError, match=r"integrator 'BDF' is scipy's .* use a compiled method \('dopri5', "
                                          r"'dop853', 'rodas4'\), or run it on threads"):  # fmt: skip
        model.build().ensemble(1.0, 0.5, grid=GRID, integrator="BDF", client=client)


def test_rodas4_with_a_sparse_lu_is_refused_on_dask_before_a_cluster_starts(monkeypatch):
    import dyngen.runtime.ensemble as ensemble

    monkeypatch.setattr(ensemble, "uses_sparse_lu", lambda module: True)  # as for a large sparse model
    children = set(multiprocessing.active_children())
    with pytest.raises(DyngenError, match=r"'rodas4' factorises this model's sparse Jacobian with SuperLU.*use a "
                                          r"compiled method \('dopri5' or 'dop853'\), or run it on threads"):  # fmt: skip
        model.build().ensemble(1.0, 0.5, grid=GRID, integrator="rodas4", client="local")
    assert set(multiprocessing.active_children()) == children


def test_a_worker_refuses_a_module_text_that_fails_its_hash_check(cluster, monkeypatch):
    sim = model.build()
    sim.compile()
    source = ModuleText.of(sim._model.module)
    other = "e" * 64  # a hash no worker has loaded (they keep modules by hash)
    text = source.text.replace(source.digest, other).replace("import math\n", "import math  # edited\n", 1)
    damaged = ModuleText(source.name, other, text)
    assert "# edited" in text
    monkeypatch.setattr(ModuleText, "of", classmethod(lambda cls, module: damaged))
    with pytest.raises(DyngenError, match=r"the module text this worker received is not module vanderpol e{16} \(its text was changed"):
        sim.ensemble(1.0, 0.5, grid=GRID, client=cluster)  # raised on a worker, re-raised here


def test_local_starts_a_cluster_and_closes_it():
    sim = model.build()
    threaded = sim.ensemble(1.0, 0.5, grid=GRID, threads=2)
    children = set(multiprocessing.active_children())
    during = []
    ds = sim.ensemble(1.0, 0.5, grid=GRID, client="local", threads=2, chunk_size=3,
                      progress=lambda done, total: during.append(set(multiprocessing.active_children()) - children))  # fmt: skip
    xr.testing.assert_identical(ds, threaded)
    assert [len(new) for new in during] == [2, 2]  # two worker processes ran the chunks...
    assert set(multiprocessing.active_children()) <= children  # ...and are gone


def test_a_bad_client_says_what_to_give():
    with pytest.raises(ArgumentError, match=r"client= takes a dask.distributed.Client, a scheduler address"):
        model.build().ensemble(1.0, 0.5, grid=GRID, client=2)


def test_without_dask_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    with pytest.raises(DyngenError, match=r'ensemble\(client=...\) .*needs distributed, which is not installed.*pip install "dyngen\[dask\]"'):
        model.build().ensemble(1.0, 0.5, grid=GRID, client="local")
