"""whisp's service: events in, takes processed, results out. Owns all I/O.

whisp is an application with two top-level packages, ``consumer`` (this one) and
``pipeline`` (pure media work on local files); ``pipeline`` never imports ``consumer``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("whisp")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
