"""The ``dyngen`` command: build, show, run and verify model files."""

from __future__ import annotations

import csv
import io
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import click

from .errors import DyngenError, DyngenWarning, OutputError
from .ir import BuildOptions
from .modelfile import load_model
from .naming import MAX_MODULE_NAME, sanitize
from .pipeline import BuildResult
from .pipeline import build as build_pipeline
from .runtime.integrators import SCIPY_ODE_METHODS
from .runtime.model import state_names_in_dynode_order
from .write import write_text_atomic

STAGES = ("spec", "flat", "kernel", "source")


def _report_errors(func: Callable) -> Callable:
    """Print dyngen errors and model warnings without tracebacks."""

    def show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        prefix = "warning" if issubclass(category, DyngenWarning) else category.__name__
        click.echo(f"{prefix}: {message}", err=True)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("always", DyngenWarning)
            warnings.showwarning = show_warning
            try:
                return func(*args, **kwargs)
            except DyngenError as error:
                click.echo(f"error: {error}", err=True)
                sys.exit(2)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def _build(
    model: str, output: str | None, name: str | None = None, force: bool = False, standalone: bool = False
) -> BuildResult:
    if name is not None and len(sanitize(name)) > MAX_MODULE_NAME:
        raise OutputError(f"--name is {len(sanitize(name))} characters long; a module name has at most {MAX_MODULE_NAME}")
    simulation = load_model(model)
    path = Path(model)
    return build_pipeline(
        simulation.systems,
        name=sanitize(name) if name is not None else simulation.model_name,
        source_root=str(path.resolve().parent),
        model_file=path.name,
        options=BuildOptions(output_dir=output, always_render=True, force=force, standalone=standalone),
    )


@click.group()
@click.version_option(package_name="dyngen")
def main() -> None:
    """dyngen: compile dynode-style models into one readable @njit module."""


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", default="generated", show_default=True, help="Folder for <model>.py.")
@click.option("--name", "name", help="The module's name: writes OUTPUT/<name>.py (default: the model file's name).")
@click.option("--force", is_flag=True, help="Also replace a module dyngen generated from another model.")
@click.option(
    "--standalone", is_flag=True,
    help="Write the compiled integrators into the module too: it then runs with numpy and numba alone.",
)  # fmt: skip
@click.option("--emit", type=click.Choice(STAGES), help="Also print this stage's intermediate form.")
@click.option("--timings", is_flag=True, help="Print the time each stage took.")
@_report_errors
def build(
    model: str, output: str, name: str | None, force: bool, standalone: bool, emit: str | None, timings: bool
) -> None:
    """Generate OUTPUT/<model>.py from the model file MODEL (which defines build()).

    It never writes over a file that dyngen did not generate, nor over the model file or
    a file the model imports; with --force it replaces a module generated from another model.
    The module holds the model; dyngen's runtime brings the integrators, unless --standalone.
    """
    start = time.perf_counter()
    result = _build(model, output, name, force, standalone)
    total = time.perf_counter() - start
    if emit:
        click.echo(str(getattr(result, emit)))
    flat = result.flat
    jacobian = "no Jacobian" if result.kernel.no_jacobian else f"{result.kernel.jac_nnz} Jacobian entries"
    click.echo(
        f"{'wrote' if result.written else 'unchanged'} {result.path}: {flat.n_states} states, {len(flat.default_parameters)} parameters, "
        f"{jacobian} ({total:.2f} s)",
        err=bool(emit),
    )
    if timings:
        for stage, seconds in result.timings.items():
            click.echo(f"  {stage:<8} {seconds * 1000:9.1f} ms", err=bool(emit))


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@_report_errors
def show(model: str) -> None:
    """Print the module that dyngen generates for MODEL (writes nothing)."""
    simulation = load_model(model)
    from .flatten import flatten
    from .lower import lower
    from .render import render
    from .trace import trace

    path = Path(model)
    spec = trace(simulation.systems, simulation.model_name, str(path.resolve().parent))
    source = render(lower(flatten(spec)), path.name)
    click.echo(source.text, nl=False)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--t", "duration", type=float, required=True, help="Time to simulate.")
@click.option("--dt", "observer_dt", type=float, required=True, help="Output interval (observer_dt).")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False), help="Write the states here (default: stdout).")
@click.option("--integrator", type=click.Choice(SCIPY_ODE_METHODS), default="dopri5", show_default=True)
@click.option("--fixed-step", is_flag=True, help="Use DT as the solver's fixed step.")
@_report_errors
def run(model: str, duration: float, observer_dt: float, csv_file: str | None, integrator: str, fixed_step: bool) -> None:
    """Simulate MODEL and write time and every state as CSV."""
    if csv_file and not Path(csv_file).resolve().parent.is_dir():  # before a long run, not after it
        raise OutputError(f"cannot write {csv_file}: its folder does not exist or is a file; choose another file with --csv FILE")
    simulation = load_model(model)
    rows: list[list[float]] = []
    simulation.add_observer(lambda t, y: rows.append([t, *y]) and False)
    simulation.simulate(duration, observer_dt, fixed_step=fixed_step, integrator=integrator)
    header = ["time", *state_names_in_dynode_order(simulation.module)]  # the observer's y
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows([repr(float(v)) for v in row] for row in rows)
    if not csv_file:
        sys.stdout.write(text.getvalue())
        return
    if Path(csv_file).is_dir():
        raise OutputError(f"cannot write the CSV to {csv_file}: it is a folder; name a file with --csv FILE")
    try:  # whole or not at all: through a temporary file renamed over csv_file
        write_text_atomic(Path(csv_file), text.getvalue())
    except OSError as exc:
        raise OutputError(f"cannot write {csv_file}: {exc.strerror or exc}; choose another file with --csv FILE") from None
    click.echo(f"wrote {len(rows)} rows x {len(header)} columns to {csv_file}", err=True)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--t", "duration", type=float, default=10.0, show_default=True)
@click.option("--dt", "observer_dt", type=float, default=0.1, show_default=True)
@click.option("--integrator", type=click.Choice(SCIPY_ODE_METHODS), default="dopri5", show_default=True)
@click.option("--rtol", type=float, default=1e-6, show_default=True, help="Largest relative difference accepted.")
@_report_errors
def verify(model: str, duration: float, observer_dt: float, integrator: str, rtol: float) -> None:
    """Run MODEL interpreted (as dynode evaluates it) and compiled; report the difference."""
    from .interpreted import verify as run_verify

    simulation = load_model(model)
    report = run_verify(simulation, duration, observer_dt, integrator=integrator, rtol=1e-10, atol=1e-12)
    click.echo(str(report))
    if report.max_rel > rtol:
        click.echo(f"FAILED: largest relative difference {report.max_rel:.3e} > {rtol:g}", err=True)
        sys.exit(1)
    click.echo(f"OK: largest relative difference {report.max_rel:.3e} <= {rtol:g}")
