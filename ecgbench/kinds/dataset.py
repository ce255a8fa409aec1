"""The dataset plugin kind: a source of labelled single-lead records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterator

import numpy as np

from ecgbench import CLASSES
from ecgbench.kinds.base import Plugin


@dataclass(frozen=True)
class Record:
    """One labelled single-lead recording at its native sampling rate."""

    record_id: str
    signal: np.ndarray  # float32, 1-D, millivolts
    fs_hz: float
    label: str  # one of CLASSES
    source: str = ""  # file the record came from, for error messages


class Dataset(Plugin):
    """A source of labelled single-lead ECG records.

    Subclasses implement :meth:`records` and :meth:`fingerprint`. Models and
    compressors never see a dataset: the runner turns it into
    :class:`ecgbench.data.arrays.DataSplits` through ``ecgbench.data.load_splits``.
    """

    kind: ClassVar[str] = "dataset"
    synthetic: ClassVar[bool] = False  # reports label synthetic data as such
    classes: ClassVar[tuple[str, ...]] = CLASSES

    def records(self, log=None) -> Iterator[Record]:
        """Yield every record with its label, in a stable order.

        ``log`` (an ``ecgbench.data.problems.RecordLog``, optional in
        subclasses) receives problems found while reading: ``log.problem(p)``
        raises or counts a skipped record according to ``on_bad_record``.
        """
        raise NotImplementedError

    def recording(self, record_id: str) -> str:
        """The recording a record was cut from (a split file may name it); the record itself by default."""
        return record_id

    def split_group(self, record_id: str) -> str:
        """Records of one group never land in two splits (e.g. windows of one recording, or recordings of one patient)."""
        return self.recording(record_id)

    def fingerprint(self) -> str:
        """A hash of everything that determines the records (source file contents, generator settings)."""
        raise NotImplementedError
