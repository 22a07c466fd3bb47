"""Lowering of a grouped model: one loop per group instead of one line per instance.

``rhs`` runs the groups the derivatives need, in dataflow order; signals other
groups read go through the scratch vector ``v`` (laid out as ``OBSERVED``).
``observe`` runs every group straight into ``out``.  ``jac_values`` differentiates
each derivative group once: its expressions, with the groups they read substituted
in, are differentiated with respect to the states they reach, and the pattern is
the same for every instance (row and column index arrays per entry).
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import sympy as sp

from .flatten import relative_location
from .groups import Group, Operand, local_name, local_registry
from .ir import Block, FlatModel, Kernel, KernelFunction, SignalRef, Statement
from .naming import NameRegistry, sanitize
from .shallow import cse

_I = sp.Symbol("i", integer=True)
_ARRAYS = {name: sp.IndexedBase(name) for name in ("y", "p", "v", "dy", "out", "values")}

Place = tuple[str, tuple[int, ...], int]  # (source, starts per instance, size)


class _Tables:
    """Per-instance index arrays; an arithmetic progression is printed inline instead."""

    def __init__(self) -> None:
        self.by_values: dict[tuple[int, ...], str] = {}
        self.constants: dict[tuple[float, ...], str] = {}  # per-instance values of a constant
        self.comments: dict[str, str] = {}
        self.names = NameRegistry()

    def index(self, starts: Sequence[int], label: str) -> sp.Expr:
        starts = tuple(starts)
        if len(starts) == 1:
            return sp.Integer(starts[0])
        stride = starts[1] - starts[0]
        if all(s == starts[0] + k * stride for k, s in enumerate(starts)):
            return starts[0] + stride * _I
        name = self.by_values.get(starts)  # one array per distinct index list, named at first use
        if name is None:
            name = self.by_values[starts] = self.names.unique(sanitize(label).upper())
        return sp.Indexed(sp.IndexedBase(name), _I)

    def constant(self, values: Sequence[float], label: str) -> sp.Indexed:
        """Element i of the module array of per-instance ``values`` (made at first use)."""
        values = tuple(values)
        name = self.constants.get(values)
        if name is None:
            name = self.constants[values] = self.names.unique(sanitize(label).upper())
            self.comments[name] = label
        return sp.Indexed(sp.IndexedBase(name), _I)

    def items(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        return tuple(sorted((name, values) for values, name in self.by_values.items()))

    def constant_items(self) -> tuple[tuple[str, tuple[float, ...], str], ...]:
        return tuple(sorted((name, values, self.comments[name]) for values, name in self.constants.items()))


def _title(flat: FlatModel, g: Group) -> str:
    fn = g.function
    where = relative_location(fn.location, flat.source_root)
    ref = g.refs[0]
    if g.n == 1:
        return f"{fn.system}: {fn.name} [{fn.kind}] ({where}) -> {ref}"
    systems = [r.system for r in g.refs]
    shown = systems if g.n <= 3 else [*systems[:2], "...", systems[-1]]
    return f"{fn.name} [{fn.kind}] ({where}) -> {ref.kind}.{ref.key} of {g.n} systems: {', '.join(shown)}"


def _label(ref: SignalRef, n: int) -> str:
    return f"{ref} (i = 0)" if n > 1 else str(ref)


Places = dict  # Place -> (tuple of Dummy symbols, the first instance's SignalRef)


class _Composer:
    """A group's expressions with the groups it reads substituted in.

    ``inline(h)`` says which groups are substituted; the others stay operands read
    from ``v``.  With every group inlined, the expressions depend on states,
    parameters and t only (what the Jacobian needs).
    """

    def __init__(self, groups: tuple[Group, ...], inline: Callable[[Group], bool]) -> None:
        self.writer = {start: (g, i) for g in groups for i, start in enumerate(g.out_starts)}
        self.inline = inline
        self.memo: dict[str, tuple[tuple[sp.Basic, ...], Places]] = {}
        self.inlined: dict[str, list[Group]] = {}  # the groups substituted into each group

    def of(self, g: Group) -> tuple[tuple[sp.Basic, ...], Places]:
        if g.name in self.memo:
            return self.memo[g.name]
        places: Places = {}

        def symbols_at(place: Place, ref: SignalRef) -> tuple[sp.Dummy, ...]:
            if place not in places:
                places[place] = (tuple(sp.Dummy(real=True) for _ in range(place[2])), ref)
            return places[place][0]

        subs: dict[sp.Symbol, sp.Basic] = {}
        inlined: list[Group] = []
        for op in g.operands:
            h = self.writer.get(op.starts[0], (None,))[0] if op.source == "v" else None  # (None: a sum, lower_mixed)
            if h is None or not self.inline(h):
                subs.update(zip(op.symbols(), symbols_at((op.source, op.starts, op.size), op.ref)))
                continue
            instance = [self.writer[s][1] for s in op.starts]
            h_exprs, h_places = self.of(h)
            inlined += [*self.inlined[h.name], h]
            mapping: dict[sp.Basic, sp.Basic] = {}
            for (source, starts, size), (symbols, ref) in h_places.items():
                ours = symbols_at((source, tuple(starts[k] for k in instance), size), ref)
                mapping.update(zip(symbols, ours))
            subs.update({s: h_exprs[j].xreplace(mapping) for j, s in enumerate(op.symbols())})
        result = (tuple(e.xreplace(subs) for e in g.exprs), places)
        self.memo[g.name] = result
        self.inlined[g.name] = inlined
        return result


class _Names:
    """The locals of one generated function: every name assigned once, across its loops."""

    def __init__(self, flat: FlatModel) -> None:
        self.registry = local_registry()
        self.temps = sp.numbered_symbols("c")
        # the signal at each place, for the comment of a load (an inlined group's operands
        # keep the ref of that group's first instance, whichever instance is read)
        self.ref_at = {(source, slot.start): slot.ref
                       for source, slots in (("y", flat.states), ("p", flat.parameters), ("v", flat.observed))
                       for slot in slots}  # fmt: skip


class _Loop:
    """The body of one emitted loop (or straight-line block): groups fused over i."""

    def __init__(self, name: str, n: int, title: str, names: _Names) -> None:
        self.name = name  # the first group's: names the loop's index arrays
        self.n = n
        self.titles = [title]
        self.names = names
        self.symbols: dict[Place, tuple[tuple[sp.Symbol, ...], SignalRef]] = {}
        self.outputs: list[tuple[sp.Basic, list[sp.Indexed], str]] = []
        self.writes: set[int] = set()  # v starts written

    def add(self, exprs: tuple[sp.Basic, ...], places: Places) -> tuple[sp.Basic, ...]:
        rename: dict[sp.Basic, sp.Basic] = {}
        for place, (dummies, ref) in places.items():
            if place not in self.symbols:
                ref = self.names.ref_at.get((place[0], place[1][0]), ref)
                op = Operand(local_name(ref, self.names.registry, place[2]), place[0], place[2], place[1], ref)
                self.symbols[place] = (op.symbols(), ref)
            rename.update(zip(dummies, self.symbols[place][0]))
        return tuple(e.xreplace(rename) for e in exprs)

    def block(self, tables: _Tables, v_name: str) -> Block:
        loads = []
        outputs = self.outputs
        literals = {symbols[0]: sp.Float(starts[0]) for (source, starts, _), (symbols, _) in self.symbols.items()
                    if source == "c" and len(starts) == 1}
        if literals:  # one instance (a group's constant read through another group): the number itself
            outputs = [(e.xreplace(literals), targets, comment) for e, targets, comment in outputs]
        for (source, starts, size), (symbols, ref) in self.symbols.items():
            if symbols[0] in literals:
                continue
            if source == "c":  # a constant of the function, one value per instance
                function = ref.system.split(" (")[0].split(".")[-1]  # its name without the qualifying path
                label = f"{function} constant {ref.key}"
                loads.append((symbols[0], tables.constant(starts, label), f"constant of {ref.system}, one per i"))
                continue
            base = tables.index(starts, f"{self.name}_{symbols[0].name}")
            array = _ARRAYS[v_name if source == "v" else source]
            for j, symbol in enumerate(symbols):
                loads.append((symbol, sp.Indexed(array, base + j), _label(ref, self.n) + (f"[{j}]" if size > 1 else "")))
        statements = _body(loads, outputs, self.names.temps)
        return Block("\n".join(self.titles), tuple(statements), self.n if self.n > 1 else 0)


def _body(
    loads: list[tuple[sp.Symbol, sp.Indexed, str]],
    outputs: list[tuple[sp.Basic, list[sp.Indexed], str]],
    temps: Iterator[sp.Symbol],
) -> list[Statement]:
    """Loads of the used operands, CSE temporaries, then each value into its targets."""
    exprs = [e for e, _, _ in outputs]
    replacements, reduced = cse(exprs, temps)
    used: set[sp.Symbol] = set()
    for _, e in replacements:
        used |= e.free_symbols
    for e in reduced:
        used |= e.free_symbols
    statements = [Statement(symbol, element, label) for symbol, element, label in loads if symbol in used]
    statements += [Statement(s, e) for s, e in replacements]
    for (_, targets, comment), value in zip(outputs, reduced):
        first, *others = targets
        statements.append(Statement(first, value, comment))
        statements += [Statement(other, first) for other in others]
    return statements


def _stores(g: Group, tables: _Tables, targets: dict[str, Sequence[int]]) -> list[list[sp.Indexed]]:
    """Per element of ``g``: the array elements it is written to."""
    bases = {array: tables.index(starts, f"{g.name}_{array}_{g.refs[0].key}") for array, starts in targets.items()}
    return [[sp.Indexed(_ARRAYS[array], bases[array] + e) for array in targets] for e in range(g.size)]


def _signal_loops(
    flat: FlatModel,
    groups: list[tuple[Group, dict[str, Sequence[int]]]],
    composer: _Composer,
    tables: _Tables,
    v_name: str,
    names: _Names | None = None,
) -> list[Block]:
    """Blocks that compute ``groups`` (in order) into their targets, fusing neighbours.

    Two consecutive groups share one loop when they run over the same number of
    instances and the second does not read what the first writes.  A sum of terms
    (``Group.terms``) is its other part (zero for a plain sum) in the instances' loop,
    then one loop over all terms that adds each into its instance's signal.
    """
    loops: list[_Loop] = []
    names = names or _Names(flat)
    for g, targets in groups:
        exprs, places = composer.of(g)
        reads_v = {s + k for (source, starts, _size), _ in places.items() if source == "v" for s in starts for k in range(_size)}
        current = loops[-1] if loops else None
        if current is None or current.n != g.n or current.writes & reads_v:
            current = _Loop(g.name, g.n, _title(flat, g), names)
            loops.append(current)
        else:
            current.titles.append(_title(flat, g))
        current.titles += [f"  using {_title(flat, h)}" for h in composer.inlined[g.name] if h.copy_of is None]
        exprs = current.add(exprs, places)
        where = relative_location(g.assignments[0].location, flat.source_root)
        comment = f"{g.refs[0].kind}.{g.refs[0].key} ({where})"
        for expr, stores in zip(exprs, _stores(g, tables, targets)):
            current.outputs.append((expr, stores, comment))
        if "v" in targets or "out" in targets:
            current.writes |= {s + k for s in g.out_starts for k in range(g.size)}
        if g.terms is not None:
            loops.append(_terms_loop(flat, g, targets, tables, names, comment))
    return [loop.block(tables, v_name) for loop in loops]


def _terms_loop(flat: FlatModel, g: Group, targets: dict[str, Sequence[int]], tables: _Tables, names: _Names, comment: str) -> _Loop:
    """``target[OWNER[i]] += term(i)`` over every term of ``g``'s instances."""
    terms = g.terms
    where = relative_location(g.function.location, flat.source_root)
    signal = f"{g.refs[0].kind}.{g.refs[0].key}"
    title = f"{g.function.name} [{g.function.kind}] ({where}) -> {signal}: {terms.n} terms, each added to its system's {signal}"
    loop = _Loop(f"{g.name}_terms", terms.n, title, names)
    places = {(op.source, op.starts, op.size): (op.symbols(), op.ref) for op in terms.operands}
    (value,) = loop.add((terms.expr,), places)
    for array, starts in targets.items():
        into = tables.index([starts[k] for k in terms.owners], f"{g.name}_{array}_{g.refs[0].key}_terms")
        target = sp.Indexed(_ARRAYS[array], into)
        loop.outputs.append((target + value, [target], f"{comment}, one term"))
    loop.writes = {s + k for s in g.out_starts for k in range(g.size)}
    return loop


