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
from functools import lru_cache

_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
_RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {
    "t", "y", "p", "dy", "J", "out", "np", "math", "numba", "njit",
    "interp_value", "interp_slope", "interp_index",  # the np.interp helpers (templates/module.py.j2)
}  # fmt: skip

# Signal identifiers are "<path>__<prefix><key>": they always contain "__", which
# sanitized parts never do, so they cannot collide with CSE temporaries ("c0", ...)
# or with the module's own names.
KIND_PREFIX = {"states": "", "ders": "der_", "inputs": "in_", "outputs": "out_", "attributes": "attr_"}


def sanitize(text: str) -> str:
    """``text`` reduced to ASCII letters, digits and single underscores."""
    cleaned = _UNSAFE.sub("_", text).strip("_")
    cleaned = re.sub(r"_+", "_", cleaned) or "x"
    if cleaned[0].isdigit():
        cleaned = "n" + cleaned
    return cleaned


_ELEMENT = re.compile(r"(.+)_(0|[1-9][0-9]*)")  # name_<index>: an element name of a family


class NameRegistry:
    """Hands out identifiers, each once; a taken name gets a numeric suffix.

    A family (the element names ``name_0 .. name_{size-1}`` of a large array) is
    reserved by its name and size, not name by name: a 9-million-element matrix costs
    one entry.
    """

    def __init__(self) -> None:
        self._taken: set[str] = set(_RESERVED)
        self._families: dict[str, int] = {}  # family name -> size
        self._indexed: dict[str, set[int]] = {}  # base -> k, for every taken name "base_k"

    def _is_free(self, name: str) -> bool:
        if name in self._taken:
            return False
        match = _ELEMENT.fullmatch(name)
        return not (match and int(match[2]) < self._families.get(match[1], 0))

    def _take(self, name: str) -> None:
        self._taken.add(name)
        match = _ELEMENT.fullmatch(name)
        if match:
            self._indexed.setdefault(match[1], set()).add(int(match[2]))

    def unique(self, candidate: str) -> str:
        name, n = candidate, 2
        while not self._is_free(name):
            name = f"{candidate}_{n}"
            n += 1
        self._take(name)
        return name

    def unique_family(self, candidate: str, size: int) -> str:
        """A name whose element names ``name_0 .. name_{size-1}`` (size > 1) are free too."""
        if size == 1:
            return self.unique(candidate)
        name, n = candidate, 2
        # Two families' element names can only meet if the families have the same name.
        while not self._is_free(name) or name in self._families or any(k < size for k in self._indexed.get(name, ())):
            name = f"{candidate}_{n}"
            n += 1
        self._take(name)
        self._families[name] = size
        return name


def signal_identifier(path: str, kind: str, key: str) -> str:
    """The (not yet unique) identifier of one signal."""
    return f"{sanitize(path)}__{KIND_PREFIX[kind]}{sanitize(key)}"


def comment_text(text: str) -> str:
    """``text`` safe to put after ``#``: one line, non-printables escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


MAX_MODULE_NAME = 100  # a cache file is <name>_<16 hex>.py: well within any file system's 255


@lru_cache(maxsize=1024)
def module_name(text: str) -> str:
    """A generated module's name: ``sanitize(text)``, at most ``MAX_MODULE_NAME``
    characters (a longer one keeps its start and a hash of the whole, so that it still
    names a file)."""
    name = sanitize(text)
    if len(name) <= MAX_MODULE_NAME:
        return name
    digest = hashlib.sha256(name.encode("ascii")).hexdigest()[:16]
    return f"{name[:MAX_MODULE_NAME - 17]}_{digest}"
