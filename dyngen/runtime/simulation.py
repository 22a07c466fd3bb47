"""dynode's ``Simulation`` API on top of the generated module."""

from __future__ import annotations

import os
import sys
import warnings
from copy import deepcopy
from functools import lru_cache, partial
from itertools import repeat
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..attributes import numeric_attributes, resolve
from ..errors import (
    ArgumentError, DyngenError, RebuildWarning, SimulationError, SolverError, TraceError, UsageError,
    external_stacklevel, user_frame_location,
)  # fmt: skip
from ..ir import BuildOptions
from ..naming import sanitize
from ..pipeline import BuildResult, build, default_name, reuse_loaded
from ..progress import Progress, history_file
from ..system import TrackedList
from ..tree import check_not_dynode, walk
from .compiled import EXPLICIT_METHODS, STATUS_SUCCESS, CompiledExplicitIntegrator, PreparedRun, run_recorded
from .events import flush_event_chunks, simulate_with_events  # (imported in a function: 1.2 us a call)
from .fingerprint import StructureWatch, structure_key
from .integrators import (
    FINITE_DIFFERENCE_METHODS,
    SCIPY_ODE_METHODS,
    SOLVE_IVP_METHODS,
    Integrator,
    ScipyOdeIntegrator,
    SolveIvpIntegrator,
    check_dense_jacobian,
    check_without_jacobian,
    dynode_options,
    forces_first_step,
    jacobian_callable,
    lowrank_rank,
    run_observed,
)
from .model import CompiledModel
from .stiff import rodas4_integrator

COMPILED_STIFF_METHODS = ("rodas4",)
SPARSE_BDF_METHODS = ("sparse_bdf",)  # runtime/sparse_bdf.py: a BDF/NDF that keeps its sparse LU
from .recorder import BoundRecorder, Recorder


