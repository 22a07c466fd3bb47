"""Correctness checks: emitted rhs vs the user's do_step on numpy arrays, emitted
jac_values vs central finite differences, and the tracer's error messages.

    python check.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

import emit
from gray_scott import Component, GrayScott, numeric_rhs
from lazyarray import TraceError

OUT = Path(__file__).parent / "generated"


def load(source: str, name: str):
    """Write the module to generated/<name>.py and import it."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Nonlocal(Component):
    """Exercises what Gray-Scott does not: periodic wrap via u[-1]/u[0], np.sum and
    np.mean reductions (dense Jacobian blocks), ufuncs, time, states of two lengths."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.states.a = np.linspace(0, 1, n)
        self.states.b = np.linspace(1, 2, n)
        self.states.c = np.zeros(3)
        self.params.w, self.params.g = 0.7, 0.3

    def do_step(self, t):
        a, b, c, p = self.states.a, self.states.b, self.states.c, self.params
        left = np.concatenate(([a[-1]], a[:-1]))
        right = np.concatenate((a[1:], [a[0]]))
        self.ders.a = -a + np.tanh(p.w * (left + right)) - p.g * (a - np.mean(a)) + np.sin(t) * b[0]
        self.ders.b = np.exp(-b) * np.concatenate(([0.0, 1.0], b[2:] * a[:-2])) + p.g * np.sum(a * b)
        self.ders.c = np.concatenate(([a[0] - c[0]], c[2:] - c[:1], [np.mean(b) ** 2]))


def dense_jacobian(m, t, y, p) -> np.ndarray:
    values = np.empty(m.JAC_NNZ)
    m.jac_values(t, y, p, values)
    J = np.zeros((y.size, y.size))
    np.add.at(J, (m.JAC_ROWS, m.JAC_COLS), values)  # a repeated (row, col) adds up
    return J


def fd_jacobian(m, t, y, p, h=1e-6) -> np.ndarray:
    J = np.empty((y.size, y.size))
    dp, dm = np.empty(y.size), np.empty(y.size)
    for j in range(y.size):
        yp, ym = y.copy(), y.copy()
        yp[j] += h
        ym[j] -= h
        m.rhs(t, yp, p, dp)
        m.rhs(t, ym, p, dm)
        J[:, j] = (dp - dm) / (2 * h)
    return J


def check_model(component, name: str, rng) -> dict:
    m = load(emit.build(component), name)
    p = np.array([getattr(component.params, k) for k in m.PARAMETERS])
    y = rng.uniform(0.1, 1.0, m.N_STATES)
    t = 0.37
    dy = np.empty(m.N_STATES)
    m.rhs(t, y, p, dy)
    ref = numeric_rhs(component, t, y, p)
    rhs_err = np.max(np.abs(dy - ref)) / np.max(np.abs(ref))
    J, Jfd = dense_jacobian(m, t, y, p), fd_jacobian(m, t, y, p)
    jac_err = np.max(np.abs(J - Jfd)) / np.max(np.abs(Jfd))
    outside = np.count_nonzero((np.abs(Jfd) > 1e-8 * np.abs(Jfd).max()) & (J == 0))
    return {"model": name, "n_states": m.N_STATES, "nnz": m.JAC_NNZ, "rhs_rel_err": rhs_err,
            "jac_rel_err_vs_fd": jac_err, "fd_nonzeros_outside_pattern": outside}


ERROR_CASES = {
    "fancy indexing u[[0, 2]]": lambda u: u[[0, 2]],
    "boolean mask u[u > 0]": lambda u: u[u > 0],
    "python if on an array": lambda u: 1.0 if u[1:] else 0.0,
    "strided slice u[::2]": lambda u: u[::2],
    "shape mismatch u[1:] + u": lambda u: u[1:] + u,
    "unsupported ufunc np.floor": lambda u: np.floor(u),
    "unsupported function np.roll": lambda u: np.roll(u, 1),
    "item assignment u[0] = 1": lambda u: u.__setitem__(0, 1.0),
    "for loop over an array": lambda u: [x for x in u],
    "constant numpy array of length n": lambda u: u * np.ones(len(u)),
    "index out of bounds u[10]": lambda u: u[10],
}


def check_errors() -> dict:
    from lazyarray import Base, Trace

    messages = {}
    Trace.current = Trace()
    for title, case in ERROR_CASES.items():
        try:
            case(Base("u", 10))
        except TraceError as e:
            messages[title] = str(e)
        else:
            messages[title] = "NO ERROR (bug)"
    Trace.current = None
    return messages


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    for result in (check_model(GrayScott(50), "gs50", rng), check_model(Nonlocal(20), "nonlocal20", rng)):
        print(result)
        assert result["rhs_rel_err"] < 1e-12 and result["jac_rel_err_vs_fd"] < 1e-6
        assert result["fd_nonzeros_outside_pattern"] == 0
    for title, message in check_errors().items():
        print(f"{title:40s} -> {message}")
        assert not message.startswith("NO ERROR")
