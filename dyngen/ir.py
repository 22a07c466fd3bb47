"""The immutable intermediate representations passed between pipeline stages.

``ModelSpec`` (trace) -> ``FlatModel`` (flatten) -> ``Kernel`` (lower) ->
``ModuleSource`` (render).  Each has a readable ``__str__`` so ``dyngen build
--emit`` can show any stage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from .errors import SourceLocation

if TYPE_CHECKING:  # sympy is imported where symbols are made: a warm start needs none
    import numpy as np
    import sympy as sp

KINDS = ("states", "ders", "inputs", "outputs")
# The kind of a plain numeric attribute of a system traced as a parameter
# (``Simulation.make_parameter``): named ``path.attribute``, read with getattr.
ATTRIBUTE_KIND = "attributes"


_ELEMENT = re.compile(r"[A-Za-z_]\w*\[\d+\]")  # an element of an array signal (lower_mixed): u[11]
_VIEW = re.compile(r"[A-Za-z_]\w*(\[\d+:\d+\])?\.reshape\([\d, ]*\)")  # a view (``View``): u[0:400].reshape(20, 20)


@dataclass(frozen=True, order=True)
class SignalRef:
    """One entry of one container of one system: ``path.kind[key]``."""

    system: str
    kind: str
    key: str

    def __str__(self) -> str:
        if self.kind == ATTRIBUTE_KIND:
            return f"{self.system}.{self.key}"
        plain = self.key.isidentifier() or _ELEMENT.fullmatch(self.key) or _VIEW.fullmatch(self.key)
        key = f".{self.key}" if plain else f"[{self.key!r}]"
        return f"{self.system}.{self.kind}{key}"


class ElementSymbols(Sequence):
    """The element symbols ``name_0 .. name_{n-1}`` of a large vector, made on demand.

    A 100,000-element state traced in array form must not cost 100,000 sympy
    symbols: only the elements read at a constant index (``u[0]``) are ever made.
    Iterating makes every one (only the element form does that).
    """

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self._size = size
        self.created: dict[int, sp.Symbol] = {}

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - int or slice, as a tuple
        if isinstance(index, slice):
            return tuple(self[k] for k in range(*index.indices(self._size)))
        k = index + self._size if index < 0 else index
        if not 0 <= k < self._size:
            raise IndexError(index)
        symbol = self.created.get(k)
        if symbol is None:
            import sympy as sp

            symbol = self.created[k] = sp.Symbol(f"{self.name}_{k}", real=True)
        return symbol

    def __repr__(self) -> str:
        return f"{self.name}[0:{self._size}]"

    def view(self, offset: int, size: int, name: str = "") -> "ElementSymbols":
        """Elements ``offset .. offset + size - 1`` as an ``ElementSymbols`` of their own
        (the same symbols: a ``View`` reads the elements of its signal).  ``name`` (the
        view's, never an identifier) names the relative reads of the view."""
        return _ElementView(self, offset, size, name or f"{self.name}[{offset}:{offset + size}]")


class _ElementView(ElementSymbols):
    def __init__(self, source: ElementSymbols, offset: int, size: int, name: str) -> None:
        super().__init__(name, size)
        self._source, self._offset = source, offset

    def __getitem__(self, index):  # noqa: ANN001, ANN204
        if isinstance(index, slice):
            return tuple(self[k] for k in range(*index.indices(len(self))))
        k = index + len(self) if index < 0 else index
        if not 0 <= k < len(self):
            raise IndexError(index)
        return self._source[self._offset + k]

    def view(self, offset: int, size: int, name: str = "") -> ElementSymbols:
        return _ElementView(self._source, self._offset + offset, size, name or f"{self.name}[{offset}:{offset + size}]")

    def __repr__(self) -> str:
        return f"{self.name}[{self._offset}:{self._offset + len(self)}]"


@dataclass(frozen=True)
class Signal:
    """A signal's shape and the sympy symbols of its elements (C order).

    ``array``: a large array (any shape) traced in array form (``arrays.py``); its
    ``symbols`` are an ``ElementSymbols`` made on demand.
    """

    ref: SignalRef
    shape: tuple[int, ...]
    symbols: Sequence[sp.Symbol]

    @property
    def size(self) -> int:
        return len(self.symbols)

    @property
    def array(self) -> bool:
        return isinstance(self.symbols, ElementSymbols)


def symbol_names(symbols: Sequence[sp.Symbol]) -> str:
    """A text that names every symbol of a signal (compact for array signals)."""
    if isinstance(symbols, ElementSymbols):
        return repr(symbols)
    return str([s.name for s in symbols])


@dataclass(frozen=True)
class FunctionInfo:
    """A traced function: whose it is, what kind, and where it is written."""

    system: str
    kind: str  # "do_step" | "pre-connection" | "post-connection"
    name: str
    location: SourceLocation | None
    order: int  # position in dynode's imperative evaluation order

    def __str__(self) -> str:
        where = f" ({self.location})" if self.location else ""
        return f"{self.system}: {self.name} [{self.kind}]{where}"


@dataclass(frozen=True)
class Write:
    """The value a function leaves in a signal, as sympy expressions per element."""

    ref: SignalRef
    shape: tuple[int, ...]
    exprs: tuple[sp.Basic, ...]
    location: SourceLocation | None


@dataclass(frozen=True)
class Segment:
    """The box ``lo[a] <= i_a < hi[a]`` (every axis ``a``) of an array value: one
    expression of the loop indices.

    In ``expr`` a relative symbol (``ModelSpec.offsets``) stands for a read such as
    ``base[i + 1, j]``; every other symbol is a scalar (an element ``u[m]``, a
    parameter, ``t``, ...).
    """

    lo: tuple[int, ...]
    hi: tuple[int, ...]
    expr: sp.Basic

    @property
    def size(self) -> int:
        return math.prod(b - a for a, b in zip(self.lo, self.hi))

    def __str__(self) -> str:
        return "[" + ", ".join(f"{a}:{b}" for a, b in zip(self.lo, self.hi)) + f"] {self.expr}"


@dataclass(frozen=True)
class ArrayWrite:
    """The value a function leaves in a large array, as segments (array form)."""

    ref: SignalRef
    shape: tuple[int, ...]
    segments: tuple[Segment, ...]
    location: SourceLocation | None


REDUCTION_OPS = ("sum", "prod", "max", "min")
REDUCTION_KIND = "reduction"  # the kind of the SignalRef of an array a reduction along axes computes
CONSTANT_KIND = "constant"  # the kind of the SignalRef of a constant array held as module data


@dataclass(frozen=True)
class ConstantArray:
    """A constant numpy array the model combines with arrays in array form (``W @ x``,
    ``OMEGA + ...``): module data ``name`` (float64, flattened in C order), read as
    ``name[flat index]`` in the loops.  ``origin`` is what the model calls it (``W``,
    ``self.W``) when the tracer could tell; ``key`` the SHA-256 of its shape and data."""

    name: str
    shape: tuple[int, ...]
    values: "np.ndarray" = field(compare=False, hash=False, repr=False)  # float64, read-only, flat
    key: str = ""
    origin: str = ""
    location: SourceLocation | None = None

    @property
    def ref(self) -> SignalRef:
        return SignalRef("", CONSTANT_KIND, self.name)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __str__(self) -> str:
        where = f" ({self.location})" if self.location else ""
        return f"{self.name} = constant {self.origin or 'array'} of shape {self.shape}, sha256 {self.key[:16]}{where}"


@dataclass(frozen=True)
class Reduction:
    """``symbol = op(summand)`` over a large array (``np.sum``, ``np.mean``, ``@``,
    ``np.prod``, ``np.max``, ``np.min``): ``op`` is one of ``REDUCTION_OPS``."""

    symbol: sp.Symbol
    size: int
    segments: tuple[Segment, ...]  # the summand (the reduced values)
    location: SourceLocation | None
    op: str = "sum"
    shape: tuple[int, ...] = ()  # () : a scalar; else the array of the axes kept (``np.sum(a, axis=1)``)
    axes: tuple[int, ...] = ()  # the reduced axes of the summand (with ``shape``)

    def __str__(self) -> str:
        over = f" along axes {self.axes}" if self.shape else ""
        return f"{self.symbol} = {self.op}{over} over {self.size}: {show_segments(self.segments)}"


@dataclass(frozen=True)
class View:
    """A large array read or written with another shape (``reshape``, ``ravel``):
    ``base.ravel()[offset:offset + size].reshape(shape)``, elements in C order.

    A view has a ref of its own (``view_ref``), which relative reads and array writes
    name; the lowering places it inside its base's slot."""

    base: SignalRef
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def view_ref(view: View, base_size: int) -> SignalRef:
    """The ref of a view: ``u.reshape(20, 20)``, ``y[400:800].reshape(20, 20)``."""
    base = view.base
    part = "" if view.offset == 0 and view.size == base_size else f"[{view.offset}:{view.offset + view.size}]"
    return SignalRef(base.system, base.kind, f"{base.key}{part}.reshape({', '.join(map(str, view.shape))})")


@dataclass(frozen=True)
class Offset:
    """What a relative symbol reads: ``ref[index]`` where, for each axis of ``ref``,
    ``(axis, k)`` is ``i_axis + k`` (``i_axis`` the loop index of that axis of the
    value being computed) or, with ``axis == -1``, the constant ``k``."""

    ref: SignalRef
    index: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class TracedFunction:
    info: FunctionInfo
    reads: tuple[SignalRef, ...]  # signals read before this function wrote them
    writes: tuple[Write | ArrayWrite, ...]


@dataclass(frozen=True)
class SystemInfo:
    path: str
    class_name: str
    location: SourceLocation | None
    state_keys: tuple[str, ...]
    der_keys: tuple[str, ...]  # dynode's order: initial ders, then first-written order


@dataclass(frozen=True)
class EventSpec:
    """One event of one system, traced: ``condition`` crosses zero, then the action
    writes ``resets`` (states and parameter inputs, as expressions of the values
    before the event)."""

    system: str
    name: str
    direction: int  # +1 rising, -1 falling, 0 both
    terminal: bool
    condition: sp.Basic
    resets: tuple[tuple[SignalRef, tuple[sp.Basic, ...]], ...]
    location: SourceLocation | None  # the condition function's
    action_location: SourceLocation | None  # the action function's (None: no action)
    added_at: SourceLocation | None = None  # the add_event call
    reset_locations: tuple[SourceLocation | None, ...] = ()  # where the action writes each of resets

    def __str__(self) -> str:
        kind = {1: "rising", -1: "falling", 0: "both"}[self.direction] + (", terminal" if self.terminal else "")
        lines = [f"  event {self.system}.{self.name} ({kind}): {self.condition} = 0"]
        lines += [f"    then {ref} = {_show(exprs, (len(exprs),))}" for ref, exprs in self.resets]
        return "\n".join(lines)


@dataclass(frozen=True)
class ModelSpec:
    """Every system's traced equations, before flattening."""

    name: str
    source_root: str  # directory that source locations are shown relative to
    systems: tuple[SystemInfo, ...]
    signals: tuple[Signal, ...]  # every known signal, in tree and container order
    functions: tuple[TracedFunction, ...]  # dynode's imperative order
    defaults: dict[SignalRef, tuple[float, ...]] = field(hash=False)  # numeric values now
    constants: tuple[tuple[SignalRef, str], ...] = ()  # non-numeric values baked in
    offsets: dict[sp.Symbol, Offset] = field(default_factory=dict, hash=False)  # relative symbols
    notices: tuple[str, ...] = ()  # what the trace warns about (becomes a FlatModel warning)
    reductions: tuple[Reduction, ...] = ()  # sums over large vectors, in creation order
    events: tuple[EventSpec, ...] = ()  # every system's events, in state order and order added
    constant_arrays: tuple[ConstantArray, ...] = ()  # constant arrays read in array form (module data)
    views: dict[SignalRef, View] = field(default_factory=dict, hash=False)  # view ref -> what it views

    def __str__(self) -> str:
        lines = [f"ModelSpec {self.name}: {len(self.systems)} systems, {len(self.functions)} functions"]
        for system in self.systems:
            lines.append(f"  system {system.path} ({system.class_name}) states={list(system.state_keys)}")
        for fn in self.functions:
            lines.append(f"  {fn.info}")
            for ref in fn.reads:
                lines.append(f"    reads  {ref}")
            for write in fn.writes:
                if isinstance(write, ArrayWrite):
                    lines.append(f"    writes {write.ref} = {show_segments(write.segments)}")
                else:
                    lines.append(f"    writes {write.ref} = {_show(write.exprs, write.shape)}")
        for reduction in self.reductions:
            lines.append(f"  {reduction}")
        lines += [str(event) for event in self.events]
        for constant in self.constant_arrays:
            lines.append(f"  {constant}")
        return "\n".join(lines)


def show_segments(segments: tuple[Segment, ...]) -> str:
    """``[a:b] expr; ...`` for an array value."""
    return "; ".join(str(s) for s in segments)


def _show(exprs: tuple[sp.Basic, ...], shape: tuple[int, ...]) -> str:
    if shape in ((), (1,)) and len(exprs) == 1:
        return str(exprs[0])
    return "[" + ", ".join(str(e) for e in exprs) + "]"


@dataclass(frozen=True)
class Slot:
    """Where a signal lives in a flat vector (``y``, ``p`` or ``out``)."""

    ref: SignalRef
    start: int
    shape: tuple[int, ...]
    symbols: tuple[sp.Symbol, ...]

    @property
    def stop(self) -> int:
        return self.start + len(self.symbols)

    @property
    def array(self) -> bool:
        """A large array in array form (its symbols are made on demand)."""
        return isinstance(self.symbols, ElementSymbols)


def in_place_order(slots: Sequence[Slot]) -> list[Slot]:
    """The slots in the order of their places in the vector (``FlatModel.states`` is
    in dynode's order, which packed states no longer follow)."""
    return sorted(slots, key=lambda slot: (slot.start, slot.stop))


@dataclass(frozen=True)
class Assignment:
    """``symbols = exprs``: one signal computed in dataflow order."""

    ref: SignalRef
    symbols: tuple[sp.Symbol, ...]
    exprs: tuple[sp.Basic, ...]
    function: FunctionInfo
    location: SourceLocation | None
    reads: tuple[SignalRef, ...] = ()  # what the function read, in first-read order


@dataclass(frozen=True)
class ArrayAssignment:
    """A large array computed in array form, after every element ``Assignment``."""

    ref: SignalRef
    shape: tuple[int, ...]
    segments: tuple[Segment, ...]
    function: FunctionInfo
    location: SourceLocation | None

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class FlatModel:
    """One state vector, one parameter vector, assignments in dataflow order."""

    name: str
    source_root: str
    time: sp.Symbol
    states: tuple[Slot, ...]  # dynode's order; start: the place in y (lower may pack groups: layout.py)
    parameters: tuple[Slot, ...]  # p layout
    default_parameters: tuple[float, ...]
    default_states: tuple[float, ...]
    assignments: tuple[Assignment, ...]  # topologically sorted
    derivatives: tuple[sp.Symbol | None, ...]  # per y element: the symbol holding its derivative
    # (None: the element's derivative is computed by an ArrayAssignment)
    der_keys: tuple[tuple[str, str, str], ...]  # (system path, state key, der key), state order
    observed: tuple[Slot, ...]  # out layout: every input, output and der
    systems: tuple[SystemInfo, ...]
    warnings: tuple[str, ...]
    digest: str
    array_assignments: tuple[ArrayAssignment, ...] = ()
    array_ders: dict[SignalRef, SignalRef] = field(default_factory=dict, hash=False)  # array state -> der
    reductions: tuple[tuple[int, Reduction], ...] = ()  # (number of assignments before it, sum)
    offsets: dict[sp.Symbol, Offset] = field(default_factory=dict, hash=False)
    events: tuple[EventSpec, ...] = ()  # resets of inputs only of parameters (flatten checks it)
    constant_arrays: tuple[ConstantArray, ...] = ()  # module data the array loops read
    views: dict[SignalRef, View] = field(default_factory=dict, hash=False)  # view ref -> what it views (``View``)

    @property
    def n_states(self) -> int:
        return sum(len(s.symbols) for s in self.states)

    @property
    def n_observed(self) -> int:
        return sum(len(s.symbols) for s in self.observed)

    def __str__(self) -> str:
        lines = [f"FlatModel {self.name} (hash {self.digest[:16]})"]
        lines.append(f"  time: {self.time}")
        for slot in self.states:
            lines.append(f"  y[{slot.start}:{slot.stop}] {slot.ref}")
        for slot in self.parameters:
            lines.append(f"  p[{slot.start}:{slot.stop}] {slot.ref}")
        for a in self.assignments:
            lines.append(f"  {a.ref} = {_show(a.exprs, (len(a.exprs),))}   # {a.function.name}")
        for position, r in self.reductions:
            lines.append(f"  (after {position} assignments) {r}")
        for b in self.array_assignments:
            lines.append(f"  {b.ref} = {show_segments(b.segments)}   # {b.function.name}")
        for i, der in enumerate(self.derivatives):
            if der is not None:
                lines.append(f"  dy[{i}] = {der}")
        for state, der in self.array_ders.items():
            lines.append(f"  d/dt {state} = {der}")
        for constant in self.constant_arrays:
            lines.append(f"  {constant}")
        for slot in self.observed:
            lines.append(f"  out[{slot.start}:{slot.stop}] {slot.ref}")
        lines += [str(event) for event in self.events]
        for warning in self.warnings:
            lines.append(f"  warning: {warning}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Statement:
    """``target = expr`` in a generated function, with a comment.

    The target is a local (a Symbol) or an array element (an Indexed such as dy[3]).
    """

    target: sp.Basic
    expr: sp.Basic
    comment: str = ""


@dataclass(frozen=True)
class Block:
    """Statements that come from one place in the model (one comment header)."""

    title: str  # one comment line per fused group, separated by newlines
    statements: tuple[Statement, ...]
    loop: int = 0  # > 0: the statements are the body of ``for i in range(start, loop)``
    start: int = 0
    loops: tuple[tuple[str, int, int], ...] = ()  # nested ``for name in range(start, stop)``, outermost first

    @property
    def loop_nest(self) -> tuple[tuple[str, int, int], ...]:
        """The loops around the statements, outermost first: ``(index name, start, stop)``."""
        if self.loops:
            return self.loops
        return (("i", self.start, self.loop),) if self.loop else ()


@dataclass(frozen=True)
class KernelFunction:
    name: str
    args: tuple[str, ...]
    doc: str
    blocks: tuple[Block, ...]
    scratch: int = 0  # > 0: the function needs ``v = np.empty(scratch)`` (signals, as OBSERVED)
    raises: str | None = None  # the function only raises ValueError(raises): it cannot be generated


@dataclass(frozen=True)
class JacBlock:
    """Jacobian entries of an array loop nest over a box of ``shape``: the entry of
    box cell ``c`` (C order) has row ``row + sum(c * row_strides)`` and column
    ``col + sum(c * col_strides)``.

    In 1-D, ``col_strides`` is ``(1,)`` for a band (``d dy[i] / d y[i + c]``) and
    ``(0,)`` for a column (``d dy[i] / d y[c]``).
    """

    row: int
    col: int
    shape: tuple[int, ...]
    row_strides: tuple[int, ...]
    col_strides: tuple[int, ...]

    @property
    def n(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Kernel:
    """CSE'd functions ready to print: rhs, jac, observe."""

    flat: FlatModel
    functions: tuple[KernelFunction, ...]
    jac_sparsity: tuple[tuple[int, int], ...]  # a repeated (row, col) adds up
    tables: tuple[tuple[str, tuple[int, ...]], ...] = ()  # index arrays of the loops
    jac_blocks: tuple[JacBlock, ...] = ()  # array loops' entries, after jac_sparsity's
    no_jacobian: str | None = None  # why the module has no analytic Jacobian (None: it has one)
    n_lowrank: int = 0  # rank of the Jacobian's low-rank part U V^T (sums over whole arrays; lower_lowrank)
    constants: tuple[tuple[str, tuple[float, ...], str], ...] = ()  # per-instance constants: name, values, what
    notes: tuple[str, ...] = ()  # build notices of the lowering (why a faster form was not possible)

    @property
    def jac_nnz(self) -> int:
        return len(self.jac_sparsity) + sum(b.n for b in self.jac_blocks)

    def __str__(self) -> str:
        lines = [f"Kernel {self.flat.name}: jac nnz={self.jac_nnz}"]
        for name, values in self.tables:
            lines.append(f"  {name} = {list(values[:8])}{' ...' if len(values) > 8 else ''} ({len(values)})")
        for name, values, _ in self.constants:
            lines.append(f"  {name} = {list(values[:4])}{' ...' if len(values) > 4 else ''} ({len(values)})")
        for fn in self.functions:
            lines.append(f"  def {fn.name}({', '.join(fn.args)}):")
            for block in fn.blocks:
                lines += [f"      # {title}" for title in block.title.split("\n")]
                indent = "      "
                for name, start, stop in block.loop_nest:
                    bounds = f"{start}, {stop}" if start else f"{stop}"
                    lines.append(f"{indent}for {name} in range({bounds}):")
                    indent += "    "
                for st in block.statements:
                    lines.append(f"{indent}{st.target} = {st.expr}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ModuleSource:
    """The rendered module: its text and the digest of that text."""

    name: str
    text: str
    model_digest: str  # the module hash: the flat model's and the templates'
    text_digest: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class BuildOptions:
    """Everything that changes where and how a model is built. No global state."""

    output_dir: str | None = None  # write <output_dir>/<name>.py (as `dyngen build`)
    force: bool = False  # with output_dir: also over a module dyngen generated from another model
    cache_dir: str | None = None  # else the module cache (None: $DYNGEN_CACHE_DIR or ~/.cache/dyngen)
    always_render: bool = False  # lower and render even when the cache has the module
    kernels: bool = True  # loops over instances of equal structure (False: every signal unrolled)
    arrays: bool = True  # large vectors traced and emitted as loops (False: element by element)
    progress: bool | None = None  # stage reports of slow builds (None: $DYNGEN_PROGRESS, else live on a terminal, lines otherwise)
    standalone: bool = False  # the module carries the compiled integrators (needs only numpy and numba)
    parameters: tuple[str, ...] = ()  # "<system path>.<attribute>": plain attributes traced as parameters