class Simulation:
    """A set of connected systems, compiled on first use and integrated in time.

    Same API and meaning as dynode 0.4's ``Simulation``; ``cache_dir`` (default
    ``$DYNGEN_CACHE_DIR`` or the user cache) is where generated modules are kept;
    ``kernels=False`` emits one line per signal even where instances share a kernel;
    ``arrays=False`` traces and emits large vectors element by element;
    the compiled integrators are dyngen's, compiled once per installation, and a
    model of at most 8 states that has run 5 s in them gets its own, compiled for
    it, which run it up to 1.5x faster (``runtime/specialize.py``);
    ``standalone=True`` builds the module with them from the start (as ``dyngen
    build --standalone``: about 3 s more numba compile), ``standalone=False`` never
    gives it its own.
    """

    def __init__(
        self, cache_dir: str | os.PathLike | None = None, kernels: bool = True, arrays: bool = True,
        standalone: bool | None = None,
    ) -> None:  # fmt: skip
        self._systems: list[Any] = TrackedList()
        self.kernels = kernels
        self.arrays = arrays
        self.standalone = standalone
        self._observers: list[Callable] = []
        self._t = 0
        self.cache_dir = cache_dir
        self.model_name: str | None = None
        self.model_file: str | None = None
        self._build: BuildResult | None = None
        self._model: CompiledModel | None = None
        self._watch: StructureWatch | None = None  # the structure the module was built for
        self._progress: Progress | None = None  # of the last build, until its first run
        self._stepping: _Stepping | None = None  # the last simulate() without observers and options
        # attributes traced as parameters (make_parameter): (id(system), name) -> system
        self._parameters: dict[tuple[int, str], Any] = {}
        self._parameter_ids: frozenset[tuple[int, str]] = frozenset()
        # the numeric attributes of the systems at the last build, and those whose change was reported
        self._numbers: dict[tuple[int, str], tuple[Any, Any]] = {}
        self._reported: set[tuple[int, str]] = set()
        # for reset(): the time and the values before the first simulate() (_remember_initial)
        self._t0: float | None = None
        self._initial: dict[tuple[int, str], tuple[Any, Any, str, Any]] = {}  # by (id(container), key)
        # the first model's entries, as parallel lists (systems, containers, keys, copies):
        # put in _initial when reset() or another model first needs them (_initial_entries)
        self._first_initial: tuple[list[Any], list[Any], tuple[str, ...], list[Any]] | None = None
        self._initial_of: CompiledModel | None = None  # the model whose entries are all in _initial
        self._event_log: list = []  # EventRecords of every run (runtime/events.py)
        self._event_chunks: list = []  # compiled runs' logs not made EventRecords yet (read when asked for)

    @property
    def events(self) -> list:
        """Every event that fired in this simulation's runs, in order: ``EventRecord``s
        with ``time``, ``system`` (path), ``event`` (name) and the values the action
        wrote ``before`` and ``after`` it (see the README's "Events")."""
        if self._event_chunks:
            flush_event_chunks(self)
        return self._event_log

    @property
    def systems(self) -> list[Any]:
        """The systems of this simulation, in the order they were added."""
        return self._systems

    def add_system(self, system: Any) -> None:
        """Add a system. Raises ``UsageError`` (a ValueError, as in dynode) if it was already added."""
        if system in self._systems:
            raise UsageError(
                f"System({system}) has already been added to this simulation! (add each system "
                "once; its subsystems come with it)",
                user_frame_location(),
            )
        check_not_dynode(system, type(system).__name__)  # a half-ported model: say so now
        self._systems.append(system)

    def add_observer(self, observer: Callable) -> Callable:
        """Add ``observer(t, y)``, called every ``observer_dt``; returning True stops the run.

        ``y`` is the state vector in dynode's layout (system by system, in the order
        ``STATES`` lists the states), whatever the generated module's own layout:
        index it as in dynode, not by the places in ``STATES``.
        Raises ``UsageError`` (a ValueError, as in dynode) if already added. Returns a
        function that removes it.
        """
        if observer in self._observers:
            raise UsageError(f"Observer({observer}) already registered!", user_frame_location())
        self._observers.append(observer)
        return partial(self._observers.remove, observer)

    # -- building -----------------------------------------------------------
    def compile(self) -> BuildResult:
        """Build (or reuse) the generated module for the current model structure."""
        return self._compile(retrace=False)

    def _compile(self, retrace: bool) -> BuildResult:
        if not self._systems:
            raise SimulationError("Need at least 1 system in the simulation!")
        watch = self._watch
        if self._build is not None and not retrace and watch is not None and watch.unchanged():
            return self._build
        current = StructureWatch(self._systems, self._parameter_ids)
        if self._build is None or watch is None or current.key != watch.key or retrace:
            if self._build is not None and watch is not None and not retrace:
                self._report_changed_numbers()
            name = self.model_name or default_name(self._systems)
            given_file = self.model_file or _main_file()
            settings = (
                name, None if self.cache_dir is None else str(self.cache_dir), self.kernels, self.arrays,
                bool(self.standalone), self._parameter_names(),
            )  # fmt: skip
            if isinstance(given_file, str) and os.path.isabs(given_file):  # (the usual case: resolved once)
                source_root, model_file, options, context = _known_settings(given_file, *settings)
            else:
                source_root, model_file, options, context = _settings(_source_place(given_file), *settings)
            structure = structure_key(self._systems, context, self._parameter_ids, current)
            # a module loaded (and run) in this process before: no stage to report
            reused = None if retrace else reuse_loaded(
                self._systems, name=name, source_root=source_root, options=options, structure=structure
            )  # fmt: skip
            if reused is not None and reused.module.__dict__.get(_RAN):
                progress = None
            else:
                label = sanitize(name)
                progress = Progress(label, history=history_file(self.cache_dir, label, str(given_file)))
            self._build = reused or build(
                self._systems,
                name=name,
                source_root=source_root,
                model_file=model_file,
                options=options,
                progress=progress,
                structure=structure,
                retrace=retrace,
            )
            self._progress = progress
            self._model = CompiledModel(self._build.module, self._systems, structure, current.flat)
            self._numbers = current.numbers  # numeric_attributes(self._systems), read by the watch
        self._watch = current
        return self._build

    def _parameter_names(self) -> tuple[str, ...]:
        """The names of the attributes traced as parameters, by the systems' paths now
        (sorted); one of a system no longer in the model, or deleted, is forgotten."""
        if not self._parameters:
            return ()
        paths = {id(node.system): node.path for node in walk(self._systems)}
        kept = {key: system for key, system in self._parameters.items() if key[0] in paths and key[1] in vars(system)}
        if len(kept) != len(self._parameters):
            self._parameters, self._parameter_ids = kept, frozenset(kept)
        return tuple(sorted(f"{paths[key[0]]}.{key[1]}" for key in kept))

    def _report_changed_numbers(self) -> None:
        """Warn (RebuildWarning, once per attribute) about each plain numeric attribute
        whose change is (part of) why the model is built again."""
        changed = [
            (key, system, before[1], value)
            for key, (system, value) in numeric_attributes(self._systems).items()
            if key not in self._reported and key not in self._parameters
            and (before := self._numbers.get(key)) is not None and before[0] is system and repr(before[1]) != repr(value)
        ]  # fmt: skip
        if not changed:
            return
        paths = {id(node.system): node.path for node in walk(self._systems)}
        for key, system, before, value in changed:
            self._reported.add(key)
            name = f"{paths[id(system)]}.{key[1]}"
            warnings.warn(
                f"{name} changed ({before!r} -> {value!r}) since the model was built, so dyngen builds it "
                "again (traces it, and compiles it when the module changes): a plain attribute of a system is "
                "a constant of the generated module where the model reads it. To change it without "
                f"rebuilding, make it a parameter once: sim.make_parameter({name!r}) (or keep the value in an "
                "input, self.inputs.<key>, which is a parameter already). This is reported once per attribute.",
                RebuildWarning,
                stacklevel=external_stacklevel(),
            )

    def make_parameter(self, *names: str) -> None:
        """Trace plain numeric attributes of systems as parameters, so that changing them
        needs no rebuild.

        ``name`` is ``"<system path>.<attribute>"``, the system paths as in the generated
        module's ``SYSTEMS`` (e.g. ``"Quad.max_tilt"``, ``"ForcedVanDerPol[1].k"``). The
        model is built again once, with the attribute as a symbol; it then appears in
        the module's ``PARAMETERS``/``PARAMETER_NAMES`` under that name, and every
        ``simulate()`` reads its current value, as it reads inputs. Raises ``UsageError``
        (a ValueError) for a name that is not a numeric attribute of a system (with
        close matches), or an attribute the model does not read; the simulation is then
        as it was.
        """
        nodes = walk(self._systems)
        found = [resolve(name, nodes) for name in names]
        new = {(id(system), attribute): system for system, _, attribute in found}
        if not new.keys() - self._parameters.keys():
            return
        before = (self._parameters, self._parameter_ids, self._watch)
        self._parameters = {**self._parameters, **new}
        self._parameter_ids = frozenset(self._parameters)
        self._watch = None  # built again now, with them
        try:
            self._compile(retrace=False)
        except TraceError as error:
            self._parameters, self._parameter_ids, self._watch = before
            raise UsageError(
                f"make_parameter({', '.join(map(repr, names))}): tracing the model with "
                f"{'this attribute' if len(names) == 1 else 'these attributes'} as a parameter (a value that "
                "changes at run time) failed. A parameter can be used in arithmetic, comparisons, math/numpy "
                "functions and where(), not where Python needs a number at build time (range(), an index, a "
                f"shape): keep such a value a plain attribute.\n{error}"
            ) from None
        except DyngenError:
            self._parameters, self._parameter_ids, self._watch = before
            raise

    def rebuild(self) -> BuildResult:
        """Trace and build again now, whatever the structural check says.

        For models whose constants live where the check cannot see them (see
        ``dyngen.runtime.fingerprint``).
        """
        return self._compile(retrace=True)

    # -- many runs ---------------------------------------------------------------
    def reset(self) -> None:
        """Put the time, every state and every value ``simulate()`` wrote back (ders,
        outputs, inputs that connections drive) back to where they were before the
        first ``simulate()``, so that the next run repeats the first one bit for bit.

        What ``simulate()`` does not write is left as it is: inputs that are parameters
        (unless an event's action writes them: a mode goes back too) and attributes (so
        ``sim.reset(); sys.inputs.mu = 2.0`` and the other order both run with the new
        value), observers, Recorders and ``sim.events`` with what they recorded
        (a Recorder records the next run after the previous one: use a new one per run),
        and keys a run added to a container (a der ``__init__`` did not create keeps its
        last value). A system added after the first run, or a value a rebuilt model
        newly writes, goes back to where it was before the first run that included it.
        Before any ``simulate()`` this does nothing.
        """
        if self._t0 is None:
            return
        present = {id(node.system) for node in walk(self._systems)}
        for system, container, key, value in self._initial_entries().values():
            if value is not _ABSENT and id(system) in present:
                container.raw_set(key, _copy(value))  # the recorded value stays as it is
        self._t = self._t0

    def _remember_initial(self, model: CompiledModel) -> None:
        """Record (copies of) the values of ``model``'s states and written-back signals
        that are not recorded yet, and the time at the first run: what ``reset()``
        restores.  Array states are views of the model's buffer after a run: copied."""
        if self._t0 is None:
            self._t0 = self._t
        systems, containers, keys = model.remembered()
        values = map(dict.get, containers, keys, repeat(_ABSENT))
        if self._first_initial is None and not self._initial:  # the first model: every entry (_copy, inline)
            copies = [
                value.copy() if type(value) is np.ndarray else value if type(value) is float else _copy(value)
                for value in values
            ]  # fmt: skip
            self._first_initial = (systems, containers, keys, copies)
        else:
            initial = self._initial_entries()
            for system, container, key, value in zip(systems, containers, keys, values):
                slot = (id(container), key)  # a container is one system's, of one kind
                if slot not in initial:
                    initial[slot] = (system, container, key, _copy(value))
        self._initial_of = model

    def _initial_entries(self) -> dict[tuple[int, str], tuple[Any, Any, str, Any]]:
        """What ``reset()`` restores, by (id(container), key): (system, container, key, value)."""
        first = self._first_initial
        if first is not None:
            systems, containers, keys, copies = first
            self._initial.update(zip(zip(map(id, containers), keys), zip(systems, containers, keys, copies)))
            self._first_initial = None
        return self._initial

    @property
    def module(self) -> Any:
        """The generated module (building it if needed)."""
        return self.compile().module

    # -- running --------------------------------------------------------------
    def simulate(
        self,
        t: float,
        observer_dt: float,
        fixed_step: bool = False,
        integrator: str = "dopri5",
        **kwargs: Any,
    ) -> float:
        """Advance ``t`` time units, informing observers every ``observer_dt``.

        Arguments mean what they mean in dynode: ``fixed_step`` makes ``observer_dt``
        the solver's step; ``integrator`` and ``kwargs`` are scipy's ``ode`` ones.
        dopri5 and dop853 run compiled in the generated module (scipy's algorithms,
        equal to rounding; the whole run is one compiled call when every observer is a
        Recorder); vode and lsoda run in scipy; "rodas4" is a compiled stiff method;
        "sparse_bdf" a BDF/NDF that keeps its sparse LU across steps (large stiff models);
        BDF, Radau, LSODA, RK45, RK23, DOP853 are scipy's ``solve_ivp`` solvers.
        Implicit methods get the generated Jacobian.
        Returns the time reached.
        """
        stepping = self._stepping
        if (  # the same call as the last one, on the same model (a loop stepping it): its run again
            stepping is not None and (type(t) is float or type(t) is int) and t == stepping.t
            and (type(observer_dt) is float or type(observer_dt) is int) and observer_dt == stepping.observer_dt
            and fixed_step is stepping.fixed_step and integrator is stepping.integrator and not kwargs
            and not self._observers and self.standalone is stepping.standalone and self._model is stepping.model
            and (watch := self._watch) is not None and watch.unchanged()
        ):  # fmt: skip
            return self._step(stepping.model, stepping)
        if not self._systems:
            raise SimulationError("Need at least 1 system in the simulation!")
        if not (
            (type(t) is float or type(t) is int) and (type(observer_dt) is float or type(observer_dt) is int)  # the usual call, checked quickly (NaN fails here)
            and 0.0 <= t <= _FLOAT_MAX and 0.0 < observer_dt <= _FLOAT_MAX and t / observer_dt <= _FLOAT_MAX
        ):  # fmt: skip
            check_run_arguments(t, observer_dt)
        watch = self._watch
        if self._build is None or watch is None or not watch.unchanged():
            self.compile()
        model = self._model
        if model.n_states == 0:
            raise SimulationError("Need at least one state/der combination!")
        if self._initial_of is not model:  # a new model: values reset() must restore that it may write
            self._remember_initial(model)
        progress = self._progress
        if progress is None:
            if not kwargs and not self._observers and integrator in EXPLICIT_METHODS and not _has_events(model):  # stepping from Python
                stepping = self._stepping
                if stepping is None or not stepping.fits(model, t, observer_dt, fixed_step, integrator, self.standalone):
                    stepping = self._stepping = _Stepping(model, t, observer_dt, fixed_step, integrator, self.standalone)
                return self._step(model, stepping)
            return self._simulate(model, t, observer_dt, fixed_step, integrator, kwargs)
        self._progress = None
        with progress.stage("numba compile (first run) and integrate"):
            reached = self._simulate(model, t, observer_dt, fixed_step, integrator, kwargs)
        model.module.__dict__[_RAN] = True  # compiled: a fresh Simulation of it has no first-run stage
        return reached

    def _step(self, model: CompiledModel, stepping: "_Stepping") -> float:
        """A run without observers as one compiled call (``stepping``'s, prepared once)."""
        p = model.peek_parameters()  # read only: by the run and the write-back
        start = float(self._t)
        run = stepping.run
        try:
            y = model.states_to_advance()  # advanced in place (the containers' buffer, or gathered anew)
            k, status, reached = run.run(start, y, p)
            self._t = reached
            if model.write_back(reached, y, p):  # new der/output keys: not a change of the model
                self._watch = StructureWatch(self._systems, self._parameter_ids)
            if status != STATUS_SUCCESS:
                raise run.error(k, status, start, reached, y, model.state_name)
            return reached
        except SolverError as error:
            raise SolverError(f"{error}{model.explain_failure(self._t, p)}") from None

    def ensemble(
        self,
        t: float,
        observer_dt: float,
        *,
        grid: Mapping[str, Any] | None = None,
        members: Mapping[str, Any] | Callable[[int], Mapping[str, Any]] | None = None,
        n_members: int | None = None,
        record: str | Sequence[str] | None = None,
        integrator: str = "dopri5",
        fixed_step: bool = False,
        threads: int | None = None,
        chunk_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        client: Any = None,
        max_events: int | None = None,
        **options: Any,
    ) -> Any:
        """Run the model once per member, each as ``simulate(t, observer_dt, ...)`` would
        with that member's values, and return the results as an ``xarray.Dataset``.

        Members set initial states and parameters by the module's names
        (``"VanDerPol.states.x"``, ``"VanDerPol.inputs.mu"``; ``"...[i]"`` for one element
        of a vector; ``"<system path>.<attribute>"`` for a plain numeric attribute, made a
        parameter first by ``make_parameter``): ``grid={name: values, ...}`` runs every
        combination (the first name varies slowest), ``members={name: values, ...}`` runs
        member i with element i of each, ``members=f, n_members=M`` with
        ``f(i) -> {name: value}``.  Every member starts from this simulation's current
        time and states (which it leaves as they are); observers are not called.
        ``record``: the signals kept, by name (default: every state and output; ``"all"``:
        inputs and ders too).  dopri5, dop853 and rodas4 run members in compiled code, in
        chunks on ``threads`` threads (default: every core); the other integrators member
        by member in Python.  ``progress(done, total)`` is called after each chunk.
        ``client``: run the chunks on a Dask cluster instead (a ``dask.distributed.Client``,
        a scheduler address, or ``"local"`` for a ``LocalCluster`` of ``threads`` worker
        processes; compiled methods only; needs ``pip install "dyngen[dask]"``).  A failed
        member is reported (an ``EnsembleWarning``; ``status``/``reason`` in the Dataset)
        and the others kept.

        The Dataset has dims ``member``, ``time`` (and ``<name>.dim_<i>`` for vector
        signals), a variable per recorded signal, the members' values as coordinates on
        ``member``, and ``status`` (1: success), ``reason`` and ``t_reached``.  Needs
        xarray (``pip install "dyngen[tables]"``).

        A model with events (``System.add_event``) runs on dopri5, dop853 or rodas4 (dense
        LU), on threads or Dask (scipy's methods are refused for now).  Its Dataset adds
        ``event_time`` and ``event_id`` (dims member, event: each member's first
        ``max_events`` events, default 100; NaN / -1 after its last), the coordinate
        ``event_name`` that ``event_id`` indexes, ``event_before``/``event_after`` (dims
        member, event, event_value: the values the actions write, as ``sim.events``'
        ``before``/``after``; the coordinate ``event_value`` names them, NaN where an
        event does not write one), ``event_count``, ``stopped`` (a
        terminal event ended the member: ``status`` 2, samples after it NaN) and
        ``t_stop``.  A member whose events chatter fails, with its reason.
        """
        from .ensemble import run_ensemble

        return run_ensemble(
            self, t, observer_dt, grid, members, n_members, record, integrator, fixed_step, threads, chunk_size,
            progress, options, client, max_events,
        )  # fmt: skip

    def _simulate(
        self, model: CompiledModel, t: float, observer_dt: float, fixed_step: bool, integrator: str, kwargs: dict
    ) -> float:
        if _has_events(model):
            return simulate_with_events(self, model, t, observer_dt, fixed_step, _canonical_method(integrator), kwargs)
        y0 = model.gather_states()
        p = model.gather_parameters()
        if kwargs:
            kwargs = model.options_in_module_layout(kwargs)
        method = integrator if type(integrator) is str and integrator in _KNOWN_METHODS else _canonical_method(integrator)
        start = float(self._t)
        recorders = self._plain_recorders(model) if self._observers else []
        try:
            if method in EXPLICIT_METHODS and recorders is not None and not any(r.needs_sync for r in recorders):
                options = dynode_options(observer_dt, fixed_step, kwargs)
                return self._run_compiled(model, p, y0, start, t, observer_dt, method, options, recorders)
            solver = self._integrator(model, p, y0, t, observer_dt, fixed_step, method, kwargs)
            notify = self._notifier(model, p, getattr(solver, "restart", None))
            try:
                run_observed(solver, start, t, observer_dt, notify)
            finally:
                self._finish(model, solver.t, solver.y, p)
            return solver.t
        except SolverError as error:
            raise SolverError(f"{error}{model.explain_failure(self._t, p)}") from None

    def _plain_recorders(self, model: CompiledModel) -> list[BoundRecorder] | None:
        """The observers bound as Recorders, or None if any observer is something else."""
        if not all(isinstance(o, Recorder) and type(o).__call__ is Recorder.__call__ for o in self._observers):
            return None
        return [o._bind(model) for o in self._observers]

    def _run_compiled(
        self, model: CompiledModel, p: np.ndarray, y0: np.ndarray, start: float, duration: float,
        observer_dt: float, method: str, options: Mapping[str, Any], recorders: list[BoundRecorder],
    ) -> float:  # fmt: skip
        """The whole run as one compiled call; Recorders are filled from its samples.
        ``options``: scipy's, with dynode's adjustments (``dynode_options``)."""
        with_observed = any(r.needs_observed for r in recorders) if recorders else False
        run = run_recorded(
            model.module, method, start, y0, p, duration, observer_dt, options, start == 0, with_observed,
            with_states=bool(recorders), specialize=self.standalone is not False,
        )  # fmt: skip
        for recorder in recorders:
            recorder.record_many(run.times, run.Y, run.OUT)
        self._t = run.t_reached  # _finish, inline
        if model.write_back(run.t_reached, run.y, p):  # new der/output keys: not a change of the model
            self._watch = StructureWatch(self._systems, self._parameter_ids)
        if run.status != STATUS_SUCCESS:
            raise run.error(method, start, observer_dt, model.state_name)
        return run.t_reached

    def _finish(self, model: CompiledModel, t: float, y: np.ndarray, p: np.ndarray) -> None:
        """Keep the end time and leave the final values in the containers, as dynode does."""
        self._t = float(t)
        if model.write_back(t, y, p):  # new der/output keys: not a change of the model
            self._watch = StructureWatch(self._systems, self._parameter_ids)

    def _integrator(
        self,
        model: CompiledModel,
        p: np.ndarray,
        y0: np.ndarray,
        duration: float,
        observer_dt: float,
        fixed_step: bool,
        method: str,
        options: dict,
    ) -> Integrator:
        module = model.module
        if method in EXPLICIT_METHODS:
            return CompiledExplicitIntegrator(
                module, p, self._t, y0, method, dynode_options(observer_dt, fixed_step, options), model.state_name,
                self.standalone is not False,
            )  # fmt: skip
        no_jacobian = getattr(module, "NO_JACOBIAN", None)
        if no_jacobian and method in (*COMPILED_STIFF_METHODS, *SPARSE_BDF_METHODS, *FINITE_DIFFERENCE_METHODS):
            check_without_jacobian(method, model.n_states, no_jacobian)  # refused, or scipy's finite differences
        rhs = module.rhs
        dy = np.zeros(model.n_states)

        def f(time: float, y: np.ndarray) -> np.ndarray:
            rhs(time, y, p, dy)
            return dy

        if method in COMPILED_STIFF_METHODS:
            if fixed_step:
                raise DyngenError("fixed_step=True needs dopri5 or dop853, not 'rodas4'")
            return rodas4_integrator(module, p, self._t, y0, options, model.state_name, self.standalone is not False)
        if method in SOLVE_IVP_METHODS or method in SPARSE_BDF_METHODS:
            if fixed_step:
                raise DyngenError(
                    f"fixed_step=True needs a scipy.integrate.ode method ({', '.join(SCIPY_ODE_METHODS)}), not {method!r}"
                )
            t_bound = float(self._t)
            for _ in range(int(duration / observer_dt)):  # the output times, added up as the loop adds them
                t_bound += observer_dt
            if method == "sparse_bdf":
                from .sparse_bdf import SparseBdfIntegrator

                return SparseBdfIntegrator(module, p, self._t, y0, t_bound, options, model.state_name)
            if method == "LSODA" and not no_jacobian:  # solve_ivp's LSODA takes only a dense Jacobian
                check_dense_jacobian(method, model.n_states, module.JAC_NNZ, lowrank_rank(module))
            jac = None if no_jacobian else jacobian_callable(module, p, sparse=method != "LSODA")
            return SolveIvpIntegrator(
                lambda time, y: f(time, y).copy(), jac, self._t, y0, t_bound, method, options, model.state_name
            )
        if method not in SCIPY_ODE_METHODS:
            raise DyngenError(
                f"unknown integrator {method!r}; choose one of "
                f"{', '.join(SCIPY_ODE_METHODS + COMPILED_STIFF_METHODS + SPARSE_BDF_METHODS + SOLVE_IVP_METHODS)}"
            )
        if method in ("vode", "lsoda") and not no_jacobian:  # scipy.integrate.ode takes only a dense Jacobian
            check_dense_jacobian(method, model.n_states, module.JAC_NNZ, lowrank_rank(module))
        jac = None if no_jacobian else jacobian_callable(module, p, sparse=False)
        forced = None if fixed_step or not forces_first_step(fixed_step, options) else observer_dt  # for the error
        return ScipyOdeIntegrator(
            f, jac, self._t, y0, method, dynode_options(observer_dt, fixed_step, options), model.state_name, forced
        )

    def _notifier(
        self, model: CompiledModel, p: np.ndarray, restart: Callable[[], None] | None
    ) -> Callable[[float, np.ndarray, bool], bool]:
        plain_recorder = [
            isinstance(o, Recorder) and type(o).__call__ is Recorder.__call__ for o in self._observers
        ]
        bound = {i: o._bind(model) for i, (o, plain) in enumerate(zip(self._observers, plain_recorder)) if plain}
        need_out = any(b.needs_observed for b in bound.values())
        need_sync = any(b.needs_sync for b in bound.values()) or not all(plain_recorder)
        observers = list(self._observers)

        def notify(time: float, y: np.ndarray, may_stop: bool) -> bool:
            y = y.copy()
            if need_sync:
                model.write_back(time, y, p)
            out = model.observe(time, y, p) if need_out else None
            stop = False
            y_dynode = None  # observers get dynode's layout, even where y packs grouped states
            for i, observer in enumerate(observers):
                recorder: BoundRecorder | None = bound.get(i)
                if recorder is not None:
                    recorder.record(time, y, out)
                    continue
                if y_dynode is None:
                    y_dynode = model.in_dynode_order(y)
                if observer(time, y_dynode) and may_stop:
                    stop = True
                    break
            if need_sync:  # an observer may have changed a parameter (a controller): as in dynode,
                current = model.gather_parameters()  # it takes effect from here on
                if not np.array_equal(current, p):
                    p[:] = current
                    if restart is not None:  # a solver that steps past output times
                        restart()
            return stop

        return notify


