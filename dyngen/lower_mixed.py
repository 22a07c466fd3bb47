"""lower, mixed: loops over instances next to the loop nests of arrays in array form.

A model with many copies of a small class and a large array (200 oscillators and a
2,000-cell rod) gets both: the element assignments are grouped (``groups``) and
emitted as loops over instances (``lower_groups``), the array system as loop nests
(``lower_arrays``), in one function.  What joins them:

- an element of an array in array form read by element code (``u[11]``) is a
  single-value operand of the reading group, at its place in ``y`` or ``p``; an
  element of a reduction along axes (``u.mean(axis=0)[3]``) becomes a sum of its own
  (``element_sums``);
- a sum over an array (``np.sum(u)``) read by element code is computed by its loop
  and stored in the scratch vector ``v`` after the signals (``v[N_OBSERVED + k]``),
  where the groups that read it find it; groups and sums run in dataflow order;
- the array loops run last and read the scalars they need (signals the groups wrote
  into ``v``, states, parameters) as locals loaded before them.

The Jacobian is the groups' blocks (``lower_groups``) followed by the array loops'
(``lower_arrays``), whose chain rule through element signals is computed unrolled
(few lines: the scalars the loops read), except through a plain sum of many instance
signals (the rod's heat), which is a loop over the terms (``_SumChain``).  A
derivative that depends on a sum over a whole array (the rod's mean, read by the
instances or by the array loops) gets the low-rank term ``U Vᵀ`` of ``lower_lowrank``
in ``lowrank_values``: the instances' rows of ``U`` as loops over them
(``_GroupSums``), the array loops' rows and ``V`` as without instances.  A sum whose
summand reads instance signals (weighted by a lamp's power, or by the lamps' total)
runs after the loops that write them; its ``V`` reaches the instances' states through
those signals.

``lower_mixed`` returns a reason instead of a kernel when the two cannot combine
(element code reading an array of a reduction along axes or an element of an
array computed in array form, a group that must run both before and after a sum,
a cycle between groups); ``lower`` then emits the model unrolled with that reason
as a build notice.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import replace
from typing import Callable, Iterable, Iterator

import sympy as sp

from .element_sums import element_reads_as_sums
from .flatten import relative_location
from .groups import KERNEL_MIN_INSTANCES, Group, group
from .ir import Assignment, Block, FlatModel, Kernel, KernelFunction, SignalRef, Statement
from .layout import pack_states
from .naming import sanitize
from .lower_arrays import Places, Temporaries, array_jacobian, array_observe, array_rhs, reduction_blocks
from .lower_groups import _ARRAYS, _I, _Composer, _constant_ders, _Loop, _Names, _signal_loops, _Tables, _title, _jac_values

SUMS = "sums"  # the kind of the SignalRef of a sum over an array, read by element code
_V = _ARRAYS["v"]
_OUT = _ARRAYS["out"]
_Y = _ARRAYS["y"]
_P = _ARRAYS["p"]
_VALUES = _ARRAYS["values"]
_SHIFT = sp.Symbol("shift", integer=True)  # (the chain's count, known at its end)

Unit = tuple[str, int]  # ("g", index into groups) or ("r", index into flat.reductions)


class _Interface:
    """What the element assignments read of the array part, as single values."""

    def __init__(self, flat: FlatModel) -> None:
        self.sum_place: dict[sp.Symbol, int] = {}  # scalar sum -> its place in v
        n = flat.n_observed
        self.summed: dict[sp.Symbol, str] = {}  # what each sum adds up, for comments
        for _, r in flat.reductions:
            if not r.shape:
                self.sum_place[r.symbol] = n + len(self.sum_place)
                refs = sorted({str(o.ref) for g in r.segments for s in g.expr.free_symbols if (o := flat.offsets.get(s))})
                self.summed[r.symbol] = f"{r.op} over {', '.join(refs) or 'an array'}"
        self.extra: dict[SignalRef, tuple[str, int, sp.Symbol]] = {}
        self.ref_of: dict[sp.Symbol, SignalRef] = {}
        self.reason: str | None = None
        elements = {}
        for source, slots in (("y", flat.states), ("p", flat.parameters)):
            for slot in slots:
                if slot.array:
                    for k, symbol in slot.symbols.created.items():
                        elements[symbol] = (source, slot, k)
        computed = {s: slot for slot in flat.observed if slot.array for s in slot.symbols.created.values()}
        for a in flat.assignments:
            for symbol in sorted({s for e in a.exprs for s in e.free_symbols}, key=lambda s: s.name):
                if symbol in self.ref_of:
                    continue
                where = relative_location(a.location, flat.source_root)
                if symbol in flat.offsets:
                    self.reason = f"{a.ref} ({where}) reads the array of a reduction along axes"
                elif symbol in computed:
                    self.reason = f"{a.ref} ({where}) reads an element of {computed[symbol].ref}, an array computed in array form"
                elif symbol in elements:
                    source, slot, k = elements[symbol]
                    ref = SignalRef(slot.ref.system, slot.ref.kind, f"{slot.ref.key}[{k}]")
                    self.extra[ref] = (source, slot.start + k, symbol)
                    self.ref_of[symbol] = ref
                elif symbol in self.sum_place:
                    ref = SignalRef(f"({self.summed[symbol]})", SUMS, symbol.name)
                    self.extra[ref] = ("v", self.sum_place[symbol], symbol)
                    self.ref_of[symbol] = ref

    def reads(self, a: Assignment, arrays: set[SignalRef]) -> tuple[SignalRef, ...]:
        """``a.reads`` with each array in array form replaced by the elements ``a`` reads,
        and the sums it reads after them (the groups' operand order)."""
        used = [self.ref_of[s] for e in a.exprs for s in e.free_symbols if s in self.ref_of]
        if not used:
            return a.reads
        elements: dict[SignalRef, list[SignalRef]] = {}
        sums = []
        for ref in used:
            if ref.kind == SUMS:
                sums.append(ref)
            else:
                elements.setdefault(SignalRef(ref.system, ref.kind, ref.key.split("[")[0]), []).append(ref)
        refs: list[SignalRef] = []
        for ref in a.reads:
            if ref in arrays:
                refs += sorted(set(elements.pop(ref, ())), key=lambda r: self.extra[r][1])
            else:
                refs.append(ref)
        for rest in elements.values():
            refs += sorted(set(rest), key=lambda r: self.extra[r][1])
        return tuple(refs) + tuple(sorted(set(sums), key=lambda r: r.key))


def _order(flat: FlatModel, groups: tuple[Group, ...], sums: dict[int, int]) -> tuple[list[Unit], str | None]:
    """Groups and reductions in dataflow order (a sum as soon as it can run: the
    loops over instances after it then fuse into fewer passes);
    a reason when there is no such order."""
    writer = {start: k for k, g in enumerate(groups) for start in g.out_starts}
    symbol_writer = {}
    for k, g in enumerate(groups):
        for a in g.assignments:
            for symbol in a.symbols:
                symbol_writer[symbol] = k
    reductions = [r for _, r in flat.reductions]
    deps: dict[Unit, set[Unit]] = {}
    for k, g in enumerate(groups):
        ops = [op for op in g.operands if op.source == "v"]
        if g.terms is not None:
            ops += [op for op in g.terms.operands if op.source == "v"]
        found: set[Unit] = set()
        for op in ops:
            for s in op.starts:
                if s in writer:
                    found.add(("g", writer[s]))
                elif s in sums:
                    found.add(("r", sums[s]))
        found.discard(("g", k))
        deps[("g", k)] = found
    for q, r in enumerate(reductions):
        found = {("r", p) for p in range(q)}  # (in their order: one may read another)
        for segment in r.segments:
            found |= {("g", symbol_writer[s]) for s in segment.expr.free_symbols if s in symbol_writer}
        deps[("r", q)] = found
    users: dict[Unit, list[Unit]] = {u: [] for u in deps}
    for u, d in deps.items():
        for w in d:
            users[w].append(u)
    remaining = {u: len(d) for u, d in deps.items()}
    ready = [(0 if u[0] == "r" else 1, u[1], u) for u, n in remaining.items() if not n]
    heapq.heapify(ready)
    order: list[Unit] = []
    while ready:
        u = heapq.heappop(ready)[2]
        order.append(u)
        for w in users[u]:
            remaining[w] -= 1
            if not remaining[w]:
                heapq.heappush(ready, (0 if w[0] == "r" else 1, w[1], w))
    if len(order) == len(deps):
        return order, None
    stuck = [u for u in deps if remaining[u]]
    g = next((groups[k] for kind, k in stuck if kind == "g"), None)
    r = next((reductions[k] for kind, k in stuck if kind == "r"), None)
    what = _title(flat, g) if g is not None else "a group"
    where = relative_location(r.location, flat.source_root) if r is not None else "?"
    return [], f"the loop over instances {what} would have to run both before and after the sum over the array at {where}"


class _Loads:
    """Statements that load the scalars non-group code reads: signals from ``v`` (or
    ``out``), states from ``y``, parameters from ``p``; each once per function."""

    def __init__(self, flat: FlatModel, signals: sp.IndexedBase | None) -> None:
        self.place: dict[sp.Symbol, tuple[sp.Basic, str]] = {}
        observed = {slot.ref: slot for slot in flat.observed}
        for a in flat.assignments if signals is not None else ():  # (None: the function computes them)
            slot = observed[a.ref]
            for k, symbol in enumerate(a.symbols):
                self.place[symbol] = (signals[slot.start + k], str(a.ref) + (f"[{k}]" if len(a.symbols) > 1 else ""))
        self.slots = [(_Y, slot) for slot in flat.states] + [(_P, slot) for slot in flat.parameters]
        for base, slot in self.slots:
            if not slot.array:
                for k, symbol in enumerate(slot.symbols):
                    self.place[symbol] = (base[slot.start + k], str(slot.ref) + (f"[{k}]" if len(slot.symbols) > 1 else ""))
        self.done: set[sp.Symbol] = set()

    def __call__(self, exprs: Iterable[sp.Basic]) -> list[Block]:
        for base, slot in self.slots:  # elements of arrays made since
            if slot.array:
                for k, symbol in slot.symbols.created.items():
                    self.place.setdefault(symbol, (base[slot.start + k], f"{slot.ref}[{k}]"))
        wanted = sorted({s for e in exprs for s in e.free_symbols if s in self.place and s not in self.done}, key=lambda s: s.name)
        self.done.update(wanted)
        if not wanted:
            return []
        return [Block("what the loops below read", tuple(Statement(s, self.place[s][0], self.place[s][1]) for s in wanted))]


def _roots(blocks: Iterable[Block]) -> list[sp.Basic]:
    return [st.expr for b in blocks for st in b.statements]


def _sequence(
    flat: FlatModel,
    groups: tuple[Group, ...],
    order: list[Unit],
    emitted: list[tuple[Group, dict]],
    reductions_needed: set[int],
    stored_sums: set[int],
    composer: _Composer,
    tables: _Tables,
    loads: _Loads,
) -> list[Block]:
    """The group loops and reduction loops of one function, in ``order``."""
    targets = {g.name: t for g, t in emitted}
    reductions = [r for _, r in flat.reductions]
    places, sum_temporaries, names = Places(flat), Temporaries("s"), _Names(flat)
    blocks: list[Block] = []
    batch: list[tuple[Group, dict]] = []
    sum_index = {r.symbol: n for n, r in enumerate(r for r in reductions if not r.shape)}
    for kind, k in order:
        if kind == "g":
            g = groups[k]
            if g.name in targets and plain_sum(g):
                if batch:
                    blocks += _signal_loops(flat, batch, composer, tables, "v", names)
                    batch = []
                blocks += _sum_loop(flat, g, targets[g.name], tables, names)
            elif g.name in targets:
                batch.append((g, targets[g.name]))
            continue
        if k not in reductions_needed:
            continue
        if batch:
            blocks += _signal_loops(flat, batch, composer, tables, "v", names)
            batch = []
        r = reductions[k]
        code = reduction_blocks(flat, r, places, sum_temporaries)
        blocks += loads(_roots(code)) + code
        if k in stored_sums:
            place = flat.n_observed + sum_index[r.symbol]
            where = relative_location(r.location, flat.source_root)
            blocks.append(Block(f"{r.symbol}, for the loops that read it", (Statement(_V[place], r.symbol, f"sum ({where})"),)))
    if batch:
        blocks += _signal_loops(flat, batch, composer, tables, "v", names)
    return blocks


def plain_sum(g: Group) -> bool:
    """Whether ``g`` is one signal that adds up many others (``sum(o.outputs.power for o
    in oscillators)``): emitted as a loop over its terms, not one line per term."""
    if g.n != 1 or g.terms is not None or g.size != 1 or len(g.operands) < KERNEL_MIN_INSTANCES:
        return False
    if any(op.size != 1 or op.source != g.operands[0].source for op in g.operands) or g.operands[0].source == "c":
        return False
    expr = g.exprs[0]
    return isinstance(expr, sp.Add) and len(expr.args) == len(g.operands) and set(expr.args) == {op.symbols()[0] for op in g.operands}


def _sum_loop(flat: FlatModel, g: Group, targets: dict, tables: _Tables, names: _Names) -> list[Block]:
    """``total = 0.0``, ``total += source[TERMS[i]]`` over the terms, then the stores."""
    ops, ref = g.operands, g.refs[0]
    total = sp.Symbol(names.registry.unique(f"sum_{sanitize(ref.key)}"), real=True)
    index = tables.index([op.starts[0] for op in ops], f"{g.name}_terms_{ref.key}")
    source = _ARRAYS[ops[0].source]
    where = relative_location(g.assignments[0].location, flat.source_root)
    title = f"{_title(flat, g)}: a sum of {len(ops)} signals"
    first = f"{ops[0].ref}" + (", ..." if len(ops) > 1 else "")
    stores = tuple(Statement(sp.Indexed(_ARRAYS[array], starts[0]), total, f"{ref.kind}.{ref.key} ({where})")
                   for array, starts in targets.items())  # fmt: skip
    return [
        Block(title, (Statement(total, sp.Float(0.0)),)),
        Block(f"{ref}: add each term", (Statement(total, total + sp.Indexed(source, index), f"{first} (i = 0)"),), len(ops)),
        Block(f"{ref}: the sum", stores),
    ]


def _needed_reductions(flat: FlatModel, roots: Iterable[sp.Basic], read_by_groups: set[int]) -> set[int]:
    """Reductions the function needs: read by the groups it runs, by the array loops'
    ``roots``, and by those (a reduction reading another)."""
    reductions = [r for _, r in flat.reductions]
    by_symbol = {r.symbol: q for q, r in enumerate(reductions)}
    by_name = {r.symbol.name: q for q, r in enumerate(reductions)}

    def reads(exprs: Iterable[sp.Basic]) -> set[int]:
        found = set()
        for e in exprs:
            for s in e.free_symbols:
                if s in by_symbol:
                    found.add(by_symbol[s])
                o = flat.offsets.get(s)
                if o is not None and o.ref.key in by_name:
                    found.add(by_name[o.ref.key])
        return found

    needed = set(read_by_groups) | reads(roots)
    stack = list(needed)
    while stack:
        q = stack.pop()
        for p in reads(seg.expr for seg in reductions[q].segments):
            if p not in needed:
                needed.add(p)
                stack.append(p)
    return needed


def lower_mixed(flat: FlatModel, kernels: bool, clean: Callable[[sp.Basic], sp.Basic]) -> Kernel | FlatModel | str:
    """The kernel of a model with both groups and arrays in array form; see the module
    docstring.  Returns the (packed) flat model when it has no group large enough (or
    ``kernels`` is off): lower it as usual; a reason string when the two cannot combine."""
    interface = _Interface(flat)
    sites = Counter((a.function.location, a.ref.kind, a.ref.key) for a in flat.assignments)
    loops_possible = kernels and max(sites.values()) >= KERNEL_MIN_INSTANCES
    if interface.reason is not None and loops_possible and (as_sums := element_reads_as_sums(flat)) is not None:
        flat, interface = as_sums, _Interface(as_sums)  # elements of reductions along axes: sums of their own
    arrays = {slot.ref for slot in (*flat.states, *flat.parameters) if slot.array}
    flat_reads = replace(flat, assignments=tuple(replace(a, reads=interface.reads(a, arrays)) for a in flat.assignments))
    if interface.reason is not None:  # a reason only where loops over instances were possible
        return interface.reason if loops_possible else flat
    groups = group(flat_reads, interface.extra)
    if groups is None:
        return "grouping the instances' assignments makes a cycle between the loops" if kernels else flat
    if not groups or max(g.n for g in groups) < KERNEL_MIN_INSTANCES:
        return flat
    flat, groups = pack_states(flat, groups)  # the kernel's flat: the original reads (the unrolled form's)
    if not kernels:
        return flat
    sums = {p: q for q, (_, r) in enumerate(flat.reductions) if (p := interface.sum_place.get(r.symbol)) is not None}
    order, reason = _order(flat, groups, sums)
    if reason is not None:
        return reason
    tables = _Tables()
    n_scratch = flat.n_observed + len(interface.sum_place)
    reads_sum: dict[str, set[int]] = {
        g.name: {sums[s] for op in g.operands if op.source == "v" for s in op.starts if s in sums} for g in groups
    }  # fmt: skip
    rhs = _rhs(flat, groups, order, reads_sum, tables, n_scratch)
    jac_values, lowrank_values, sparsity, jac_blocks, rank, missing = _jacobian(flat, groups, order, tables, clean, sums, n_scratch)
    observe = _observe(flat, groups, order, tables, n_scratch)
    functions = (rhs, jac_values, observe) + ((lowrank_values,) if lowrank_values is not None else ())
    return Kernel(flat, functions, tuple(sparsity), tables.items(), jac_blocks=tuple(jac_blocks),
                  no_jacobian=missing, n_lowrank=rank, constants=tables.constant_items())  # fmt: skip


def _symbol_writers(groups: tuple[Group, ...]) -> dict[sp.Symbol, Group]:
    return {symbol: g for g in groups for a in g.assignments for symbol in a.symbols}


def _rhs(flat: FlatModel, groups, order, reads_sum, tables: _Tables, n_scratch: int) -> KernelFunction:  # noqa: ANN001
    tail = array_rhs(flat)
    symbol_writer = _symbol_writers(groups)
    writer = {start: g for g in groups for start in g.out_starts}
    reductions = [r for _, r in flat.reductions]
    # what the array loops and the sums read of the groups: their signals go to v
    external: set[str] = {symbol_writer[s].name for e in tail.roots for s in e.free_symbols if s in symbol_writer}
    needed = {g.name for g in groups if g.state_starts is not None} | external
    sums_needed = _needed_reductions(flat, tail.roots, set())
    readers: dict[str, list] = {}
    changed = True
    while changed:  # the closure over groups and sums
        changed = False
        for g in reversed(groups):
            if g.name not in needed:
                continue
            for q in reads_sum[g.name]:
                if q not in sums_needed:
                    sums_needed |= _needed_reductions(flat, (), {q})
                    changed = True
            for op in g.operands:
                if op.source == "v" and op.starts[0] in writer:
                    h = writer[op.starts[0]]
                    ops = readers.setdefault(h.name, [])
                    if all(o is not op for o in ops):
                        ops.append(op)
                    if h.name not in needed:
                        needed.add(h.name)
                        changed = True
        for q in sorted(sums_needed):
            for seg in reductions[q].segments:
                for s in seg.expr.free_symbols:
                    if s in symbol_writer and symbol_writer[s].name not in external:
                        external.add(symbol_writer[s].name)
                        needed.add(symbol_writer[s].name)
                        changed = True
    inlined = {
        name for name, ops in readers.items()
        if len(ops) == 1 and len(set(ops[0].starts)) == len(ops[0].starts)
    }  # fmt: skip
    inlined -= {g.name for g in groups if g.state_starts is not None or g.terms is not None or plain_sum(g)} | external
    composer = _Composer(groups, lambda h: h.name in inlined)
    emitted = []
    for g in groups:
        if g.name not in needed or g.name in inlined:
            continue
        targets: dict = {}
        if g.state_starts is not None:
            targets["dy"] = g.state_starts
        if g.name in readers or g.name in external:
            targets["v"] = g.out_starts
        emitted.append((g, targets))
    stored = {q for q in sums_needed if not reductions[q].shape}  # (a group may read it through one inlined)
    loads = _Loads(flat, _V)
    blocks = _constant_ders(flat, tables)
    blocks += _sequence(flat, groups, order, emitted, sums_needed, stored, composer, tables, loads)
    blocks += loads(tail.roots) + tail.blocks
    return KernelFunction(
        "rhs", ("t", "y", "p", "dy"),
        "Write the time derivatives of the states ``y`` at time ``t`` into ``dy``.",
        tuple(blocks), n_scratch,
    )  # fmt: skip


def _observe(flat: FlatModel, groups, order, tables: _Tables, n_scratch: int) -> KernelFunction:  # noqa: ANN001
    blocks = []
    observed_at = {slot.ref: slot.start for slot in flat.observed}
    pairs = [(observed_at[slot.ref] + i - slot.start, i) for slot in flat.parameters
             if slot.ref in observed_at and not slot.array for i in range(slot.start, slot.stop)]  # fmt: skip
    if pairs:
        n = len(pairs)
        dst = tables.index([d for d, _ in pairs], "observed_parameters")
        src = tables.index([s for _, s in pairs], "observed_parameter_places")
        statement = Statement(sp.Indexed(_OUT, dst), sp.Indexed(_P, src))
        blocks.append(Block("parameters (inputs and outputs no function writes)", (statement,), n if n > 1 else 0))
    tail = array_observe(flat)
    composer = _Composer(groups, lambda h: False)
    emitted = [(g, {"out": g.out_starts, "v": g.out_starts}) for g in groups]
    all_sums = set(range(len(flat.reductions)))
    stored = {q for q, (_, r) in enumerate(flat.reductions) if not r.shape}
    loads = _Loads(flat, _V)
    blocks += _sequence(flat, groups, order, emitted, all_sums, stored, composer, tables, loads)
    blocks += loads(tail.roots) + tail.blocks
    return KernelFunction(
        "observe", ("t", "y", "p", "out"),
        "Write every input, output and der (layout: OBSERVED) at ``(t, y)`` into ``out``.",
        tuple(blocks), n_scratch,
    )  # fmt: skip


class _GroupSums:
    """The sums over whole arrays that derivative loops read (``d/dt v = ... + 0.2 mean``):
    each is a column of the Jacobian's low-rank part (``lower_lowrank.LowRank``).

    ``jac_values`` and ``lowrank_values`` compute them into ``v`` first (their values
    may enter the entries: ``d(m x)/dx = m``); ``u_loops`` writes
    ``U[row, k] = d(der)/d(sum k)``, one loop per derivative group.  A sum whose summand
    reads signals of instance loops (the lamp-weighted mean) runs after the loops that
    write them, into ``v`` (``order``: the dataflow order of the groups and sums); its
    ``V`` (``lower_lowrank.weight_code``) reads those signals from ``v`` and reaches the
    instances' states through their gradients (a plain sum of instance signals: a loop
    over its terms, ``_SumChain.v_loops``).
    """

    def __init__(self, flat: FlatModel, groups: tuple[Group, ...], composer: _Composer, sums: dict[int, int],
                 lowrank, order: list[Unit]) -> None:  # noqa: ANN001  # fmt: skip
        self.flat, self.groups, self.composer, self.sums, self.lowrank = flat, groups, composer, sums, lowrank
        self.order = order
        reductions = [r for _, r in flat.reductions]
        self.read: list[int] = []  # reductions read by derivative loops, in their order
        for g in groups:
            if g.state_starts is None:
                continue
            for source, starts, _ in composer.of(g)[1]:
                if source != "v" or starts[0] not in sums:
                    continue
                for q in sorted({sums[s] for s in starts}):
                    r = reductions[q]
                    lowrank.column(r)  # (NoJacobian for a reduction it cannot derive)
                    if q not in self.read:
                        self.read.append(q)

    def values(self, tables: _Tables, readers: list[Block], signals: Iterable[int] = ()) -> tuple[list[Block], set[sp.Symbol]]:
        """The loops of the sums that ``readers`` read, each stored in ``v`` where they read it,
        after the loops over instances whose signals they read (and the groups ``signals``);
        and the signals those loops wrote into ``v``."""
        read = {x.indices[0] for b in readers for st in b.statements for x in st.expr.atoms(sp.Indexed) if x.base == _V}
        wanted = {q for place, q in self.sums.items() if place in read and q in self.read}
        needed = self._writers(wanted, set(signals))
        order = [(kind, k) for kind, k in self.order if (kind == "r" and k in wanted) or (kind == "g" and k in needed)]
        emitted = [(g, {"v": g.out_starts}) for k, g in enumerate(self.groups) if k in needed]
        blocks = _sequence(self.flat, self.groups, order, emitted, wanted, wanted, self.composer, tables, _Loads(self.flat, _V))
        return blocks, {s for g, _ in emitted for a in g.assignments for s in a.symbols}

    def _writers(self, wanted: set[int], needed: set[int]) -> set[int]:
        """The groups whose signals the sums in ``wanted`` and the groups in ``needed`` read
        (through ``v``), and what those read (``wanted`` grows by the sums they read); their
        indices in ``groups``.  A plain sum of signals reads its terms from ``v``."""
        reductions = [r for _, r in self.flat.reductions]
        symbol_writer = {s: k for k, g in enumerate(self.groups) for a in g.assignments for s in a.symbols}
        writer = {start: k for k, g in enumerate(self.groups) for start in g.out_starts}
        stack = [("r", q) for q in wanted] + [("g", k) for k in needed]
        while stack:
            kind, k = stack.pop()
            if kind == "r":
                found = {("g", symbol_writer[s]) for seg in reductions[k].segments for s in seg.expr.free_symbols
                         if s in symbol_writer}  # fmt: skip
            else:
                g = self.groups[k]
                places = [("v", op.starts) for op in g.operands] if plain_sum(g) else self.composer.of(g)[1]
                found = {("r", self.sums[p[1][0]]) if p[1][0] in self.sums else ("g", writer[p[1][0]])
                         for p in places if p[0] == "v" and (p[1][0] in self.sums or p[1][0] in writer)}  # fmt: skip
            for unit in found:
                seen = wanted if unit[0] == "r" else needed
                if unit[1] not in seen:
                    seen.add(unit[1])
                    stack.append(unit)
        return needed

    def u_loops(self, tables: _Tables, clean: Callable[[sp.Basic], sp.Basic]) -> list[Block]:
        """``U[row, k] = d(der)/d(sum k)`` for every derivative loop that reads sum ``k``."""
        reductions = [r for _, r in self.flat.reductions]
        names = _Names(self.flat)
        n = self.lowrank.n_states
        blocks = []
        for g in self.groups:
            if g.state_starts is None:
                continue
            exprs, places = self.composer.of(g)
            read = [(place, symbols[0]) for place, (symbols, _) in places.items() if place[0] == "v" and place[1][0] in self.sums]
            if not read:
                continue
            loop = _Loop(g.name, g.n, f"{_title(self.flat, g)}\n  d(der)/d(sum)", names)
            exprs = loop.add(exprs, places)
            renamed = loop.add(tuple(symbol for _, symbol in read), {place: places[place] for place, _ in read})
            for e, expr in enumerate(exprs):
                for ((_, starts, _), _), symbol in zip(read, renamed):
                    value = clean(sp.diff(expr, symbol))
                    if value == 0:
                        continue
                    columns = [self.lowrank.column(reductions[self.sums[s]]) - n for s in starts]
                    row = tables.index([s + e for s in g.state_starts], f"{g.name}_rows")
                    column = tables.index(columns, f"{g.name}_sums")
                    label = f"d(d/dt {_state_label(self.flat, g.state_starts[0] + e)})/d(sum {columns[0]})"
                    loop.outputs.append((value, [_U[row, column]], label + (" (i = 0)" if g.n > 1 else "")))
            if loop.outputs:
                blocks.append(loop.block(tables, "v"))
        return blocks


def _state_label(flat: FlatModel, index: int) -> str:
    """The state at ``index`` of ``y``, for comments."""
    for slot in flat.states:
        if slot.start <= index < slot.stop:
            return str(slot.ref) + (f"[{index - slot.start}]" if len(slot.symbols) > 1 else "")
    return f"y[{index}]"


def _group_reads(defs, roots: list[sp.Basic], groups: tuple[Group, ...]) -> set[int]:  # noqa: ANN001
    """The groups (indices) that write the signals ``roots`` read, directly or through other element signals."""
    symbol_writer = {s: k for k, g in enumerate(groups) for a in g.assignments for s in a.symbols}
    return {symbol_writer[s] for s in defs.closure(roots, set(symbol_writer)) if s in symbol_writer}


def _unrolled_reads(flat: FlatModel, defs, roots: list[sp.Basic], done: set[sp.Symbol],  # noqa: ANN001
                    available: set[sp.Symbol] = frozenset()) -> list[Block]:  # fmt: skip
    """What array loops' Jacobian entries read of element code: its signals unrolled
    (few; those in ``available`` loaded from ``v``, where loops over instances wrote them),
    the reductions they read as loops (those in ``done`` are computed already), then the
    states and parameters the loops read."""
    places, temporaries = Places(flat), Temporaries("s")
    loads = _Loads(flat, None)
    loads.place.update({s: place for s, place in _Loads(flat, _V).place.items() if s in available})
    blocks: list[Block] = []
    for symbol in defs.closure(roots, available):
        if symbol in available:
            continue  # (loaded where it is read)
        if symbol in defs.reduction:
            if symbol not in done:
                code = reduction_blocks(flat, defs.reduction[symbol], places, temporaries)
                blocks += loads(_roots(code)) + code
            continue
        a, index = defs.origin[symbol]
        blocks += loads([defs.expr[symbol]])
        statement = Statement(symbol, defs.expr[symbol], f"{a.ref} ({relative_location(a.location, flat.source_root)})")
        blocks.append(Block(f"{a.function.system}: {a.function.name}", (statement,)))
    return blocks + loads(roots)


def _computed(blocks: list[Block]) -> set[sp.Symbol]:
    """The local symbols ``blocks`` assign (sums computed already)."""
    return {st.target for b in blocks for st in b.statements if isinstance(st.target, sp.Symbol)}


_U = sp.IndexedBase("U")
_LOWRANK_V = sp.IndexedBase("V")


def _jacobian(flat: FlatModel, groups, order, tables: _Tables, clean, sums, n_scratch: int):  # noqa: ANN001, ANN202
    """(jac_values, lowrank_values or None, the groups' sparsity, the array loops' blocks, the rank, why there is none)."""
    from .lower import NoJacobian, _Definitions, _gradient  # (lower imports this module)
    from .lower_lowrank import LowRank, weight_code

    doc = "Write the Jacobian entries d(dy[JAC_ROWS[k]])/dy[JAC_COLS[k]] into ``values[k]`` (entries with the same row and column add up)."
    defs = _Definitions(flat)
    lowrank = LowRank(flat, len(flat.derivatives))
    try:
        composer = _Composer(groups, lambda h: h.terms is None)
        group_sums = _GroupSums(flat, groups, composer, sums, lowrank, order)
        kernel_jac, sparsity = _jac_values(flat, groups, tables, clean)
        gradient = _gradient(flat, defs, lowrank)
        through = _SumChain(flat, groups, clean, gradient)
        array_jac = array_jacobian(flat, through.gradient, clean, len(sparsity), len(flat.derivatives))
        chain_blocks, jac_blocks = through.entries(array_jac, len(sparsity), sparsity, tables)
        lowrank_fn = None
        if lowrank:
            u_code = array_jacobian(flat, gradient, clean, 0, lowrank.n_states, lowrank=True)
            v_code = weight_code(flat, lowrank, through.gradient, clean)
    except NoJacobian as missing:
        fn = KernelFunction("jac_values", ("t", "y", "p", "values"), doc, (), raises=missing.note)
        return fn, None, [], [], 0, missing.note
    array_jac.blocks, array_jac.jac_blocks = through.shifted(array_jac.blocks), jac_blocks
    sparsity = list(sparsity) + through.pattern
    sum_values, _ = group_sums.values(tables, list(kernel_jac.blocks))
    blocks = sum_values + list(kernel_jac.blocks)
    if array_jac.blocks:
        blocks += _unrolled_reads(flat, defs, array_jac.roots, _computed(sum_values)) + array_jac.blocks + chain_blocks
    scratch = n_scratch if sum_values else kernel_jac.scratch
    fn = KernelFunction("jac_values", ("t", "y", "p", "values"), doc, tuple(blocks), scratch)
    if lowrank:
        u_loops = group_sums.u_loops(tables, clean)
        roots = u_code.roots + v_code.roots
        sum_values, available = group_sums.values(tables, u_loops, _group_reads(defs, roots, groups))
        v_terms = through.v_loops(v_code.through, tables)
        tail = _unrolled_reads(flat, defs, roots, _computed(sum_values), available) + u_code.blocks + v_code.blocks + v_terms
        lowrank_fn = KernelFunction("lowrank_values", ("t", "y", "p", "U", "V"), lowrank.doc(),
                                    tuple(sum_values + u_loops + tail), n_scratch if sum_values else 0)  # fmt: skip
    return fn, lowrank_fn, sparsity, array_jac.jac_blocks, len(lowrank), None


class _SumChain:
    """Jacobian entries of the array loops through a plain sum of instance signals
    (``heat = sum(o.outputs.power for o in oscillators)``) as loops over the terms.

    ``gradient`` gives such a sum a column of its own (a placeholder, negative), so the
    array loops write ``d(der cell)/d(sum)`` once per cell; ``entries`` then adds, after
    the array loops, ``d(der cell)/d(sum) * d(term)/d(state)`` for every term in a loop
    (the chain rule), and sets the placeholder entries to zero (their pattern becomes
    the cells' diagonal: a structural zero).  The chain's entries are numbered right
    after the groups' (``shifted`` moves the array loops' past them).
    """

    def __init__(self, flat: FlatModel, groups: tuple[Group, ...], clean: Callable[[sp.Basic], sp.Basic], gradient) -> None:  # noqa: ANN001
        self.flat, self.clean, self.base = flat, clean, gradient
        self.composer = _Composer(groups, lambda h: h.terms is None)
        writer = {start: (g, i) for g in groups for i, start in enumerate(g.out_starts)}
        self.sums: dict[sp.Symbol, tuple[Group, list[tuple[Group, list[int]]]]] = {}
        for g in groups:
            if not plain_sum(g) or g.operands[0].source != "v":
                continue
            by_writer: dict[str, tuple[Group, list[int]]] = {}
            for op in g.operands:
                h, instance = writer.get(op.starts[0], (None, None))
                if h is None or h.terms is not None or h.size != 1:
                    break
                by_writer.setdefault(h.name, (h, []))[1].append(instance)
            else:
                if all(source in ("y", "p", "c") for h, _ in by_writer.values() for source, _, _ in self.composer.of(h)[1]):
                    self.sums[g.assignments[0].symbols[0]] = (g, list(by_writer.values()))
        self.column = {symbol: -1 - k for k, symbol in enumerate(self.sums)}
        self.shift = 0
        self.pattern: list[tuple[int, int]] = []  # (row, col) of the chain's entries

    def gradient(self, symbol: sp.Symbol) -> dict[int, sp.Basic]:
        if symbol in self.column:
            return {self.column[symbol]: sp.S.One}
        return self.base(symbol)

    def entries(self, code, first: int, sparsity: list, tables: _Tables) -> tuple[list[Block], list]:  # noqa: ANN001
        """The chain's loops (appending their pattern to ``sparsity``) and the array loops'
        blocks with the placeholders' pattern on the diagonal."""
        by_column = {column: symbol for symbol, column in self.column.items()}
        names = _Names(self.flat)
        j = sp.Symbol(names.registry.unique("j"), integer=True)
        pending, blocks_out, position = [], [], first
        for b in code.jac_blocks:
            if b.col < 0:
                pending.append((b, position))
            position += b.n
        chain: list[Block] = []
        count = 0
        for b, at in pending:
            g, writers = self.sums[by_column[b.col]]
            cells = [sum(r * c for r, c in zip(b.row_strides, cell)) + b.row for cell in _cells(b.shape)]
            for h, instances, places, starts, e, ref, d in self._term_derivatives(writers):
                m = len(instances)
                loop = _Loop(f"{g.name}_{h.name}", m, f"{_title(self.flat, h)}\n  through {_title(self.flat, g)}", names)
                sub = {(src, tuple(st[u] for u in instances), sz): (syms, r)
                       for (src, st, sz), (syms, r) in places.items()}  # fmt: skip
                (d_loop,) = loop.add((d,), sub)
                start = len(sparsity) + count  # (numbered before the array loops' entries)
                index = start + (j * m if len(cells) > 1 else 0) + (_I if m > 1 else 0)
                factor = _VALUES[at + _SHIFT + (j if len(cells) > 1 else 0)]
                label = f"d(d/dt {_state_label(self.flat, cells[0])})/d({ref}) through {g.refs[0]} (i = 0)"
                loop.outputs.append((factor * d_loop, [_VALUES[index]], label))
                body = loop.block(tables, "v")
                nest = ((j.name, 0, len(cells)),) if len(cells) > 1 else ()
                nest += (("i", 0, m),) if m > 1 else ()
                chain.append(Block(body.title, body.statements, loops=nest))
                cols = [st + e for st in (starts[u] for u in instances)]
                count += len(cells) * m
                self.pattern += [(row, col) for row in cells for col in cols]
            zero = Statement(_VALUES[at + _SHIFT + (j if len(cells) > 1 else 0)], sp.Float(0.0), "used above: a structural zero")
            chain.append(Block(f"d(d/dt cells)/d({g.refs[0]})", (zero,), loops=((j.name, 0, len(cells)),) if len(cells) > 1 else ()))
        self.shift = count
        chain = [replace(b, statements=tuple(replace(st, target=st.target.xreplace({_SHIFT: count}), expr=st.expr.xreplace({_SHIFT: count}))
                                             for st in b.statements)) for b in chain]  # fmt: skip
        for b in code.jac_blocks:
            blocks_out.append(replace(b, col=b.row, col_strides=b.row_strides) if b.col < 0 else b)
        return chain, blocks_out

    def _term_derivatives(self, writers: list) -> Iterator[tuple]:
        """For every group ``h`` (its ``instances``) writing terms of a sum of instance
        signals, every state element ``e`` of a place it reads (``starts``, named ``ref``)
        that its term depends on: ``(h, instances, places, starts, e, ref, d(term)/d(state))``."""
        for h, instances in writers:
            (expr,), places = self.composer.of(h)
            for (source, starts, _), (symbols, ref) in places.items():
                if source != "y":
                    continue
                for e, symbol in enumerate(symbols):
                    d = self.clean(sp.diff(expr, symbol))
                    if d != 0:
                        yield h, instances, places, starts, e, ref, d

    def v_loops(self, through: list[tuple[int, int, sp.Symbol]], tables: _Tables) -> list[Block]:
        """``V[:, k] += c d(term)/d(state)`` for every term of a sum of instance signals that a
        summand of reduction ``k`` reads (``c`` = d(reduction k)/d(sum), computed before):
        a loop over the terms per writing group and state it reads."""
        by_column = {column: symbol for symbol, column in self.column.items()}
        names = _Names(self.flat)
        blocks = []
        for k, column, coefficient in through:
            g, writers = self.sums[by_column[column]]
            for h, instances, places, starts, e, ref, d in self._term_derivatives(writers):
                m = len(instances)
                loop = _Loop(f"{g.name}_{h.name}", m, f"{_title(self.flat, h)}\n  V[:, {k}] through {_title(self.flat, g)}", names)
                sub = {(src, tuple(st[u] for u in instances), sz): (syms, r) for (src, st, sz), (syms, r) in places.items()}
                (d_loop,) = loop.add((d,), sub)
                row = tables.index([starts[u] + e for u in instances], f"{g.name}_{h.name}_v{k}_rows")
                target = _LOWRANK_V[row, k]
                loop.outputs.append((target + coefficient * d_loop, [target], f"d(reduction {k})/d({ref}) through {g.refs[0]} (i = 0)"))
                blocks.append(loop.block(tables, "v"))
        return blocks

    def shifted(self, blocks: list[Block]) -> list[Block]:
        """The array loops' statements with their ``values`` places moved past the chain's
        (and the placeholders' comments naming the sum)."""
        if not self.shift:
            return blocks
        named = {f"/d(y[{column}])": f"/d({self.sums[symbol][0].refs[0]}), used below" for symbol, column in self.column.items()}

        def move(e: sp.Basic) -> sp.Basic:
            return e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == _VALUES,
                             lambda x: _VALUES[x.indices[0] + self.shift])  # fmt: skip

        def comment(text: str) -> str:
            for placeholder, name in named.items():
                text = text.replace(placeholder, name)
            return text

        return [replace(b, statements=tuple(replace(st, target=move(st.target), expr=move(st.expr), comment=comment(st.comment))
                                            for st in b.statements)) for b in blocks]  # fmt: skip


def _cells(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The cells of a box of ``shape``, C order."""
    import itertools

    return list(itertools.product(*(range(n) for n in shape)))
