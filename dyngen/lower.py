"""lower: FlatModel -> Kernel.

Builds the generated functions as statement lists: ``rhs`` (the derivatives),
``jac_values`` (the non-zero entries of the analytic Jacobian, by the chain rule
through the flattened assignments) and ``observe`` (every input, output and der);
with ``lowrank_values`` (``lower_lowrank``) when derivatives read sums over whole
arrays: then J = S + U Vᵀ, ``jac_values`` holding S.
The dense ``jac`` wrapper is boilerplate in the template.
Each function computes only what it needs, with sympy's CSE over its expressions.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import replace
from typing import Container, Iterable

import sympy as sp

from .errors import CodegenError
from .extremes import first_extreme_weights
from .flatten import relative_location
from .groups import KERNEL_MIN_INSTANCES, group
from .layout import pack_states
from .ir import REDUCTION_KIND, Assignment, Block, FlatModel, Kernel, KernelFunction, Reduction, Slot, Statement, in_place_order
from .lower_arrays import ELEMENT_READ, ArrayCode, Places, Temporaries, array_jacobian, array_observe, array_rhs, reduction_blocks
from .lower_groups import lower_groups
from .lower_lowrank import LowRank, NoJacobian, weight_code
from .progress import advance
from .shallow import cse

_PIECEWISE_CONSTANT = (sp.floor, sp.ceiling, sp.sign)
_Y = sp.IndexedBase("y")
_P = sp.IndexedBase("p")
_DY = sp.IndexedBase("dy")
_VALUES = sp.IndexedBase("values")
_OUT = sp.IndexedBase("out")


def partial(expr: sp.Basic, x: sp.Symbol) -> sp.Basic:
    """``sp.diff(expr, x)``, walking into sums and products only where ``x`` occurs.

    sympy differentiates every term of a sum and every factor of a product, most of them
    to zero, each through its ``Derivative`` machinery: the 900 entries of 30 phases
    coupled all-to-all in a Python loop took 21 s that way; here the terms without ``x``
    are skipped (the same expressions, 9x faster)."""
    if isinstance(expr, sp.Add):
        return sp.Add(*[partial(a, x) for a in expr.args if x in a.free_symbols])
    if isinstance(expr, sp.Mul):
        args = expr.args
        return sp.Add(*[sp.Mul(*args[:k], partial(a, x), *args[k + 1:]) for k, a in enumerate(args) if x in a.free_symbols])
    return sp.diff(expr, x)


def _clean_derivative(expr: sp.Basic) -> sp.Basic:
    """Derivatives of kinks and jumps as used by Jacobians: no delta functions."""
    expr = expr.replace(lambda e: isinstance(e, sp.Subs), lambda e: e.doit())  # chain-rule leftovers
    expr = expr.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
    expr = expr.replace(
        lambda e: isinstance(e, sp.Heaviside),
        lambda e: sp.Piecewise((0, e.args[0] < 0), (sp.Rational(1, 2), sp.Eq(e.args[0], 0)), (1, True)),
    )

    def derivative(e: sp.Derivative) -> sp.Basic:
        inner, variables = e.expr, e.variables
        if isinstance(inner, _PIECEWISE_CONSTANT):
            return sp.S.Zero
        if isinstance(inner, sp.Mod) and len(variables) == 1:
            a, b = inner.args
            return sp.diff(a, variables[0]) - sp.floor(a / b) * sp.diff(b, variables[0])
        raise CodegenError(f"cannot derive the Jacobian of {inner}; sympy left {e} unevaluated")

    expr = expr.replace(lambda e: isinstance(e, sp.Derivative), derivative)
    return expr.replace(lambda e: isinstance(e, sp.Subs), lambda e: e.doit())


class _Definitions:
    """Symbol -> defining expression and origin, for every assignment element."""

    def __init__(self, flat: FlatModel) -> None:
        self.expr: dict[sp.Symbol, sp.Basic] = {}
        self.origin: dict[sp.Symbol, tuple[Assignment, int]] = {}
        self.rank: dict[sp.Symbol, int] = {}
        # A sum over a vector: its "expression" (for the closure) is the tuple of the
        # scalars its summand reads; it is emitted as a loop (lower_arrays.reduction_blocks).
        self.reduction: dict[sp.Symbol, Reduction] = {}
        # A read of the array a reduction along axes computes stands for that reduction.
        by_name = {r.symbol.name: r.symbol for _, r in flat.reductions}
        self.alias: dict[sp.Symbol, sp.Symbol] = {
            s: by_name[o.ref.key] for s, o in flat.offsets.items() if o.ref.kind == REDUCTION_KIND
        }  # fmt: skip
        sums = list(flat.reductions)
        for position, a in enumerate(flat.assignments + (None,)):
            while sums and sums[0][0] == position:
                reduction = sums.pop(0)[1]
                scalars = {x for g in reduction.segments for x in g.expr.free_symbols if x not in flat.offsets}
                scalars |= {self.alias[x] for g in reduction.segments for x in g.expr.free_symbols if x in self.alias}
                self.expr[reduction.symbol] = sp.Tuple(*sorted(scalars, key=lambda x: x.name))
                self.reduction[reduction.symbol] = reduction
                self.rank[reduction.symbol] = len(self.rank)
            if a is None:
                break
            for i, (symbol, expr) in enumerate(zip(a.symbols, a.exprs)):
                self.expr[symbol] = expr
                self.origin[symbol] = (a, i)
                self.rank[symbol] = len(self.rank)

    def closure(self, roots: Iterable[sp.Basic], stop: Container[sp.Symbol] = frozenset()) -> list[sp.Symbol]:
        """Assignment symbols needed to evaluate ``roots``, in dataflow order (not looking
        into what the symbols in ``stop`` read)."""
        needed: set[sp.Symbol] = set()
        alias = self.alias
        stack = [alias.get(s, s) for r in roots for s in r.free_symbols if s in self.expr or s in alias]
        while stack:
            symbol = stack.pop()
            if symbol in needed:
                continue
            needed.add(symbol)
            if symbol not in stop:
                stack.extend(alias.get(s, s) for s in self.expr[symbol].free_symbols if (s in self.expr or s in alias) and s not in needed)
        return sorted(needed, key=self.rank.__getitem__)


def _elements(slot: Slot) -> Iterable[tuple[int, sp.Symbol]]:
    """(index in the slot, symbol) of the slot's symbols that exist (all, but array form's made ones)."""
    if slot.array:
        return sorted(slot.symbols.created.items())
    return enumerate(slot.symbols)


class _StateIndex:
    """State symbol -> index in ``y`` (element symbols of array-form vectors as they are made)."""

    def __init__(self, flat: FlatModel) -> None:
        self.index = {symbol: slot.start + k for slot in flat.states if not slot.array for k, symbol in _elements(slot)}
        self.arrays = [slot for slot in flat.states if slot.array]

    def get(self, symbol: sp.Symbol) -> int | None:
        found = self.index.get(symbol)
        if found is None and self.arrays:  # made since: look in the (few) made ones
            for slot in self.arrays:
                self.index.update((s, slot.start + k) for k, s in slot.symbols.created.items())
            found = self.index.get(symbol)
        return found


def _gradient(flat: FlatModel, defs: _Definitions, lowrank: LowRank, element_reads: list[sp.Symbol] | None = None):  # noqa: ANN202
    """``gradient(symbol)``: {state index: d symbol / d y[index]} by the chain rule; a sum
    over a whole array is a variable of its own, the virtual column ``lowrank.column``;
    with ``element_reads``, so is an element of the array of a reduction along an axis
    that element code reads: column ``ELEMENT_READ - k`` for ``element_reads[k]``."""
    state_index = _StateIndex(flat)
    memo: dict[sp.Symbol, dict[int, sp.Basic]] = {}
    extremes: dict[sp.Basic, sp.Dummy] = {}  # a Max/Min of 3+ arguments -> its stand-in
    hidden: dict[sp.Dummy, sp.Basic] = {}

    def of_expression(expr: sp.Basic) -> dict[int, sp.Basic]:
        """{state index: d expr / d y[index]}, a long Max/Min as a variable of its own."""
        expr = _hide_extremes(expr, extremes, hidden)
        result: dict[int, sp.Basic] = {}
        for arg in sorted(expr.free_symbols, key=lambda s: s.name):
            inner = gradient(arg)
            if not inner:
                continue
            d = _clean_derivative(partial(expr, arg))
            if d == 0:
                continue
            d = d.xreplace(hidden)
            for j, g in inner.items():
                result[j] = result.get(j, sp.S.Zero) + d * g
        return result

    def gradient(symbol: sp.Symbol) -> dict[int, sp.Basic]:
        if symbol in memo:
            return memo[symbol]
        if symbol in hidden:  # d Max(a_1..a_n) = d a_k, k the first argument that is largest
            node = hidden[symbol]
            result = {}
            for weight, arg in zip(first_extreme_weights(node), node.args):
                for j, g in of_expression(arg).items():
                    result[j] = result.get(j, sp.S.Zero) + weight * g
            memo[symbol] = result
            return result
        if symbol in defs.reduction or symbol in defs.alias:
            reduction = defs.reduction[defs.alias.get(symbol, symbol)]
            if symbol in defs.alias and element_reads is not None and reduction.axes:  # read by element code
                if symbol not in element_reads:
                    element_reads.append(symbol)
                memo[symbol] = {ELEMENT_READ - element_reads.index(symbol): sp.S.One}
                return memo[symbol]
            if symbol in defs.alias:  # a read of an array along axes from element code
                reduction = replace(reduction, shape=reduction.shape or (1,))
            memo[symbol] = {lowrank.column(reduction): sp.S.One}
            return memo[symbol]
        position = state_index.get(symbol) if symbol not in defs.expr else None
        if position is not None:
            result = {position: sp.S.One}
        elif symbol in defs.expr:
            result = of_expression(defs.expr[symbol])
        else:
            result = {}
        memo[symbol] = result
        return result

    return gradient


def _hide_extremes(expr: sp.Basic, extremes: dict[sp.Basic, sp.Dummy], hidden: dict[sp.Dummy, sp.Basic]) -> sp.Basic:
    """``expr`` with each outermost Max/Min of three or more arguments replaced by a
    stand-in symbol (the same one wherever the node recurs).

    sympy differentiates ``Max(a_1, .., a_n)`` through ``Heaviside(a_k - Max(others))``:
    a new Max of n - 1 arguments for every argument and every variable, each comparing
    its arguments pairwise (a 24-element ``np.max`` in element form: 218 s of lowering).
    Its gradient is taken once per node instead (``extremes.first_extreme_weights``)."""
    found: dict[sp.Basic, sp.Dummy] = {}
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, (sp.Max, sp.Min)) and len(node.args) > 2:
            if node not in extremes:
                extremes[node] = sp.Dummy("extreme")
                hidden[extremes[node]] = node
            found[node] = extremes[node]
        else:
            stack.extend(node.args)
    return expr.xreplace(found) if found else expr


def _jacobian(flat: FlatModel, gradient) -> dict[tuple[int, int], sp.Basic]:  # noqa: ANN001
    entries = {}
    rows = len(flat.derivatives)
    advance("Jacobian rows", 0, rows)
    for i, der in enumerate(flat.derivatives):
        if der is None:  # computed in array form
            continue
        for j, value in sorted(gradient(der).items()):
            if value != 0:
                entries[(i, j)] = value
        advance("Jacobian rows", i + 1, rows)
    return entries


def _element_label(assignment: Assignment, index: int) -> str:
    if len(assignment.symbols) == 1:
        return str(assignment.ref)
    return f"{assignment.ref}[{index}]"


def _function(
    flat: FlatModel,
    defs: _Definitions,
    name: str,
    args: tuple[str, ...],
    doc: str,
    targets: list[tuple[sp.Indexed, sp.Basic, str]],
    targets_title: str,
    tail: ArrayCode | None = None,
) -> KernelFunction:
    tail = tail or ArrayCode()
    needed = defs.closure([expr for _, expr, _ in targets] + tail.roots)
    sums = [s for s in needed if s in defs.reduction]
    needed = [s for s in needed if s not in defs.reduction]
    uses: Counter[sp.Symbol] = Counter()
    for symbol in needed + sums:
        uses.update(defs.expr[symbol].free_symbols)
    for _, expr, _ in targets:
        uses.update(expr.free_symbols)
    for expr in tail.roots:
        uses.update(expr.free_symbols)

    # A target that is just a signal used nowhere else is written in place of that signal.
    inline: dict[sp.Symbol, sp.Indexed] = {}
    rest: list[tuple[sp.Indexed, sp.Basic, str]] = []
    for target, expr, comment in targets:
        if expr in defs.expr and uses[expr] == 1 and expr not in inline:
            inline[expr] = target
        else:
            rest.append((target, expr, comment))

    exprs = [defs.expr[s] for s in needed] + [e for _, e, _ in rest]
    replacements, reduced = cse(exprs, sp.numbered_symbols("c"))
    temps = dict(replacements)
    temp_rank = {s: i for i, (s, _) in enumerate(replacements)}
    emitted: set[sp.Symbol] = set()

    def temps_for(expr: sp.Basic) -> list[Statement]:
        wanted: set[sp.Symbol] = set()
        stack = [s for s in expr.free_symbols if s in temps]
        while stack:
            s = stack.pop()
            if s in wanted or s in emitted:
                continue
            wanted.add(s)
            stack.extend(x for x in temps[s].free_symbols if x in temps)
        emitted.update(wanted)
        return [Statement(s, temps[s]) for s in sorted(wanted, key=temp_rank.__getitem__)]

    blocks: list[Block] = []
    current_title, current = None, []
    places, sum_temporaries = Places(flat), Temporaries("s")
    for symbol, expr in zip(needed, reduced[: len(needed)]):
        while sums and defs.rank[sums[0]] < defs.rank[symbol]:  # a sum this assignment may need
            if current:
                blocks.append(Block(current_title, tuple(current)))
            current_title, current = None, []
            blocks += reduction_blocks(flat, defs.reduction[sums.pop(0)], places, sum_temporaries)
        assignment, index = defs.origin[symbol]
        fn = assignment.function
        title = f"{fn.system}: {fn.name} [{fn.kind}] ({relative_location(fn.location, flat.source_root)})"
        if title != current_title:
            if current:
                blocks.append(Block(current_title, tuple(current)))
            current_title, current = title, []
        current.extend(temps_for(expr))
        label = _element_label(assignment, index)
        where = relative_location(assignment.location, flat.source_root)
        current.append(Statement(inline.get(symbol, symbol), expr, f"{label} ({where})"))
    if current:
        blocks.append(Block(current_title, tuple(current)))
    for symbol in sums:  # sums that only targets and the array loops need
        blocks += reduction_blocks(flat, defs.reduction[symbol], places, sum_temporaries)
    if rest:
        statements = []
        for (target, _, comment), expr in zip(rest, reduced[len(needed):]):
            statements.extend(temps_for(expr))
            statements.append(Statement(target, expr, comment))
        blocks.append(Block(targets_title, tuple(statements)))
    blocks += tail.blocks

    if defs.alias:  # element code reading the array of a reduction along axes: r<k>[index]
        places_of = Places(flat)
        reads = {s: places_of.at(s, ()) for s in defs.alias if all(a < 0 for a, _ in flat.offsets[s].index)}
        if reads:
            blocks = [
                replace(block, statements=tuple(replace(st, expr=st.expr.xreplace(reads)) for st in block.statements))
                for block in blocks
            ]  # fmt: skip
    used: set[sp.Symbol] = set()
    for block in blocks:
        for statement in block.statements:
            used |= statement.expr.free_symbols
    loads = []
    states = [Statement(s, _Y[slot.start + k], str(slot.ref) + (f"[{k}]" if len(slot.symbols) > 1 else ""))
              for slot in flat.states for k, s in _elements(slot) if s in used]  # fmt: skip
    if states:
        loads.append(Block("states", tuple(states)))
    params = [Statement(s, _P[slot.start + k], str(slot.ref) + (f"[{k}]" if len(slot.symbols) > 1 else ""))
              for slot in flat.parameters for k, s in _elements(slot) if s in used]  # fmt: skip
    if params:
        loads.append(Block("parameters", tuple(params)))
    return KernelFunction(name, args, doc, tuple(loads + blocks))


def lower(flat: FlatModel, kernels: bool = True) -> Kernel:
    """Lower a flat model to the generated functions; see the module docstring.

    With ``kernels``, a model with a group of at least ``KERNEL_MIN_INSTANCES``
    structurally equal assignments is lowered as loops over instances
    (``lower_groups``); otherwise every signal gets its own lines.  Such a model's
    states are packed group by group (``layout.pack_states``), in either form; the
    returned kernel's ``flat`` has the places.  A model with arrays in array form gets
    its loops over instances next to the array loops (``lower_mixed``); where the two
    cannot combine, it is unrolled with a build notice (``Kernel.notes``) saying why.
    """
    array_form = flat.array_assignments or flat.reductions or any(
        slot.array for slot in (*flat.states, *flat.parameters, *flat.observed)
    )
    notes: tuple[str, ...] = ()
    if array_form and flat.assignments:  # loops over instances next to the array loops
        from .lower_mixed import lower_mixed

        mixed = lower_mixed(flat, kernels, _clean_derivative)
        if isinstance(mixed, Kernel):
            return with_events(mixed)
        if isinstance(mixed, str):
            notes = (f"{flat.name}: no loops over instances next to the arrays in array form, every signal gets its own "
                     f"lines: {mixed}",)  # fmt: skip
        else:
            flat = mixed
    if not array_form:
        groups = group(flat)
        if groups and max(g.n for g in groups) >= KERNEL_MIN_INSTANCES:
            flat, groups = pack_states(flat, groups)  # in both forms: one layout per model
            if kernels:
                return with_events(lower_groups(flat, groups, _clean_derivative))
    defs = _Definitions(flat)
    states_in_place = in_place_order(flat.states)
    starts = [slot.start for slot in states_in_place]

    def state_label(i: int) -> str:
        slot = states_in_place[bisect_right(starts, i) - 1]
        return str(slot.ref) + (f"[{i - slot.start}]" if len(slot.symbols) > 1 else "")

    rhs_targets = [(_DY[i], der, f"d/dt {state_label(i)}") for i, der in enumerate(flat.derivatives) if der is not None]
    rhs = _function(
        flat, defs, "rhs", ("t", "y", "p", "dy"),
        "Write the time derivatives of the states ``y`` at time ``t`` into ``dy``.",
        rhs_targets, "derivatives", array_rhs(flat),
    )  # fmt: skip

    n_states = len(flat.derivatives)
    lowrank = LowRank(flat, n_states)
    read_by_elements: list[sp.Symbol] = []
    gradient = _gradient(flat, defs, lowrank, read_by_elements)
    jac_doc = "Write the non-zero Jacobian entries d(dy[JAC_ROWS[k]])/dy[JAC_COLS[k]] into ``values[k]``."
    lowrank_fn = None
    try:
        every = _jacobian(flat, gradient)
        entries = {(i, j): v for (i, j), v in every.items() if 0 <= j < n_states}
        element_reads = [(_element_slot(flat, i), read_by_elements[ELEMENT_READ - j], v)
                         for (i, j), v in every.items() if j <= ELEMENT_READ]  # fmt: skip
        array_jac = array_jacobian(flat, gradient, _clean_derivative, len(entries), n_states, element_reads=element_reads)
        if lowrank:
            lowrank_fn = _lowrank_function(flat, defs, gradient, lowrank, every, state_label, element_reads)
    except NoJacobian as missing:
        entries, array_jac, no_jacobian, lowrank = {}, ArrayCode(), missing.note, LowRank(flat, n_states)
        jac_values = KernelFunction("jac_values", ("t", "y", "p", "values"), jac_doc, (), raises=no_jacobian)
    else:
        no_jacobian = None
        jac_targets = [
            (_VALUES[k], value, f"d({state_label(i)})/d({state_label(j)})")
            for k, ((i, j), value) in enumerate(entries.items())
        ]
        jac_values = _function(flat, defs, "jac_values", ("t", "y", "p", "values"), jac_doc, jac_targets,
                               "Jacobian entries", array_jac)  # fmt: skip

    observe_targets = []
    for slot in flat.observed:
        if slot.array:  # written by array_observe
            continue
        for i, symbol in enumerate(slot.symbols):
            label = str(slot.ref) + (f"[{i}]" if len(slot.symbols) > 1 else "")
            observe_targets.append((_OUT[slot.start + i], symbol, label))
    observe = _function(
        flat, defs, "observe", ("t", "y", "p", "out"),
        "Write every input, output and der (layout: OBSERVED) at ``(t, y)`` into ``out``.",
        observe_targets, "observed signals", array_observe(flat),
    )  # fmt: skip
    functions = (rhs, jac_values, observe) + ((lowrank_fn,) if lowrank_fn is not None else ())
    return with_events(Kernel(flat, functions, tuple(entries), jac_blocks=tuple(array_jac.jac_blocks),
                              no_jacobian=no_jacobian, n_lowrank=len(lowrank), notes=notes))  # fmt: skip


_U = sp.IndexedBase("U")


def _element_slot(flat: FlatModel, i: int) -> Slot:
    """Element ``i`` of ``y`` as a slot of its own (a derivative in element form, for ``array_jacobian``)."""
    slot = next(s for s in flat.states if s.start <= i < s.stop)
    key = slot.ref.key + (f"[{i - slot.start}]" if len(slot.symbols) > 1 else "")
    return Slot(replace(slot.ref, key=key), i, (), ())


def _lowrank_function(flat: FlatModel, defs: _Definitions, gradient, lowrank: LowRank,  # noqa: ANN001
                      every: dict[tuple[int, int], sp.Basic], state_label, element_reads: list) -> KernelFunction:  # noqa: ANN001 # fmt: skip
    """``lowrank_values(t, y, p, U, V)``: adds the columns of ``U`` and ``V`` (zeroed by the
    caller) of the Jacobian's low-rank part ``U Vᵀ`` (``lower_lowrank``)."""
    n = lowrank.n_states
    targets = [
        (_U[i, j - n], value, f"d(d/dt {state_label(i)})/d(sum {j - n})")
        for (i, j), value in every.items() if j >= n
    ]  # fmt: skip
    u_code = array_jacobian(flat, gradient, _clean_derivative, 0, n, lowrank=True, element_reads=element_reads)
    v_code = weight_code(flat, lowrank, gradient, _clean_derivative)
    if v_code.through:  # (placeholders of lower_mixed only)
        raise NoJacobian("a sum over a whole array reads a signal dyngen places only in loops over instances")
    tail = ArrayCode(u_code.blocks + v_code.blocks, u_code.roots + v_code.roots)
    return _function(flat, defs, "lowrank_values", ("t", "y", "p", "U", "V"), lowrank.doc(), targets, "U: element derivatives", tail)


