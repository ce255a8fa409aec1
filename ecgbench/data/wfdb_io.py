"""Reading folders of WFDB records: record lists, label files, one lead, content fingerprints.

Shared by the ``cinc2017`` and ``wfdb`` dataset plugins. Every failure is a
:class:`~ecgbench.data.problems.RecordProblem` (one record) or a
``DatasetError`` (the folder or a label file), naming the file and the fix.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgbench import CLASSES
from ecgbench.data.problems import RecordLog, RecordProblem
from ecgbench.errors import ConfigError, DatasetError

RECORDS_FILE = "RECORDS"  # PhysioNet's list of record names, one a line

# Physical units WFDB headers use for ECG, as multiples of a millivolt.
UNITS_IN_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}


def resolve_folder(path: str | None, env_var: str, dataset: str, fetch_hint: str = "") -> Path:
    """The dataset folder from its ``path`` setting or ``env_var``; ConfigError/DatasetError saying how to set it."""
    how = f"pass `--data-dir {dataset}=DIR`, set {env_var}" + (f", or {fetch_hint}" if fetch_hint else "")
    if path is None:
        path = os.environ.get(env_var)
        if not path:
            raise ConfigError(f"dataset '{dataset}' has no folder: {how}")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"dataset '{dataset}': folder {folder} does not exist; {how}")
    return folder


def list_record_ids(folder: Path) -> tuple[list[str], Path]:
    """Record names from ``RECORDS`` if present, else every ``*.hea`` (sorted); and the file or folder they came from."""
    listing = folder / RECORDS_FILE
    if listing.is_file():
        ids = [line.strip() for line in listing.read_text().splitlines() if line.strip() and not line.startswith("#")]
        return ids, listing
    ids = sorted(p.name[: -len(".hea")] for p in folder.glob("*.hea"))
    if not ids:
        raise DatasetError(f"{folder} holds no WFDB records (no RECORDS file, no *.hea headers); point the dataset at a folder of records")
    return ids, folder


def read_csv_pairs(path: Path, columns: tuple[str, str], missing: str) -> list[tuple[int, str, str]]:
    """``(line number, first, second)`` of each row of a two-column CSV; a header line naming ``columns`` is skipped.

    ``missing`` is the error message when the file does not exist; a malformed row names its line.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DatasetError(missing) from None
    rows = []
    for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise DatasetError(f"{path} line {line_no}: expected '{','.join(columns)}', got {','.join(row)!r}; fix the line")
        first, second = row[0].strip(), row[1].strip()
        if line_no == 1 and (first.lower(), second.lower()) == columns:
            continue
        rows.append((line_no, first, second))
    return rows


def read_label_rows(path: Path) -> list[tuple[int, str, str]]:
    """``(line number, record, label)`` of a ``record,label`` CSV (an optional header line ``record,label`` is skipped)."""
    missing = f"label file {path} does not exist; add it (rows 'record,label') or point the dataset at the right folder"
    return read_csv_pairs(path, ("record", "label"), missing)


def match_labels(
    record_ids: list[str], rows: list[tuple[int, str, str]], label_file: Path, log: RecordLog, classes: tuple[str, ...] = CLASSES
) -> dict[str, str]:
    """Labels of the records; a label without record, an unknown label or a record without label goes to ``log``."""
    known = set(record_ids)
    labels: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line_no, record, label in rows:
        if record in first_line:
            if labels.get(record, label) != label:
                raise DatasetError(
                    f"{label_file} lines {first_line[record]} and {line_no}: record '{record}' has two labels; keep one row"
                )
            continue
        first_line[record] = line_no
        where = f"{label_file} line {line_no}"
        if record not in known:
            log.problem(
                RecordProblem(
                    "missing_record", record, where, "has a label but no record in the folder",
                    "remove the row, or restore the record's files and its line in RECORDS",
                )
            )
        elif label not in classes:
            log.problem(
                RecordProblem("unknown_label", record, where, f"label '{label}' is not one of {', '.join(classes)}", "correct the label")
            )
        labels[record] = label
    good = {}
    for record in record_ids:
        label = labels.get(record)
        if label is None:
            log.problem(
                RecordProblem("unlabelled", record, str(label_file), "the record has no label", f"add a row '{record},LABEL' to {label_file.name}")
            )
        elif label in classes:
            good[record] = label
    return good


@dataclass(frozen=True)
class LeadSignal:
    """One lead of a record, in millivolts, at the record's rate."""

    signal: np.ndarray  # float32
    fs_hz: float
    source: str  # the signal file


