"""dyngen: compile dynode-style models of dynamical systems into one @njit module.

Porting a dynode model is changing its import::

    from dyngen import SystemInterface, Simulation, Recorder, connect_signals
"""

from typing import Union

from .containers import ParameterContainer, VariableContainer
from .errors import (
    AlgebraicLoopError,
    ArgumentError,
    CacheWarning,
    CodegenError,
    DyngenError,
    DyngenWarning,
    ModelError,
    ModelFileError,
    OutputError,
    EnsembleWarning,
    JacobianWarning,
    RebuildWarning,
    SimulationError,
    SolverError,
    TraceError,
    UsageError,
)
from .recorder import Recorder
from .simulation import Simulation
from .shared import where
from .system import System, SystemInterface, connect_signals
from .version import __version__

AnyContainer = Union[VariableContainer, ParameterContainer]

__all__ = [
    "System",
    "SystemInterface",
    "Simulation",
    "Recorder",
    "connect_signals",
    "VariableContainer",
    "ParameterContainer",
    "AnyContainer",
    "where",
    "DyngenError",
    "TraceError",
    "ModelError",
    "AlgebraicLoopError",
    "CodegenError",
    "SimulationError",
    "SolverError",
    "UsageError",
    "ModelFileError",
    "OutputError",
    "ArgumentError",
    "DyngenWarning",
    "CacheWarning",
    "EnsembleWarning",
    "JacobianWarning",
    "RebuildWarning",
    "__version__",
]
