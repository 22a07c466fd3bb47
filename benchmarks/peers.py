"""Hand-written and JiTCODE versions of the models in ``bench_models.py``.

- ``HAND[model]``: a hand-written ``@njit`` right-hand side ``rhs(t, y, p, dy)`` (and,
  for the stiff models, ``jac(t, y, p, J)``), with ``initial(n)`` giving the state
  vector and parameter vector in the same layout dyngen and dynode use.
- ``scipy_ode_run``: a right-hand side through ``scipy.integrate.ode`` driven the
  dynode way: ``first_step=observer_dt`` and one ``integrate(t + dt)`` per interval.
- ``dopri5_run``: a compact, fully ``@njit`` Dormand-Prince 5(4) loop with Hairer's
  step-size control (DOPRI5 as in ``dopri5.f``, as scipy runs it: beta = 0.04,
  safety 0.9, step ratio within [0.2, 10], h_max = interval, first step = dt),
  restarted at every output interval exactly as scipy's ``integrate`` is.  The
  whole run is one call: the reference a compiled integrator is measured against.
- ``jitcode_model``: the same equations for JiTCODE (symengine expressions, C code).

The peers are compiled in-process (``cache=False``, so nothing is written into the
repository); ``run.py`` reports that compile time separately.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy.integrate import ode

import bench_models as bm

# --------------------------------------------------------------------------------------
# Hand-written right-hand sides (and Jacobians for the stiff models)
# --------------------------------------------------------------------------------------


@njit(cache=False)
def vdp_pairs_rhs(t, y, p, dy):
    """y = [x_l, y_l, x_f, y_f] per pair; p = [mu_l, mu_f] per pair."""
    for i in range(y.shape[0] // 4):
        b = 4 * i
        xl, yl, xf, yf = y[b], y[b + 1], y[b + 2], y[b + 3]
        dy[b] = yl
        dy[b + 1] = p[2 * i] * (1.0 - xl * xl) * yl - xl
        dy[b + 2] = yf
        dy[b + 3] = p[2 * i + 1] * (1.0 - xf * xf) * yf - xf + xl


def vdp_pairs_initial(n):
    y0 = np.array([v for pair in bm.vdp_initial(n) for xy in pair for v in xy], dtype=float)
    return y0, np.ones(2 * n)


K, C, A, W = bm.SPRING_K, bm.DAMPER_C, bm.PUSH_AMPLITUDE, bm.PUSH_OMEGA


@njit(cache=False)
def mass_chain_rhs(t, y, p, dy):
    """y = [x, v] per mass; p = the masses."""
    n = y.shape[0] // 2
    for i in range(n):
        x, v = y[2 * i], y[2 * i + 1]
        if i == 0:
            force = -K * x - C * v + A * math.sin(W * t)
        else:
            force = K * (y[2 * i - 2] - x) + C * (y[2 * i - 1] - v)
        if i + 1 < n:
            force += K * (y[2 * i + 2] - x) + C * (y[2 * i + 3] - v)
        dy[2 * i] = v
        dy[2 * i + 1] = force / p[i]


def mass_chain_initial(n):
    return np.zeros(2 * n), np.array(bm.chain_masses(n))


@njit(cache=False)
def robertson_rhs(t, y, p, dy):
    a, b, c = y[0], y[1], y[2]
    dy[0] = -p[0] * a + p[2] * b * c
    dy[1] = p[0] * a - p[2] * b * c - p[1] * b * b
    dy[2] = p[1] * b * b


@njit(cache=False)
def robertson_jac(t, y, p, J):
    b, c = y[1], y[2]
    J[0, 0] = -p[0]
    J[0, 1] = p[2] * c
    J[0, 2] = p[2] * b
    J[1, 0] = p[0]
    J[1, 1] = -p[2] * c - 2.0 * p[1] * b
    J[1, 2] = -p[2] * b
    J[2, 0] = 0.0
    J[2, 1] = 2.0 * p[1] * b
    J[2, 2] = 0.0


def robertson_initial(n=None):
    return np.array([1.0, 0.0, 0.0]), np.array([0.04, 3e7, 1e4])


@njit(cache=False)
def stiff_chain_rhs(t, y, p, dy):
    """x_i' = k_i (u_i - x_i) - x_i^3 / 2, u_0 = sin t, u_i = x_{i-1}; p = the rates k."""
    for i in range(y.shape[0]):
        u = math.sin(t) if i == 0 else y[i - 1]
        x = y[i]
        dy[i] = p[i] * (u - x) - 0.5 * x * x * x


