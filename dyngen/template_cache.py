"""The compiled templates, kept in the module cache between processes.

jinja2 compiles ``module.py.j2`` to Python code at the first render of every process:
about 60 ms of a new model's cold build.  This cache keeps that code once per
installation, beside the ``.pyc`` files of dyngen's own code (``dyngen/__pycache__``),
or in ``<module cache>/templates/`` when that folder cannot be written.  A file holds the SHA-256 of its payload
and then jinja2's own record (a magic number that names the Python version, the
template source's checksum, the marshalled code): a damaged or truncated file fails
the digest and is replaced, a stale one fails jinja2's checksum and is replaced; a
cache that cannot be written only costs the compile.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import jinja2
from jinja2.bccache import Bucket

from .write import write_bytes_atomic

_DIGEST = hashlib.sha256().digest_size


class TemplateCodeCache(jinja2.BytecodeCache):
    """jinja2's bytecode of the templates, checked by digest, written atomically."""

    def __init__(self, *directories: Path) -> None:
        self.directories = directories  # the first that can be written is used

    def load_bytecode(self, bucket: Bucket) -> None:
        for directory in self.directories:
            try:
                data = (directory / f"template-{bucket.key}.jinja").read_bytes()
            except OSError:
                continue
            if self._load(bucket, data):
                return

    @staticmethod
    def _load(bucket: Bucket, data: bytes) -> bool:
        digest, payload = data[:_DIGEST], data[_DIGEST:]
        if hashlib.sha256(payload).digest() != digest:
            return False  # damaged: compiled again and written over
        try:
            bucket.bytecode_from_string(payload)
        except Exception:  # noqa: BLE001 - a record jinja2 cannot read is compiled again
            bucket.reset()
        return bucket.code is not None  # (None: another Python, or a stale template)

    def dump_bytecode(self, bucket: Bucket) -> None:
        payload = bucket.bytecode_to_string()
        data = hashlib.sha256(payload).digest() + payload
        for directory in self.directories:
            try:
                write_bytes_atomic(directory / f"template-{bucket.key}.jinja", data)
                return
            except OSError:
                continue  # the next folder; none: the next process compiles again