def _rhs(flat: FlatModel, groups: tuple[Group, ...], tables: _Tables) -> KernelFunction:
    writer = {start: g for g in groups for start in g.out_starts}
    needed = {g.name for g in groups if g.state_starts is not None}
    readers: dict[str, list[Operand]] = {}
    for g in reversed(groups):
        if g.name in needed:
            for op in g.operands:
                if op.source == "v":
                    h = writer[op.starts[0]]
                    needed.add(h.name)
                    readers.setdefault(h.name, []).append(op)
    # A signal read by one operand of one group, each instance's value by one instance
    # of the reader, is computed inside the reader's loop (never computed twice).
    inlined = {
        name for name, ops in readers.items()
        if len(ops) == 1 and len(set(ops[0].starts)) == len(ops[0].starts)
    }  # fmt: skip
    inlined -= {g.name for g in groups if g.state_starts is not None or g.terms is not None}
    composer = _Composer(groups, lambda h: h.name in inlined)
    emitted = []
    for g in groups:
        if g.name not in needed or g.name in inlined:
            continue
        targets: dict[str, Sequence[int]] = {}
        if g.state_starts is not None:
            targets["dy"] = g.state_starts
        if g.name in readers:
            targets["v"] = g.out_starts
        emitted.append((g, targets))
    blocks = _constant_ders(flat, tables) + _signal_loops(flat, emitted, composer, tables, "v")
    uses_v = any(g.name in readers and g.name not in inlined for g in groups)
    return KernelFunction(
        "rhs", ("t", "y", "p", "dy"),
        "Write the time derivatives of the states ``y`` at time ``t`` into ``dy``.",
        tuple(blocks), flat.n_observed if uses_v else 0,
    )  # fmt: skip