@njit(cache=False)
def stiff_chain_jac(t, y, p, J):
    n = y.shape[0]
    for i in range(n):
        for j in range(n):
            J[i, j] = 0.0
        J[i, i] = -p[i] - 1.5 * y[i] * y[i]
        if i > 0:
            J[i, i - 1] = p[i]


def stiff_chain_initial(n):
    return np.zeros(n), np.array(bm.stiff_rates(n))


HAND = {
    "vdp_pairs": (vdp_pairs_rhs, None, vdp_pairs_initial),
    "mass_chain": (mass_chain_rhs, None, mass_chain_initial),
    "robertson": (robertson_rhs, robertson_jac, robertson_initial),
    "stiff_chain": (stiff_chain_rhs, stiff_chain_jac, stiff_chain_initial),
}


def python_rhs(rhs, p, n):
    """``f(t, y)`` for scipy: the compiled rhs writing into one reused array."""
    dy = np.zeros(n)

    def f(t, y):
        rhs(t, y, p, dy)
        return dy

    return f


def python_jac(jac, p, n):
    def j(t, y):
        J = np.empty((n, n))
        jac(t, y, p, J)
        return J

    return j


# --------------------------------------------------------------------------------------
# scipy's ode, driven the dynode way
# --------------------------------------------------------------------------------------


def scipy_ode_run(f, y0, t, dt, rtol, atol, out, method="dopri5", jac=None, **options):
    """dynode's loop: ``first_step=dt``, ``integrate(solver.t + dt)`` per interval.

    Writes the state after interval k into ``out[k + 1]`` (``out[0]`` = y0).
    """
    solver = ode(f, jac)
    solver.set_initial_value(y0, 0.0)
    solver.set_integrator(method, rtol=rtol, atol=atol, first_step=dt, **options)
    out[0] = y0
    for k in range(int(t / dt)):
        solver.integrate(solver.t + dt)
        if not solver.successful():
            raise RuntimeError(f"{method} failed at t = {solver.t}")
        out[k + 1] = solver.y
    return out


# --------------------------------------------------------------------------------------
# A compact, fully compiled DOPRI5 (Hairer's dopri5.f step control)
# --------------------------------------------------------------------------------------
_C2, _C3, _C4, _C5 = 0.2, 0.3, 0.8, 8.0 / 9.0
_A21 = 0.2
_A31, _A32 = 3.0 / 40.0, 9.0 / 40.0
_A41, _A42, _A43 = 44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0
_A51, _A52, _A53, _A54 = 19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0
_A61, _A62, _A63, _A64, _A65 = 9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0
_A71, _A73, _A74, _A75, _A76 = 35.0 / 384.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0
_E1, _E3, _E4, _E5, _E6, _E7 = (
    71.0 / 57600.0, -71.0 / 16695.0, 71.0 / 1920.0, -17253.0 / 339200.0, 22.0 / 525.0, -1.0 / 40.0,
)  # fmt: skip
_SAFE, _BETA, _FACC1, _FACC2 = 0.9, 0.04, 1.0 / 0.2, 1.0 / 10.0
_EXPO1 = 0.2 - _BETA * 0.75
_UROUND = 2.3e-16


