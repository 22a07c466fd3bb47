"""The ``dyngen`` command: build, show, run and verify model files."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import click

from .errors import ArgumentError, DyngenError, DyngenWarning, OutputError
from .ir import BuildOptions
from .modelfile import load_model
from .naming import MAX_MODULE_NAME, sanitize
from .pipeline import BuildResult
from .pipeline import build as build_pipeline
from .outputs import check_output, csv_text, write_table
from .overrides import apply_settings, parse_literal, split_assignment
from .plots import check_plot_file, plot_table
from .run_progress import RunProgress, simulate_with_progress
from .runtime.integrators import SCIPY_ODE_METHODS, SOLVE_IVP_METHODS
from .runtime.recorder import Recorder
from .runtime.simulation import COMPILED_STIFF_METHODS, SPARSE_BDF_METHODS
from .runtime.tables import Table
from .tree import walk
from .write import write_text_atomic

ALL_METHODS = SCIPY_ODE_METHODS + COMPILED_STIFF_METHODS + SPARSE_BDF_METHODS + SOLVE_IVP_METHODS

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
    if result.kernel.n_lowrank:
        jacobian += f" + a rank-{result.kernel.n_lowrank} term (reductions over whole arrays)"
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
@click.option(
    "-o", "--output", "output", type=click.Path(dir_okay=False),
    help="Write the results here, by the suffix: .csv, .nc (netCDF) or .parquet (default: CSV on stdout).",
)  # fmt: skip
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False), help="Write CSV here (whatever the suffix).")
@click.option("--integrator", type=click.Choice(ALL_METHODS), default="dopri5", show_default=True)
@click.option("--rtol", type=float, help="Relative tolerance (the integrator's default if not given).")
@click.option("--atol", type=float, help="Absolute tolerance (the integrator's default if not given).")
@click.option("--fixed-step", is_flag=True, help="Use DT as the solver's fixed step.")
@click.option(
    "--set", "settings", multiple=True, metavar="NAME=VALUE",
    help="Set a parameter (VanDerPol.inputs.mu=2.5), an initial state (VanDerPol.states.x=1), an element "
    "(Particle2D.states.q[1]=0.5) or a numeric attribute of a system (Quad.max_tilt=0.3). Repeatable.",
)  # fmt: skip
@click.option(
    "--arg", "build_args", multiple=True, metavar="NAME=VALUE",
    help="Pass NAME=VALUE to the model file's build() (a Python literal, else a string). Repeatable.",
)  # fmt: skip
@click.option("--states-only", is_flag=True, help="Write time and the states only, not inputs and outputs.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Draw the recorded signals into this PNG.")
@_report_errors
def run(
    model: str, duration: float, observer_dt: float, output: str | None, csv_file: str | None, integrator: str,
    rtol: float | None, atol: float | None, fixed_step: bool, settings: tuple[str, ...], build_args: tuple[str, ...],
    states_only: bool, plot_file: str | None,
) -> None:  # fmt: skip
    """Simulate MODEL and write time, the states, inputs and outputs (named as the
    generated module names them: <system path>.states.<key>, ...)."""
    if output and csv_file:
        raise OutputError("give -o FILE or --csv FILE, not both")
    if output:  # before a long run, not after it
        check_output(output)
    if csv_file:
        check_output(csv_file, "--csv", suffix=".csv")
    if plot_file:
        check_plot_file(plot_file)
    simulation = load_model(model, build_args=_build_arguments(build_args))
    apply_settings(simulation, settings)
    states, signals = _recorders(simulation, states_only)
    options = {k: v for k, v in (("rtol", rtol), ("atol", atol)) if v is not None}
    progress = RunProgress(simulation.model_name or "model", duration)
    simulate_with_progress(
        simulation, duration, observer_dt, progress, fixed_step=fixed_step, integrator=integrator, **options
    )
    state_table = states.table()
    table = Table(state_table.time, state_table.signals + signals.table().signals)
    if plot_file:
        plot_table(table, plot_file, title=Path(model).name)
        click.echo(f"drew {len(table.signals)} signals into {plot_file}", err=True)
    if not output and not csv_file:
        sys.stdout.write(csv_text(table.columns()))
        return
    if csv_file:
        _write_csv_anyway(csv_file, table)
    else:
        write_table(table, output)
    columns = len(table.columns())
    click.echo(f"wrote {len(table.time)} rows x {columns} columns to {output or csv_file}", err=True)


def _write_csv_anyway(path: str, table: Table) -> None:
    """``--csv FILE``: CSV whatever the suffix (as before -o existed)."""
    try:
        write_text_atomic(Path(path), csv_text(table.columns()))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose another file with --csv FILE") from None


def _build_arguments(build_args: tuple[str, ...]) -> dict[str, Any]:
    """``--arg NAME=VALUE`` options as keyword arguments of build()."""
    arguments: dict[str, Any] = {}
    for text in build_args:
        name, value = split_assignment(text, "--arg")
        if not name.isidentifier():
            raise ArgumentError(f"--arg {text!r}: {name!r} is not a Python argument name")
        arguments[name] = parse_literal(value)
    return arguments


def _recorders(simulation: Any, states_only: bool) -> tuple[Recorder, Recorder]:
    """A Recorder of every state (dynode's order: the columns ``run`` always wrote
    first) and one of every input and output (none with ``states_only``)."""
    module = simulation.module
    systems = {node.path: node.system for node in walk(simulation.systems)}
    states, signals = Recorder(), Recorder()
    for path, keys in module.STATES.items():
        for key in keys:
            _store(states, systems[path], f"states.{key}", path)
    if not states_only:
        for path, keys in module.OBSERVED.items():
            for name in keys:
                if name.partition(".")[0] in ("inputs", "outputs"):
                    _store(signals, systems[path], name, path)
    simulation.add_observer(states)
    simulation.add_observer(signals)
    return states, signals


def _store(recorder: Recorder, system: Any, attribute: str, path: str) -> None:
    key = attribute.partition(".")[2]
    if not key.isidentifier():
        warnings.warn(f"{path}.{attribute} is not recorded: a key that is not a name cannot be recorded", DyngenWarning)
        return
    recorder.store(system, attribute)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--t", "duration", type=float, default=10.0, show_default=True, help="Time to simulate.")
@click.option("--dt", "observer_dt", type=float, default=0.1, show_default=True, help="Output interval (observer_dt).")
@click.option(
    "--set", "settings", multiple=True, metavar="NAME=START:STOP:COUNT|V1,V2,...|VALUE",
    help="Sweep NAME over COUNT values from START to STOP, or over the values listed; a single VALUE sets it "
    "for every member (as run --set). The grid is every combination (the first name varies slowest). Repeatable.",
)  # fmt: skip
@click.option("--arg", "build_args", multiple=True, metavar="NAME=VALUE", help="Pass NAME=VALUE to build(). Repeatable.")
@click.option("--integrator", type=click.Choice(ALL_METHODS), default="dopri5", show_default=True)
@click.option("--rtol", type=float, help="Relative tolerance (the integrator's default if not given).")
@click.option("--atol", type=float, help="Absolute tolerance (the integrator's default if not given).")
@click.option("--fixed-step", is_flag=True, help="Use DT as the solver's fixed step.")
@click.option("--record", "record", multiple=True, metavar="NAME",
              help="Keep only these signals (default: every state and output; 'all': inputs and ders too).")  # fmt: skip
@click.option("--threads", type=click.IntRange(min=1), help="Threads per process (default: every core).")
@click.option("--workers", type=click.IntRange(min=1), help="Run on a local Dask cluster of N worker processes.")
@click.option("--scheduler", metavar="ADDRESS", help="Run on the Dask cluster whose scheduler is at ADDRESS.")
@click.option(
    "-o", "--output", "output", type=click.Path(dir_okay=False), required=True,
    help="Write the results here, by the suffix: .nc (netCDF, the Dataset as it is), .parquet or .csv (long form).",
)  # fmt: skip
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False),
              help="Draw a fan of the time series (one swept name) or heat maps of the final values (two) into this PNG.")  # fmt: skip
@_report_errors
def sweep(
    model: str, duration: float, observer_dt: float, settings: tuple[str, ...], build_args: tuple[str, ...],
    integrator: str, rtol: float | None, atol: float | None, fixed_step: bool, record: tuple[str, ...],
    threads: int | None, workers: int | None, scheduler: str | None, output: str, plot_file: str | None,
) -> None:  # fmt: skip
    """Run MODEL once per point of a grid of parameters and initial states (Simulation.ensemble)
    and write the results."""
    from .sweeps import run_sweep

    run_sweep(
        model, duration, observer_dt, settings, _build_arguments(build_args), integrator,
        {k: v for k, v in (("rtol", rtol), ("atol", atol)) if v is not None}, fixed_step, list(record) or None,
        threads, workers, scheduler, output, plot_file,
    )  # fmt: skip


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
