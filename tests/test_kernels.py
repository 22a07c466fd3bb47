"""Kernels over instances (issue 4, "scale"): one loop per group of equal assignments.

When a model has at least ``KERNEL_MIN_INSTANCES`` structurally equal assignments
(same function, same signal key, same traced expression up to which systems it reads),
``lower(flat, kernels=True)`` emits them once, as ``for i in range(n):`` over the
instances.  ``kernels=False`` keeps the unrolled form (one line per signal).  Here:

* the emitted functions of a ring of oscillators do not grow with the ring: the same
  loops (each over all instances) and the same number of lines for 20 and for 200;
* trajectories of the kernel form equal those of the real dynode 0.4 (every state,
  der, input and output, within 1e-9 relative) for a ring of 50 oscillators, a mass
  chain whose end masses make groups of their own, a chain of lags coupled by
  ``connect_signals``, oscillators whose connection sometimes reads the instance
  itself, algebraic chains through instances of one class (grouping them would make
  a cycle between groups), and a rod with a 120-element vector state next to a few
  copies of a small class; for the first three they also equal the unrolled form's,
  and a stiff chain integrated with the compiled Rosenbrock method (which uses the
  Jacobian) gives the same trajectory in both forms;
* at random states, ``rhs``, the dense ``jac`` and ``observe`` of the two forms are
  equal (for every model above), ``jac`` equals central differences of ``rhs`` and
  the scatter-add of ``jac_values`` over ``JAC_ROWS``/``JAC_COLS``, and ``observe``'s
  ders equal ``rhs``; where the kernel's pattern repeats a (row, col) pair, ``jac``
  adds the entries up;

Models: ``tests/kernels_model.py`` (loaded under both backends by ``dynode_compare``)
and the benchmark models of ``benchmarks/bench_models.py``.  Every model is built and
simulated once per module (``Lab``) and shared by the tests.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dynode
import dynode_compare
import dyngen
from dynode_compare import Run, assert_same_runs, build_simulation, load_model_source, run
from finite_differences import central_differences
from dyngen.groups import KERNEL_MIN_INSTANCES, group
from dyngen.layout import pack_states
from dyngen.ir import BuildOptions, Kernel
from dyngen.lower import lower
from dyngen.pipeline import BuildResult, build
from dyngen.system import System

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(__file__).resolve().parent / "kernels_model.py"
BENCH = ROOT / "benchmarks" / "bench_models.py"

# Trajectories (kernel form vs unrolled form vs dynode): 1e-9 relative.
RTOL = 1e-9
ATOL = 1e-12
T_END, OBSERVER_DT = 5.0, 0.1

GENERATED = ("rhs", "jac_values", "observe")


@dataclass(frozen=True)
class Model:
    path: Path
    builder: str
    args: tuple
    dynode: bool = True  # also simulated with dynode
    options: tuple = ()  # simulate() keyword arguments, as (name, value) pairs
    t_end: float = T_END
    observer_dt: float = OBSERVER_DT
    unrolled_run: bool = True  # also run the unrolled form (else only its functions are compared)
    compiled_jacobian: bool = True  # compile the kernel form's jac (else: jac_values in Python)
    arrays: bool = True  # large vectors in array form (which does not combine with kernels yet)


MODELS_BY_NAME = {
    "ring": Model(MODELS, "build_ring", (50,)),
    "mass_chain": Model(BENCH, "build_mass_chain", (50,)),
    # ders.x is one group of 24 oscillators, ders.y two of 12 (leaders, driven followers)
    "vdp_pairs": Model(BENCH, "build_vdp_pairs", (12,)),
    "lag_chain": Model(MODELS, "build_lag_chain", (50,)),
    # benchmarks' stiff chain (rates 1..1e6): too stiff for dynode's dopri5; the two
    # forms are integrated with the compiled RODAS4, which uses the generated Jacobian.
    "stiff_chain": Model(
        BENCH, "build_stiff_chain", (50,), dynode=False,
        options=(("integrator", "rodas4"), ("rtol", 1e-8), ("atol", 1e-10)), t_end=10.0,
    ),
    "self_rings": Model(MODELS, "build_self_rings", (12,), unrolled_run=False),
    "tops": Model(MODELS, "build_tops_and_brake", (6,)),
    "algebraic_chains": Model(MODELS, "build_algebraic_chains", (6,), unrolled_run=False),
    # A 120-element vector state in the element form (both forms emit it straight-line:
    # numba compiles ~1.5 s per generated function), so only what the kernel form's run
    # needs is compiled.
    "rod": Model(MODELS, "build_rod_with_probes", (120, 6), unrolled_run=False, compiled_jacobian=False, arrays=False),
}


def make_simulation(model: Model, backend: str, kernels: bool = True) -> Any:
    """A fresh simulation of ``model`` under ``backend`` ("dyngen": in the given form)."""
    if model.path == MODELS:
        sim = build_simulation(model.path, backend, model.builder, *model.args)
    else:  # the benchmark builders return (simulation, facts about the run)
        sim, _ = getattr(load_model_source(model.path, backend), model.builder)(*model.args)
        assert type(sim) is (dyngen.Simulation if backend == "dyngen" else dynode.Simulation)
        if backend == "dyngen":
            sim.model_file = str(model.path)
    if backend == "dyngen":
        sim.kernels = kernels
        sim.arrays = model.arrays
    return sim


@dataclass
class Built:
    """One model in both forms, and its runs (kernel form, unrolled form, dynode)."""

    kernel_sim: Any
    unrolled_sim: Any
    kernel_run: Run | None = None
    unrolled_run: Run | None = None
    dynode_run: Run | None = None

    @property
    def kernel_module(self) -> Any:
        return self.kernel_sim.compile().module

    @property
    def unrolled_module(self) -> Any:
        return self.unrolled_sim.compile().module


class Lab:
    """Builds and simulates each model once, on first use."""

    def __init__(self) -> None:
        self._built: dict[str, Built] = {}

    def __getitem__(self, name: str) -> Built:
        if name not in self._built:
            model = MODELS_BY_NAME[name]
            built = Built(make_simulation(model, "dyngen", True), make_simulation(model, "dyngen", False))
            built.kernel_sim.compile()
            built.unrolled_sim.compile()  # lowered and rendered; numba compiles on first call
            options = dict(model.options)
            built.kernel_run = run(built.kernel_sim, "dyngen", model.t_end, model.observer_dt, **options)
            if model.unrolled_run:
                built.unrolled_run = run(built.unrolled_sim, "dyngen", model.t_end, model.observer_dt, **options)
            if model.dynode:
                sim = make_simulation(model, "dynode")
                built.dynode_run = run(sim, "dynode", model.t_end, model.observer_dt, **options)
            self._built[name] = built
        return self._built[name]


@pytest.fixture(scope="module")
def lab(dyngen_cache_dir) -> Lab:  # the session's private module cache first
    return Lab()


@pytest.fixture
def tight(monkeypatch):
    """dynode_compare's run comparison at this file's tolerance (1e-9 relative)."""
    monkeypatch.setattr(dynode_compare, "RTOL", RTOL)
    monkeypatch.setattr(dynode_compare, "ATOL", ATOL)


# ----------------------------------------------------------------------------- helpers


def lowered(result: BuildResult, kernels: bool) -> Kernel:
    """The lowered IR of a build (lowered again when the module came from the cache)."""
    return result.kernel if result.kernel is not None else lower(result.flat, kernels=kernels)


def loops(kernel: Kernel) -> dict[str, list[int]]:
    """Per generated function: the ``range`` of each loop block, in order."""
    return {fn.name: [b.loop for b in fn.blocks if b.loop] for fn in kernel.functions}


def function_text(source: str, name: str) -> list[str]:
    """The lines of ``def name(...)`` in a generated module, up to the next top-level line."""
    lines = source.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith(f"def {name}("))
    end = start + 1
    while end < len(lines) and (not lines[end] or lines[end][0].isspace()):
        end += 1
    body = lines[start:end]
    while body and not body[-1].strip():
        body.pop()
    return body


_LOOP = re.compile(r"^\s+for \w+ in range\((\w+)\):")


def text_loops(body: list[str]) -> list[str]:
    return [m.group(1) for line in body if (m := _LOOP.match(line))]


def build_ring(n: int, out: Path, kernels: bool = True) -> BuildResult:
    """The n-oscillator ring, lowered and rendered into ``out`` (no numba compilation)."""
    sim = build_simulation(MODELS, "dyngen", "build_ring", n)
    return build(
        sim.systems, name=f"ring{n}", source_root=str(MODELS.parent), model_file=MODELS.name,
        options=BuildOptions(output_dir=str(out), always_render=True, kernels=kernels),
    )  # fmt: skip


def random_point(module: Any, seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    """A time, a state near the defaults and positive parameters near theirs."""
    rng = np.random.default_rng(seed)
    y = module.DEFAULT_STATES + rng.normal(0.0, 0.5, module.N_STATES)
    p = module.DEFAULT_PARAMETERS * rng.uniform(0.8, 1.2, module.DEFAULT_PARAMETERS.shape)
    return 0.7, y, p


def evaluate(
    module: Any, t: float, y: np.ndarray, p: np.ndarray, compiled: bool = True, compiled_jacobian: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """rhs, dense jac, jac_values and observe of ``module`` at (t, y, p).

    Not ``compiled``: the functions' Python code (``py_func``), which numba does not
    have to compile; the dense jac is then the scatter-add of jac_values (as ``jac``'s
    code does).  ``compiled_jacobian=False``: only rhs and observe are compiled.
    """

    def call(name: str, compile_it: bool = compiled) -> Any:
        function = getattr(module, name)
        return function if compile_it else function.py_func

    dy = np.full(module.N_STATES, np.nan)
    call("rhs")(t, y.copy(), p.copy(), dy)
    values = np.full(module.JAC_NNZ, np.nan)
    call("jac_values", compiled and compiled_jacobian)(t, y.copy(), p.copy(), values)
    if compiled and compiled_jacobian:
        J = np.full((module.N_STATES, module.N_STATES), np.nan)
        module.jac(t, y.copy(), p.copy(), J)
    else:
        J = scatter(module, values)
    out = np.full(module.N_OBSERVED, np.nan)
    call("observe")(t, y.copy(), p.copy(), out)
    return dy, J, values, out


def scatter(module: Any, values: np.ndarray) -> np.ndarray:
    """The dense Jacobian from its entries: repeated (row, col) pairs add up."""
    J = np.zeros((module.N_STATES, module.N_STATES))
    np.add.at(J, (module.JAC_ROWS, module.JAC_COLS), values)
    return J


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float, what: str) -> None:
    """Relative to each entry, with an absolute floor relative to the largest one."""
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


# ----------------------------------------------------------------------------- 1. one kernel, not 200


def test_a_ring_is_the_same_few_loops_whatever_its_size(tmp_path: Path) -> None:
    shapes = {}
    for n in (20, 200):
        result = build_ring(n, tmp_path)
        n_parameters = len(result.module.DEFAULT_PARAMETERS)
        assert result.module.N_STATES == 2 * n and n_parameters == 2 * n
        name_of = {n: "n", n_parameters: "p"}  # loop sizes, independent of n

        # The IR: each function is a few blocks; every loop runs over all n instances
        # (observe also copies the parameters into out in one loop over p).
        kernel = lowered(result, True)
        ir = {}
        for fn in kernel.functions:
            assert fn.name in GENERATED
            sizes = [b.loop for b in fn.blocks if b.loop]
            assert 1 <= len(sizes) <= 4, f"ring of {n}: {fn.name} has loops {sizes}"
            assert n in sizes and set(sizes) <= ({n, n_parameters} if fn.name == "observe" else {n}), (
                f"ring of {n}: {fn.name} loops over {sizes}"
            )
            statements = sum(len(b.statements) for b in fn.blocks)
            assert statements < 40, f"ring of {n}: {fn.name} has {statements} statements"
            ir[fn.name] = [(name_of.get(b.loop, b.loop), len(b.statements)) for b in fn.blocks]

        # The rendered text: the same loops, `for i in range(n)`.
        source = result.path.read_text(encoding="utf-8")
        if result.source is not None:
            assert result.source.text == source
        text = {}
        for name in (*GENERATED, "jac"):
            body = function_text(source, name)
            ranges = text_loops(body)
            if name == "jac":  # the dense wrapper: one loop over the pattern
                assert ranges == ["JAC_NNZ"]
            else:
                allowed = {str(n)} | ({str(n_parameters)} if name == "observe" else set())
                assert str(n) in ranges and set(ranges) <= allowed, f"ring of {n}: {name} loops over {ranges}"
            assert len(body) < 60, f"ring of {n}: {name} is {len(body)} lines"
            text[name] = (len(body), [{str(n): "n", str(n_parameters): "p"}.get(r, r) for r in ranges])
        shapes[n] = (ir, text)

    # Size-independent: the same blocks, loops and statements, the same number of lines.
    assert shapes[20] == shapes[200]


def test_kernels_false_unrolls_one_line_per_signal(tmp_path: Path) -> None:
    result = build_ring(20, tmp_path, kernels=False)
    kernel = lowered(result, False)
    assert all(not b.loop for fn in kernel.functions for b in fn.blocks)
    source = result.path.read_text(encoding="utf-8")
    for name in GENERATED:
        assert text_loops(function_text(source, name)) == [], name
    rhs = function_text(source, "rhs")
    written = sorted(int(m.group(1)) for line in rhs if (m := re.match(r"^\s+dy\[(\d+)\] = ", line)))
    assert written == list(range(40)), "the unrolled rhs writes each derivative on its own line"
    observe = function_text(source, "observe")
    written = {int(m.group(1)) for line in observe if (m := re.match(r"^\s+out\[(\d+)\] = ", line))}
    assert written == set(range(result.module.N_OBSERVED))


def test_kernels_start_at_the_minimum_number_of_instances(tmp_path: Path) -> None:
    below = build_ring(KERNEL_MIN_INSTANCES - 1, tmp_path)
    at = build_ring(KERNEL_MIN_INSTANCES, tmp_path)
    assert all(not sizes for sizes in loops(lowered(below, True)).values())
    assert loops(lowered(at, True))["rhs"] and set(loops(lowered(at, True))["rhs"]) == {KERNEL_MIN_INSTANCES}


# ----------------------------------------------------------------------------- 2. the same trajectories

SIMULATED_WITH_DYNODE = [name for name, m in MODELS_BY_NAME.items() if m.dynode]
# A loop each model's kernel form must have in rhs: the ends of the mass chain and the
# first lag (driven by sin(t)) are groups of their own; 6 heaters next to the rod.
EXPECTED_LOOPS = {"ring": 50, "vdp_pairs": 12, "mass_chain": 48, "lag_chain": 49, "stiff_chain": 49, "self_rings": 12, "rod": 6, "tops": 6}


@pytest.mark.slow
@pytest.mark.parametrize("name", SIMULATED_WITH_DYNODE)
def test_kernel_form_matches_dynode_and_the_unrolled_form(lab: Lab, tight, name: str) -> None:
    built = lab[name]
    kernel_loops = loops(lowered(built.kernel_sim._build, True))
    if name in EXPECTED_LOOPS:  # it really is the kernel form
        assert EXPECTED_LOOPS[name] in kernel_loops["rhs"], kernel_loops
    assert all(not sizes for sizes in loops(lowered(built.unrolled_sim._build, False)).values())
    assert len(built.kernel_run.observed_t) == round(T_END / OBSERVER_DT) + 1
    # every state, der, input and output of every system, at every sample and at the end
    assert_same_runs(built.kernel_run, built.dynode_run)
    if MODELS_BY_NAME[name].unrolled_run:  # (the others: their functions are compared below)
        assert_same_runs(built.kernel_run, built.unrolled_run)
        assert_same_runs(built.unrolled_run, built.dynode_run)


@pytest.mark.slow
def test_a_group_made_of_smaller_groups_shares_their_loop(lab: Lab) -> None:
    """ders.x of all 24 oscillators is split into the leaders and the followers, whose
    ders.y are groups of 12: rhs is one loop over the 12 pairs (one pass over each
    pair's data), not a loop of 24 and one of 12."""
    built = lab["vdp_pairs"]
    assert loops(lowered(built.kernel_sim._build, True))["rhs"] == [12]


def test_the_states_of_a_loop_are_packed_and_observers_still_get_dynodes_vector(lab: Lab) -> None:
    """The loop over the 12 pairs reads each of its four states at consecutive places
    (``y[i + c]``, no stride: the vectorised loop loads them without shuffles).  STATES
    still lists the systems in dynode's order, and the vector an observer gets is
    dynode's (the run's observer saw the same vectors as dynode's observer)."""
    built = lab["vdp_pairs"]
    kern = built.kernel_module
    paths = [f"VanDerPol[{k}]" for k in range(24)]
    assert list(kern.STATES) == paths
    for family in (paths[0::2], paths[1::2]):  # leaders, driven followers
        for key in ("x", "y"):
            starts = [kern.STATES[path][key][0] for path in family]
            assert starts == list(range(starts[0], starts[0] + 12)), f"{key} of {family[0]}, ...: {starts}"
    body = "\n".join(function_text(built.kernel_sim.compile().path.read_text(encoding="utf-8"), "rhs"))
    reads = re.findall(r"\by\[([^\]]*)\]", body)
    assert len(reads) == 4 and all(re.fullmatch(r"i( \+ \d+)?", index) for index in reads), reads
    order = [i for path in paths for key in ("x", "y") for i in range(*kern.STATES[path][key][:2])]
    assert order != sorted(order)  # packed: dynode's vector is a permutation of y
    assert built.kernel_run.observed_y.shape == built.dynode_run.observed_y.shape
    np.testing.assert_allclose(built.kernel_run.observed_y, built.dynode_run.observed_y, rtol=RTOL, atol=ATOL)
    final_y = built.kernel_sim._model.gather_states()
    np.testing.assert_array_equal(built.kernel_run.observed_y[-1], final_y[order])


def test_per_state_tolerances_are_given_in_dynodes_layout(dyngen_cache_dir) -> None:
    """A vector atol is written in the observers' (dynode's) layout, as in dynode; the
    ring's module packs its states, so dyngen moves it to the module's y.  Tight for
    x, loose for y: the observers see dynode's vectors within 1e-9 (6e-10 measured);
    passed through unmoved, lsoda takes other steps (1.4e-6 measured)."""
    ring = ROOT / "examples" / "oscillator_ring.py"
    assert build_simulation(ring, "dyngen").compile().module.STATES["RingOscillator[0]"]["y"][0] == 8  # packed
    atol = np.tile([1e-12, 1e-4], 8)  # RingOscillator[k]: x, y
    ours, theirs = dynode_compare.run_both(
        lambda backend: build_simulation(ring, backend), 2.0, 0.1, integrator="lsoda", rtol=1e-9, atol=atol
    )
    # (only the observers' vectors: with lsoda, dynode's Recorder reads the containers
    # its last internal rhs evaluation left, not the output-time state)
    assert ours.observed_y.shape == theirs.observed_y.shape == (21, 16)
    np.testing.assert_allclose(ours.observed_y, theirs.observed_y, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vdp_pairs", "mass_chain", "algebraic_chains", "ring", "tops"])
def test_packing_gives_every_state_one_slice_and_every_loop_consecutive_states(lab: Lab, name: str) -> None:
    """The packed places tile y, each state's elements stay together, the states of a
    derivative loop follow each other (stride: the state's size), and both forms of
    the model have that layout."""
    built = lab[name]
    flat = built.kernel_sim._build.flat  # as flattened, in dynode's layout
    packed, groups = pack_states(flat, group(flat))
    for module in (built.kernel_module, built.unrolled_module):
        assert {(s.ref.system, s.ref.key): (s.start, s.stop) for s in packed.states} == {
            (path, key): (start, stop) for path, signals in module.STATES.items() for key, (start, stop, _) in signals.items()
        }
    places = sorted((s.start, s.stop) for s in packed.states)
    assert [a for a, _ in places] == [0] + [b for _, b in places[:-1]] and places[-1][1] == packed.n_states
    dynode_places = {s.ref: s.start for s in flat.states}
    assert [dynode_places[s.ref] for s in packed.states] == sorted(dynode_places.values())  # states kept dynode's order
    looped = [g for g in groups if g.state_starts is not None and g.n > 1]
    assert looped
    for g in looped:
        assert list(g.state_starts) == [g.state_starts[0] + k * g.size for k in range(g.n)], g.name
    # the same derivatives, moved with their states
    moved = {s.ref: (s.start, s.stop) for s in packed.states}
    for slot in flat.states:
        start, stop = moved[slot.ref]
        assert packed.derivatives[start:stop] == flat.derivatives[slot.start:slot.stop]
        assert packed.default_states[start:stop] == flat.default_states[slot.start:slot.stop]


@pytest.mark.slow
def test_stiff_chain_with_the_generated_jacobian_is_the_same_in_both_forms(lab: Lab, tight) -> None:
    built = lab["stiff_chain"]
    assert EXPECTED_LOOPS["stiff_chain"] in loops(lowered(built.kernel_sim._build, True))["rhs"]
    ours, theirs = built.kernel_run, built.unrolled_run
    assert len(ours.observed_t) == 101 and ours.t_end == pytest.approx(10.0)
    # the chain moved: the last lag follows the sine through 49 lags
    assert np.ptp(ours.observed_y[:, -1]) > 0.5
    assert_same_runs(ours, theirs)


# ----------------------------------------------------------------------------- 3. Jacobian and observe

JACOBIAN_MODELS = list(MODELS_BY_NAME)


@pytest.mark.slow
@pytest.mark.parametrize("name", JACOBIAN_MODELS)
def test_generated_functions_agree_between_the_forms_and_with_finite_differences(lab: Lab, name: str) -> None:
    model, built = MODELS_BY_NAME[name], lab[name]
    kern, unr = built.kernel_module, built.unrolled_module
    # The same layouts and defaults: OBSERVED (and every other table) is form-independent.
    for attribute in ("N_STATES", "N_PARAMETERS", "N_OBSERVED", "STATES", "PARAMETERS", "OBSERVED",
                      "STATE_NAMES", "OBSERVED_NAMES", "DERIVATIVE_KEYS"):  # fmt: skip
        assert getattr(kern, attribute) == getattr(unr, attribute), attribute
    np.testing.assert_array_equal(kern.DEFAULT_STATES, unr.DEFAULT_STATES)
    np.testing.assert_array_equal(kern.DEFAULT_PARAMETERS, unr.DEFAULT_PARAMETERS)

    for seed in (1, 2):
        t, y, p = random_point(kern, seed)
        dy_k, J_k, values_k, out_k = evaluate(kern, t, y, p, compiled_jacobian=model.compiled_jacobian)
        for array in (dy_k, J_k, values_k, out_k):
            assert np.all(np.isfinite(array))
        # the unrolled form: compiled where its run compiled it, else its Python code
        dy_u, J_u, values_u, out_u = evaluate(unr, t, y, p, compiled=model.unrolled_run)
        assert_close(dy_k, dy_u, 1e-12, f"{name}: rhs, kernels vs unrolled")
        assert_close(J_k, J_u, 1e-12, f"{name}: jac, kernels vs unrolled")
        assert_close(out_k, out_u, 1e-14, f"{name}: observe, kernels vs unrolled")
        # jac is the scatter-add of jac_values; it equals central differences of rhs.
        assert_close(J_k, scatter(kern, values_k), 1e-15, f"{name}: jac vs jac_values")
        assert_close(J_u, scatter(unr, values_u), 1e-15, f"{name}: unrolled jac vs jac_values")
        assert_close(J_k, central_differences(kern, t, y, p), 1e-6, f"{name}: jac vs finite differences")
        # observe's ders are rhs's derivatives
        for path, keys in kern.DERIVATIVE_KEYS.items():
            for state_key, der_key in keys.items():
                y_start, y_stop, _ = kern.STATES[path][state_key]
                o_start, o_stop, _ = kern.OBSERVED[path][f"ders.{der_key}"]
                assert_close(out_k[o_start:o_stop], dy_k[y_start:y_stop], 1e-13, f"{name}: {path} ders.{der_key}")


# ----------------------------------------------------------------------------- 4. repeated (row, col) pairs


@pytest.mark.slow
def test_entries_for_the_same_row_and_column_add_up(lab: Lab) -> None:
    """In the second ring, oscillators 12, 15, 18, 21 read themselves as ``left``: their
    connection's derivative and do_step's land on the same entry, which the kernel's
    pattern lists twice.  In the first ring every oscillator reads itself."""
    built = lab["self_rings"]
    kern, unr = built.kernel_module, built.unrolled_module
    # both rings are kernels of 12: the one reading itself everywhere, and the mixed one
    observe_blocks = next(fn for fn in lowered(built.kernel_sim._build, True).functions if fn.name == "observe").blocks
    for connection in ("pull_of_itself", "nonlinear_pull"):
        assert any(b.loop == 12 and connection in b.title for b in observe_blocks), connection

    pairs = Counter(zip(kern.JAC_ROWS.tolist(), kern.JAC_COLS.tolist()))
    repeated = sorted(pair for pair, count in pairs.items() if count > 1)
    assert repeated, "the model is meant to give the kernel's pattern repeated (row, col) pairs"
    reads_itself = set(range(12)) | {12, 15, 18, 21}
    x_of = {kern.STATES[f"RingOscillator[{i}]"]["x"][0]: i for i in range(24)}
    assert {x_of.get(col) for _, col in repeated} <= reads_itself

    for seed in (3, 4):
        t, y, p = random_point(kern, seed)
        _, J, values, _ = evaluate(kern, t, y, p)
        _, J_unrolled, _, _ = evaluate(unr, t, y, p, compiled=False)
        last_wins = np.zeros_like(J)
        last_wins[kern.JAC_ROWS, kern.JAC_COLS] = values
        for row, col in repeated:
            parts = values[(kern.JAC_ROWS == row) & (kern.JAC_COLS == col)]
            assert np.all(parts != 0.0)
            assert J[row, col] == pytest.approx(parts.sum(), rel=1e-15, abs=0.0)
            assert abs(last_wins[row, col] - J[row, col]) > 1e-3 * abs(J[row, col])  # the sum matters here
        assert_close(J, J_unrolled, 1e-12, "self rings: jac, kernels vs unrolled")
        assert_close(J, central_differences(kern, t, y, p), 1e-6, "self rings: jac vs finite differences")


# ----------------------------------------------------------------------------- 5. fallback


@pytest.mark.slow
def test_algebraic_chains_through_one_class_build_and_run(lab: Lab, tight) -> None:
    """outputs.y = states.x + inputs.u, inputs.u from the previous relay's output: the
    relays' output assignments read each other, so one group of them would depend on
    itself.  The model (two such chains and a small ring) still builds and runs as
    dynode does (its functions equal the unrolled form's: see the test above)."""
    built = lab["algebraic_chains"]
    kern = built.kernel_module
    # the chains are instantaneous: the last relay's output moves with the first's state
    t, y, p = random_point(kern, 6)
    for first, last in ((0, 5), (6, 11)):
        out_a, out_b = np.empty(kern.N_OBSERVED), np.empty(kern.N_OBSERVED)
        kern.observe(t, y, p, out_a)
        moved = y.copy()
        moved[kern.STATES[f"Relay[{first}]"]["x"][0]] += 1.0
        kern.observe(t, moved, p, out_b)
        where = kern.OBSERVED[f"Relay[{last}]"]["outputs.y"][0]
        assert abs(out_b[where] - out_a[where]) > 1e-3
    assert_same_runs(built.kernel_run, built.dynode_run)
    # (the unrolled form's functions are compared with the kernel form's above)


# ----------------------------------------------------------------------------- 6. a long vector state


@pytest.mark.slow
def test_a_long_vector_state_next_to_copies_of_a_small_class_builds_as_kernels(lab: Lab) -> None:
    built = lab["rod"]
    kern = built.kernel_module
    assert kern.STATES["Rod"]["u"] == (6, 126, (120,))
    kernel_loops = loops(lowered(built.kernel_sim._build, True))
    assert 6 in kernel_loops["rhs"]  # the heaters: one kernel
    # the rod warmed the heaters' probes and the heaters heated the rod
    heat = built.kernel_run.series["6:Rod"]["inputs.heat"]
    assert np.ptp(heat) > 1e-3 and np.all(np.isfinite(built.kernel_run.observed_y))


class _Vector(System):  # a vector state "s" next to scalar states "s": elements s_0.. must not clash
    def __init__(self, size, rate, gain=1.0):
        super().__init__()
        self.gain = gain  # a constant baked into the expression: another gain, another kernel
        self.inputs.rate = rate
        self.states.s = np.linspace(0.5, 1.5, size) if size > 1 else 0.7
        self.ders.s = np.zeros(size) if size > 1 else 0.0

    def do_step(self, time):
        self.ders.s = -self.inputs.rate * self.states.s + self.gain * np.sin(time)


@pytest.mark.slow
def test_locals_of_fused_straight_line_blocks_never_shadow_vector_elements(tmp_path: Path) -> None:
    """Regression (found by the random-tree test): a scalar state named like a vector's
    element (``s_2`` for the second scalar ``s``) overwrote that element."""
    systems = [_Vector(3, 1.0), _Vector(1, 2.0, 2.0), _Vector(1, 3.0, 3.0), _Vector(1, 4.0, 4.0)]
    systems += [_Vector(2, 0.5) for _ in range(KERNEL_MIN_INSTANCES)]
    modules = [
        build(systems, name=f"shadow_{kernels}", source_root=str(tmp_path), model_file="<test>",
              options=BuildOptions(output_dir=str(tmp_path), kernels=kernels)).module
        for kernels in (True, False)
    ]  # fmt: skip
    kernel_form, unrolled = modules
    y = np.random.default_rng(3).normal(size=kernel_form.N_STATES)
    p = np.array(kernel_form.DEFAULT_PARAMETERS)
    got, want = np.empty_like(y), np.empty_like(y)
    kernel_form.rhs.py_func(0.4, y, p, got)
    unrolled.rhs.py_func(0.4, y, p, want)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    gains = np.repeat([1.0, 2.0, 3.0, 4.0, *[1.0] * KERNEL_MIN_INSTANCES], [3, 1, 1, 1, *[2] * KERNEL_MIN_INSTANCES])
    rates = np.repeat(p, [3, 1, 1, 1, *[2] * KERNEL_MIN_INSTANCES])
    np.testing.assert_allclose(want, -rates * y + gains * np.sin(0.4), rtol=1e-14)
