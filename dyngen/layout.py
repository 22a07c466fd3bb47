"""The state vector's layout: dynode's order, with the states of each group packed.

dynode lays ``y`` out system by system.  A grouped model computes the derivatives of
many systems in one loop (``groups``); read from dynode's layout, each loop would
gather its operands at a stride (``y[4*i + 1]``), which costs the vectorised loop
shuffles: about half of the right-hand side's time at 100 oscillator pairs, a fifth
of a DOPRI5 run.  ``pack_states`` gives the states of each derivative group consecutive places
instead, instance after instance (``y[100 + i]``), at the place of the group's first
state in dynode's order.  Every state keeps its own contiguous slice, and
``FlatModel.states`` keeps dynode's order, so the module's ``STATES`` table lists the
states as dynode would and the runtime can give observers dynode's vector.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import replace
from typing import Callable

from .groups import Group
from .ir import FlatModel, SignalRef, Slot


def pack_states(flat: FlatModel, groups: tuple[Group, ...]) -> tuple[FlatModel, tuple[Group, ...]]:
    """``flat`` and ``groups`` with the states of every derivative group of two or more
    instances placed consecutively (unchanged when they already are)."""
    by_start = {slot.start: slot for slot in flat.states if slot.symbols}
    family: dict[int, tuple[int, ...]] = {}  # a state's start -> its group's state starts
    for g in groups:
        if g.state_starts is not None and g.n > 1:
            family.update((start, g.state_starts) for start in g.state_starts)
    order: list[Slot] = []
    placed: set[SignalRef] = set()
    for slot in flat.states:
        if slot.ref in placed:  # (placed with its group)
            continue
        in_family = slot.symbols and slot.start in family
        members = [by_start[start] for start in family[slot.start]] if in_family else [slot]
        for member in members:
            if member.ref not in placed:
                placed.add(member.ref)
                order.append(member)
    place: dict[SignalRef, int] = {}
    position = 0
    for slot in order:
        place[slot.ref] = position
        position += len(slot.symbols)
    if all(place[slot.ref] == slot.start for slot in flat.states):
        return flat, groups
    old_starts = sorted(slot.start for slot in flat.states if slot.symbols)
    new_start = {slot.start: place[slot.ref] for slot in flat.states if slot.symbols}

    def moved_index(index: int) -> int:  # an element of an array: its array moved (lower_mixed)
        start = old_starts[bisect_right(old_starts, index) - 1]
        return new_start[start] + index - start

    def moved(values: tuple) -> tuple:
        result = list(values)
        for slot in flat.states:
            start = place[slot.ref]
            result[start:start + len(slot.symbols)] = values[slot.start:slot.stop]
        return tuple(result)

    packed = replace(
        flat,
        states=tuple(replace(slot, start=place[slot.ref]) for slot in flat.states),
        default_states=moved(flat.default_states),
        derivatives=moved(flat.derivatives),
    )
    return packed, tuple(_moved_group(g, moved_index) for g in groups)


def _moved_group(g: Group, new_start: Callable[[int], int]) -> Group:
    state_starts = None if g.state_starts is None else tuple(new_start(s) for s in g.state_starts)
    terms = None if g.terms is None else replace(g.terms, operands=_moved(g.terms.operands, new_start))
    return replace(g, operands=_moved(g.operands, new_start), state_starts=state_starts, terms=terms)


def _moved(operands: tuple, new_start: Callable[[int], int]) -> tuple:
    return tuple(replace(op, starts=tuple(new_start(s) for s in op.starts)) if op.source == "y" else op for op in operands)
