"""A 1-D Gray-Scott reaction-diffusion system: one component with two vector states.

    u' = Du lap(u) - u v^2 + F (1 - u),   v' = Dv lap(v) + u v^2 - (F + k) v

on n grid points with zero-flux ends.  The Laplacian is written with slices and
``np.concatenate``, as in plain numpy.  Vectors of 64 elements or more are traced
as whole arrays: dyngen emits one loop per stretch of the grid (the interior and
each end) instead of one line per element, so the build takes the same time for
200 points as for 100,000; see ``generated/reaction_diffusion.py``.  The feed rate
is a vector input (a parameter vector, read as ``F[i]`` in the loop),
``outputs.reaction`` (u v^2 per point) is an observed vector and ``outputs.mean_v``
the mean of v (a sum over the vector).
"""

import numpy as np

from dyngen import Simulation, System


class GrayScott(System):
    def __init__(self, n=200, Du=2e-5, Dv=1e-5, F=0.04, k=0.06):
        super().__init__()
        x = np.linspace(0.0, 1.0, n)
        bump = np.exp(-(((x - 0.5) / 0.05) ** 2))
        self.states.u = 1.0 - 0.5 * bump
        self.states.v = 0.25 * bump
        self.ders.u = np.zeros(n)
        self.ders.v = np.zeros(n)
        self.inputs.Du = Du
        self.inputs.Dv = Dv
        self.inputs.F = F * (1.0 + 0.1 * np.cos(2 * np.pi * x))  # a feed rate that varies in space
        self.inputs.k = k
        self.inputs.dx = 1.0 / (n - 1)
        self.outputs.reaction = np.zeros(n)
        self.outputs.mean_v = 0.0

    def do_step(self, time):
        u, v = self.states.u, self.states.v
        inv_dx2 = 1.0 / self.inputs.dx**2
        lap_u = np.concatenate(([u[1] - u[0]], u[2:] - 2 * u[1:-1] + u[:-2], [u[-2] - u[-1]])) * inv_dx2
        lap_v = np.concatenate(([v[1] - v[0]], v[2:] - 2 * v[1:-1] + v[:-2], [v[-2] - v[-1]])) * inv_dx2
        F = self.inputs.F
        reaction = u * v**2
        self.ders.u = self.inputs.Du * lap_u - reaction + F * (1.0 - u)
        self.ders.v = self.inputs.Dv * lap_v + reaction - (F + self.inputs.k) * v
        self.outputs.reaction = reaction
        self.outputs.mean_v = np.mean(v)  # a sum over the vector: one accumulation loop


def build(n=200):
    sim = Simulation()
    sim.add_system(GrayScott(n))
    return sim