_G = sp.IndexedBase("g")


def with_events(kernel: Kernel) -> Kernel:
    """The kernel with the functions of the model's events, if it has any:
    ``events(t, y, p, g)`` (every condition into ``g``) and one ``apply_event_<k>(t, y, p)``
    per event with an action (its resets, computed from the values before any is written).
    Conditions and actions are few lines: always emitted unrolled, in the module's layout."""
    flat = kernel.flat
    if not flat.events:
        return kernel
    defs = _Definitions(flat)
    root = flat.source_root
    targets = [
        (_G[k], event.condition, f"{event.system}: {event.name} ({relative_location(event.location, root)})")
        for k, event in enumerate(flat.events)
    ]
    functions = [_function(
        flat, defs, "events", ("t", "y", "p", "g"),
        "Write the value of every event condition (layout: EVENTS) at ``(t, y)`` into ``g``.",
        targets, "event conditions",
    )]  # fmt: skip
    states = {slot.ref: slot for slot in flat.states}
    parameters = {slot.ref: slot for slot in flat.parameters}
    for k, event in enumerate(flat.events):
        if event.action_location is None:
            continue
        resets = []
        for n, (ref, exprs) in enumerate(event.resets):
            where = event.reset_locations[n] if n < len(event.reset_locations) else None
            slot, vector = (states[ref], _Y) if ref in states else (parameters.get(ref), _P)
            if slot is None:
                raise CodegenError(f"the action of event {event.system}.{event.name} writes {ref}, which is not a parameter")
            for i, expr in enumerate(exprs):
                label = str(ref) + (f"[{i}]" if len(exprs) > 1 else "")
                resets.append((vector[slot.start + i], expr, f"{label} ({relative_location(where or event.action_location, root)})"))
        functions.append(_function(
            flat, defs, f"apply_event_{k}", ("t", "y", "p"),
            f"The action of event {k} ({event.system}: {event.name}): reset ``y`` and ``p`` in place.",
            resets, "resets (every value is computed from the values before the event)",
        ))  # fmt: skip
    return replace(kernel, functions=kernel.functions + tuple(functions))
