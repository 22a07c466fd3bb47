"""A generated module's compiled functions handed to dyngen's shared integrators.

The integrators (``compiled_methods``, rendered from the same templates as the
``--standalone`` module's) are compiled once per installation; they reach the model's
functions through the module's raw entries (``raw_rhs(t, y, n_y, p, n_p, dy, n_dy)``,
``raw_observe``, ``raw_jac``, ``raw_events``, ``raw_apply_event``: the plain functions on
the float64 data at a pointer).  numba builds a function value from a dispatcher
passed as an argument, but at about 20 µs a call (it resolves the dispatcher's type on
every call); here the addresses of the compiled entries go in as an int64 array instead
(``ModelFunctions.addresses``, read once per process), which numba's dispatcher takes
in a fraction of a µs, and ``rhs_function`` (``observe_function``, ...) makes a
``ModelEntry`` value from them inside compiled code.

A ``ModelEntry`` is called as the plain function is (``rhs(t, y, p, dy)``, arrays of
float64 in C order), and the call passes each array's data pointer and length to the
entry's native code: 7 machine words instead of 22 for numba's first-class function
type (which passes every array as its whole structure); a call of the VdP pair's rhs
takes 9 ns instead of 18 ns (benchmarks/call_forms.py).  The call uses numba's calling
convention, so an exception raised by the model's function propagates as it would in a
direct call.
"""

from __future__ import annotations

import threading
from types import ModuleType

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.core.imputils import lower_builtin
from numba.core.typing.templates import Signature
from numba.extending import intrinsic, models, register_model

VECTOR = types.Array(types.float64, 1, "C")
MATRIX = types.Array(types.float64, 2, "C")
INDEX_VECTOR = types.Array(types.int64, 1, "C")
_DATA = types.CPointer(types.float64)
_F, _I, _B = types.float64, types.int64, types.boolean
# raw_rhs(t, y, n_y, p, n_p, dy, n_dy); raw_observe and raw_events alike; raw_jac(t, y, n_y,
# p, n_p, J, n_J) with J n_J x n_J; raw_apply_event(index, t, y, n_y, p, n_p)
RAW_RHS_SIGNATURE = types.none(_F, _DATA, _I, _DATA, _I, _DATA, _I)
RAW_APPLY_SIGNATURE = types.none(_I, _F, _DATA, _I, _DATA, _I)


class ModelEntry(types.Callable):
    """The numba type of a model's raw entry, called with the plain function's arguments.

    ``form`` names the plain function's arguments: "rhs" (t, y, p, out: rhs, observe,
    events), "jac" (t, y, p, J) or "apply_event" (index, t, y, p).  The value is the
    address of the entry's native code.
    """

    _ARGUMENTS = {"rhs": ("t", 1, 1, 1), "jac": ("t", 1, 1, 2), "apply_event": ("index", "t", 1, 1)}

    def __init__(self, form: str) -> None:
        self.form = form
        super().__init__(name=f"ModelEntry({form})")

    def get_call_type(self, context, args, kws):  # noqa: ANN001, ANN201
        expected = self._ARGUMENTS[self.form]
        if kws or len(args) != len(expected):
            return None
        scalars = {"t": _F, "index": _I}
        for kind, arg in zip(expected, args):
            if isinstance(kind, str):
                if not isinstance(arg, (types.Integer, types.Float)):
                    return None
            elif not (isinstance(arg, types.Array) and arg.dtype == _F and arg.layout == "C" and arg.ndim == kind):
                return None
        fixed = tuple(scalars[kind] if isinstance(kind, str) else arg for kind, arg in zip(expected, args))
        return Signature(types.none, fixed, recvr=self)

    def get_call_signatures(self):  # noqa: ANN201
        return [], True

    def get_impl_key(self, sig):  # noqa: ANN001, ANN201
        return type(self)


register_model(ModelEntry)(models.OpaqueModel)
RHS_ENTRY = ModelEntry("rhs")
JAC_ENTRY = ModelEntry("jac")
APPLY_ENTRY = ModelEntry("apply_event")


