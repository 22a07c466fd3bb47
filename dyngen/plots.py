"""PNG plots of results with matplotlib (the ``plot`` extra; Agg, no display needed).

- a run: one panel per system (its path on the y axis), a line per recorded key;
- a sweep over one value: a fan of each signal's time series coloured by the value;
- a sweep over two values: a heat map of each signal's final value over both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputError
from .extras import require
from .runtime.tables import Table

MAX_PANELS = 12  # systems (or signals of a sweep) drawn; the rest are named in the figure
MAX_LINES = 10  # elements of one vector signal drawn


def check_plot_file(path: str) -> None:
    """Before a long run: matplotlib is installed and ``path`` is a PNG in an existing folder."""
    require("matplotlib", "plot", "--plot")
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise OutputError(f"--plot {path}: name a .png file")
    if target.is_dir() or not target.resolve().parent.is_dir():
        raise OutputError(f"--plot {path}: its folder does not exist (or it is a folder); choose another file")


def _figure(n_panels: int, height: float = 2.2, width: float = 8.0) -> Any:
    require("matplotlib", "plot", "--plot")
    from matplotlib.figure import Figure  # a figure without pyplot: no backend, no display

    figure = Figure(figsize=(width, max(2.5, height * n_panels)), layout="constrained")
    axes = figure.subplots(max(1, n_panels), 1, sharex=True, squeeze=False)[:, 0]
    return figure, axes


def _save(figure: Any, path: str) -> None:
    try:
        figure.savefig(path, dpi=100, format="png")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose another file with --plot FILE") from None


def plot_table(table: Table, path: str, title: str = "") -> None:
    """A run's signals over time: one panel per system and container (its path and
    ``states``/``inputs``/``outputs`` on the y axis), a line per key (vector signals: a
    line per element, the first ``MAX_LINES``)."""
    by_system: dict[str, dict[str, list]] = {}  # system by system (the states come first in a run's table)
    for signal in table.signals:
        by_system.setdefault(signal.system, {}).setdefault(signal.key.partition(".")[0], []).append(signal)
    panels = {(system, kind): signals for system, kinds in by_system.items() for kind, signals in kinds.items()}
    shown = list(panels)[:MAX_PANELS]
    lines = max((sum(min(MAX_LINES, max(1, s.values[0].size if len(s.values) else 1)) for s in panels[p]) for p in shown), default=1)
    figure, axes = _figure(len(shown), height=max(2.0, 0.22 * lines))
    for ax, (system, kind) in zip(axes, shown):
        for signal in panels[system, kind]:
            for i, (column, values) in enumerate(signal.columns()):
                if i >= MAX_LINES:
                    break
                ax.plot(table.time, values, label=column[len(system) + 1:] if system else column)
        ax.set_ylabel(f"{system}\n{kind}" if kind else system)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("time")
    _title(figure, title, len(panels) - len(shown), "panels")
    _save(figure, path)


def plot_sweep(dataset: Any, swept: list[str], path: str, title: str = "") -> None:
    """An ensemble's recorded signals: for one swept name a fan of time series coloured
    by its value; for two, a heat map of each signal's final value over both."""
    names = [str(n) for n, v in dataset.data_vars.items() if v.dims[:2] == ("member", "time") and v.ndim == 2]
    shown = names[:MAX_PANELS]
    if len(swept) == 1:
        _fan(dataset, swept[0], shown, path, title, len(names) - len(shown))
    elif len(swept) == 2:
        _heat_maps(dataset, swept, shown, path, title, len(names) - len(shown))
    else:
        raise OutputError(f"--plot draws a sweep over one or two names; this one sweeps {len(swept)}: {', '.join(swept)}")


def _fan(dataset: Any, name: str, signals: list[str], path: str, title: str, left_out: int) -> None:
    from matplotlib import cm, colors

    figure, axes = _figure(len(signals))
    values = np.asarray(dataset[name].values, dtype=float)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    norm = colors.Normalize(vmin=low, vmax=high if high > low else low + 1)
    cmap = cm.viridis
    time = dataset["time"].values
    for ax, signal in zip(axes, signals):
        data = dataset[signal].values
        for member in range(data.shape[0]):
            ax.plot(time, data[member], color=cmap(norm(values[member])), linewidth=0.8)
        ax.set_ylabel(signal)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("time")
    figure.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), label=name)
    _title(figure, title, left_out, "signals")
    _save(figure, path)


def _heat_maps(dataset: Any, swept: list[str], signals: list[str], path: str, title: str, left_out: int) -> None:
    first, second = (np.asarray(dataset[n].values, dtype=float) for n in swept)
    xs, ys = np.unique(first), np.unique(second)
    columns = len(signals)
    figure, axes = _figure(columns, height=3.2, width=6.5)
    for ax, signal in zip(axes, signals):
        final = _final_values(dataset[signal].values)
        grid = np.full((len(ys), len(xs)), np.nan)
        grid[np.searchsorted(ys, second), np.searchsorted(xs, first)] = final
        mesh = ax.pcolormesh(_edges(xs), _edges(ys), grid, shading="flat", cmap="viridis")
        ax.set_xlabel(swept[0])
        ax.set_ylabel(swept[1])
        figure.colorbar(mesh, ax=ax, label=f"{signal} at the end")
    _title(figure, title, left_out, "signals")
    _save(figure, path)


def _final_values(data: np.ndarray) -> np.ndarray:
    """Each member's last finite sample (a failed member's last one before it stopped)."""
    finite = np.isfinite(data)
    last = np.where(finite.any(axis=1), data.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1), 0)
    final = data[np.arange(len(data)), last]
    return np.where(finite.any(axis=1), final, np.nan)


def _edges(centres: np.ndarray) -> np.ndarray:
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


def _title(figure: Any, title: str, left_out: int, what: str) -> None:
    more = f" ({left_out} more {what} not drawn)" if left_out > 0 else ""
    if title or more:
        figure.suptitle(f"{title}{more}")
