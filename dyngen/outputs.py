"""Result files by suffix: ``.csv`` (numpy only), ``.nc`` (netCDF via xarray and
h5netcdf) and ``.parquet`` (pandas and pyarrow). Files are written whole or not at
all (a temporary file in the same folder, renamed over the target)."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

from .errors import EnsembleWarning, OutputError
from .extras import require
from .runtime.tables import Table
from .write import write_text_atomic

# suffix -> the modules it needs (all from the ``tables`` extra)
FORMATS: dict[str, tuple[str, ...]] = {
    ".csv": (),
    ".nc": ("xarray", "h5netcdf", "h5py"),
    ".parquet": ("pandas", "pyarrow"),
}


def check_output(path: str, option: str = "-o", suffix: str | None = None) -> str:
    """Before a long run: the format of ``path`` by its suffix (or ``suffix``, whatever
    the name), its modules importable, and a folder it can go into. Returns the suffix."""
    suffix = suffix or Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise OutputError(
            f"{option} {path}: unknown file format {suffix or '(no suffix)'!r}; name the file "
            f"{' or '.join('*' + s for s in FORMATS)} (netCDF, Parquet: pip install \"dyngen[tables]\")"
        )
    for module in FORMATS[suffix]:
        require(module, "tables", f"writing {suffix} files")
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{option} {path}: it is a folder; name a file")
    if not target.resolve().parent.is_dir():
        raise OutputError(f"cannot write {path}: its folder does not exist or is a file; choose another file with {option} FILE")
    return suffix


def csv_text(columns: list[tuple[str, Any]]) -> str:
    """A CSV of ``(name, values)`` columns: a header, then the values as ``repr(float)``
    (they read back as the same floats)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow([name for name, _ in columns])
    rows = zip(*(values.tolist() for _, values in columns)) if columns else ()
    writer.writerows([repr(float(v)) for v in row] for row in rows)
    return text.getvalue()


def write_table(table: Table, path: str, option: str = "-o") -> None:
    """A single run's ``Table`` into ``path`` by its suffix."""
    suffix = check_output(path, option)
    if suffix == ".csv":
        _write_csv(path, csv_text(table.columns()), option)
    elif suffix == ".nc":
        dataset = table.to_xarray("writing .nc files")
        _write_atomic(path, option, lambda temp: dataset.to_netcdf(temp, engine="h5netcdf"))
    else:
        frame = table.to_dataframe("writing .parquet files")
        _write_atomic(path, option, lambda temp: frame.to_parquet(temp))


def write_dataset(dataset: Any, path: str, option: str = "-o") -> None:
    """An ensemble's ``xarray.Dataset`` into ``path`` by its suffix: ``.nc`` as it is,
    ``.parquet``/``.csv`` in long form (one row per member and time, one column per
    element, the swept values as columns)."""
    suffix = check_output(path, option)
    if suffix == ".nc":
        _write_atomic(path, option, lambda temp: dataset.to_netcdf(temp, engine="h5netcdf"))
        return
    frame = long_frame(dataset)
    if suffix == ".parquet":
        _write_atomic(path, option, lambda temp: frame.to_parquet(temp, index=False))
    else:
        _write_csv(path, frame.to_csv(index=False, float_format=None), option)


def long_frame(dataset: Any) -> Any:
    """A Dataset with dims ``member``, ``time`` (and vector dims) as a flat DataFrame:
    columns ``member``, ``time``, the member coordinates, then one column per element
    (``name`` or ``name[i]``) of every variable over (member, time), and the variables
    per member.  Variables over other dims (an ensemble with events: ``event_time``,
    ``event_id``, ``event_before`` and ``event_after`` over (member, event, ...)) have no place in it: an ``EnsembleWarning`` names
    them (``.nc`` keeps them)."""
    pd = require("pandas", "tables", "writing an ensemble as a table")
    np = require("numpy", "tables")
    n_members, n_times = dataset.sizes["member"], dataset.sizes["time"]
    columns: dict[str, Any] = {
        "member": np.repeat(np.arange(n_members), n_times),
        "time": np.tile(dataset["time"].values, n_members),
    }
    for name, coord in dataset.coords.items():
        if name not in ("member", "time") and coord.dims == ("member",):
            columns[str(name)] = np.repeat(coord.values, n_times)
    left_out: list[str] = []
    for name, variable in dataset.data_vars.items():
        if variable.dims[:2] == ("member", "time"):
            flat = variable.values.reshape(n_members * n_times, -1)
            if variable.ndim == 2:
                columns[str(name)] = flat[:, 0]
            else:
                for i in range(flat.shape[1]):
                    columns[f"{name}[{i}]"] = flat[:, i]
        elif variable.dims == ("member",):  # status, reason, t_reached: per member
            columns[str(name)] = np.repeat(variable.values, n_times)
        else:
            left_out.append(f"{name} {variable.dims}")
    if left_out:
        warnings.warn(
            f"a table of one row per member and time has no place for {', '.join(left_out)}: they are not written; "
            "write a .nc file to keep them (or save dataset[[...]].to_dataframe() yourself)",
            EnsembleWarning, stacklevel=3,
        )  # fmt: skip
    return pd.DataFrame(columns)


def _write_csv(path: str, text: str, option: str) -> None:
    try:
        write_text_atomic(Path(path), text)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose another file with {option} FILE") from None


def _write_atomic(path: str, option: str, write: Callable[[str], None]) -> None:
    target = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{target.stem[:64]}.", suffix=target.suffix, dir=target.resolve().parent)
    os.close(fd)
    try:
        os.unlink(temp)  # the writers create the file themselves
        write(temp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, target)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose another file with {option} FILE") from None
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
