"""ecgbench: benchmark deep-learning compression for single-lead ECG arrhythmia detection."""

from ecgbench.errors import (
    CompressionError,
    ConfigError,
    DatasetError,
    EcgbenchError,
    PluginError,
    StoreError,
)
from ecgbench.hookspecs import hookimpl, hookspec
from ecgbench.plugin import Plugin, PluginConfig

__version__ = "0.1.0"

CLASSES = ("N", "A", "O", "~")
"""CinC 2017 classes, in the index order every model output and metric uses."""

__all__ = [
    "CLASSES",
    "CompressionError",
    "ConfigError",
    "DatasetError",
    "EcgbenchError",
    "Plugin",
    "PluginConfig",
    "PluginError",
    "StoreError",
    "__version__",
    "hookimpl",
    "hookspec",
]
