"""dynode's ``dynode.recorder`` import path: ``Recorder`` (implemented in
``dyngen.runtime.recorder``)."""

from .runtime.recorder import Recorder
from .system import SystemInterface

__all__ = ["Recorder", "SystemInterface"]
