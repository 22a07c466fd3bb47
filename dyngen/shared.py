"""What the model's objects, the runtime and the tracer share, importable without sympy.

``import dyngen`` and a warm start (a model whose module is in the cache) import
this and never the tracer (``calls``, ``trace``, ``symbolic``), which import sympy.
"""

from __future__ import annotations

import sys
import types
from importlib import resources
from pathlib import Path
import warnings
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import DyngenWarning, SourceLocation, user_frame_location


@dataclass
class TraceSession:
    """What the calls of one build's tracing share: warnings already given, and the
    mutable objects that received traced values (checked after each call)."""

    warned: set = field(default_factory=set)
    receivers: list = field(default_factory=list)


SESSION: ContextVar[TraceSession | None] = ContextVar("dyngen_trace_session", default=None)


def warn_build_time(what: str, instead: str, location: SourceLocation | None = None) -> None:
    """Warn once per place that ``what`` runs only at build time, never per evaluation."""
    session = SESSION.get()
    location = location or user_frame_location()
    key = (what, location)
    if session is not None:
        if key in session.warned:
            return
        session.warned.add(key)
    where = f"{location}: " if location else ""
    message = (
        f"{where}{what} -- dyngen runs do_step and the connections once, with symbolic values, when it "
        f"builds the model, so this happens at build time only and never while the model runs; {instead}"
    )
    if location is None:
        warnings.warn(message, DyngenWarning, stacklevel=3)
    else:
        warnings.warn_explicit(message, DyngenWarning, location.file, location.line)


def numba_python_function(func: Any) -> types.FunctionType | None:
    """The Python function behind a numba dispatcher (``njit``, ``jit``, a ``vectorize``
    without signatures), or None for anything else."""
    if not (type(func).__module__ or "").startswith("numba"):
        return None
    py_func = getattr(func, "py_func", None)
    if not isinstance(py_func, types.FunctionType):
        py_func = getattr(getattr(func, "_dispatcher", None), "py_func", None)  # a DUFunc
    return py_func if isinstance(py_func, types.FunctionType) else None


def numeric_value(value: Any) -> np.ndarray | None:
    """The float array of a numeric container value, or None for anything else."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return np.asarray(float(value))
    if isinstance(value, (list, tuple, np.ndarray)):
        try:
            array = np.asarray(value)
        except ValueError:
            return None
        if array.dtype.kind in "iuf" and array.size > 0:
            return array.astype(float)
    return None


def where(condition: Any, x: Any, y: Any) -> Any:
    """``np.where`` that also works on traced values (emitted as a conditional).

    On plain numbers it is ``np.where`` (a scalar result is a float).  Traced values
    exist only once the tracer (``dyngen.symbolic``) is imported: until then this
    needs no sympy.
    """
    symbolic = sys.modules.get("dyngen.symbolic")
    if symbolic is not None:
        return symbolic.where(condition, x, y)
    result = np.where(condition, x, y)
    return result.item() if result.ndim == 0 else result


def template_dir() -> Path:
    """The templates: inside the installed wheel, or ``templates/`` of a checkout."""
    packaged = resources.files("dyngen") / "templates"
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("dyngen's templates are missing: reinstall dyngen")
