"""Properties of the generated source: imports, exact floats, safe identifiers and
comments for hostile names, provenance, block comments, the analytic Jacobian and
``observe``.

Models are written to ``tmp_path`` and built through the public path
(``dyngen.modelfile.load_model`` + ``Simulation.compile()``, the same route the CLI
takes) into a cache folder under ``tmp_path``.
"""

from __future__ import annotations

import ast
import builtins
import io
import math
import os
import re
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

import numpy as np
import pytest

import dyngen
from dyngen.modelfile import load_model

_SCRIPT = Path(sys.executable).with_name("dyngen")
DYNGEN = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-c", "from dyngen.cli import main; main()"]

# NONLINEAR reads Driver.outputs.u in a connection that dynode runs before Driver's
# do_step; dyngen warns about that (tested elsewhere), which is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::dyngen.DyngenWarning")

ALLOWED_IMPORTS = {"math", "numpy", "numba"}
MODEL_FUNCTIONS = ("rhs", "jac_values", "jac", "observe")


class Built:
    """A model file built in this process: its simulation, build result and text."""

    def __init__(self, path: Path, cache: Path, kernels: bool = True) -> None:
        self.model_path = path
        self.model_text = path.read_text(encoding="utf-8")
        self.sim = load_model(path, cache_dir=str(cache))
        self.sim.kernels = kernels
        self.result = self.sim.compile()
        self.module = self.result.module
        self.path = Path(self.result.path)
        self.text = self.path.read_text(encoding="utf-8")
        self.tree = ast.parse(self.text)

    def function(self, name: str) -> ast.FunctionDef:
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return node
        raise AssertionError(f"no function {name} in the generated module")

    def function_source(self, name: str) -> str:
        return ast.get_source_segment(self.text, self.function(name))

    def state_loads(self, function: str = "rhs") -> dict[int, str]:
        """``name = y[i]`` statements of a function: index -> variable."""
        loads = {}
        for node in self.function(function).body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Subscript)
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "y"
                and isinstance(node.value.slice, ast.Constant)
            ):
                loads[node.value.slice.value] = node.targets[0].id
        return loads


@pytest.fixture
def build_model(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DYNGEN_CACHE_DIR", str(tmp_path / "env-cache"))
    cache = tmp_path / "cache"

    def build(text: str, filename: str = "model.py", kernels: bool = True) -> Built:
        path = tmp_path / filename
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return Built(path, cache, kernels)

    return build


def numeric_constants(node: ast.AST) -> list[float]:
    """Every float literal under ``node``, with unary minus folded in."""
    found = []
    negated = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.UnaryOp) and isinstance(sub.op, ast.USub) and isinstance(sub.operand, ast.Constant):
            if isinstance(sub.operand.value, float):
                found.append(-sub.operand.value)
                negated.add(id(sub.operand))
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, float) and id(sub) not in negated:
            found.append(sub.value)
    return found


