"""A generic component and a builder for random model trees (test model file).

Loaded like an example: as written for dyngen, and with the import swapped for
dynode (see ``dynode_compare.load_model_source``).  ``build(plan)`` turns a plain
data description (drawn by hypothesis in ``test_random_trees_vs_dynode.py``) into a
``Simulation``; the same plan gives the same model under either backend.

A node has 1-3 states (scalars or vectors), 0-3 scalar inputs and the outputs
``y`` (scalar, with feedthrough from the first input) and, when it has a vector
state, ``vec``.  Its dynamics are damped, with bounded nonlinear input terms:

    s' = -k s + sum_j w_j f(u_j) + a sin(omega t) [+ m sin(roll(s, 1)) for vectors]
"""

import numpy as np

from dyngen import Simulation, System, connect_signals, where

FUNCTIONS = {
    "lin": lambda u: u,
    "tanh": np.tanh,
    "sin": np.sin,
    "sat": lambda u: where(u > 1.0, 1.0, where(u < -1.0, -1.0, u)),
    "rat": lambda u: u / (1.0 + u * u),
}


class Node(System):
    def __init__(self, plan):
        super().__init__()
        self.plan = plan
        for j, sub in enumerate(plan["subs"]):
            child = Node(sub)
            setattr(self, f"sub{j}", child)
            self.add_subsystem(child)
        for spec in plan["inputs"]:
            self.inputs[spec["name"]] = spec["default"]
        for spec in plan["states"]:
            if spec["size"] == 1:
                self.states[spec["name"]] = spec["x0"][0]
                self.ders[spec["name"]] = 0.0
            else:
                self.states[spec["name"]] = np.array(spec["x0"])
                self.ders[spec["name"]] = np.zeros(spec["size"])
        self.outputs.y = 0.0
        if plan["vec"] is not None:
            self.outputs.vec = np.zeros(len(plan["states"][plan["vec"]]["x0"]))

    def do_step(self, t):
        plan = self.plan
        u = [self.inputs[spec["name"]] for spec in plan["inputs"]]
        total = 0.0
        for spec in plan["states"]:
            name = spec["name"]
            x = getattr(self.states, name) if spec["size"] == 1 else self.states[name]
            f = FUNCTIONS[spec["f"]]
            drive = spec["force"] * np.sin(spec["omega"] * t)
            for w, value in zip(spec["w"], u):
                drive = drive + w * f(value)
            der = -spec["k"] * x + drive
            if spec["size"] > 1:
                der = der + spec["mix"] * np.sin(np.roll(x, 1))
            self.ders[name] = der
            total = total + np.sum(x)
        out = plan["out"]
        y = out["c"] * np.tanh(total)
        if u:
            y = y + out["d"] * FUNCTIONS[out["f"]](u[0])
        self.outputs.y = y
        if plan["vec"] is not None:
            self.outputs.vec = np.tanh(self.states[plan["states"][plan["vec"]]["name"]])


def find(systems, path):
    node = systems[path[0]]
    for j in path[1:]:
        node = node.subsystems[j]
    return node


def gain_connection(source, key, reduce, index, gain, fname, target, target_key, via_host):
    """A closure that writes gain * f(source signal) into an input."""
    f = FUNCTIONS[fname]

    def connection(host, t):
        value = getattr(source, key)
        if reduce == "index":
            value = value[index]
        elif reduce == "sum":
            value = np.sum(value)
        elif reduce == "dot":
            value = value @ value
        (host if via_host else target).inputs[target_key] = gain * f(value)

    return connection


def build(plan):
    systems = [Node(node_plan) for node_plan in plan["systems"]]
    for c in plan["connections"]:
        host = find(systems, c["host"])
        source = getattr(find(systems, c["src"]), c["src_kind"])
        target = find(systems, c["dst"])
        if c["via"] == "signals":
            connection = connect_signals(source, c["src_key"], target.inputs, c["dst_key"])
        else:
            connection = gain_connection(
                source, c["src_key"], c["reduce"], c["index"], c["gain"], c["f"], target, c["dst_key"], c["via_host"]
            )
        if c["kind"] == "pre":
            host.add_pre_connection(connection)
        else:
            host.add_post_connection(connection)
    sim = Simulation()
    for system in systems:
        sim.add_system(system)
    return sim
