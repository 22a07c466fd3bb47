"""render: Kernel -> ModuleSource, through the jinja2 templates in ``templates/``."""

from __future__ import annotations

import base64
import hashlib
import math
import zlib
from functools import lru_cache
from pathlib import Path

import jinja2

import numpy as np

from .cache import cache_dir
from .flatten import relative_location
from .ir import ATTRIBUTE_KIND, Kernel, ModuleSource, Slot, in_place_order
from .naming import comment_text
from .shared import template_dir
from .printer import NumbaPrinter, float_text, print_expr
from .template_cache import TemplateCodeCache
from .version import __version__
from .write import trailer




@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one jinja2 environment (strict, whitespace-controlled)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        bytecode_cache=TemplateCodeCache(Path(__file__).parent / "__pycache__", cache_dir() / "templates"),
    )
    env.filters["pyrepr"] = repr
    env.filters["comment"] = comment_text
    return env


# dyngen's code that cannot change a generated module's text: the runtime, the CLI and its
# helpers (model files, --set, result files, plots, run progress, sweeps, optional imports),
# the cache (and numba's), progress reports, and the dynode import paths of the runtime's classes
_NOT_GENERATOR = (
    "runtime", "cli.py", "modelfile.py", "overrides.py", "outputs.py", "plots.py", "run_progress.py", "sweeps.py",
    "extras.py", "cache.py", "template_cache.py", "numba_cache.py", "progress.py", "simulation.py", "recorder.py",
)  # fmt: skip


