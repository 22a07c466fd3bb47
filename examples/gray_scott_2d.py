"""Gray-Scott reaction-diffusion on a periodic 2-D grid, written as plain numpy.

    u' = Du lap(u) - u v^2 + F (1 - u),   v' = Dv lap(v) + u v^2 - (F + k) v

u and v are 2-D states (n x m); the 5-point Laplacian is four ``np.roll`` calls along
both axes.  dyngen traces the grids as whole arrays: the generated module has one loop
nest per region of the grid that the rolls wrap differently (the interior, the edges,
the corners), the same lines for a 48 x 40 grid as for 1,000 x 1,000 (see
``generated/gray_scott_2d.py``), and the Jacobian as diagonals of the flattened index.
The feed rate is a 2-D input (a parameter grid, ``F[i, j]`` in the loops), the
diffusion constants are scalar inputs, ``outputs.v_mean`` is a whole-grid mean and
``outputs.v_rows`` the mean of each row (a reduction along an axis).
"""

import numpy as np

from dyngen import Simulation, System


class GrayScott2D(System):
    def __init__(self, n=48, m=40, Du=0.16, Dv=0.08, F=0.035, k=0.065):
        super().__init__()
        x = np.linspace(0.0, 1.0, n)[:, None]
        y = np.linspace(0.0, 1.0, m)[None, :]
        bump = np.exp(-40.0 * ((x - 0.5) ** 2 + (y - 0.45) ** 2))
        self.states.u = 1.0 - 0.5 * bump
        self.states.v = 0.25 * bump + 0.01 * np.cos(3.0 * x) * np.sin(2.0 * y)
        self.ders.u = np.zeros((n, m))
        self.ders.v = np.zeros((n, m))
        self.inputs.Du = Du
        self.inputs.Dv = Dv
        self.inputs.F = np.tile(F * (1.0 + 0.2 * (y - 0.5)), (n, 1))  # a feed rate that varies across the columns
        self.inputs.k = k
        self.outputs.v_mean = 0.0
        self.outputs.v_rows = np.zeros(n)

    def do_step(self, time):
        u, v = self.states.u, self.states.v
        lap_u = np.roll(u, 1, axis=0) + np.roll(u, -1, axis=0) + np.roll(u, 1, axis=1) + np.roll(u, -1, axis=1) - 4 * u
        lap_v = np.roll(v, 1, axis=0) + np.roll(v, -1, axis=0) + np.roll(v, 1, axis=1) + np.roll(v, -1, axis=1) - 4 * v
        F = self.inputs.F
        uvv = u * v * v
        self.ders.u = self.inputs.Du * lap_u - uvv + F * (1 - u)
        self.ders.v = self.inputs.Dv * lap_v + uvv - (F + self.inputs.k) * v
        self.outputs.v_mean = np.mean(v)
        self.outputs.v_rows = np.mean(v, axis=1)


def build(n=48, m=40):
    sim = Simulation()
    sim.add_system(GrayScott2D(n, m))
    return sim