def check_run_arguments(t: Any, observer_dt: Any) -> None:
    """Refuse (ArgumentError, a ValueError) a ``simulate(t, observer_dt)`` that has no
    meaning: dynode would do nothing (t < 0, observer_dt < 0), fail with a bare Python
    error (observer_dt = 0, NaN or inf) or integrate with a nonsense first step.

    ``observer_dt > t`` is dynode's defined behaviour (only the start is observed) and
    is accepted.
    """
    values = {}
    for name, value, meaning in (("t", t, "the time to simulate"), ("observer_dt", observer_dt, "the output interval")):
        try:
            if isinstance(value, (str, bytes)):  # float("1") works, dynode's t / observer_dt does not
                raise TypeError
            number = float(value)
        except (TypeError, ValueError):
            raise ArgumentError(f"simulate(): {name} ({meaning}) must be a number, not {value!r}") from None
        if not np.isfinite(number):
            raise ArgumentError(f"simulate(): {name} ({meaning}) is {number!r}; it must be a finite number")
        values[name] = number
    if values["t"] < 0:
        raise ArgumentError(
            f"simulate(): t = {t!r} is negative; t is the time to advance by (from the current time), give t >= 0"
        )
    if values["observer_dt"] <= 0:
        raise ArgumentError(
            f"simulate(): observer_dt = {observer_dt!r}; the output interval must be > 0 "
            "(observer_dt > t is allowed: only the start is observed)"
        )
    if not np.isfinite(values["t"] / values["observer_dt"]):
        raise ArgumentError(f"simulate(): t / observer_dt = {t!r} / {observer_dt!r} is too many output intervals to count")