@njit(cache=False)
def _dopri5_interval(rhs, t, y, t_end, p, h, rtol, atol, nsteps, k1, k2, k3, k4, k5, k6, y1, ysti, stats):
    """One scipy ``integrate(t_end)`` call of dopri5: returns (t, status)."""
    n = y.shape[0]
    h_max = t_end - t
    h = min(h, h_max)
    facold = 1e-4
    reject = False
    last = False
    rhs(t, y, p, k1)
    stats[0] += 1
    steps = 0
    while True:
        if steps > nsteps:
            return t, -2
        if 0.1 * abs(h) <= abs(t) * _UROUND:
            return t, -3
        if t + 1.01 * h - t_end > 0.0:
            h = t_end - t
            last = True
        steps += 1
        stats[1] += 1
        for i in range(n):
            y1[i] = y[i] + h * _A21 * k1[i]
        rhs(t + _C2 * h, y1, p, k2)
        for i in range(n):
            y1[i] = y[i] + h * (_A31 * k1[i] + _A32 * k2[i])
        rhs(t + _C3 * h, y1, p, k3)
        for i in range(n):
            y1[i] = y[i] + h * (_A41 * k1[i] + _A42 * k2[i] + _A43 * k3[i])
        rhs(t + _C4 * h, y1, p, k4)
        for i in range(n):
            y1[i] = y[i] + h * (_A51 * k1[i] + _A52 * k2[i] + _A53 * k3[i] + _A54 * k4[i])
        rhs(t + _C5 * h, y1, p, k5)
        for i in range(n):
            ysti[i] = y[i] + h * (_A61 * k1[i] + _A62 * k2[i] + _A63 * k3[i] + _A64 * k4[i] + _A65 * k5[i])
        tph = t + h
        rhs(tph, ysti, p, k6)
        for i in range(n):
            y1[i] = y[i] + h * (_A71 * k1[i] + _A73 * k3[i] + _A74 * k4[i] + _A75 * k5[i] + _A76 * k6[i])
        rhs(tph, y1, p, k2)  # k2 now holds f at the new point (first same as last)
        stats[0] += 6
        err = 0.0
        for i in range(n):
            e = h * (_E1 * k1[i] + _E3 * k3[i] + _E4 * k4[i] + _E5 * k5[i] + _E6 * k6[i] + _E7 * k2[i])
            sk = atol + rtol * max(abs(y[i]), abs(y1[i]))
            err += (e / sk) ** 2
        err = math.sqrt(err / n)
        fac11 = err**_EXPO1
        fac = fac11 / facold**_BETA
        fac = max(_FACC2, min(_FACC1, fac / _SAFE))
        h_new = h / fac
        if err <= 1.0:
            facold = max(err, 1e-4)
            for i in range(n):
                k1[i] = k2[i]
                y[i] = y1[i]
            t = tph
            if last:
                return t, 1
            if abs(h_new) > h_max:
                h_new = h_max
            if reject:
                h_new = min(abs(h_new), abs(h))
            reject = False
        else:
            h_new = h / min(_FACC1, fac11 / _SAFE)
            reject = True
            stats[2] += 1
            last = False
        h = h_new


@njit(cache=False)
def dopri5_run(rhs, y0, p, t, dt, rtol, atol, out, stats):
    """The whole dynode run in one call: ``int(t/dt)`` intervals, each a fresh DOPRI5
    call starting with h = dt; states into ``out`` (``out[0]`` = y0).

    ``stats`` counts [rhs evaluations, steps, rejected steps]; returns the status.
    """
    n = y0.shape[0]
    y = y0.copy()
    k1, k2, k3, k4, k5, k6 = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    y1, ysti = np.empty(n), np.empty(n)
    out[0, :] = y
    time = 0.0
    for k in range(int(t / dt)):
        time, status = _dopri5_interval(
            rhs, time, y, time + dt, p, dt, rtol, atol, 500, k1, k2, k3, k4, k5, k6, y1, ysti, stats
        )  # fmt: skip
        if status != 1:
            return status
        out[k + 1, :] = y
    return 1


