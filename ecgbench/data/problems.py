"""Records that cannot be used: one error type, and a log that raises or counts them.

A dataset reports every unusable record as a :class:`RecordProblem` naming the
record, the file and the fix. With ``data.on_bad_record: error`` (the default)
the first one stops loading; with ``skip`` the record is left out, a warning
is issued and the count lands in ``DataSplits.info["skipped"]``. Nothing is
ever dropped silently.

Datasets that want ``skip`` to apply to problems found while reading (not
only to those the loader finds in a yielded record) accept the log as an
argument of ``records``::

    def records(self, log: RecordLog | None = None):
        log = log or RecordLog()
        ...
        log.problem(RecordProblem("unreadable", record_id, str(path), "header is truncated", "re-download the record"))
        continue
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections import Counter
from typing import Iterator, Literal

import numpy as np

from ecgbench import CLASSES
from ecgbench.kinds.dataset import Record
from ecgbench.errors import DatasetError

# Why a record can be unusable: the keys of DataSplits.info["skipped"].
REASONS = {
    "unreadable": "header or signal file missing, unreadable or truncated",
    "nan": "signal holds NaN or infinite samples",
    "flat": "signal is constant (lead off or empty)",
    "missing_record": "a label names a record that is not in the folder",
    "unlabelled": "a record has no label",
    "unknown_label": "a label is not one of the dataset's classes",
    "fs_mismatch": "a record's sampling rate differs from the dataset's",
    "missing_lead": "a record lacks the chosen lead",
}

# Why a dataset leaves pieces out by design: the keys of DataSplits.info["dropped"] (a dataset may add its own).
DROP_REASONS = {
    "before_first_rhythm": "before the record's first rhythm annotation (set the dataset's default_rhythm to keep it)",
    "rhythm_change": "spans a change of rhythm",
    "shorter_than_window": "the record is shorter than one window",
}

SKIP_HINT = "or set data.on_bad_record: skip to leave such records out (they are counted in the report)"
EVAL_SKIP_HINT = "or pass --on-bad-record skip to leave such records out (they are counted in the output)"
_SKIP_HINT: contextvars.ContextVar[str] = contextvars.ContextVar("ecgbench_skip_hint", default=SKIP_HINT)


def skip_hint() -> str:
    """How the caller can skip bad records: the suite key by default, a flag inside :func:`skip_hint_of`."""
    return _SKIP_HINT.get()


@contextlib.contextmanager
def skip_hint_of(hint: str) -> Iterator[None]:
    """Record errors raised inside the block suggest ``hint`` (e.g. ``ecgbench eval``'s ``--on-bad-record skip``)."""
    token = _SKIP_HINT.set(hint)
    try:
        yield
    finally:
        _SKIP_HINT.reset(token)
MAX_IDS_IN_WARNING = 5


class RecordProblem(DatasetError):
    """One unusable record: why (a key of REASONS), which record, which file, and the fix."""

    def __init__(self, reason: str, record_id: str, source: str, detail: str, fix: str) -> None:
        self.reason = reason
        self.record_id = record_id
        self.source = source
        self.detail = detail
        self.fix = fix
        self.description = f"record '{record_id}' ({source}): {detail}; {fix}"  # without the skip hint
        super().__init__(f"{self.description}, {skip_hint()}")


class SkippedRecordsWarning(UserWarning):
    """Records were left out because ``data.on_bad_record`` is ``skip``."""


class RecordLog:
    """Collects what a dataset could not or did not use while its records are read.

    ``problem`` raises (``on_bad_record="error"``) or counts the record as
    skipped; ``drop`` counts pieces a dataset leaves out by design (e.g.
    windows crossing a rhythm change), never an error, and remembers which
    recordings lost pieces (a split file may name one that kept none).
    """

    def __init__(self, on_bad_record: Literal["error", "skip"] = "error") -> None:
        self.on_bad_record = on_bad_record
        self.problems: list[RecordProblem] = []
        self.dropped: Counter[str] = Counter()
        self.dropped_from: dict[str, None] = {}  # recordings that lost pieces, in order

    def problem(self, problem: RecordProblem) -> None:
        """Raise ``problem`` (error) or keep it as a skipped record (skip)."""
        if self.on_bad_record == "error":
            raise problem
        self.problems.append(problem)

    def drop(self, reason: str, count: int = 1, recording: str | None = None) -> None:
        """Count ``count`` pieces of ``recording`` left out by design, e.g. ``drop("rhythm_change", 2, "04015")``."""
        if count <= 0:
            return
        self.dropped[reason] += count
        if recording is not None:
            self.dropped_from[recording] = None

    def dropped_by_reason(self) -> dict[str, int]:
        """``{reason: count}`` of the pieces left out by design (reasons: :data:`DROP_REASONS` or the dataset's own)."""
        return dict(sorted(self.dropped.items()))

    def skipped(self) -> dict[str, dict]:
        """``{reason: {"count": n, "records": [ids]}}`` for ``DataSplits.info``."""
        return skipped_summary(self.problems)


def skipped_summary(problems: list[RecordProblem]) -> dict[str, dict]:
    """Group problems by reason: ``{reason: {"count", "records", "first"}}`` (``first``: what was wrong with the first record)."""
    out: dict[str, dict] = {}
    for p in problems:
        entry = out.setdefault(p.reason, {"count": 0, "records": [], "first": p.description})
        entry["count"] += 1
        entry["records"].append(p.record_id)
    return out


def warn_skipped(dataset_name: str, skipped: dict[str, dict]) -> None:
    """One warning per reason, with a count and the first record ids."""
    for reason, entry in skipped.items():
        ids = entry["records"]
        shown = ", ".join(ids[:MAX_IDS_IN_WARNING]) + (f" and {len(ids) - MAX_IDS_IN_WARNING} more" if len(ids) > MAX_IDS_IN_WARNING else "")
        warnings.warn(
            f"dataset '{dataset_name}': skipped {entry['count']} record(s), {REASONS.get(reason, reason)}: {shown}. "
            f"First: {entry['first']}",
            SkippedRecordsWarning,
            stacklevel=3,
        )


def check_record(record: Record, classes: tuple[str, ...] = CLASSES) -> RecordProblem | None:
    """The first problem of a yielded record (label, shape, rate, NaN, flat), or None."""
    rid, source = record.record_id, record.source or "?"
    if record.label not in classes:
        return RecordProblem(
            "unknown_label", rid, source, f"label '{record.label}' is not one of {', '.join(classes)}", "correct the label"
        )
    signal = np.asarray(record.signal)
    if signal.ndim != 1 or signal.size == 0:
        return RecordProblem("unreadable", rid, source, f"expected a non-empty 1-D signal, got shape {signal.shape}", "re-export the record")
    if not record.fs_hz or not np.isfinite(record.fs_hz) or record.fs_hz <= 0:
        return RecordProblem("unreadable", rid, source, f"sampling rate {record.fs_hz!r} Hz is not positive", "fix the header's rate")
    if not np.isfinite(signal).all():
        n_bad = int((~np.isfinite(signal)).sum())
        return RecordProblem(
            "nan", rid, source, f"{n_bad} of {signal.size} samples are NaN or infinite", "repair or remove the record"
        )
    if signal.min() == signal.max():
        return RecordProblem("flat", rid, source, f"all {signal.size} samples equal {float(signal.flat[0]):g}", "remove the record (lead off?)")
    return None