_ABSENT = object()  # a key a container did not hold (reset() leaves it)
_RAN = "_dyngen_ran"  # set in a generated module's namespace once a Simulation's first run of it ended


def _copy(value: Any) -> Any:
    """A copy of a container's value (state arrays are views of a model's buffer)."""
    kind = type(value)
    if kind is float or value is _ABSENT:
        return value
    return value.copy() if kind is np.ndarray else deepcopy(value)


_KNOWN_METHODS = frozenset(SCIPY_ODE_METHODS + COMPILED_STIFF_METHODS + SPARSE_BDF_METHODS + SOLVE_IVP_METHODS)
_FLOAT_MAX = sys.float_info.max


def _has_events(model: CompiledModel) -> bool:
    """Whether the model has events (System.add_event): runtime/events.py runs it."""
    return bool(model.module.__dict__.get("N_EVENTS"))  # (a dict lookup: getattr's miss costs a µs per call)


def _canonical_method(name: str) -> str:
    """Integrator names: exact first ("LSODA" is solve_ivp's, "lsoda" scipy ode's), then any case."""
    known = SCIPY_ODE_METHODS + COMPILED_STIFF_METHODS + SPARSE_BDF_METHODS + SOLVE_IVP_METHODS
    if name in known or not isinstance(name, str):
        return name
    return next((k for k in known if k.lower() == name.lower()), name)


