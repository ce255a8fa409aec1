"""The PhysioNet/Computing in Cardiology Challenge 2017 training set (AF classification).

Clifford GD, Liu C, Moody B, et al. "AF Classification from a Short Single
Lead ECG Recording: the PhysioNet/Computing in Cardiology Challenge 2017."
Computing in Cardiology 2017;44. Single-lead AliveCor recordings, 300 Hz,
9-61 s, labelled N, A, O or ~ in ``REFERENCE.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Literal

from pydantic import Field

from ecgbench import hookimpl
from ecgbench.data.problems import RecordLog, RecordProblem
from ecgbench.data.wfdb_io import folder_fingerprint, list_record_ids, match_labels, read_label_rows, read_lead, resolve_folder
from ecgbench.kinds.dataset import Dataset, Record
from ecgbench.kinds.base import PluginConfig

ENV_VAR = "ECGBENCH_CINC2017_DIR"
FS_HZ = 300.0  # every challenge recording is sampled at 300 Hz (Clifford et al. 2017)

# REFERENCE.csv holds the final relabelled reference (v3); REFERENCE-v1.csv the labels first released.
LABEL_FILES = {"final": "REFERENCE.csv", "v1": "REFERENCE-v1.csv"}


class CinC2017(Dataset):
    """PhysioNet/CinC 2017 records from a local folder, read with ``wfdb.rdrecord``."""

    name = "cinc2017"
    description = "PhysioNet/CinC Challenge 2017 single-lead AliveCor ECG, 300 Hz, classes N/A/O/~"

    class Config(PluginConfig):
        path: str | None = Field(None, description=f"folder of the training set (RECORDS, REFERENCE.csv, A*.hea/.mat); default ${ENV_VAR}")
        labels: Literal["final", "v1"] = Field("final", description="'final': REFERENCE.csv (relabelled v3); 'v1': REFERENCE-v1.csv")

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self._fingerprint: str | None = None

    def folder(self) -> Path:
        """The dataset folder (``path`` or ``$ECGBENCH_CINC2017_DIR``)."""
        return resolve_folder(self.config.path, ENV_VAR, self.name, fetch_hint="run `ecgbench data fetch cinc2017 --to DIR`")

    def label_file(self) -> Path:
        """REFERENCE.csv (final labels) or REFERENCE-v1.csv."""
        return self.folder() / LABEL_FILES[self.config.labels]

    def records(self, log: RecordLog | None = None) -> Iterator[Record]:
        """Every listed record with its reference label, in RECORDS order."""
        log = log or RecordLog()
        folder = self.folder()
        record_ids, _listed_in = list_record_ids(folder)
        labels = match_labels(record_ids, read_label_rows(self.label_file()), self.label_file(), log, self.classes)
        fs_fix = f"CinC 2017 records are all {FS_HZ:g} Hz: replace the record with the original from PhysioNet"
        for record_id in record_ids:
            if record_id not in labels:
                continue  # already reported by match_labels
            try:
                lead = read_lead(folder, record_id, 0, FS_HZ, fs_fix)
            except RecordProblem as problem:
                log.problem(problem)
                continue
            yield Record(record_id, lead.signal, lead.fs_hz, labels[record_id], lead.source)

    def fingerprint(self) -> str:
        """SHA-256 of the record files, the record list and the chosen label file."""
        if self._fingerprint is None:
            folder = self.folder()
            record_ids, _ = list_record_ids(folder)
            settings = {"dataset": self.name, "labels": self.config.labels}
            self._fingerprint = folder_fingerprint(folder, record_ids, [folder / "RECORDS", self.label_file()], settings)
        return self._fingerprint


@hookimpl
def ecgbench_register_datasets(register):
    register(CinC2017)