@lower_builtin(ModelEntry, ModelEntry, types.VarArg(types.Any))
def _call_entry(context, builder, signature, args):  # noqa: ANN001, ANN202
    """entry(args...): the entry's native code called with each array's data pointer and
    its length (its first extent), the scalars as they are."""
    values, kinds = [], []
    for kind, value in zip(signature.args[1:], args[1:]):
        if isinstance(kind, types.Array):
            array = context.make_array(kind)(context, builder, value=value)
            values += [array.data, builder.extract_value(array.shape, 0)]
            kinds += [_DATA, _I]
        else:
            values.append(value)
            kinds.append(kind)
    pointer = context.call_conv.get_function_type(types.none, kinds).as_pointer()
    status, _ = context.call_conv.call_function(builder, builder.bitcast(args[0], pointer), types.none, kinds, values)
    with cgutils.if_unlikely(builder, status.is_error):
        context.call_conv.return_status_propagate(builder, status)
    return context.get_dummy_value()


@intrinsic
def _entry_at(typingctx, jit_address, entry_type):  # noqa: ANN001, ARG001
    """The ModelEntry whose native code is at the address."""
    target = entry_type.instance_type

    def codegen(context, builder, signature, args):  # noqa: ANN001, ARG001
        return builder.inttoptr(args[0], context.get_value_type(target))

    return target(types.int64, entry_type), codegen


@njit(cache=True, nogil=True)
def rhs_function(functions):  # noqa: ANN001, ANN201
    """The model's rhs (its raw entry), from ``functions`` (ModelFunctions.addresses)."""
    return _entry_at(functions[1], RHS_ENTRY)


@njit(cache=True, nogil=True)
def observe_function(functions):  # noqa: ANN001, ANN201
    """The model's observe (its raw entry), from ``functions`` (ModelFunctions.addresses)."""
    return _entry_at(functions[3], RHS_ENTRY)


@njit(cache=True, nogil=True)
def jac_function(functions):  # noqa: ANN001, ANN201
    """The model's dense jac (its raw entry), from ``functions`` (ModelFunctions.addresses)."""
    return _entry_at(functions[5], JAC_ENTRY)


@njit(cache=True, nogil=True)
def events_function(functions):  # noqa: ANN001, ANN201
    """The model's events (its conditions), from ``functions`` (ModelFunctions.addresses)."""
    return _entry_at(functions[10], RHS_ENTRY)


@njit(cache=True, nogil=True)
def apply_function(functions):  # noqa: ANN001, ANN201
    """The model's apply_event (its actions), from ``functions`` (ModelFunctions.addresses)."""
    return _entry_at(functions[12], APPLY_ENTRY)


# Where each function's two entries (C wrapper, native code) are in ModelFunctions.addresses,
# the module's raw entry that serves it, and the entry's signature.
_SLOTS = {"rhs": 0, "observe": 2, "jac": 4, "events": 9, "apply_event": 11}
_SIGNATURES = {"rhs": RAW_RHS_SIGNATURE, "observe": RAW_RHS_SIGNATURE, "jac": RAW_RHS_SIGNATURE,
               "events": RAW_RHS_SIGNATURE, "apply_event": RAW_APPLY_SIGNATURE}  # fmt: skip
# The length of ModelFunctions.addresses: six entries, N_STATES, N_PARAMETERS, N_OBSERVED,
# the events' four entries and N_EVENTS.
ADDRESSES_SIZE = 14


def _entries(dispatcher, signature) -> tuple[int, int]:  # noqa: ANN001
    """The addresses of the C wrapper and of the native entry of ``dispatcher``
    compiled (or loaded from numba's cache) for ``signature``."""
    dispatcher.compile(signature.args)
    result = dispatcher.get_compile_result(signature)
    library, description = result.library, result.fndesc
    return (
        int(library.get_pointer_to_function(description.llvm_cfunc_wrapper_name)),
        int(library.get_pointer_to_function(description.llvm_func_name)),
    )


