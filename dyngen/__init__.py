"""dyngen: compile dynode-style models of dynamical systems into one @njit module.

Porting a dynode model is changing its import::

    from dyngen import SystemInterface, Simulation, Recorder, connect_signals
"""

from .errors import (
    AlgebraicLoopError,
    ArgumentError,
    CodegenError,
    DyngenError,
    DyngenWarning,
    ModelError,
    ModelFileError,
    OutputError,
    SimulationError,
    SolverError,
    TraceError,
)
from .runtime.recorder import Recorder
from .runtime.simulation import Simulation
from .symbolic import where
from .system import System, SystemInterface, connect_signals
from .version import __version__

__all__ = [
    "System",
    "SystemInterface",
    "Simulation",
    "Recorder",
    "connect_signals",
    "where",
    "DyngenError",
    "TraceError",
    "ModelError",
    "AlgebraicLoopError",
    "CodegenError",
    "SimulationError",
    "SolverError",
    "ModelFileError",
    "OutputError",
    "ArgumentError",
    "DyngenWarning",
    "__version__",
]