@lru_cache(maxsize=1)
def generator_digest() -> str:
    """A hash of every template and of dyngen's code that turns a model into a module
    (all of it but the runtime, the CLI, the cache and progress reports): a module
    cached by another generator is written again, not reused."""
    package = Path(__file__).resolve().parent
    files = [(p, p.relative_to(package).as_posix()) for p in package.rglob("*.py")]
    files = [(p, name) for p, name in files if name.split("/")[0] not in _NOT_GENERATOR]
    files += [(p, f"templates/{p.name}") for p in Path(template_dir()).glob("*.j2")]
    hasher = hashlib.sha256()
    for path, name in sorted(files, key=lambda item: item[1]):
        hasher.update(name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return hasher.hexdigest()


def module_digest(model_digest: str, kernels: bool = True, standalone: bool = False) -> str:
    """The hash a generated module is known by: the model's, the generator's and the form."""
    form = ("kernels" if kernels else "unrolled") + (":standalone" if standalone else "")
    return hashlib.sha256(f"{model_digest}:{generator_digest()}:{form}".encode("ascii")).hexdigest()


def _layout(name: str, slots: tuple[Slot, ...]) -> dict:
    """A layout table: states (and attributes traced as parameters) by bare key;
    parameters and observed by "kind.key".

    ``names`` are the entries of the names tuple as source: one quoted name per
    element (in the vector's order), or one generator line for an array in array
    form; with an array of more than ``EMBED_MAX`` elements, the ``(name, count)``
    runs of an ``ElementNames`` (``lazy``), which makes names when asked for.  The
    table keeps the slots' order (dynode's, also where states are packed).
    """
    systems: dict[str, list] = {}
    for slot in slots:
        bare = name == "STATES" or slot.ref.kind == ATTRIBUTE_KIND  # an attribute: "path.attribute"
        key = slot.ref.key if bare else f"{slot.ref.kind}.{slot.ref.key}"
        systems.setdefault(slot.ref.system, []).append((key, slot.start, slot.stop, slot.shape))
    runs: list[tuple[str, int]] = []  # (name, n): n == 0 names one element, else name[0] .. name[n - 1]
    for slot in in_place_order(slots):
        if slot.array:
            runs.append((str(slot.ref), slot.stop - slot.start))
            continue
        for i in range(len(slot.symbols)):
            runs.append((f"{slot.ref}[{i}]" if len(slot.symbols) > 1 else str(slot.ref), 0))
    lazy = any(slot.array and slot.stop - slot.start > EMBED_MAX for slot in slots)
    if lazy:  # an ElementNames of the runs
        names = [f"({label!r}, {n})" for label, n in runs]
    else:
        names = [f'*({label!r} + f"[{{k}}]" for k in range({n}))' if n else repr(label) for label, n in runs]
    return {"name": name, "systems": list(systems.items()), "names": names, "lazy": lazy}


EMBED_MAX = 100_000  # an array of more values is not embedded in DEFAULT_STATES/PARAMETERS (NaN there)


def not_embedded(slots: tuple[Slot, ...]) -> list[str]:
    """The arrays whose values ``float_vector`` leaves out (NaN): more than ``EMBED_MAX``."""
    return [str(slot.ref) for slot in in_place_order(slots) if slot.array and slot.stop - slot.start > EMBED_MAX]


def float_vector(values: tuple[float, ...], slots: tuple[Slot, ...]) -> str:
    """A float64 vector as source: a literal, with arrays in array form as runs of equal
    values or exact base64 data (arrays of more than ``EMBED_MAX`` values as NaN: see
    ``not_embedded``)."""
    if not any(slot.array for slot in slots):
        return f"np.array([{', '.join(float_text(v) for v in values)}], dtype=np.float64)"
    parts: list[str] = []  # each part ends with its comma (a comment may follow it)
    pending: list[float] = []

    def flush() -> None:
        if pending:
            parts.append(f"np.array([{', '.join(float_text(v) for v in pending)}]),")
            pending.clear()

    for slot in in_place_order(slots):
        chunk = values[slot.start:slot.stop]
        if not slot.array:
            pending.extend(chunk)
            continue
        flush()
        label = comment_text(str(slot.ref))
        if len(chunk) > EMBED_MAX:
            parts.append(f"np.full({len(chunk)}, math.nan),  # {label}: not embedded (NOT_EMBEDDED)")
            continue
        runs: list[list] = []
        for v in chunk:
            if runs and (runs[-1][0] == v or (math.isnan(v) and math.isnan(runs[-1][0]))):
                runs[-1][1] += 1
            else:
                runs.append([v, 1])
        if len(runs) == 1:
            parts.append(f"np.full({len(chunk)}, {float_text(chunk[0])}),  # {label}")
        elif len(runs) <= len(chunk) // 8:
            parts.append(
                f"np.repeat(np.array([{', '.join(float_text(v) for v, _ in runs)}]), "
                f"np.array([{', '.join(str(n) for _, n in runs)}])),  # {label}"
            )
        else:  # exact bytes: 100,000 float literals would be slow to import
            data = base64.b64encode(np.asarray(chunk, dtype="<f8").tobytes()).decode("ascii")
            lines = [f'"{data[k:k + 96]}"' for k in range(0, len(data), 96)]
            parts.append(
                f"np.frombuffer(base64.b64decode(  # {label}: {len(chunk)} float64, little-endian\n        "
                + "\n        ".join(lines) + "\n    ), dtype=\"<f8\"),"
            )
    flush()
    return "np.concatenate((\n    " + "\n    ".join(parts) + "\n)).astype(np.float64)"


def jac_pattern(kernel: Kernel) -> tuple[str, str]:
    """JAC_ROWS and JAC_COLS as source: the element entries (without array blocks) or the
    element entries (JAC_ELEMENT_ROWS/COLS) followed by the cells of JAC_BLOCKS."""
    if kernel.jac_blocks:
        return "_block_pattern(JAC_ELEMENT_ROWS, JAC_BLOCKS, 2)", "_block_pattern(JAC_ELEMENT_COLS, JAC_BLOCKS, 3)"
    return int_array([i for i, _ in kernel.jac_sparsity]), int_array([j for _, j in kernel.jac_sparsity])


def jac_block_table(kernel: Kernel) -> str | None:
    """JAC_BLOCKS as source: one row per array block of the Jacobian (``jac`` scatters by it:
    numba cannot cache a function reading a global array above 1 MB, as JAC_ROWS can be)."""
    if not kernel.jac_blocks:
        return None
    axes = max(len(b.shape) for b in kernel.jac_blocks)
    rows, first = [], len(kernel.jac_sparsity)
    for b in kernel.jac_blocks:
        pad = axes - len(b.shape)  # leading axes of extent 1
        cells = [(1, 0, 0)] * pad + list(zip(b.shape, b.row_strides, b.col_strides))
        rows.append([first, b.n, b.row, b.col] + [v for axis in cells for v in axis])
        first += b.n
    return "np.array([\n    [" + "],\n    [".join(", ".join(map(str, r)) for r in rows) + "],\n], dtype=np.int64)"


def int_array(values: list[int] | tuple[int, ...], per_line: int = 16) -> str:
    """An int64 numpy array literal; long ones wrapped, ``per_line`` numbers a line."""
    if len(values) <= per_line:
        return f"np.array([{', '.join(map(str, values))}], dtype=np.int64)"
    lines = [", ".join(map(str, values[k:k + per_line])) for k in range(0, len(values), per_line)]
    return "np.array([\n    " + ",\n    ".join(lines) + ",\n], dtype=np.int64)"


def float_array(values: tuple[float, ...], per_line: int = 6) -> str:
    """A float64 numpy array literal that round-trips exactly; long ones wrapped."""
    literals = [float_text(v) for v in values]
    if len(literals) <= per_line:
        return f"np.array([{', '.join(literals)}], dtype=np.float64)"
    lines = [", ".join(literals[k:k + per_line]) for k in range(0, len(literals), per_line)]
    return "np.array([\n    " + ",\n    ".join(lines) + ",\n], dtype=np.float64)"


def _interp_tables(printer: NumbaPrinter, source_root: str) -> list[dict]:
    """The np.interp tables the printed functions use, as module data."""
    tables = []
    for name, table, locations in printer.interp_tables.values():
        where = ", ".join(relative_location(loc, source_root) for loc in locations)
        extended = " (sorted and extended over one period, as np.interp does)" if table.period else ""
        tables.append({
            "name": name,
            "comment": f"np.interp table at {where}: {len(table.xp)} points{extended}",
            "xp": float_array(table.xp),
            "fp": float_array(table.fp),
        })  # fmt: skip
    return tables


CONSTANT_LITERAL_MAX = 1000  # a constant array of more values is base64 data, not float literals


def constant_data(values: np.ndarray) -> tuple[str, bool]:
    """A constant array's values (float64, flat) as exact source, and whether it needs zlib:
    float literals up to ``CONSTANT_LITERAL_MAX`` values (readable), else base64 of the
    little-endian bytes (25 characters a value as literals, 10.7 as base64; fast to import),
    compressed with zlib when that halves it (a sparse or structured matrix)."""
    if values.size <= CONSTANT_LITERAL_MAX:
        return float_array(tuple(float(v) for v in values)), False
    raw = np.asarray(values, dtype="<f8").tobytes()
    packed = zlib.compress(raw, 6)
    compressed = len(packed) * 2 <= len(raw)
    data = base64.b64encode(packed if compressed else raw).decode("ascii")
    lines = "\n    ".join(f'"{data[k:k + 96]}"' for k in range(0, len(data), 96))
    decoded = "zlib.decompress(base64.b64decode(\n    " + lines + "\n))" if compressed else \
        "base64.b64decode(\n    " + lines + "\n)"
    return f'np.frombuffer({decoded}, dtype="<f8")', compressed


def _constant_arrays(flat) -> list[dict]:  # noqa: ANN001
    """The constant arrays the loops read, as module data with a comment on where they come from."""
    out = []
    for c in flat.constant_arrays:
        text, compressed = constant_data(c.values)
        where = relative_location(c.location, flat.source_root) if c.location else "?"
        shape = "x".join(map(str, c.shape))
        what = f"{c.origin} (shape {shape}" if c.origin else f"a constant array (shape {shape}"
        flat_note = ", flattened in C order" if len(c.shape) > 1 else ""
        out.append({"name": c.name, "data": text, "zlib": compressed,
                    "comment": f"{what}{flat_note}) read at {where}"})  # fmt: skip
    return out


def _derivative_keys(flat) -> list:  # noqa: ANN001
    systems: dict[str, list] = {}
    for path, state_key, der_key in flat.der_keys:
        systems.setdefault(path, []).append((state_key, der_key))
    return list(systems.items())


def render(kernel: Kernel, model_file: str, digest: str | None = None, standalone: bool = False) -> ModuleSource:
    """Render the module text; deterministic for a given kernel.

    ``digest`` is the module hash (default: that of the flat model lowered with
    kernels); a ``standalone`` module carries the compiled integrators itself.
    """
    digest = digest or module_digest(kernel.flat.digest, standalone=standalone)
    flat = kernel.flat
    printer = NumbaPrinter()
    functions = []
    for fn in kernel.functions:
        blocks = [
            {
                "titles": block.title.split("\n"),
                "statements": [
                    {"target": print_expr(printer, st.target), "text": print_expr(printer, st.expr), "comment": st.comment}
                    for st in block.statements
                ],
                "loops": block.loop_nest,
                "indent": "    " * len(block.loop_nest),
            }
            for block in fn.blocks
        ]
        functions.append(
            {"name": fn.name, "args": fn.args, "doc": fn.doc, "blocks": blocks, "scratch": fn.scratch, "raises": fn.raises}
        )
    jac_rows, jac_cols = jac_pattern(kernel)
    text = environment().get_template("module.py.j2").render(
        version=__version__,
        name=flat.name,
        model_file=model_file,
        digest=digest,
        n_states=flat.n_states,
        n_parameters=len(flat.default_parameters),
        n_observed=flat.n_observed,
        systems=[s.path for s in flat.systems],
        layouts=[_layout("STATES", flat.states), _layout("PARAMETERS", flat.parameters), _layout("OBSERVED", flat.observed)],
        default_states=float_vector(flat.default_states, flat.states),
        default_parameters=float_vector(flat.default_parameters, flat.parameters),
        not_embedded=tuple(not_embedded(flat.states) + not_embedded(flat.parameters)),
        embed_max=f"{EMBED_MAX:,}",
        derivative_keys=_derivative_keys(flat),
        defaults_at_end=any(slot.array for slot in (*flat.states, *flat.parameters)),
        no_jacobian=kernel.no_jacobian,
        n_lowrank=kernel.n_lowrank,
        jac_nnz=kernel.jac_nnz,
        jac_rows=jac_rows,
        jac_cols=jac_cols,
        jac_element_rows=int_array([i for i, _ in kernel.jac_sparsity]) if kernel.jac_blocks else None,
        jac_element_cols=int_array([j for _, j in kernel.jac_sparsity]) if kernel.jac_blocks else None,
        jac_element_nnz=len(kernel.jac_sparsity),
        jac_blocks=jac_block_table(kernel),
        jac_block_axes=max((len(b.shape) for b in kernel.jac_blocks), default=0),
        tables=[(name, int_array(values)) for name, values in kernel.tables],
        constants=[(name, float_array(values), comment) for name, values, comment in kernel.constants],
        interp_tables=_interp_tables(printer, flat.source_root),
        constant_arrays=_constant_arrays(flat),
        functions=functions,
        events=[
            {"index": k, "system": e.system, "name": e.name, "direction": e.direction, "terminal": e.terminal,
             "action": e.action_location is not None,
             "writes": tuple(f"{ref.system}.{ref.kind}.{ref.key}" for ref, _ in e.resets),
             "where": f"{relative_location(e.location, flat.source_root)}"
                      + (f", action {relative_location(e.action_location, flat.source_root)}" if e.action_location else "")}
            for k, e in enumerate(flat.events)
        ],  # fmt: skip
        standalone=standalone,
        generic=False,
    )
    text += trailer(digest, text)  # the hash, and the SHA-256 of the text checked before loading
    return ModuleSource(
        name=flat.name,
        text=text,
        model_digest=digest,
        text_digest=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def compiled_methods_path() -> Path:
    """dyngen's shared compiled integrators (``runtime/compiled_methods.py``)."""
    return Path(__file__).resolve().parent / "runtime" / "compiled_methods.py"


def compiled_methods_text() -> str:
    """The text of ``runtime/compiled_methods.py``: the templates' integrators, rendered
    to take the model's functions as first-class function values.

    It names the hash of ``runtime/first_class.py``, whose code numba compiles into these
    routines: numba keys its cache by this file's text alone, and routines loaded from a
    cache made with another ``first_class`` would call the model's entries wrongly."""
    first_class = compiled_methods_path().with_name("first_class.py").read_bytes()
    return environment().get_template("compiled_methods.py.j2").render(
        version=__version__, generic=True, first_class_digest=hashlib.sha256(first_class).hexdigest()[:16]
    )


def write_compiled_methods() -> Path:
    """Write ``runtime/compiled_methods.py`` again from the templates (after changing them)."""
    path = compiled_methods_path()
    path.write_text(compiled_methods_text(), encoding="utf-8")
    return path
