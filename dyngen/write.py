"""write: ModuleSource -> a file, atomically, and only when its text changed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .ir import ModuleSource

HASH_LINE_PREFIX = "# model hash: "


def write_module(source: ModuleSource, path: Path) -> bool:
    """Write ``source`` to ``path``; returns False when the file already had this text.

    The text goes to a temporary file in the same folder that is then renamed over
    ``path``, so a reader (or a second process building the same model) never sees
    a torn or mixed file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_text(encoding="utf-8") == source.text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    fd, temp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(source.text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    return True


def module_hash(path: Path) -> str | None:
    """The model hash recorded in a generated module's header, if it has one."""
    try:
        with path.open(encoding="utf-8") as handle:
            for _ in range(5):
                line = handle.readline()
                if line.startswith(HASH_LINE_PREFIX):
                    return line[len(HASH_LINE_PREFIX):].strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return None
