"""``dyngen sweep``: a grid of parameters, initial states and numeric attributes run by
``Simulation.ensemble``, on threads or a Dask cluster, written to a file and drawn."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np

from .errors import ArgumentError, OutputError
from .extras import require
from .modelfile import load_model
from .outputs import check_output, write_dataset
from .overrides import apply_settings, parse_sweep, split_assignment
from .plots import check_plot_file, plot_sweep
from .run_progress import RunProgress


def sweep_grid(settings: Sequence[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """``--set`` options split into the swept names (name -> values, in the order given)
    and the single values (``NAME=VALUE`` texts, as ``run --set`` takes)."""
    grid: dict[str, np.ndarray] = {}
    fixed: list[str] = []
    for text in settings:
        name, value = split_assignment(text, "--set")
        values = parse_sweep("--set", name, value)
        if values is None:
            fixed.append(text)
        elif name in grid:
            raise ArgumentError(f"--set {name} is swept twice; give each name one range or list")
        else:
            grid[name] = values
    if not grid:
        raise ArgumentError(
            "dyngen sweep needs at least one swept name: --set NAME=START:STOP:COUNT or --set NAME=V1,V2,..."
        )
    return grid, fixed


def run_sweep(
    model: str, duration: float, observer_dt: float, settings: Sequence[str], build_args: dict[str, Any],
    integrator: str, options: dict[str, Any], fixed_step: bool, record: list[str] | None, threads: int | None,
    workers: int | None, scheduler: str | None, output: str, plot_file: str | None,
) -> Any:  # fmt: skip
    """The ``dyngen sweep`` command (its options, parsed); returns the Dataset."""
    check_output(output)  # before a long run, not after it
    require("xarray", "tables", "dyngen sweep")
    grid, fixed = sweep_grid(settings)
    if plot_file:
        check_plot_file(plot_file)
        if len(grid) > 2:
            raise OutputError(f"--plot draws a sweep over one or two names; this one sweeps {len(grid)}: {', '.join(grid)}")
    if workers and scheduler:
        raise ArgumentError("give --workers N (a local Dask cluster) or --scheduler ADDRESS (a running one), not both")
    if workers and threads:
        raise ArgumentError("--threads is for a run on threads in this process; --workers N starts N one-thread worker "
                            "processes: give one of them")  # fmt: skip
    if workers or scheduler:
        require("distributed", "dask", "--workers/--scheduler")
    simulation = load_model(model, build_args=build_args)
    apply_settings(simulation, fixed)
    count = math.prod(len(values) for values in grid.values())
    progress = RunProgress(simulation.model_name or "model", count, unit="members")
    first = [True]

    def report(done: int, _total: int) -> None:
        if first[0]:  # the first chunk holds the numba compile: the pace is measured after it
            first[0] = False
            progress.restart(done)
        progress.update(done)

    arguments: dict[str, Any] = dict(
        grid=grid, record="all" if record == ["all"] else record, integrator=integrator, fixed_step=fixed_step,
        threads=threads, progress=report, **options,
    )  # fmt: skip
    if workers:  # a LocalCluster of that many one-thread worker processes, closed after the run
        arguments.update(client="local", threads=workers)
    elif scheduler:
        arguments["client"] = scheduler
    try:
        dataset = simulation.ensemble(duration, observer_dt, **arguments)
    finally:
        progress.close()
    write_dataset(dataset, output)
    n_times = dataset.sizes["time"]
    click.echo(f"wrote {count} members x {n_times} samples to {output}", err=True)
    if plot_file:
        swept = [str(name) for name in dataset.attrs.get("grid", list(grid))]
        plot_sweep(dataset, swept, plot_file, title=Path(model).name)
        click.echo(f"drew the sweep into {plot_file}", err=True)
    return dataset