class ModelFunctions:
    """The addresses of a generated module's raw entries (``raw_rhs``, ``raw_observe``,
    ``raw_jac``...), each compiled (or loaded from numba's cache) the first time an
    integrator needs it.

    ``addresses(observe=..., jac=..., events=...)`` is the int64 array the shared
    integrators take: the entries of rhs, observe and jac (0 for those not asked for
    yet), N_STATES, N_PARAMETERS and N_OBSERVED, which they check the arrays against,
    then the entries of events and apply_event and N_EVENTS (0 for a model without events).
    The module's dispatchers keep the code alive: hold the module while using them.
    """

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self._addresses = np.zeros(ADDRESSES_SIZE, dtype=np.int64)
        self._addresses[6:9] = (int(module.N_STATES), int(module.N_PARAMETERS), int(module.N_OBSERVED))
        self._addresses[13] = int(getattr(module, "N_EVENTS", 0))
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def addresses(self, observe: bool = False, jac: bool = False, events: bool = False) -> np.ndarray:
        """The array with rhs's entries, and observe's, jac's and the events' when asked for."""
        wanted = ("rhs",) + (("observe",) if observe else ()) + (("jac",) if jac else ())
        wanted += ("events", "apply_event") if events else ()
        if not self._ready.issuperset(wanted):
            with self._lock:
                for name in wanted:
                    if name not in self._ready:
                        slot = _SLOTS[name]
                        entry = getattr(self.module, f"raw_{name}")
                        self._addresses[slot : slot + 2] = _entries(entry, _SIGNATURES[name])
                        self._ready.add(name)
        return self._addresses


_FUNCTIONS_ATTRIBUTE = "_dyngen_model_functions"


def model_functions(module: ModuleType) -> ModelFunctions:
    """The module's ModelFunctions (one per loaded module)."""
    functions = module.__dict__.get(_FUNCTIONS_ATTRIBUTE)
    if functions is None:
        functions = module.__dict__.setdefault(_FUNCTIONS_ATTRIBUTE, ModelFunctions(module))
    return functions