def _source_place(model_file: str | os.PathLike | None) -> tuple[str, str]:
    """The model file's folder (resolved) and name; the working folder for a model without one."""
    if not model_file:
        return os.getcwd(), "<interactive>"
    model_file = os.fspath(model_file)
    return _resolved_place(model_file, None if os.path.isabs(model_file) else os.getcwd())


@lru_cache(maxsize=256)
def _resolved_place(model_file: str, cwd: str | None) -> tuple[str, str]:
    """``_source_place`` of a file (relative ones: from ``cwd``), resolved once per process."""
    path = Path(model_file)
    return str(path.resolve().parent), path.name


class _Stepping:
    """A ``simulate(t, observer_dt, fixed_step, integrator)`` without observers and
    options, as the last call made it: its arguments and its compiled run, prepared
    once (``PreparedRun``).  ``simulate()`` repeats it while the call, the model (the
    bound module) and the tree are the same; every value the run reads (states,
    parameters) is read at each call."""

    __slots__ = ("model", "t", "observer_dt", "fixed_step", "integrator", "standalone", "run")

    def __init__(
        self, model: CompiledModel, t: Any, observer_dt: Any, fixed_step: Any, integrator: str, standalone: Any
    ) -> None:  # fmt: skip
        self.model, self.fixed_step, self.integrator, self.standalone = model, fixed_step, integrator, standalone
        self.t, self.observer_dt = float(t), float(observer_dt)  # checked numbers
        options = _shared_stepping_options(observer_dt, fixed_step) if type(fixed_step) is bool and type(
            observer_dt) is float else MappingProxyType(dynode_options(observer_dt, fixed_step, {}))  # fmt: skip
        self.run = PreparedRun(model.module, integrator, t, observer_dt, options, standalone is not False)

    def fits(self, model: CompiledModel, t: Any, observer_dt: Any, fixed_step: Any, integrator: str, standalone: Any) -> bool:
        """Whether a call with these arguments on ``model`` is this one."""
        return (
            model is self.model and t == self.t and observer_dt == self.observer_dt and fixed_step is self.fixed_step
            and integrator == self.integrator and standalone is self.standalone
        )  # fmt: skip


