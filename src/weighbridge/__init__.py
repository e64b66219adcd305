"""weighbridge: choose, license-check, measure and serve open-weight models on your own hardware."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("weighbridge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from .core.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    WeighbridgeError,
)

__all__ = [
    "__version__",
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "WeighbridgeError",
]