def _constant_ders(flat: FlatModel, tables: _Tables) -> list[Block]:
    """``dy = p`` for the states whose der no function writes (a der ``__init__`` sets:
    a constant derivative, read from the parameters)."""
    at = {sym: slot.start + k for slot in flat.parameters if not slot.array for k, sym in enumerate(slot.symbols)}
    pairs = [(i, at[der]) for i, der in enumerate(flat.derivatives) if der is not None and der in at]
    if not pairs:
        return []
    n = len(pairs)
    dst = tables.index([i for i, _ in pairs], "constant_der_states")
    src = tables.index([k for _, k in pairs], "constant_der_parameters")
    statement = Statement(sp.Indexed(_ARRAYS["dy"], dst), sp.Indexed(_ARRAYS["p"], src))
    return [Block("constant derivatives (ders that only __init__ sets)", (statement,), n if n > 1 else 0)]


def _observe(flat: FlatModel, groups: tuple[Group, ...], tables: _Tables) -> KernelFunction:
    blocks = []
    observed_at = {slot.ref: slot.start for slot in flat.observed}  # not attributes traced as parameters
    parameters = [(slot, i) for slot in flat.parameters if slot.ref in observed_at for i in range(slot.start, slot.stop)]
    dst = [observed_at[slot.ref] + i - slot.start for slot, i in parameters]
    if dst:
        index = tables.index(dst, "observed_parameters")
        statement = Statement(sp.Indexed(_ARRAYS["out"], index), sp.Indexed(_ARRAYS["p"], _I if len(dst) > 1 else 0))
        blocks.append(Block("parameters (inputs and outputs no function writes)", (statement,), len(dst) if len(dst) > 1 else 0))
    composer = _Composer(groups, lambda h: False)
    blocks += _signal_loops(flat, [(g, {"out": g.out_starts}) for g in groups], composer, tables, "out")
    return KernelFunction(
        "observe", ("t", "y", "p", "out"),
        "Write every input, output and der (layout: OBSERVED) at ``(t, y)`` into ``out``.",
        tuple(blocks),
    )  # fmt: skip


