"""trace: system tree -> ModelSpec.

Calls every ``do_step`` and connection once, in dynode's order, with symbolic
stand-ins for time, states and signals, and records what each function reads and
writes as sympy expressions.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import sympy as sp

from .attributes import resolve, traced_attributes
from .containers import FOREIGN_HOOK, ParameterContainer, VariableContainer, set_hook
from .errors import (
    DyngenError,
    SourceLocation,
    TraceError,
    UsageError,
    location_boundary,
    user_frame_location,
    user_traceback_location,
)
from .arrays import (
    ACTIVE_ARRAYS, ARRAY_MIN, PROMOTABLE, PROMOTE_MIN, ArrayContext, ArrayTraceError, Base, Pieces, PromoteSignals, finish, is_lazy,
    to_elements, written_parts,
)  # fmt: skip
from .ir import (
    ATTRIBUTE_KIND,
    REDUCTION_KIND,
    ArrayWrite,
    ElementSymbols,
    FunctionInfo,
    ModelSpec,
    Signal,
    SignalRef,
    SystemInfo,
    TracedFunction,
    Write,
)
from .branches import Decision, explore, run_with
from .calls import SESSION, TraceSession, check_receivers, entry_point
from .naming import NameRegistry, signal_identifier
from .shared import numeric_value
from .symbolic import (
    ELEMENT_BUDGET,
    ELEMENT_READS,
    ELEMENT_READS_MAX,
    ElementBudget,
    ElementFormTooLarge,
    ElementReads,
    Sym,
    SymArray,
    TooManyElementReads,
    as_object_array,
    flatten_traced,
    select,
    symbols_like,
)
from .events import trace_events
from .tree import FunctionCall, evaluation_order, function_location, function_name, walk

TIME = sp.Symbol("t", real=True)
# A model whose array-form trace fails is traced element by element when its large
# arrays hold at most this many elements in all (the element form's cost grows
# with every element: several ms each); beyond it the array-form error is reported.
ELEMENT_FALLBACK_MAX = 2000  # (calls.FRESH_MAX: the same bound for fresh arrays)
# ... and when it builds at most this many scalar operations: the array form's
# elementwise work before it failed is the first estimate, then a budget stops the
# element form's trace as soon as it goes past it (a matrix product is checked before it
# runs).  Measured: a 1,000-element stencil (3,000 operations) builds in 4 s that way,
# all-to-all coupling of 64 oscillators (8,300 operations, a dense Jacobian) in 43 s.
ELEMENT_WORK_MAX = 5_000


def constant_text(value: Any) -> str:
    """A stable text for a non-numeric value baked into the model (for the hash)."""
    if value is None or isinstance(value, (str, bool, np.bool_)):
        return repr(value)
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


@dataclass
class _Frame:
    """What one function has done so far while it is traced."""

    info: FunctionInfo
    local: dict[SignalRef, Any] = field(default_factory=dict)
    reads: list[SignalRef] = field(default_factory=list)
    write_locations: dict[SignalRef, SourceLocation | None] = field(default_factory=dict)
    # the element arrays reads returned, with a copy: assigning into one (``ders.y[:2] = ...``)
    # changes no container here (dynode's would change in place): an error at the end
    placeholders: list[tuple[SignalRef, np.ndarray, np.ndarray]] = field(default_factory=list)


class _ForeignContainer:
    """Hook for containers of systems that are not in the model."""

    def read(self, container: ParameterContainer, key: Any, as_attribute: bool) -> Any:
        raise TraceError(
            f"reads {key!r} from a container of a system that is not part of the simulation",
            "add that system with Simulation.add_system (or add_subsystem) or remove the connection",
            user_frame_location(),
        )

    def write(self, container: ParameterContainer, key: Any, value: Any) -> None:
        raise TraceError(
            f"writes {key!r} to a container of a system that is not part of the simulation",
            "add that system with Simulation.add_system (or add_subsystem) or remove the connection",
            user_frame_location(),
        )


class Tracer:
    """The container hook that turns reads and writes into sympy expressions."""

    def __init__(
        self, nodes: list, arrays: bool = True, parameters: tuple[str, ...] = (), array_min: int = ARRAY_MIN
    ) -> None:
        self.arrays = ArrayContext(array_min) if arrays else None
        self.array_min = array_min  # signals of at least this many elements are traced in array form
        self.names = NameRegistry()
        self.owner: dict[int, tuple[str, str]] = {}
        self.signals: dict[SignalRef, Signal] = {}
        self.defaults: dict[SignalRef, tuple[float, ...]] = {}
        self.constants: dict[SignalRef, Any] = {}
        self.read_ever: set[SignalRef] = set()
        self.written: dict[SignalRef, int] = {}
        self.der_keys: dict[str, list[str]] = {}
        self.frame: _Frame | None = None
        self.array_values: dict[SignalRef, Any] = {}  # arrays written in array form so far
        self.base_reads: set[SignalRef] = set()  # arrays read as themselves (not yet written)
        self.early_der_reads: dict[SignalRef, TraceError] = {}  # ders read before any write
        self.event_check: Any = None  # while an event function is traced: what it may write (events.py)
        for node in nodes:
            for kind in ("states", "ders", "inputs", "outputs"):
                container = getattr(node.system, kind)
                self.owner[id(container)] = (node.path, kind)
                self._register_initial(node.path, kind, container)
            self.der_keys[node.path] = [k for k, _ in node.system.ders.raw_items() if isinstance(k, str)]
        # plain attributes traced as parameters: (system, attribute, ref)
        self.attributes: list[tuple[Any, str, SignalRef]] = []
        for name in parameters:
            system, path, attribute = resolve(name, nodes)
            ref = SignalRef(path, ATTRIBUTE_KIND, attribute)
            self._new_signal(ref, ())
            self.defaults[ref] = (float(vars(system)[attribute]),)
            self.attributes.append((system, attribute, ref))

    # -- signals ------------------------------------------------------------
    def _register_initial(self, path: str, kind: str, container: ParameterContainer) -> None:
        for key, value in container.raw_items():
            if not isinstance(key, str):
                raise TraceError(
                    f"{path}.{kind} has the key {key!r}, which is not a string",
                    f"use string keys: {path}.{kind}[{str(key)!r}]",
                )
            ref = SignalRef(path, kind, key)
            array = numeric_value(value)
            if array is None:
                if kind in ("states", "ders"):
                    raise TraceError(f"{ref} holds {value!r}, which is not numeric")
                self.constants[ref] = value
                continue
            if kind == "states" and array.ndim == 0:
                array = array.reshape(1)
            signal = self._new_signal(ref, array.shape, array=array.ndim >= 1 and array.size >= self.array_min)
            if self.arrays is not None and not signal.array and array.ndim >= 1 and array.size >= PROMOTE_MIN:
                self.arrays.small_signals.update(dict.fromkeys(signal.symbols, array.size))
            self.defaults[ref] = tuple(array.ravel().tolist())

    def _new_signal(self, ref: SignalRef, shape: tuple[int, ...], array: bool = False) -> Signal:
        base = signal_identifier(ref.system, ref.kind, ref.key)
        size = int(np.prod(shape)) if shape else 1
        if array and self.arrays is not None:
            signal = Signal(ref, tuple(shape), ElementSymbols(self.names.unique_family(base, size), size))
            self.signals[ref] = signal
            return signal
        if size == 1:
            names = [self.names.unique(base)]
        else:
            names = [
                self.names.unique(base + "_" + "_".join(str(i) for i in index))
                for index in np.ndindex(*shape)
            ]
        signal = Signal(ref, tuple(shape), tuple(sp.Symbol(n, real=True) for n in names))
        self.signals[ref] = signal
        return signal

    def placeholder(self, signal: Signal) -> Any:
        if signal.array:
            return Base(self.arrays, signal)
        return symbols_like([s.name for s in signal.symbols], signal.shape)

    @property
    def array_elements(self) -> int:
        """How many elements the signals traced in array form hold."""
        return sum(s.size for s in self.signals.values() if s.array)

    # -- the hook -------------------------------------------------------------
    def read(self, container: ParameterContainer, key: Any, as_attribute: bool) -> Any:
        path, kind = self.owner[id(container)]
        frame = self.frame
        ref = SignalRef(path, kind, str(key))
        if ref in frame.local:
            return self._present(frame.local[ref], kind, as_attribute)
        if ref in self.constants and ref not in self.written:
            return self.constants[ref]
        if ref not in self.signals:
            known = sorted(k.key for k in self.signals if k.system == path and k.kind == kind)
            raise TraceError(
                f"{path} has no {kind} {key!r} (a KeyError in dynode)",
                f"one of {known}" if known else f"set {kind}.{key} in __init__ or write it before it is read",
                user_frame_location(),
            )
        if kind == "ders" and ref not in self.written and ref not in self.early_der_reads:
            # fine if no function writes it (a constant der: a parameter); checked at the end
            self.early_der_reads[ref] = TraceError(
                f"reads {ref} before any function has written it in this evaluation "
                "(dynode would return a stale value)",
                "compute the value from states and inputs, or write the der first",
                user_frame_location(),
            )
            self.early_der_reads[ref].context = f"{frame.info.name} of system {frame.info.system!r}"
        if ref not in frame.reads:
            frame.reads.append(ref)
        self.read_ever.add(ref)
        if ref in self.array_values:  # an array another function computed: its value, composed
            return self.array_values[ref]
        value = self.placeholder(self.signals[ref])
        if self.signals[ref].array:
            self.base_reads.add(ref)
        elif isinstance(value, np.ndarray) and value.size > 1:
            frame.placeholders.append((ref, value, value.copy()))
        return self._present(value, kind, as_attribute)

    def read_attribute(self, ref: SignalRef, value: Any) -> Any:
        """A read of an attribute traced as a parameter (``attributes.traced_attributes``):
        its symbol inside a traced function, ``value`` (the attribute's own) elsewhere."""
        frame = self.frame
        if frame is None:
            return value
        if ref not in frame.reads:
            frame.reads.append(ref)
        self.read_ever.add(ref)
        return self.placeholder(self.signals[ref])

    def knows(self, container: ParameterContainer, key: Any) -> bool:
        """Whether ``key`` is a signal of ``container`` now (for ``container.get``)."""
        path, kind = self.owner[id(container)]
        ref = SignalRef(path, kind, str(key))
        return ref in self.frame.local or ref in self.signals or ref in self.constants

    @staticmethod
    def _present(value: Any, kind: str, as_attribute: bool) -> Any:
        if kind in ("states", "ders") and as_attribute and isinstance(value, SymArray) and value.size == 1:
            return value.view(np.ndarray).flat[0]
        return value

    def write(self, container: ParameterContainer, key: Any, value: Any) -> None:
        path, kind = self.owner[id(container)]
        ref = SignalRef(path, kind, str(key))
        if self.event_check is not None:  # an event's condition or action (events.py)
            self.event_check(ref)
        elif kind == "states":
            raise TraceError(
                f"writes {ref}: states are set by the integrator",
                f"assign the derivative instead: self.ders.{key} = ...",
                user_frame_location(),
            )
        self.frame.local[ref] = self._normalize(ref, value, isinstance(container, VariableContainer))
        self.frame.write_locations[ref] = user_frame_location() or self.frame.info.location

    @staticmethod
    def _normalize(ref: SignalRef, value: Any, variable: bool) -> Any:
        def problem() -> TraceError:  # built only on failure: repr of a big expression is slow
            return TraceError(
                f"writes {value!r} (a {type(value).__name__}) to {ref}",
                "only numbers, numeric arrays and traced values can flow through ders, inputs "
                "and outputs; keep other objects as plain attributes of the system",
                user_frame_location(),
            )

        if is_lazy(value):
            return value
        if isinstance(value, (np.ndarray, list, tuple)):
            try:
                return as_object_array(value).view(SymArray)
            except TraceError:
                raise problem() from None
        if isinstance(value, Sym) or numeric_value(value) is not None:
            scalar = value if isinstance(value, Sym) else Sym(sp.Float(float(value)))
            return as_object_array([scalar]).view(SymArray) if variable else scalar
        raise problem()

    # -- functions ----------------------------------------------------------
    @location_boundary
    def run(self, call: FunctionCall, order: int) -> TracedFunction:
        info = FunctionInfo(
            system=call.node.path,
            kind=call.kind,
            name=function_name(call),
            location=function_location(call.func),
            order=order,
        )
        self.frame = self.explore(info, entry_point(call.func), call.node.system)
        try:
            return self._finish()
        except TraceError as error:  # (a value is lowered there: name the function, as explore does)
            error.context = error.context or f"{info.name} of system {info.system!r}"
            raise

    def explore(self, info: FunctionInfo, target: Any, system: Any) -> _Frame:
        """Run ``target(system, t)`` on every path of its decisions; its writes, merged."""
        session = SESSION.get()
        # with the array form on, the single elements it reads one at a time are counted
        reads = ELEMENT_READS.set(ElementReads(ELEMENT_READS_MAX) if self.arrays is not None else None)
        try:
            return explore(lambda path: self._run_path(info, target, system, path, session), self._merge)
        except TraceError as error:
            error.context = f"{info.name} of system {info.system!r}"
            if error.location is None:
                error.location = user_traceback_location(sys.exc_info()[2]) or info.location
            raise
        except (DyngenError, PromoteSignals):
            raise
        except Exception as exc:  # the user's code failed on a traced value
            error = TraceError(
                f"{type(exc).__name__}: {exc}",
                "write do_step and connections with arithmetic, numpy ufuncs, where(...) and "
                "constant indexing only (see the README's 'modeling form')",
                user_traceback_location(exc.__traceback__) or info.location,
            )
            error.context = f"{info.name} of system {info.system!r}"
            raise error from exc
        finally:
            ELEMENT_READS.reset(reads)

    def _run_path(
        self, info: FunctionInfo, target: Any, system: Any, path: list[bool], session: TraceSession | None
    ) -> tuple[_Frame, list[Decision]]:
        """One run of a traced function with the decisions ``path`` (``branches.explore``)."""
        self.frame = _Frame(info)
        decisions = run_with(path, lambda: target(system, Sym(TIME)))
        if session is not None:
            check_receivers(session)
        return self.frame, decisions

    def _merge(self, decision: Decision, when_true: _Frame, when_false: _Frame) -> _Frame:
        """The writes of both sides of ``decision``, selected by its condition."""
        local: dict[SignalRef, Any] = {}
        for ref in dict.fromkeys([*when_true.local, *when_false.local]):
            if ref not in when_true.local or ref not in when_false.local:
                side, other = (when_true, "false") if ref in when_true.local else (when_false, "true")
                raise TraceError(
                    f"writes {ref} (at {side.write_locations.get(ref)}) only on one side of the decision "
                    f"at {decision.location}; when the condition is {other}, nothing writes it "
                    "(dynode would keep the value of an earlier evaluation)",
                    f"write {ref.kind}.{ref.key} on every path (e.g. in an `else:` too, or before the `if`)",
                    decision.location,
                )
            try:
                local[ref] = select(decision.condition, when_true.local[ref], when_false.local[ref])
            except ValueError:
                raise TraceError(
                    f"writes {ref} with different shapes on the two sides of the decision at {decision.location}",
                    "give it the same shape on every path",
                    when_true.write_locations.get(ref),
                ) from None
        return _Frame(
            when_true.info,
            local,
            list(dict.fromkeys(when_true.reads + when_false.reads)),
            {**when_false.write_locations, **when_true.write_locations},
        )

    def _finish(self) -> TracedFunction:
        frame = self.frame
        for ref, value, before in frame.placeholders:
            if ref not in frame.local and any(a is not b for a, b in zip(value.flat, before.flat)):
                raise TraceError(
                    f"assigns into {ref} in place ({ref.kind}.{ref.key}[...] = ...): dyngen "
                    "takes a container's value when it is assigned whole, so these elements would be lost",
                    f"build the whole value and assign it: d = np.zeros(...); d[...] = ...; "
                    f"self.{ref.kind}.{ref.key} = d",
                    frame.info.location,
                )
        writes = []
        for ref, value in frame.local.items():
            if is_lazy(value) and value.size < self.array_min and not self._small_array_output(ref, value):
                value = to_elements(value)
            if is_lazy(value):
                writes += self._array_writes(ref, value)
                continue
            shape, exprs = flatten_traced(value)
            if ref.kind == "ders":
                shape = (len(exprs),) if shape == () else shape
            existing = self.signals.get(ref)
            if existing is not None and existing.array and existing.shape == shape:
                if ref in self.read_ever:
                    raise ArrayTraceError(
                        f"{frame.info.name} writes the large array {ref} element by element, "
                        "but it was read as a whole",
                        "write it with array operations (slices, np.concatenate, elementwise maths)",
                        frame.write_locations.get(ref),
                    )
                existing = None
            if existing is None or existing.shape != shape:
                if existing is not None and ref in self.read_ever:
                    raise TraceError(
                        f"{frame.info.name} writes {ref} with shape {shape}, but it was read "
                        f"with shape {existing.shape}",
                        "keep a signal's shape fixed: initialize it with the shape it is written with",
                        frame.write_locations.get(ref),
                    )
                self._new_signal(ref, shape)
            if ref.kind == "ders" and ref.key not in self.der_keys[ref.system]:
                self.der_keys[ref.system].append(ref.key)
            self.written.setdefault(ref, frame.info.order)
            writes.append(Write(ref, shape, exprs, frame.write_locations.get(ref)))
        self.frame = None
        return TracedFunction(frame.info, tuple(frame.reads), tuple(writes))

    def _small_array_output(self, ref: SignalRef, value: Any) -> bool:
        """Whether a small lazy ``value`` written to ``ref`` stays in array form: an output
        computed from the array of a reduction along axes (``u.mean(axis=0)``) that nothing
        read before, as one loop of ``observe`` (element by element, it would be an
        assignment the loops over instances cannot read, and none would be made)."""
        if ref.kind != "outputs" or ref in self.read_ever:
            return False
        offsets = self.arrays.offsets
        return any(
            (o := offsets.get(s)) is not None and o.ref.kind == REDUCTION_KIND
            for _, expr in value.pieces() for s in expr.free_symbols
        )  # fmt: skip

    def _array_writes(self, ref: SignalRef, value: Any) -> list[ArrayWrite]:
        frame = self.frame
        shape = value.shape
        existing = self.signals.get(ref)
        if existing is None or existing.shape != shape or not existing.array:
            if existing is not None and ref in self.read_ever:
                raise ArrayTraceError(
                    f"{frame.info.name} writes {ref} as an array of shape {shape}, but it was read "
                    f"with shape {existing.shape}",
                    "keep a signal's shape fixed: initialize it with the shape it is written with",
                    frame.write_locations.get(ref),
                )
            self._new_signal(ref, shape, array=True)
        if ref.kind == "ders" and ref.key not in self.der_keys[ref.system]:
            self.der_keys[ref.system].append(ref.key)
        self.written.setdefault(ref, frame.info.order)
        location = frame.write_locations.get(ref)
        parts = written_parts(value)
        if parts is not None:  # parts of other shapes (``lap.ravel()``): each written to a view
            self.array_values[ref] = value  # (a reader reshapes it back to read it)
            signal = self.signals[ref]
            views = [self.arrays.view(signal, offset, part.size, part.shape).signal.ref for offset, part in parts]
            return [ArrayWrite(view, part.shape, finish(part), location) for view, (_, part) in zip(views, parts)]
        segments = finish(value)
        self.array_values[ref] = Pieces(self.arrays, shape, segments)
        return [ArrayWrite(ref, shape, segments, location)]


def trace(
    systems: list[Any], name: str, source_root: str, arrays: bool = True, parameters: tuple[str, ...] = ()
) -> ModelSpec:
    """Trace every function of the tree once; see the module docstring.

    With ``arrays``, arrays (any shape) of at least ``ARRAY_MIN`` elements are traced in
    array form (``arrays.py``).  When that fails and they are small enough, the model
    is traced element by element instead, with a warning that says why.
    ``parameters``: names ``"<system path>.<attribute>"`` of plain numeric attributes
    traced as parameters (symbols) instead of constants (``attributes.py``).
    """
    if not arrays:
        return _trace(systems, name, source_root, Tracer(walk(systems), False, parameters))
    array_min = ARRAY_MIN
    reductions_promote = True  # a reduction over a small vector may promote it (arrays.promote_reduction)
    before_reduction: int | None = None  # array_min before a reduction promoted signals
    while True:  # a small vector signal meeting the array form: traced again with it in array form
        tracer = Tracer(walk(systems), True, parameters, array_min)
        promotable = PROMOTABLE.set(tracer.arrays.small_signals if reductions_promote else None)
        try:
            return _trace(systems, name, source_root, tracer)
        except PromoteSignals as promote:
            if promote.reduction:
                before_reduction = array_min
            array_min = promote.size  # (smaller each time: signals of array_min or more are lazy already)
        except TooManyElementReads:  # the element form would cost more still
            raise
        except TraceError as error:
            if before_reduction is not None and reductions_promote:
                # promoted for a reduction, but the array form cannot express the model: traced
                # again without that promotion (element by element, as before)
                array_min, reductions_promote = before_reduction, False
                continue
            array_error = error
            break
        finally:
            PROMOTABLE.reset(promotable)
    if not tracer.array_elements:
        raise array_error
    work = tracer.arrays.work + sum(c.size for c in tracer.arrays.constant_arrays)
    if tracer.array_elements > ELEMENT_FALLBACK_MAX or work > ELEMENT_WORK_MAX:
        if not isinstance(array_error, ArrayTraceError):  # the model's own mistake, whatever the form
            raise array_error
        size = (f"large arrays ({_largest_arrays(tracer)})" if tracer.array_elements > ELEMENT_FALLBACK_MAX
                else f"operations on {work:,} array elements so far")  # fmt: skip
        raise _too_large(array_error, f"{size} are traced in array form") from None
    budget = ElementBudget(ELEMENT_WORK_MAX)
    token = ELEMENT_BUDGET.set(budget)
    try:
        spec = _trace(systems, name, source_root, Tracer(walk(systems), False, parameters))
    except ElementFormTooLarge as too_large:
        if not isinstance(array_error, ArrayTraceError):
            raise array_error from None
        where = f" at {too_large.location}" if too_large.location else ""
        raise _too_large(array_error, f"{too_large.problem}{where}") from None
    finally:
        ELEMENT_BUDGET.reset(token)
    notice = (
        f"the large arrays of the model are traced element by element (slower to build and run) "
        f"because the array form cannot express this: {array_error}"
    )
    return replace(spec, notices=spec.notices + (notice,))


def _largest_arrays(tracer: Tracer) -> str:
    """``"G.states.u is 200x200, 40,000 elements; 80,000 elements in 2 array signals"``."""
    arrays = sorted((s for s in tracer.signals.values() if s.array), key=lambda s: -s.size)
    largest = arrays[0]
    shape = "x".join(map(str, largest.shape))
    rest = f"; {tracer.array_elements:,} elements in {len(arrays)} array signals" if len(arrays) > 1 else ""
    return f"{largest.ref} is {shape}, {largest.size:,} elements{rest}"


def _too_large(error: TraceError, why: str) -> TraceError:
    """The array form's ``error``, saying why the element form is not tried (or was stopped)."""
    error.problem += (
        f" [{why}, and this model cannot be traced element by element in reasonable time]"
    )
    return error


def _trace(systems: list[Any], name: str, source_root: str, tracer: Tracer) -> ModelSpec:
    nodes = walk(systems)
    calls = evaluation_order(systems, nodes)
    containers = [getattr(n.system, k) for n in nodes for k in ("states", "ders", "inputs", "outputs")]
    for container in containers:
        set_hook(container, tracer)
    foreign = FOREIGN_HOOK.set(_ForeignContainer())
    session = SESSION.set(TraceSession())
    # a model with arrays in array form: a large constant times a traced scalar is one too
    active = ACTIVE_ARRAYS.set(tracer.arrays if tracer.array_elements else None)
    try:
        with traced_attributes(tracer.attributes, tracer.read_attribute):
            functions = tuple(tracer.run(call, order) for order, call in enumerate(calls))
            events = trace_events(tracer, nodes, len(calls))
    finally:
        ACTIVE_ARRAYS.reset(active)
        SESSION.reset(session)
        FOREIGN_HOOK.reset(foreign)
        for container in containers:
            set_hook(container, None)
    unread = [str(ref) for _, _, ref in tracer.attributes if ref not in tracer.read_ever]
    if unread:
        raise UsageError(
            f"make_parameter: the model does not read {', '.join(unread)}: neither do_step nor a connection "
            "reads it while the model is traced (a value used only in __init__, or in a value computed there, "
            "is not read by the model; make that computed value the attribute, or compute it in do_step)"
        )
    _check_array_reads(functions, tracer)
    for ref, error in tracer.early_der_reads.items():
        if ref in tracer.written:
            raise error
    infos = tuple(
        SystemInfo(
            path=n.path,
            class_name=type(n.system).__name__,
            location=function_location(type(n.system).do_step),
            state_keys=tuple(k for k, _ in n.system.states.raw_items()),
            der_keys=tuple(tracer.der_keys[n.path]),
        )
        for n in nodes
    )
    constants = tuple(
        (ref, constant_text(value)) for ref, value in tracer.constants.items() if ref not in tracer.written
    )
    return ModelSpec(
        name=name,
        source_root=source_root,
        systems=infos,
        signals=tuple(tracer.signals.values()),
        functions=functions,
        defaults=dict(tracer.defaults),
        constants=constants,
        offsets=dict(tracer.arrays.offsets) if tracer.arrays is not None else {},
        reductions=tuple(tracer.arrays.reductions) if tracer.arrays is not None else (),
        constant_arrays=_read_constants(functions, tracer),
        events=events,
        views=dict(tracer.arrays.views) if tracer.arrays is not None else {},
    )


def _check_array_reads(functions: tuple[TracedFunction, ...], tracer: Tracer) -> None:
    """An array in array form that a function read as itself (before any function had
    computed it: dynode would pass the previous evaluation's value) is not written later."""
    views = tracer.arrays.views if tracer.arrays is not None else {}
    written = {(views[w.ref].base if w.ref in views else w.ref): fn for fn in functions for w in fn.writes}
    for fn in functions:
        for ref in fn.reads:
            if ref in tracer.base_reads and ref in written:
                raise ArrayTraceError(
                    f"{fn.info.name} of {fn.info.system!r} reads the large array {ref} before "
                    f"{written[ref].info.name} of {written[ref].info.system!r} computes it (dynode would "
                    "pass the value of the previous evaluation)",
                    "make the writer run first: add its system first, or read it in a post-connection",
                    fn.info.location,
                )


def _read_constants(functions: tuple[TracedFunction, ...], tracer: Tracer) -> tuple:
    """The constant arrays (module data) that the traced values read, in creation order."""
    if tracer.arrays is None or not tracer.arrays.constant_arrays:
        return ()
    exprs = [g.expr for fn in functions for w in fn.writes if isinstance(w, ArrayWrite) for g in w.segments]
    exprs += [g.expr for r in tracer.arrays.reductions for g in r.segments]
    offsets = tracer.arrays.offsets
    views = tracer.arrays.views
    read = {o.ref for e in exprs for s in e.free_symbols if (o := offsets.get(s)) is not None}
    read |= {views[ref].base for ref in read if ref in views}  # (a constant read with another shape)
    return tuple(c for c in tracer.arrays.constant_arrays if c.ref in read)
