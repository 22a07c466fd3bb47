"""Safe, collision-free identifiers and comment text for the generated module.

No user string (container key, class name, system path) ever reaches the emitted
source as code: identifiers are rebuilt from ``[A-Za-z0-9_]`` only and made unique,
and text placed in comments has every non-printable character escaped.
"""

from __future__ import annotations

import builtins
import hashlib
import keyword
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
_RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {
    "t", "y", "p", "dy", "J", "out", "np", "math", "numba", "njit",
    "interp_value", "interp_slope", "interp_index",  # the np.interp helpers (templates/module.py.j2)
}  # fmt: skip

# Signal identifiers are "<path>__<prefix><key>": they always contain "__", which
# sanitized parts never do, so they cannot collide with CSE temporaries ("c0", ...)
# or with the module's own names.
KIND_PREFIX = {"states": "", "ders": "der_", "inputs": "in_", "outputs": "out_"}


def sanitize(text: str) -> str:
    """``text`` reduced to ASCII letters, digits and single underscores."""
    cleaned = _UNSAFE.sub("_", text).strip("_")
    cleaned = re.sub(r"_+", "_", cleaned) or "x"
    if cleaned[0].isdigit():
        cleaned = "n" + cleaned
    return cleaned


class NameRegistry:
    """Hands out identifiers, each once; a taken name gets a numeric suffix."""

    def __init__(self) -> None:
        self._taken: set[str] = set(_RESERVED)

    def unique(self, candidate: str) -> str:
        name, n = candidate, 2
        while name in self._taken:
            name = f"{candidate}_{n}"
            n += 1
        self._taken.add(name)
        return name

    def unique_family(self, candidate: str, size: int) -> str:
        """A name whose element names ``name_0 .. name_{size-1}`` (size > 1) are free too."""
        if size == 1:
            return self.unique(candidate)
        name, n = candidate, 2
        while name in self._taken or any(f"{name}_{j}" in self._taken for j in range(size)):
            name = f"{candidate}_{n}"
            n += 1
        self._taken.update([name, *(f"{name}_{j}" for j in range(size))])
        return name


def signal_identifier(path: str, kind: str, key: str) -> str:
    """The (not yet unique) identifier of one signal."""
    return f"{sanitize(path)}__{KIND_PREFIX[kind]}{sanitize(key)}"


def comment_text(text: str) -> str:
    """``text`` safe to put after ``#``: one line, non-printables escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


MAX_MODULE_NAME = 100  # a cache file is <name>_<16 hex>.py: well within any file system's 255


def module_name(text: str) -> str:
    """A generated module's name: ``sanitize(text)``, at most ``MAX_MODULE_NAME``
    characters (a longer one keeps its start and a hash of the whole, so that it still
    names a file)."""
    name = sanitize(text)
    if len(name) <= MAX_MODULE_NAME:
        return name
    digest = hashlib.sha256(name.encode("ascii")).hexdigest()[:16]
    return f"{name[:MAX_MODULE_NAME - 17]}_{digest}"