def read_lead(folder: Path, record_id: str, lead: int | str = 0, expected_fs_hz: float | None = None, fs_fix: str = "") -> LeadSignal:
    """Read one lead with ``wfdb.rdrecord``; a RecordProblem for a missing, unreadable or truncated record, a missing lead or a rate mismatch."""
    base = folder / record_id
    header_path = Path(f"{base}.hea")
    if not header_path.is_file():
        raise RecordProblem("unreadable", record_id, str(header_path), "header file is missing", "restore it, or remove the record from RECORDS")
    import wfdb  # imported on use: building a plugin manager should not import wfdb and pandas

    selection = {"channel_names": [lead]} if isinstance(lead, str) else {"channels": [lead]}
    try:
        # One call parses the header and reads the lead (parsing a header is most of the cost).
        record = wfdb.rdrecord(str(base), physical=True, return_res=32, **selection)
    except Exception as exc:
        raise _diagnose(folder, record_id, lead, exc) from None
    if record.p_signal is None or record.p_signal.shape[1] != 1:
        raise _diagnose(folder, record_id, lead, None)
    source = str(folder / record.file_name[0])
    if expected_fs_hz is not None and abs(float(record.fs) - expected_fs_hz) > 1e-6:
        raise RecordProblem(
            "fs_mismatch", record_id, str(header_path), f"sampled at {record.fs:g} Hz, the dataset's records at {expected_fs_hz:g} Hz",
            fs_fix or f"resample the record to {expected_fs_hz:g} Hz, or remove it",
        )
    signal = record.p_signal[:, 0]
    if record.sig_len and len(signal) != record.sig_len:
        raise RecordProblem(
            "unreadable", record_id, source, f"holds {len(signal)} samples, its header says {record.sig_len}", "re-download the record"
        )
    unit = (record.units[0] if record.units else "mV") or "mV"
    scale = UNITS_IN_MV.get(unit.strip().lower(), 1.0)
    signal = signal.astype(np.float32) if scale == 1.0 else (signal * scale).astype(np.float32)
    return LeadSignal(signal, float(record.fs), source)


def _diagnose(folder: Path, record_id: str, lead: int | str, exc: Exception | None) -> RecordProblem:
    """Why ``rdrecord`` failed: the header, the lead, or the signal file."""
    import wfdb

    base = folder / record_id
    header_path = f"{base}.hea"
    try:
        header = wfdb.rdheader(str(base))
    except Exception as header_exc:
        return RecordProblem(
            "unreadable", record_id, header_path, f"header is unreadable ({type(header_exc).__name__}: {header_exc})", "re-download the record"
        )
    names = list(header.sig_name or [])
    n_signals = header.n_sig or 0
    if isinstance(lead, str) and lead not in names:
        return RecordProblem("missing_lead", record_id, header_path, f"has no lead '{lead}' (leads: {', '.join(names) or 'none'})", "choose one with `lead:`")
    if isinstance(lead, int) and not 0 <= lead < n_signals:
        return RecordProblem(
            "missing_lead", record_id, header_path, f"has {n_signals} signal(s), no lead index {lead}", "choose a lead index or name with `lead:`"
        )
    index = names.index(lead) if isinstance(lead, str) else lead
    files = list(header.file_name or [])
    source = str(folder / files[index]) if index < len(files) else header_path
    if isinstance(exc, FileNotFoundError):
        return RecordProblem("unreadable", record_id, source, "signal file is missing", "restore it, or remove the record from RECORDS")
    why = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return RecordProblem("unreadable", record_id, source, f"signal is unreadable or truncated{why}", "re-download the record")


def folder_fingerprint(folder: Path, record_ids: list[str], extra_files: list[Path], settings: dict) -> str:
    """SHA-256 over the bytes of every file of the listed records (``<record>.*``), the extra files and the settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in extra_files:
        digest.update(f"\0{path.name}\0".encode())
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
    # Plain os.path strings: this runs on every load, over thousands of files.
    files_by_dir: dict[str, dict[str, list[str]]] = {}
    for record_id in record_ids:
        directory, stem = os.path.split(os.path.join(folder, record_id))
        if directory not in files_by_dir:
            stems: dict[str, list[str]] = {}
            if os.path.isdir(directory):
                for entry in os.scandir(directory):
                    base = entry.name.rpartition(".")[0]
                    if base and entry.is_file():
                        stems.setdefault(base, []).append(entry.name)
            files_by_dir[directory] = stems
        digest.update(f"\0record\0{record_id}".encode())
        for name in sorted(files_by_dir[directory].get(stem, [])):
            digest.update(f"\0{name}\0".encode())
            with open(os.path.join(directory, name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()