# --------------------------------------------------------------------------------------
# JiTCODE
# --------------------------------------------------------------------------------------


def jitcode_available() -> str | None:
    """None when JiTCODE can be used, else why not."""
    try:
        import jitcode  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"jitcode not importable: {exc}"
    return None


def jitcode_equations(model: str, n: int | None):
    """The model's right-hand side as a list of symengine expressions in y(i), t."""
    import symengine
    from jitcode import t, y

    if model == "vdp_pairs":
        f = []
        for i in range(n):
            b = 4 * i
            f += [
                y(b + 1),
                1.0 * (1 - y(b) ** 2) * y(b + 1) - y(b),
                y(b + 3),
                1.0 * (1 - y(b + 2) ** 2) * y(b + 3) - y(b + 2) + y(b),
            ]
        return f
    if model == "mass_chain":
        masses = bm.chain_masses(n)
        f = []
        for i in range(n):
            x, v = y(2 * i), y(2 * i + 1)
            if i == 0:
                force = -K * x - C * v + A * symengine.sin(W * t)
            else:
                force = K * (y(2 * i - 2) - x) + C * (y(2 * i - 1) - v)
            if i + 1 < n:
                force = force + K * (y(2 * i + 2) - x) + C * (y(2 * i + 3) - v)
            f += [v, force / masses[i]]
        return f
    if model == "vdp_ring":
        f = []
        for i in range(n):
            x, v, left = y(2 * i), y(2 * i + 1), y(2 * ((i - 1) % n))
            mu = 1.0 + 0.1 * (i % 3)
            f += [v, mu * (1 - x**2) * v - x + bm.RING_COUPLING * (left - x)]
        return f
    if model == "robertson":
        k1, k2, k3 = 0.04, 3e7, 1e4
        return [
            -k1 * y(0) + k3 * y(1) * y(2),
            k1 * y(0) - k3 * y(1) * y(2) - k2 * y(1) ** 2,
            k2 * y(1) ** 2,
        ]
    if model == "stiff_chain":
        rates = bm.stiff_rates(n)
        return [
            rates[i] * ((symengine.sin(t) if i == 0 else y(i - 1)) - y(i)) - 0.5 * y(i) ** 3
            for i in range(n)
        ]
    raise KeyError(model)


def jitcode_model(model: str, n: int | None, with_jacobian: bool):
    """A compiled JiTCODE object for the model (C code built with the system compiler)."""
    from jitcode import jitcode

    f = jitcode_equations(model, n)
    ode_ = jitcode(f, n=len(f), wants_jacobian=with_jacobian, verbose=False)
    ode_.compile_C()
    return ode_


def jitcode_run(ode_, y0, t, dt, rtol, atol, out, method="dopri5", **options):
    """JiTCODE's own integrator set-up, then dynode's loop (``integrate(t + dt)``)."""
    ode_.set_integrator(method, rtol=rtol, atol=atol, **options)
    ode_.set_initial_value(y0, 0.0)
    out[0] = y0
    for k in range(int(t / dt)):
        out[k + 1] = ode_.integrate(ode_.t + dt)
    return out


@njit(cache=False)
def vdp_ring_rhs(t, y, p, dy):
    """y = [x, y] per oscillator; p = [mu, k] per oscillator (dyngen's layout)."""
    n = y.shape[0] // 2
    for i in range(n):
        x, v = y[2 * i], y[2 * i + 1]
        left = y[2 * i - 2] if i > 0 else y[2 * n - 2]
        dy[2 * i] = v
        dy[2 * i + 1] = p[2 * i] * (1.0 - x * x) * v - x + p[2 * i + 1] * (left - x)


def vdp_ring_initial(n):
    y0 = np.array([v for xy in bm.ring_initial(n) for v in xy], dtype=float)
    p = np.array([v for i in range(n) for v in (1.0 + 0.1 * (i % 3), bm.RING_COUPLING)])
    return y0, p
