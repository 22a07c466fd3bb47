"""The dyngen version (part of every generated module's hash)."""

__version__ = "0.1.0"
