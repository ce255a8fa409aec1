"""Turning dataset records into cached, preprocessed, split arrays.

``load_splits(dataset, DataConfig(...), cache_dir)`` is what the runner calls;
``load_signalset`` gives every record unsplit (``ecgbench eval``);
``preprocess_signal`` is the one preprocessing step both share.

Names are imported on first use, so reading a suite's ``DataConfig`` does not
import scipy.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DataConfig": "ecgbench.data.config",
    "SplitConfig": "ecgbench.data.config",
    "load_signalset": "ecgbench.data.loader",
    "load_splits": "ecgbench.data.loader",
    "preprocess_signal": "ecgbench.data.preprocess",
    "RecordLog": "ecgbench.data.problems",
    "RecordProblem": "ecgbench.data.problems",
    "SkippedRecordsWarning": "ecgbench.data.problems",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ecgbench.data' has no attribute '{name}'")
