"""Loading example model files with either dyngen or the real dynode.

The same file runs on both: its ``from dyngen import ...`` line is rewritten to
import the modeling API from dynode ("porting is changing an import").
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
_IMPORT = re.compile(r"^from dyngen import (.+)$", re.MULTILINE)
_DYNODE_NAMES = {"Simulation", "Recorder", "connect_signals", "SystemInterface"}


def _dynode_imports(match: re.Match) -> str:
    lines = []
    for name in (n.strip() for n in match.group(1).strip("()").split(",")):
        if name == "System":
            lines.append("from dynode import SystemInterface as System")
        elif name in _DYNODE_NAMES:
            lines.append(f"from dynode import {name}")
        else:  # where(): works on plain numbers too
            lines.append(f"from dyngen import {name}")
    return "\n".join(lines)


def load(path: Path, backend: str) -> ModuleType:
    """Import the model file ``path`` using ``backend`` ("dyngen" or "dynode")."""
    name = f"bench_{backend}_{path.stem}"
    if backend == "dyngen":
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    source = _IMPORT.sub(_dynode_imports, path.read_text(encoding="utf-8"))
    module = ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module
