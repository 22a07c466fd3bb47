"""write: ModuleSource -> a file, atomically, and only when its text changed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .ir import ModuleSource

HASH_LINE_PREFIX = "# model hash: "


def write_module(source: ModuleSource, path: Path) -> bool:
    """Write ``source`` to ``path``; returns False when the file already had this text."""
    try:
        if path.read_text(encoding="utf-8") == source.text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    write_text_atomic(path, source.text)
    return True


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder that is
    then renamed over ``path``, so a reader (or a second process writing the same
    file) never sees a torn or mixed file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it normal permissions
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


TRAILER_PREFIX = "# end of generated module "


def module_hash(path: Path) -> str | None:
    """The model hash of a complete generated module (header and trailer agree).

    None when the file is missing, not a generated module, or damaged (truncated).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    header = next((line for line in text.splitlines()[:5] if line.startswith(HASH_LINE_PREFIX)), None)
    if header is None:
        return None
    digest = header[len(HASH_LINE_PREFIX):].strip()
    return digest if text.endswith(f"{TRAILER_PREFIX}{digest}\n") else None