def fd_jacobian(module, t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    n = len(y)
    fd = np.empty((n, n))
    for j in range(n):
        h = 1e-6 * max(1.0, abs(y[j]))
        up, down = y.copy(), y.copy()
        up[j] += h
        down[j] -= h
        a, b = np.empty(n), np.empty(n)
        module.rhs(t, up, p, a)
        module.rhs(t, down, p, b)
        fd[:, j] = (a - b) / (2 * h)
    return fd


# -- models -----------------------------------------------------------------------------

NONLINEAR = """\
import numpy as np

from dyngen import Simulation, System, where


class Arm(System):
    def __init__(self):
        super().__init__()
        self.states.q = np.array([0.3, -0.2, 0.5])
        self.states.w = 0.1
        self.inputs.u = 0.0
        self.inputs.gain = 1.7
        self.outputs.tip = np.zeros(2)
        self.outputs.e = 0.0

    def do_step(self, time):
        q0, q1, q2 = self.states.q
        w = self.states.w
        u = self.inputs.u
        g = self.inputs.gain
        a = np.tanh(q0 - q1) + np.arctan2(q1, q2 + 2.0)
        b = where(q0 > 0.1, q0**2, -q0 * 0.5)
        c = np.maximum(q2, 0.2 * q1) + np.abs(w - q0)
        self.ders.q = np.array([g * a - w, b + u * q2, np.sin(time) * c - q2])
        self.ders.w = -w * np.abs(q1) + u
        self.outputs.tip = np.array([np.cos(q0) + np.cos(q0 + q1), np.sin(q0) + np.sin(q0 + q1)])
        self.outputs.e = np.sum(self.states.q ** 2)


class Driver(System):
    def __init__(self):
        super().__init__()
        self.states.z = np.array([1.0, 0.5])
        self.inputs.tip = np.zeros(2)
        self.outputs.u = 0.0

    def do_step(self, time):
        z = self.states.z
        tip = self.inputs.tip
        self.ders.z = np.array([z[1] * tip[0], -np.tanh(z[0]) + tip[1]])
        self.outputs.u = where(z[0] > 0.0, np.exp(-z[0]), np.log(1.0 + z[1] ** 2))


def build():
    arm = Arm()
    drv = Driver()

    def feed(sys, t):
        sys.inputs.tip = arm.outputs.tip

    def drive(sys, t):
        sys.inputs.u = drv.outputs.u

    drv.add_pre_connection(feed)
    arm.add_pre_connection(drive, dependees=[])
    sim = Simulation()
    sim.add_system(arm)
    sim.add_system(drv)
    return sim
"""

FLOATS = [0.1, 1 / 3, 1e-300, 2.5e17, -0.7, 5e-324, 1.7976931348623157e308, 2 / 3, 1e22,
          123456789.12345679, 0.10000000149011612, 6.02214076e23, -1e-05, 2.0**-1074 * 3]  # fmt: skip

FLOAT_MODEL = f"""\
import numpy as np

from dyngen import Simulation, System

C = {FLOATS!r}


class F(System):
    def __init__(self):
        super().__init__()
        self.states.q = np.ones(len(C))
        self.c = list(C)
        self.inputs.p = np.array(C)

    def do_step(self, time):
        q = self.states.q
        self.ders.q = np.array([self.c[i] * q[i] for i in range(len(C))])


def build():
    return F()
"""


ODD_KEYS = [
    "my state", "a\nimport os", "a-b", "a_b", "def", "t", "y", "np", "p", "dy", "J", "out",
    "math", "c0", "1x", "", "\u00e9 \u00b5", 'q"""uote', "back\\slash", "cr\rimport os", "ff\x0cx",
    "ls\u2028import os",
]  # fmt: skip

ODD_KEYS_MODEL = f"""\
from dyngen import Simulation, System

KEYS = {ODD_KEYS!r}


class Odd(System):
    def __init__(self):
        super().__init__()
        for i, key in enumerate(KEYS):
            self.states[key] = 1.0 + i
        self.inputs["k\\n# rate"] = 0.5
        self.outputs["sum-of\\nstates"] = 0.0

    def do_step(self, time):
        k = self.inputs["k\\n# rate"]
        total = 0.0
        for i, key in enumerate(KEYS):
            self.ders[key] = -(1.0 + 0.1 * i) * k * self.states[key]
            total = total + self.states[key]
        self.outputs["sum-of\\nstates"] = total


def build():
    return Odd()
"""


def odd_closed_form(t: float, n: int, k: float = 0.5) -> np.ndarray:
    return np.array([(1.0 + i) * math.exp(-(1.0 + 0.1 * i) * k * t) for i in range(n)])


ODD_NAMES_MODEL = '''\
import numpy as np

from dyngen import Simulation, System


class Decay(System):
    def __init__(self, rate, x0):
        super().__init__()
        self.inputs.rate = rate
        self.states.x = x0

    def do_step(self, time):
        self.ders.x = -self.inputs.rate * self.states.x


# A class name no class statement could write.
Weird = type("Weird Class\\nimport os\\n# \\"\\"\\"", (Decay,), {})


class Holder(System):
    """A parent whose subsystems are found through odd attribute names."""

    def __init__(self):
        super().__init__()
        self.states.h = 1.0
        self.parts = {"x\\nimport sys": Decay(0.3, 2.0)}
        self.add_subsystem(self.parts["x\\nimport sys"])

    def do_step(self, time):
        self.ders.h = -self.states.h


def build():
    a = Weird(1.0, 1.0)
    b = Decay(2.0, 1.0)
    b.name = "sys\\nimport sys\\r#"
    c = Decay(0.5, 3.0)
    c.name = "a-b"
    d = Decay(0.25, 4.0)
    d.name = "a_b"
    sim = Simulation()
    for s in (a, b, c, d, Holder()):
        sim.add_system(s)
    return sim
'''


# -- imports --------------------------------------------------------------------------


@pytest.mark.parametrize("text", [NONLINEAR, FLOAT_MODEL, ODD_KEYS_MODEL, ODD_NAMES_MODEL], ids=["nonlinear", "floats", "keys", "names"])
def test_imports_only_math_numpy_numba(build_model, text: str) -> None:
    built = build_model(text)
    seen = set()
    for node in ast.walk(built.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                seen.add(alias.name.partition(".")[0])
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            seen.add(node.module.partition(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"__import__", "exec", "eval", "open", "compile"}
    assert seen <= ALLOWED_IMPORTS, seen
    assert {"math", "numpy", "numba"} & seen


# -- floats ---------------------------------------------------------------------------


def test_floats_round_trip_exactly(build_model) -> None:
    built = build_model(FLOAT_MODEL)
    rhs = built.function_source("rhs")
    constants = numeric_constants(built.function("rhs"))
    for value in FLOATS:
        assert repr(abs(value)) in rhs, (value, rhs)
        assert any(c == value and repr(c) == repr(value) for c in constants), value
    for text in re.findall(r"(?<![\w.])\d[\d.]*(?:e[+-]?\d+)?", rhs):
        if "." in text or "e" in text:
            assert float(text) == float(repr(float(text)))  # every literal is its own repr
    # runtime parameters and default values, too
    assert built.module.DEFAULT_PARAMETERS.tolist() == FLOATS
    np.testing.assert_array_equal(built.module.DEFAULT_PARAMETERS, np.array(FLOATS))
    # and the arithmetic is the same IEEE arithmetic as the Python do_step
    y = np.linspace(-2.0, 3.0, len(FLOATS))
    dy = np.empty(len(FLOATS))
    built.module.rhs(0.0, y, built.module.DEFAULT_PARAMETERS.copy(), dy)
    np.testing.assert_array_equal(dy, np.array([c * v for c, v in zip(FLOATS, y)]))


def test_constant_folding_that_leaves_the_float_range_is_an_error(build_model) -> None:
    # sympy folds x * 1e200 * 1e200 into 1e400 * x; rather than emit math.inf*x
    # (Python gives 1e100 at x = 1e-300) the build says so.
    with pytest.raises(dyngen.CodegenError, match="overflows a float64"):
        build_model(
        """\
        from dyngen import System


        class F(System):
            def __init__(self):
                super().__init__()
                self.states.x = 1e-300

            def do_step(self, time):
                self.ders.x = self.states.x * 1e200 * 1e200


        def build():
            return F()
        """
        )


@pytest.mark.parametrize(
    "expression, x, expected",
    [
        pytest.param("np.log1p(x)", 1e-20, np.log1p(1e-20), id="log1p"),
        pytest.param("np.expm1(x)", 1e-12, np.expm1(1e-12), id="expm1"),
        pytest.param("np.hypot(x, w)", 1e200, np.hypot(1e200, 1e200), id="hypot"),
    ],
)
def test_precision_functions_keep_their_precision(build_model, expression: str, x: float, expected: float) -> None:
    built = build_model(
        f"""\
        import numpy as np

        from dyngen import System


        class F(System):
            def __init__(self):
                super().__init__()
                self.states.x = {x!r}
                self.states.w = {x!r}

            def do_step(self, time):
                x = self.states.x
                w = self.states.w
                self.ders.x = {expression}
                self.ders.w = 0.0 * w


        def build():
            return F()
        """
    )
    dy = np.empty(2)
    built.module.rhs(0.0, np.array([x, x]), built.module.DEFAULT_PARAMETERS.copy(), dy)
    assert dy[0] == pytest.approx(expected, rel=1e-12, abs=0.0)


# -- hostile names ----------------------------------------------------------------------


def assert_safe_module(built: Built, forbidden_starts=("import os", "import sys", "#\"\"\"")) -> None:
    """Parses, no user text escaped its comment/string, names are valid and unique."""
    raw = built.path.read_bytes().decode("utf-8")
    assert "\r" not in raw and "\x0c" not in raw and "\u2028" not in raw and "\x85" not in raw
    for line in built.text.split("\n"):
        stripped = line.lstrip()
        assert not any(stripped.startswith(s) for s in forbidden_starts), repr(line)
    # the only top-level statements are imports of the allowed modules, assignments,
    # the docstring and the functions
    for node in built.tree.body:
        assert isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.FunctionDef, ast.Expr)), ast.dump(node)
        if isinstance(node, ast.Expr):
            assert isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    for name in ("rhs", "observe"):
        fn = built.function(name)
        args = {a.arg for a in fn.args.args}
        targets = [t.id for n in ast.walk(fn) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
        assert len(targets) == len(set(targets)), "a variable is assigned twice"
        assert not set(targets) & (args | {"np", "math", "njit", "numba"} | set(dir(builtins))), targets
        for target in targets:
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", target) and target.isascii(), target
    compile(built.text, str(built.path), "exec")


@pytest.mark.slow
def test_odd_container_keys(build_model) -> None:
    built = build_model(ODD_KEYS_MODEL)
    assert_safe_module(built)
    module = built.module
    n = len(ODD_KEYS)
    assert module.N_STATES == n
    assert list(module.STATES["Odd"]) == ODD_KEYS  # the real keys, as data
    loads = built.state_loads("rhs")
    assert sorted(loads) == list(range(n))
    assert len(set(loads.values())) == n  # every key has its own variable
    assert loads[ODD_KEYS.index("a-b")] != loads[ODD_KEYS.index("a_b")]
    for reserved in ("t", "y", "np", "p", "dy", "def", "math", "c0"):
        assert loads[ODD_KEYS.index(reserved)] != reserved
    # the keys appear in comments, escaped
    comments = [tok.string for tok in tokenize.generate_tokens(io.StringIO(built.text).readline) if tok.type == tokenize.COMMENT]
    assert any("a\\nimport os" in c for c in comments)
    assert any("cr\\rimport os" in c for c in comments)
    assert any("ls\\u2028import os" in c for c in comments)

    # simulate and compare with the closed form
    system = built.sim.systems[0]
    built.sim.simulate(2.0, 0.5, rtol=1e-10, atol=1e-12)
    final = np.concatenate([np.ravel(system.states[k]) for k in ODD_KEYS])
    np.testing.assert_allclose(final, odd_closed_form(2.0, n), rtol=1e-8)
    assert np.ravel(system.outputs["sum-of\nstates"]) == pytest.approx([final.sum()], rel=1e-12)
    observed = dict(zip(module.OBSERVED_NAMES, np.zeros(module.N_OBSERVED)))
    assert len(observed) == module.N_OBSERVED  # names are unique


@pytest.mark.slow
def test_odd_class_and_system_names(build_model) -> None:
    built = build_model(ODD_NAMES_MODEL)
    assert_safe_module(built)
    module = built.module
    paths = list(module.SYSTEMS)
    assert paths[0] == "Weird Class\nimport os\n# \"\"\""
    assert "sys\nimport sys\r#" in paths and "a-b" in paths and "a_b" in paths
    assert "Holder.parts['x\\nimport sys']" in paths
    unrolled = build_model(ODD_NAMES_MODEL, kernels=False)  # one variable per state
    assert_safe_module(unrolled)
    loads = unrolled.state_loads("rhs")
    assert len(set(loads.values())) == module.N_STATES
    i_ab, i_a_b = module.STATES["a-b"]["x"][0], module.STATES["a_b"]["x"][0]
    assert loads[i_ab] != loads[i_a_b]

    systems = {path: s for path, s in zip(["a", "b", "c", "d", "holder"], built.sim.systems)}
    built.sim.simulate(1.0, 0.5, rtol=1e-10, atol=1e-12)
    for key, rate, x0 in (("a", 1.0, 1.0), ("b", 2.0, 1.0), ("c", 0.5, 3.0), ("d", 0.25, 4.0)):
        assert systems[key].states.x == pytest.approx(x0 * math.exp(-rate), rel=1e-8)
    holder = systems["holder"]
    assert holder.states.h == pytest.approx(math.exp(-1.0), rel=1e-8)
    assert holder.subsystems[0].states.x == pytest.approx(2.0 * math.exp(-0.3), rel=1e-8)


@pytest.mark.slow
def test_model_file_name_is_escaped(tmp_path: Path) -> None:
    name = "m\nimport os\n#.py"
    (tmp_path / name).write_text(
        "from dyngen import System\n\n\nclass A(System):\n    def __init__(self):\n        super().__init__()\n"
        "        self.states.x = 1.0\n\n    def do_step(self, time):\n        self.ders.x = -self.states.x\n\n\n"
        "def build():\n    return A()\n"
    )
    env = dict(os.environ, DYNGEN_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([*DYNGEN, "show", name], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not any(line.startswith("import os") for line in result.stdout.split("\n"))


# -- provenance and comments -------------------------------------------------------------


def test_provenance_header(build_model) -> None:
    built = build_model(NONLINEAR, filename="arm_model.py")
    head = built.text.split("\n")[:5]
    assert head[0].startswith(f"# Generated by dyngen {dyngen.__version__}")
    assert "arm_model.py" in head[0]
    assert "# model: arm_model.py" in head
    assert f"# model hash: {built.result.digest}" in head
    assert built.module.MODEL_HASH == built.result.digest
    assert built.module.DYNGEN_VERSION == dyngen.__version__
    assert built.module.MODEL_NAME == "arm_model"


BLOCK = re.compile(r"^    # (?P<path>.+): (?P<function>\S+) \[(?P<kind>[a-z_-]+)\] \((?P<file>[^():]+):(?P<line>\d+)\)$")
STATEMENT = re.compile(r"^    (?P<target>[^=]+?) = .*  # (?P<label>.+) \((?P<file>[^():]+):(?P<line>\d+)\)$")


def test_block_comments_point_to_the_model(build_model) -> None:
    built = build_model(NONLINEAR, filename="arm_model.py")
    model_lines = built.model_text.split("\n")
    rhs = built.function_source("rhs").split("\n")
    blocks = [m for m in map(BLOCK.match, rhs) if m]
    assert {m["path"] for m in blocks} == {"Arm", "Driver"}
    assert {m["kind"] for m in blocks} == {"do_step", "pre-connection"}
    for m in blocks:
        assert m["path"] in built.module.SYSTEMS
        assert m["file"] == "arm_model.py"
        line = model_lines[int(m["line"]) - 1]
        if m["kind"] == "do_step":
            assert m["function"] == f"{m['path']}.do_step"
            assert line.strip() == "def do_step(self, time):"
        else:
            assert line.strip().startswith(f"def {m['function'].rsplit('.', 1)[-1]}(")
    statements = [m for m in map(STATEMENT.match, rhs) if m]
    assert statements
    for m in statements:
        assert m["file"] == "arm_model.py"
        line = model_lines[int(m["line"]) - 1]
        kind_key = re.match(r"\S+\.(states|ders|inputs|outputs)\.(\w+)", m["label"])
        assert kind_key, m["label"]
        kind, key = kind_key.groups()
        assert f".{kind}.{key} =" in line, (m["label"], line)


# -- Jacobian and observe ---------------------------------------------------------------


@pytest.mark.slow
def test_jacobian_matches_finite_differences(build_model) -> None:
    built = build_model(NONLINEAR)
    m = built.module
    n = m.N_STATES
    assert n == 6
    rng = np.random.default_rng(7)
    p = m.DEFAULT_PARAMETERS.copy()
    for _ in range(20):
        t = float(rng.uniform(0.0, 5.0))
        y = m.DEFAULT_STATES + rng.normal(0.0, 0.6, n)
        J = np.full((n, n), np.nan)
        m.jac(t, y, p, J)
        np.testing.assert_allclose(J, fd_jacobian(m, t, y, p), rtol=1e-6, atol=1e-6)
        # entries outside the sparsity pattern are zero
        mask = np.ones((n, n), dtype=bool)
        mask[m.JAC_ROWS, m.JAC_COLS] = False
        assert not J[mask].any()
    # the pattern knows that the Arm's q[2] does not depend on the Driver
    assert (2, 4) not in set(zip(m.JAC_ROWS.tolist(), m.JAC_COLS.tolist()))


def test_observe_returns_every_input_and_output(build_model) -> None:
    built = build_model(NONLINEAR)
    m = built.module
    expected_names = {
        "Arm.inputs.u", "Arm.inputs.gain", "Arm.outputs.tip[0]", "Arm.outputs.tip[1]", "Arm.outputs.e",
        "Driver.inputs.tip[0]", "Driver.inputs.tip[1]", "Driver.outputs.u",
    }  # fmt: skip
    for system in built.sim.systems:
        for kind in ("inputs", "outputs"):
            for key in getattr(system, kind):
                assert any(name.startswith(f"{type(system).__name__}.{kind}.{key}") for name in m.OBSERVED_NAMES)
    assert expected_names <= set(m.OBSERVED_NAMES)
    assert len(m.OBSERVED_NAMES) == m.N_OBSERVED == len(set(m.OBSERVED_NAMES))

    rng = np.random.default_rng(3)
    p = m.DEFAULT_PARAMETERS.copy()
    for _ in range(5):
        t = float(rng.uniform(0, 3))
        y = m.DEFAULT_STATES + rng.normal(0.0, 0.5, m.N_STATES)
        out = np.full(m.N_OBSERVED, np.nan)
        m.observe(t, y, p, out)
        got = dict(zip(m.OBSERVED_NAMES, out))
        q0, q1, q2, w, z0, z1 = y
        tip = [math.cos(q0) + math.cos(q0 + q1), math.sin(q0) + math.sin(q0 + q1)]
        u = math.exp(-z0) if z0 > 0 else math.log(1.0 + z1**2)
        assert got["Arm.inputs.gain"] == 1.7
        assert got["Arm.outputs.tip[0]"] == pytest.approx(tip[0], rel=1e-13)
        assert got["Arm.outputs.tip[1]"] == pytest.approx(tip[1], rel=1e-13, abs=1e-15)
        assert got["Driver.inputs.tip[0]"] == got["Arm.outputs.tip[0]"]
        assert got["Driver.inputs.tip[1]"] == got["Arm.outputs.tip[1]"]
        assert got["Arm.outputs.e"] == pytest.approx(q0**2 + q1**2 + q2**2, rel=1e-13)
        assert got["Driver.outputs.u"] == pytest.approx(u, rel=1e-13)
        assert got["Arm.inputs.u"] == got["Driver.outputs.u"]
        dy = np.empty(m.N_STATES)
        m.rhs(t, y, p, dy)
        ders = [got[f"Arm.ders.q[{i}]"] for i in range(3)] + [got["Arm.ders.w"], got["Driver.ders.z[0]"], got["Driver.ders.z[1]"]]
        np.testing.assert_allclose(ders, dy, rtol=1e-14, atol=1e-15)