@lru_cache(maxsize=64)
def _shared_stepping_options(observer_dt: float, fixed_step: bool) -> Mapping[str, Any]:
    """``dynode_options(observer_dt, fixed_step, {})``, read only; shared by every
    Simulation (compiled.py then knows the settings by the mapping's identity)."""
    return MappingProxyType(dynode_options(observer_dt, fixed_step, {}))


@lru_cache(maxsize=64)
def _build_options(
    cache_dir: str | None, kernels: bool, arrays: bool, standalone: bool, parameters: tuple[str, ...]
) -> BuildOptions:  # fmt: skip
    """A Simulation's BuildOptions (frozen: made once per set of values)."""
    return BuildOptions(cache_dir=cache_dir, kernels=kernels, arrays=arrays, standalone=standalone, parameters=parameters)


def _settings(
    place: tuple[str, str], name: str, cache_dir: str | None, kernels: bool, arrays: bool, standalone: bool,
    parameters: tuple[str, ...],
) -> tuple[str, str, BuildOptions, tuple]:  # fmt: skip
    """The model file's folder and name (``place``), the BuildOptions, and the context
    of the structure key (everything but the tree that the module depends on)."""
    options = _build_options(cache_dir, kernels, arrays, standalone, parameters)
    context = (name, *place, options.kernels, options.arrays, options.standalone) + ((parameters,) if parameters else ())
    return (*place, options, context)


@lru_cache(maxsize=256)
def _known_settings(
    model_file: str, name: str, cache_dir: str | None, kernels: bool, arrays: bool, standalone: bool,
    parameters: tuple[str, ...],
) -> tuple[str, str, BuildOptions, tuple]:  # fmt: skip
    """``_settings`` of an absolute model file (its place does not depend on the working
    folder), made once per set of values."""
    return _settings(_source_place(model_file), name, cache_dir, kernels, arrays, standalone, parameters)


def _main_file() -> str | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return str(path) if path else None
