"""The arrays the runner hands to training and evaluation: packed records and their splits."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ecgbench import CLASSES


@dataclass
class SignalSet:
    """Preprocessed records of one split: variable-length signals packed end to end.

    ``signals[offsets[i]:offsets[i+1]]`` is record ``i``; memory-mappable.
    """

    signals: np.ndarray  # float32, 1-D, all records concatenated
    offsets: np.ndarray  # int64, len = n_records + 1
    labels: np.ndarray  # int64 class indices into CLASSES
    record_ids: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def signal(self, i: int) -> np.ndarray:
        return self.signals[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, index: np.ndarray) -> "SignalSet":
        """A new SignalSet holding the records at ``index`` (copied)."""
        parts = [self.signal(int(i)) for i in index]
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p) for p in parts])
        signals = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        return SignalSet(signals, offsets, self.labels[index].astype(np.int64), [self.record_ids[int(i)] for i in index])


@dataclass
class DataSplits:
    """What training and evaluation get: train/val/test records at one sampling rate."""

    train: SignalSet
    val: SignalSet
    test: SignalSet
    fs_hz: float
    window_s: float  # training crop length; evaluation uses whole records
    classes: tuple[str, ...] = CLASSES
    info: dict = field(default_factory=dict)  # dataset name, synthetic flag, fingerprint, skipped records, split file