_EXPLICIT_OPTIONS = (_F, _F, _F, _F, _F, _F, _F, _F, _I)  # rtol atol first_step max_step safety ifactor dfactor beta nsteps
_ADVANCE = types.Tuple((_F, _I))(INDEX_VECTOR, _F, VECTOR, _F, VECTOR, *_EXPLICIT_OPTIONS, MATRIX, INDEX_VECTOR)
_RUN = types.Tuple((_I, _I, _F))(
    INDEX_VECTOR, _F, VECTOR, VECTOR, _F, _I, *_EXPLICIT_OPTIONS, _B, _B, _B, VECTOR, MATRIX, MATRIX, INDEX_VECTOR
)
_RODAS4 = types.Tuple((_F, _F, _I))(
    INDEX_VECTOR, _F, VECTOR, _F, VECTOR, _F, _F, _F, _F, _I, MATRIX, MATRIX, MATRIX, INDEX_VECTOR, INDEX_VECTOR
)
ARRAY3 = types.Array(types.float64, 3, "C")
INDEX_MATRIX = types.Array(types.int64, 2, "C")
# ensemble_<method>(functions, t0, Y0, P, observer_dt, n_intervals, <options>, record_initial, keep_states,
#                   keep_observed, TIMES, Y, OUT, COUNT, STATUS, T_REACHED, STATS)
_MEMBER_BLOCKS = (MATRIX, ARRAY3, ARRAY3, INDEX_VECTOR, INDEX_VECTOR, VECTOR, INDEX_MATRIX)
_KEEP = (INDEX_VECTOR, INDEX_VECTOR)
_ENSEMBLE_EXPLICIT = _I(INDEX_VECTOR, _F, MATRIX, MATRIX, _F, _I, *_EXPLICIT_OPTIONS, _B, *_KEEP, *_MEMBER_BLOCKS)
_ENSEMBLE_RODAS4 = _I(INDEX_VECTOR, _F, MATRIX, MATRIX, _F, _I, _F, _F, _F, _F, _I, _B, *_KEEP, *_MEMBER_BLOCKS)
_EVENT_ARGUMENTS = (INDEX_MATRIX, MATRIX, MATRIX, VECTOR, INDEX_VECTOR, MATRIX)  # kinds ew eg log_t log_i log_v
# ... then ctl n_out observer_dt with_states with_observed times Y OUT (the samples of a continuous run)
_ADVANCE_EVENTS = types.Tuple((_F, _I, _I, _I))(
    *_ADVANCE.args, *_EVENT_ARGUMENTS, VECTOR, _I, _F, _B, _B, VECTOR, MATRIX, MATRIX
)
_RODAS4_EVENTS = types.Tuple((_F, _F, _I, _I))(*_RODAS4.args, *_EVENT_ARGUMENTS)
_RUN_EVENTS = types.Tuple((_I, _I, _F, _I))(
    INDEX_VECTOR, _F, VECTOR, VECTOR, _F, _I, *_EXPLICIT_OPTIONS, _B, _B, _B, VECTOR, MATRIX, MATRIX, INDEX_VECTOR,
    *_EVENT_ARGUMENTS, VECTOR, MATRIX,
)
# ensemble_<method>_events(... as ensemble_<method> ..., kinds, ew, eg, log_t, log_i, log_v, EVENT_T, EVENT_I,
#                          EVENT_COUNT, EVENT_COLS, EVENT_BEFORE, EVENT_AFTER)
_MEMBER_EVENTS = (MATRIX, INDEX_MATRIX, INDEX_VECTOR, INDEX_VECTOR, ARRAY3, ARRAY3)
_ENSEMBLE_EVENTS = _I(*_ENSEMBLE_EXPLICIT.args, *_EVENT_ARGUMENTS, *_MEMBER_EVENTS)
_ENSEMBLE_RODAS4_EVENTS = _I(*_ENSEMBLE_RODAS4.args, *_EVENT_ARGUMENTS, *_MEMBER_EVENTS)
# The routines of compiled_methods that are called from Python, with the one signature each is compiled for.
SIGNATURES = {
    "dopri5_advance": _ADVANCE,
    "dop853_advance": _ADVANCE,
    "run_dopri5": _RUN,
    "run_dop853": _RUN,
    "rodas4_advance": _RODAS4,
    "ensemble_dopri5": _ENSEMBLE_EXPLICIT,
    "ensemble_dop853": _ENSEMBLE_EXPLICIT,
    "ensemble_rodas4": _ENSEMBLE_RODAS4,
    "dopri5_advance_events": _ADVANCE_EVENTS,
    "dop853_advance_events": _ADVANCE_EVENTS,
    "rodas4_advance_events": _RODAS4_EVENTS,
    "run_dopri5_events": _RUN_EVENTS,
    "run_dop853_events": _RUN_EVENTS,
    "ensemble_dopri5_events": _ENSEMBLE_EVENTS,
    "ensemble_dop853_events": _ENSEMBLE_EVENTS,
    "ensemble_rodas4_events": _ENSEMBLE_RODAS4_EVENTS,
}
_shared: dict[str, object] = {}
_shared_lock = threading.Lock()


def shared_routine(name: str) -> object:
    """``compiled_methods.<name>`` compiled for its signature (numba's cache after the
    first time on this installation), the first time it is asked for in this process."""
    routine = _shared.get(name)
    if routine is None:
        with _shared_lock:
            routine = _shared.get(name)
            if routine is None:
                from .. import numba_cache
                from . import compiled_methods

                numba_cache.guard(compiled_methods)
                routine = getattr(compiled_methods, name)
                routine.compile(SIGNATURES[name].args)
                routine.disable_compile()
                _shared[name] = routine
    return routine
