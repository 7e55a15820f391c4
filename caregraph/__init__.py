"""caregraph: the composition root (CLI, settings, wiring of the services)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("caregraph")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