def _jac_values(
    flat: FlatModel, groups: tuple[Group, ...], tables: _Tables, clean: Callable[[sp.Basic], sp.Basic]
) -> tuple[KernelFunction, list[tuple[int, int]]]:
    # Sums of terms are not substituted: their value is computed first (into v), and
    # their readers' entries get the chain rule, d(reader)/d(sum) * d(term)/d(state).
    composer = _Composer(groups, lambda h: h.terms is None)
    sums = {start: (h, k) for h in groups if h.terms is not None for k, start in enumerate(h.out_starts)}
    blocks, sparsity = [], []
    names = _Names(flat)
    offset = 0
    state_label = {i: f"{slot.ref}" + (f"[{i - slot.start}]" if len(slot.symbols) > 1 else "")
                   for slot in flat.states for i in range(slot.start, slot.stop)}  # fmt: skip
    read_sums: dict[str, Group] = {}
    for g in groups:
        if g.state_starts is not None:
            for source, starts, _ in composer.of(g)[1]:
                if source == "v" and starts[0] in sums:
                    read_sums.setdefault(sums[starts[0]][0].name, sums[starts[0]][0])
    if read_sums:
        first = [(h, {"v": h.out_starts}) for h in groups if h.name in read_sums]
        blocks += _signal_loops(flat, first, composer, tables, "v", names)
    for g in groups:
        if g.state_starts is None:
            continue
        exprs, places = composer.of(g)
        loop = _Loop(g.name, g.n, _title(flat, g), names)
        exprs = loop.add(exprs, places)
        chains = []
        for e, expr in enumerate(exprs):
            present = expr.free_symbols
            for (source, starts, size), (symbols, _) in loop.symbols.items():
                if source == "v" and starts[0] in sums and symbols[0] in present:
                    chains.append((e, expr, symbols[0], starts))
                if source != "y":
                    continue
                for j, symbol in enumerate(symbols):
                    if symbol not in present:
                        continue
                    value = clean(sp.diff(expr, symbol))
                    if value == 0:
                        continue
                    index = offset + _I if g.n > 1 else sp.Integer(offset)
                    rows = [r + e for r in g.state_starts]
                    cols = [c + j for c in starts]
                    sparsity.extend(zip(rows, cols))
                    comment = f"d({state_label[rows[0]]})/d({state_label[cols[0]]})" + (" (i = 0)" if g.n > 1 else "")
                    loop.outputs.append((value, [sp.Indexed(_ARRAYS["values"], index)], comment))
                    offset += g.n
        if loop.outputs:
            blocks.append(loop.block(tables, "v"))
        for e, expr, symbol, starts in chains:
            outer = clean(sp.diff(expr, symbol))
            if outer == 0:
                continue
            h = sums[starts[0]][0]
            instance = [sums[s][1] for s in starts]  # the sum's instance each of g's reads
            by_owner: dict[int, list[int]] = {}
            for q, k in enumerate(h.terms.owners):
                by_owner.setdefault(k, []).append(q)
            parts = [(h.terms.operands, h.terms.expr, [(j, q) for j in range(g.n) for q in by_owner.get(instance[j], ())]),
                     (h.operands, h.exprs[0], [(j, instance[j]) for j in range(g.n)])]  # fmt: skip
            for operands, inner, pairs in parts:
                if not pairs:
                    continue
                chain = _Loop(f"{g.name}_{h.name}", len(pairs), f"{_title(flat, g)}\n  through {_title(flat, h)}", names)
                outer_here = outer
                for (src, st, sz), (syms, ref) in loop.symbols.items():  # one by one: two may meet
                    (outer_here,) = chain.add((outer_here,), {(src, tuple(st[j] for j, _ in pairs), sz): (syms, ref)})
                own = {(op.source, tuple(op.starts[u] for _, u in pairs), op.size): (op.symbols(), op.ref) for op in operands}
                for op in operands:
                    if op.source != "y":
                        continue
                    for jj, y_symbol in enumerate(op.symbols()):
                        d_inner = clean(sp.diff(inner, y_symbol))
                        if d_inner == 0:
                            continue
                        (d_inner,) = chain.add((d_inner,), own)
                        rows = [g.state_starts[j] + e for j, _ in pairs]
                        cols = [op.starts[u] + jj for _, u in pairs]
                        sparsity.extend(zip(rows, cols))
                        index = offset + _I if len(pairs) > 1 else sp.Integer(offset)
                        comment = f"d({state_label[rows[0]]})/d({state_label[cols[0]]})" + (" (i = 0)" if len(pairs) > 1 else "")
                        chain.outputs.append((outer_here * d_inner, [sp.Indexed(_ARRAYS["values"], index)], comment))
                        offset += len(pairs)
                if chain.outputs:
                    blocks.append(chain.block(tables, "v"))
    fn = KernelFunction(
        "jac_values", ("t", "y", "p", "values"),
        "Write the Jacobian entries d(dy[JAC_ROWS[k]])/dy[JAC_COLS[k]] into ``values[k]`` "
        "(entries with the same row and column add up).",
        tuple(blocks), flat.n_observed if read_sums else 0,
    )  # fmt: skip
    return fn, sparsity


def lower_groups(flat: FlatModel, groups: tuple[Group, ...], clean: Callable[[sp.Basic], sp.Basic]) -> Kernel:
    """The generated functions of a grouped model; see the module docstring.

    ``clean`` makes a derivative printable (lower's rule for kinks and jumps).
    """
    tables = _Tables()
    rhs = _rhs(flat, groups, tables)
    jac_values, sparsity = _jac_values(flat, groups, tables, clean)
    observe = _observe(flat, groups, tables)
    return Kernel(flat, (rhs, jac_values, observe), tuple(sparsity), tables.items(), constants=tables.constant_items())
