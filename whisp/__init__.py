"""whisp: recorded meeting takes in a bucket become finished, captioned MP4s."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("whisp")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
