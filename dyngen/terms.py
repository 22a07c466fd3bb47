"""Sums of structurally equal terms: a closure per synapse, a variable number per instance.

A connection that adds up one closure per synapse (``total += synapse()``) traces to
``i_syn = w1 f(v_a) + w2 f(v_b) + ...``: the same term once per synapse, each with its
own source and weight, and a different number of terms for each neuron.  ``split``
finds such a family of terms in an assignment's expression so that ``groups`` can
group the assignments by the term's structure instead of their term count: the terms
of every instance become one loop over all terms (adding each into its instance's
signal), the rest one loop over the instances.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import sympy as sp

from .ir import Assignment, SignalRef

Shape = Callable[[sp.Basic, dict[sp.Symbol, str], dict], tuple[str, tuple[sp.Float, ...]]]


@dataclass(frozen=True)
class SumSplit:
    """``assignment``'s value is ``rest + sum(terms)``; every term has the text ``term_text``."""

    assignment: Assignment
    rest: sp.Basic
    rest_refs: list[SignalRef]  # the signals ``rest`` reads, in the function's read order
    terms: list[tuple[sp.Basic, list[SignalRef]]]  # each term and the signals it reads
    term_text: str


def split(
    a: Assignment,
    refs: list[SignalRef],
    symbols: dict[SignalRef, tuple[sp.Symbol, ...]],
    plain_source: Callable[[SignalRef], bool],
    shape: Shape,
) -> SumSplit | None:
    """The family of equal terms in ``a``'s (scalar) expression, if it has one of at least
    two terms, each reading only signals for which ``plain_source`` holds (states and
    parameters: no signal another group computes)."""
    if len(a.exprs) != 1 or not isinstance(a.exprs[0], sp.Add):
        return None
    owner = {s: ref for ref in refs for s in symbols[ref]}
    texts = []
    for arg in a.exprs[0].args:
        used = {owner[s] for s in arg.free_symbols if s in owner}
        local = [ref for ref in refs if ref in used]
        if not local or not all(plain_source(ref) for ref in local):
            texts.append((None, arg, local))
            continue
        names = {s: f"_r{k}_{j}" for k, ref in enumerate(local) for j, s in enumerate(symbols[ref])}
        texts.append((shape(arg, names, {})[0], arg, local))
    counts = Counter(text for text, _, _ in texts if text is not None)
    if not counts:
        return None
    family, count = min(counts.items(), key=lambda item: (-item[1], item[0]))
    if count < 2:
        return None
    terms = [(arg, local) for text, arg, local in texts if text == family]
    rest = sp.Add(*(arg for text, arg, _ in texts if text != family))
    used = {owner[s] for s in rest.free_symbols if s in owner}
    return SumSplit(a, rest, [ref for ref in refs if ref in used], terms, family)
