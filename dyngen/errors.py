"""Errors and warnings raised by dyngen, and the source locations they point at.

Every error a user can cause says *what* is wrong, *where* (system path, function,
file:line) and *what to write instead*.  The CLI prints these without a traceback.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from types import FrameType, TracebackType

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Frames inside these libraries are never "the user's line".
_LIBRARY_MARKERS = (
    _PACKAGE_DIR + os.sep,
    os.sep + "numpy" + os.sep,
    os.sep + "sympy" + os.sep,
    os.sep + "numba" + os.sep,
    os.sep + "scipy" + os.sep,
    "<frozen ",
)


@dataclass(frozen=True)
class SourceLocation:
    """A file and line in the user's model."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def _is_user_file(filename: str) -> bool:
    if os.path.isabs(filename):  # (a code object's file, usually): its answer does not depend on the working folder
        return _is_user_absolute(filename)
    absolute = os.path.abspath(filename) if not filename.startswith("<") else filename
    return not any(marker in absolute for marker in _LIBRARY_MARKERS)


@lru_cache(maxsize=1024)
def _is_user_absolute(filename: str) -> bool:
    absolute = os.path.abspath(filename)
    return not any(marker in absolute for marker in _LIBRARY_MARKERS)


@lru_cache(maxsize=1)
def library_roots() -> tuple[str, ...]:
    """Folders of installed packages and the standard library."""
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(site.getsitepackages() + [site.getusersitepackages()])
    return tuple({os.path.join(form, "") for r in roots for form in (os.path.abspath(r), os.path.realpath(r))})


def is_model_code(filename: str) -> bool:
    """A file of the model's own: not dyngen's, not the standard library's or an
    installed package's (whose functions the tracer calls as they are)."""
    return _is_user_file(filename) and not os.path.abspath(filename).startswith(library_roots())


# Code objects where the search for "the user's line" stops (the tracer's call into
# user code): frames further out are the caller of dyngen, not the model.
_BOUNDARIES: set = set()


def location_boundary(function):  # type: ignore[no-untyped-def]
    """Mark ``function`` as the outermost frame a model location may come from."""
    _BOUNDARIES.add(function.__code__)
    return function


def user_frame_location(frame: FrameType | None = None) -> SourceLocation | None:
    """The innermost stack frame (from ``frame`` outwards) that is user code."""
    frame = frame if frame is not None else sys._getframe(1)
    while frame is not None:
        if frame.f_code in _BOUNDARIES:
            return None
        filename = frame.f_code.co_filename
        if _is_user_file(filename):
            return SourceLocation(filename, frame.f_lineno)
        frame = frame.f_back
    return None


def external_stacklevel() -> int:
    """The ``stacklevel`` for warnings.warn that names the first frame outside dyngen."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def user_traceback_location(tb: TracebackType | None) -> SourceLocation | None:
    """The innermost traceback entry that is user code."""
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if _is_user_file(filename):
            found = SourceLocation(filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


class DyngenError(Exception):
    """Base class of every error dyngen reports to a user."""


class TraceError(DyngenError):
    """A ``do_step`` or connection function uses something that cannot be traced."""

    def __init__(self, problem: str, hint: str = "", location: SourceLocation | None = None):
        self.problem = problem
        self.hint = hint
        self.location = location
        self.context = ""  # filled in by the tracer: system path and function
        super().__init__(problem)

    def __str__(self) -> str:
        lines = []
        head = "cannot trace"
        if self.context:
            head += f" {self.context}"
        if self.location is not None:
            head += f" at {self.location}"
        lines.append(head + ":")
        lines.append(f"    {self.problem}")
        if self.hint:
            lines.append(f"  write instead: {self.hint}")
        return "\n".join(lines)


class ModelError(DyngenError, RuntimeError):
    """The model's structure is inconsistent (shapes, missing ders, double writers...).

    A RuntimeError too: dynode raises RuntimeError where states and ders do not pair
    up, so a user's ``except RuntimeError`` keeps working.
    """


class AlgebraicLoopError(ModelError):
    """Instantaneous signals depend on each other in a cycle."""


class UsageError(DyngenError, ValueError):
    """An API call dynode refuses with a ValueError (a system, observer or connection
    added twice, a system as its own subsystem); says where the call was made."""

    def __init__(self, problem: str, location: SourceLocation | None = None):
        self.problem = problem
        self.location = location
        super().__init__(problem)

    def __str__(self) -> str:
        return f"{self.problem} (at {self.location})" if self.location is not None else self.problem


class CodegenError(DyngenError):
    """The model uses something the code generator cannot emit."""


class SimulationError(DyngenError, RuntimeError):
    """A simulation that cannot run (no systems, no states), as dynode's RuntimeError."""


class SolverError(DyngenError, RuntimeError):
    """The integrator failed; says when, why and which state went bad."""


class ModelFileError(DyngenError):
    """A model file cannot be loaded or does not define ``build()``."""


class OutputError(DyngenError):
    """dyngen refuses to write where it was asked to (a file it did not generate,
    the model's own source) or cannot (a read-only folder, a path that is a file)."""


class ArgumentError(DyngenError, ValueError):
    """An argument that has no meaning (``simulate(-1, 0.1)``, ``observer_dt=nan``)."""


class DyngenWarning(UserWarning):
    """A model that dyngen compiles, but whose meaning differs from dynode's."""


class CacheWarning(DyngenWarning):
    """dyngen's module cache was damaged (what was removed and built again) or cannot
    be written (the private temporary cache used instead)."""


class EnsembleWarning(DyngenWarning):
    """Some members of an ensemble failed (the others' results are kept; see the Dataset's status)."""


class JacobianWarning(DyngenWarning):
    """A model without an analytic Jacobian (the module's ``NO_JACOBIAN`` says why) runs
    with scipy's finite-difference approximation of it (``BDF``, ``Radau``, ``LSODA``,
    ``lsoda``; ``vode`` as under dynode)."""


class RebuildWarning(DyngenWarning):
    """A change of a plain attribute of a system rebuilt the model (once per attribute
    and Simulation); ``Simulation.make_parameter`` makes such an attribute a parameter."""
