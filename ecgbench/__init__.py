"""ecgbench: benchmark deep-learning compression for single-lead ECG arrhythmia detection.

The public surface for plugin authors is this module: the hook markers, the
errors, and the base class of every plugin kind. The kinds are imported on
first use, so ``import ecgbench`` does not import torch.
"""

from __future__ import annotations

import importlib

from ecgbench.errors import (
    CompressionError,
    ConfigError,
    DatasetError,
    EcgbenchError,
    PluginError,
    StoreError,
)
from ecgbench.hookspecs import hookimpl, hookspec
from ecgbench.kinds.base import Plugin, PluginConfig

__version__ = "0.1.0"

CLASSES = ("N", "A", "O", "~")
"""CinC 2017 classes, in the index order every model output and metric uses."""

_KINDS = {
    "CompressionContext": "ecgbench.kinds.compressor",
    "Compressor": "ecgbench.kinds.compressor",
    "ModelArtifact": "ecgbench.kinds.compressor",
    "StepOutcome": "ecgbench.kinds.compressor",
    "Dataset": "ecgbench.kinds.dataset",
    "Record": "ecgbench.kinds.dataset",
    "DeviceProfile": "ecgbench.kinds.device",
    "Executor": "ecgbench.kinds.executor",
    "Logger": "ecgbench.kinds.logger",
    "Compared": "ecgbench.measure.schema",
    "Gate": "ecgbench.measure.schema",
    "Measurement": "ecgbench.measure.schema",
    "Metric": "ecgbench.measure.schema",
    "ModelFamily": "ecgbench.kinds.model",
    "ModelSpec": "ecgbench.kinds.model",
    "LossInputs": "ecgbench.train.trainer",
    "Reporter": "ecgbench.kinds.reporter",
    "SingleFileReporter": "ecgbench.kinds.reporter",
}


def __getattr__(name: str):
    if name in _KINDS:
        return getattr(importlib.import_module(_KINDS[name]), name)
    raise AttributeError(f"module 'ecgbench' has no attribute '{name}'")


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
    *sorted(_KINDS),
]
