"""Loading a model file: a Python file that defines ``build()``."""

from __future__ import annotations

import inspect
import sys
import traceback
from pathlib import Path
from typing import Any, Mapping

from .cache import import_file
from .errors import ModelFileError, user_traceback_location
from .naming import sanitize
from .runtime.simulation import Simulation


def _fail(path: Path, what: str, exc: BaseException) -> ModelFileError:
    location = user_traceback_location(exc.__traceback__)
    where = f" at {location}" if location else ""
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return ModelFileError(f"{path}: {what} failed{where}:\n    {detail}")


def load_model(
    path: str | Path, cache_dir: str | None = None, build_args: Mapping[str, Any] | None = None
) -> Simulation:
    """Import ``path`` and call its ``build(**build_args)``; returns the Simulation it describes.

    ``build()`` may return a ``Simulation``, one system, or a list of systems.
    ``build_args`` must name keyword arguments ``build()`` takes (a ``ModelFileError``
    lists them otherwise).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    sys.path.insert(0, str(path.resolve().parent))  # sibling imports of the model
    try:
        module = import_file(f"dyngen_model.{sanitize(path.stem)}", path)
    except Exception as exc:
        raise _fail(path, "importing the model", exc) from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    build = getattr(module, "build", None)
    if not callable(build):
        raise ModelFileError(
            f"{path}: a model file must define build() returning a dyngen.Simulation "
            "(or a System, or a list of systems)"
        )
    build_args = dict(build_args or {})
    _check_build_args(path, build, build_args)
    try:
        result = build(**build_args)
    except Exception as exc:
        raise _fail(path, "build()", exc) from exc
    simulation = _as_simulation(path, result, cache_dir)
    simulation.model_name = sanitize(path.stem)
    simulation.model_file = str(path)
    return simulation


def _check_build_args(path: Path, build: Any, build_args: dict[str, Any]) -> None:
    """Refuse arguments ``build()`` does not take, saying which it takes."""
    try:
        parameters = inspect.signature(build).parameters.values()
    except (TypeError, ValueError):  # no signature to check: build() will say
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    takes = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [name for name in build_args if name not in takes]
    if unknown:
        offered = ", ".join(
            f"{p.name}={p.default!r}" if p.default is not p.empty else p.name
            for p in parameters if p.name in takes
        )  # fmt: skip
        raise ModelFileError(
            f"{path}: build() takes no argument {unknown[0]!r}; "
            + (f"it takes: {offered}" if offered else "it takes no arguments")
        )
    missing = [
        p.name for p in parameters
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in build_args
    ]  # fmt: skip
    if missing:
        raise ModelFileError(
            f"{path}: build() needs the argument {missing[0]!r}, which has no default; give it a value "
            f"(on the command line: --arg {missing[0]}=VALUE)"
        )


def _as_simulation(path: Path, result: Any, cache_dir: str | None) -> Simulation:
    if isinstance(result, Simulation):
        if cache_dir is not None:
            result.cache_dir = cache_dir
        return result
    systems = list(result) if isinstance(result, (list, tuple)) else [result]
    if not systems or not all(hasattr(s, "do_step") and hasattr(s, "states") for s in systems):
        raise ModelFileError(
            f"{path}: build() returned {type(result).__name__}; return a dyngen.Simulation, "
            "a System or a list of systems"
        )
    simulation = Simulation(cache_dir=cache_dir)
    for system in systems:
        simulation.add_system(system)
    return simulation
