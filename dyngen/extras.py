"""Optional dependencies (pyproject's extras): import one, or say how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import DyngenError

# what each extra brings (pyproject.toml's [project.optional-dependencies])
EXTRAS = {
    "tables": "labelled results and files: xarray, pandas, h5netcdf (netCDF), pyarrow (Parquet)",
    "dask": "ensembles on a Dask cluster: dask[distributed]",
    "plot": "plots: matplotlib",
}


class MissingExtraError(DyngenError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module_name: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module_name`` (e.g. ``"xarray"``), or raise ``MissingExtraError`` saying
    ``pip install "dyngen[<extra>]"``. ``purpose`` (e.g. ``"Recorder.to_xarray()"``)
    says what needs it."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        top = module_name.partition(".")[0]
        missing = getattr(exc, "name", None) or top
        needed = f"{purpose} needs {top}" if purpose else f"{top} is needed"
        raise MissingExtraError(
            f"{needed}, which is not installed (import of {missing!r} failed: {exc}); install the extra "
            f'with pip install "dyngen[{extra}]"'
        ) from None
