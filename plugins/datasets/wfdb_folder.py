"""Any folder of WFDB records, labelled by a CSV or by rhythm annotations.

Two ways to label:

- ``labels_csv``: rows ``record,label`` with labels N, A, O or ~;
- ``annotation``: the extension of a WFDB annotation file (``atr``) whose
  ``aux_note`` rhythm codes (``(AFIB``, ``(N``, ...) are mapped to classes by
  ``rhythm_map``; long records are cut into ``window_s`` windows, each
  labelled by the one rhythm covering it whole. ``default_rhythm`` labels
  the stretch before a record's first rhythm annotation; a rhythm annotation
  within ``END_MARKER_SAMPLES`` of the record's end marks the end, not a new
  rhythm. Windows crossing a rhythm change, or before the first annotation
  without ``default_rhythm``, are dropped and counted by reason in
  ``info["dropped"]`` (and in every report).

Windows are named ``<record>@<start>s``; the splits keep all windows of one
group together (``split_group``): the recording, or with ``group_pattern``
(e.g. ``'data_(\\d+)_'``) the first capture group of the record name, such as
a patient id. No group is ever in two splits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np
from pydantic import Field, model_validator

from ecgbench import CLASSES, hookimpl
from ecgbench.data.problems import RecordLog, RecordProblem
from ecgbench.data.wfdb_io import folder_fingerprint, list_record_ids, match_labels, read_label_rows, read_lead, resolve_folder
from ecgbench.kinds.dataset import Dataset, Record
from ecgbench.kinds.base import PluginConfig
from ecgbench.errors import ConfigError

ENV_VAR = "ECGBENCH_WFDB_DIR"

# Rhythm codes of the MIT-BIH Atrial Fibrillation Database (Moody GB, Mark RG,
# "A new method for detecting atrial fibrillation using R-R intervals",
# Computers in Cardiology 1983;10:227-230): atrial fibrillation, atrial
# flutter, AV junctional rhythm, and "(N" for all other (mostly sinus) rhythm.
MIT_BIH_AF_RHYTHMS = {"(AFIB": "A", "(AFL": "O", "(J": "O", "(N": "N"}

WINDOW_SEPARATOR = "@"

# A rhythm annotation this close to a record's last sample marks its end (CPSC 2021 puts "(N"
# at the last sample of persistent-AF records), not a new rhythm.
END_MARKER_SAMPLES = 3

# Bump when the rules turning annotations into windows change: part of the fingerprint (cache key).
RULES_VERSION = 2


class WfdbFolder(Dataset):
    """Records of a WFDB folder, whole or cut into fixed windows."""

    name = "wfdb"
    description = "any folder of WFDB records, labelled by a record,label CSV or by rhythm annotations"

    class Config(PluginConfig):
        path: str | None = Field(None, description=f"folder of WFDB records (RECORDS or *.hea); default ${ENV_VAR}")
        lead: int | str = Field(0, description="lead to read: its index or its name in the header (e.g. 'MLII')")
        fs_hz: float | None = Field(None, gt=0, description="sampling rate every record must have, in Hz; null accepts any")
        labels_csv: str | None = Field(None, description="CSV of 'record,label' rows, relative to path")
        annotation: str | None = Field(None, description="annotation file extension with rhythm aux_notes, e.g. 'atr'")
        rhythm_map: dict[str, str] = Field(
            default_factory=lambda: dict(MIT_BIH_AF_RHYTHMS), description="rhythm code -> class (N, A, O, ~); default: MIT-BIH AF database"
        )
        window_s: float | None = Field(None, gt=0, description="cut records into windows of this many seconds; null: whole records")
        default_rhythm: str | None = Field(
            None,
            description="rhythm code (a key of rhythm_map, e.g. '(N') of the stretch before a record's first rhythm annotation; "
            "null: windows there are dropped and counted as before_first_rhythm",
        )
        group_pattern: str | None = Field(
            None,
            description="regular expression searched in the record name, its first capture group the group (e.g. patient) id, "
            "e.g. 'data_(\\d+)_'; splits never put one group in two splits; null: each recording is its own group",
        )

        @model_validator(mode="after")
        def _one_label_source(self):
            if isinstance(self.lead, int) and self.lead < 0:
                raise ValueError(f"lead index {self.lead} is negative; give an index from 0 or a lead name such as 'MLII'")
            if (self.labels_csv is None) == (self.annotation is None):
                raise ValueError("set exactly one of labels_csv (a 'record,label' CSV) or annotation (e.g. 'atr' for rhythm annotations)")
            unknown = {code: cls for code, cls in self.rhythm_map.items() if cls not in CLASSES}
            if unknown:
                raise ValueError(f"rhythm_map maps to {unknown}; map every rhythm code to one of {', '.join(CLASSES)}")
            if self.default_rhythm is not None and self.default_rhythm not in self.rhythm_map:
                raise ValueError(
                    f"default_rhythm '{self.default_rhythm}' is not a code of rhythm_map ({', '.join(self.rhythm_map)}); "
                    "choose one of them, e.g. '(N'"
                )
            if self.group_pattern is not None:
                try:
                    groups = re.compile(self.group_pattern).groups
                except re.error as exc:
                    raise ValueError(f"group_pattern '{self.group_pattern}' is not a regular expression ({exc})") from None
                if groups < 1:
                    raise ValueError(
                        f"group_pattern '{self.group_pattern}' has no capture group; put the group id in parentheses, e.g. 'data_(\\d+)_'"
                    )
            return self

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self._fingerprint: str | None = None

    def folder(self) -> Path:
        """The records folder (``path`` or ``$ECGBENCH_WFDB_DIR``)."""
        return resolve_folder(self.config.path, ENV_VAR, self.name)

    def label_file(self) -> Path | None:
        """The ``labels_csv`` file, or None when labels come from annotations."""
        return None if self.config.labels_csv is None else self.folder() / self.config.labels_csv

    def records(self, log: RecordLog | None = None) -> Iterator[Record]:
        """Every record (or window) with its label, in RECORDS order."""
        log = log or RecordLog()
        cfg = self.config
        folder = self.folder()
        record_ids, _ = list_record_ids(folder)
        labels = None
        if cfg.labels_csv is not None:
            labels = match_labels(record_ids, read_label_rows(self.label_file()), self.label_file(), log, self.classes)
        for record_id in record_ids:
            if labels is not None and record_id not in labels:
                continue  # already reported by match_labels
            self.split_group(record_id)  # a name the group_pattern misses fails before any signal is read
            try:
                lead = read_lead(folder, record_id, cfg.lead, cfg.fs_hz)
                if labels is not None:
                    segments = [(0, len(lead.signal), labels[record_id])]
                else:
                    segments = self._rhythm_segments(folder, record_id, len(lead.signal))
            except RecordProblem as problem:
                log.problem(problem)
                continue
            yield from self._cut(record_id, lead.signal, lead.fs_hz, lead.source, segments, log)

    def _rhythm_segments(self, folder: Path, record_id: str, n_samples: int) -> list[tuple[int, int, str]]:
        """``(start, end, class)`` of each stretch of one rhythm, adjacent equal classes merged."""
        import wfdb  # imported on use, as in ecgbench.data.wfdb_io

        path = Path(f"{folder / record_id}.{self.config.annotation}")
        try:
            ann = wfdb.rdann(str(folder / record_id), self.config.annotation)
        except FileNotFoundError:
            raise RecordProblem("unreadable", record_id, str(path), "annotation file is missing", "add it, or remove the record from RECORDS") from None
        except Exception as exc:
            raise RecordProblem("unreadable", record_id, str(path), f"annotations are unreadable ({type(exc).__name__}: {exc})", "re-download them") from None
        notes = [(int(s), (a or "").rstrip("\x00").strip()) for s, a in zip(ann.sample, ann.aux_note or [""] * len(ann.sample))]
        # A rhythm code at the record's very end marks the end (see END_MARKER_SAMPLES), not a change.
        kept = [(s, code) for s, code in notes if code.startswith("(") and n_samples - s > END_MARKER_SAMPLES]
        changes = sorted(kept, key=lambda change: change[0])
        unknown = sorted({code for _s, code in changes if code not in self.config.rhythm_map})
        if unknown:
            examples = ", ".join(f"'{c}': O" for c in unknown)
            raise RecordProblem(
                "unknown_label", record_id, str(path), f"rhythm code(s) {', '.join(unknown)} are not in rhythm_map",
                f"map them to a class, e.g. rhythm_map: {{{examples}}}",
            )
        if self.config.default_rhythm is not None and (not changes or changes[0][0] > 0):
            changes.insert(0, (0, self.config.default_rhythm))
        segments: list[tuple[int, int, str]] = []
        for i, (start, code) in enumerate(changes):
            end = changes[i + 1][0] if i + 1 < len(changes) else n_samples
            cls = self.config.rhythm_map[code]
            if segments and segments[-1][2] == cls and segments[-1][1] == start:
                segments[-1] = (segments[-1][0], end, cls)
            elif end > start:
                segments.append((start, end, cls))
        return segments

    def _cut(self, record_id: str, signal: np.ndarray, fs_hz: float, source: str, segments, log: RecordLog) -> Iterator[Record]:
        n = len(signal)
        if self.config.window_s is None:
            if len(segments) == 1 and segments[0][:2] == (0, n):
                yield Record(record_id, signal, fs_hz, segments[0][2], source)
            else:
                log.drop("rhythm_change" if segments and segments[0][0] == 0 else "before_first_rhythm", 1, record_id)
            return
        width = int(round(self.config.window_s * fs_hz))
        starts = np.arange(n // width, dtype=np.int64) * width
        if not len(starts):
            log.drop("shorter_than_window", 1, record_id)
            return
        seg_starts = np.array([s for s, _e, _c in segments], dtype=np.int64)
        seg_ends = np.array([e for _s, e, _c in segments], dtype=np.int64)
        covering = np.searchsorted(seg_starts, starts, side="right") - 1
        inside = covering >= 0
        whole = inside & (seg_ends[np.maximum(covering, 0)] >= starts + width) if len(segments) else inside
        log.drop("before_first_rhythm", int((~inside).sum()), record_id)
        log.drop("rhythm_change", int((inside & ~whole).sum()), record_id)
        for start, seg in zip(starts[whole], covering[whole]):
            window_id = f"{record_id}{WINDOW_SEPARATOR}{start / fs_hz:g}s"
            yield Record(window_id, signal[start : start + width], fs_hz, segments[seg][2], source)

    def recording(self, record_id: str) -> str:
        """The recording a record or window comes from."""
        return record_id.rsplit(WINDOW_SEPARATOR, 1)[0] if self.config.window_s is not None else record_id

    def split_group(self, record_id: str) -> str:
        """The group splits keep together: the recording, or the first capture group of ``group_pattern`` in its name."""
        recording = self.recording(record_id)
        if self.config.group_pattern is None:
            return recording
        match = re.search(self.config.group_pattern, recording)
        if match is None or match.group(1) is None:
            raise ConfigError(
                f"dataset 'wfdb': record '{recording}' does not match group_pattern '{self.config.group_pattern}' "
                f"(of {self.folder()}); change the pattern so that every record name matches and its first group is the group id"
            )
        return match.group(1)

    def fingerprint(self) -> str:
        """SHA-256 of the record and annotation files, the record list, the label CSV and the settings."""
        if self._fingerprint is None:
            folder = self.folder()
            record_ids, _ = list_record_ids(folder)
            settings = {"dataset": self.name, "rules": RULES_VERSION, **self.config.model_dump(mode="json", exclude={"path"})}
            extra = [folder / "RECORDS"] + ([self.label_file()] if self.config.labels_csv else [])
            self._fingerprint = folder_fingerprint(folder, record_ids, extra, settings)
        return self._fingerprint


@hookimpl
def ecgbench_register_datasets(register):
    register(WfdbFolder)
