"""Dataset -> preprocessed, cached, split arrays: what training and ``ecgbench eval`` consume.

Two cache levels under ``cache_dir``:

- ``<dataset>-records-<key>``: every usable record, preprocessed, in dataset
  order; the key hashes the dataset fingerprint and the preprocessing
  settings (``DataConfig.preprocessing``), so either changing rebuilds it;
- ``<dataset>-splits-<key>``: the same records reordered train | val | test,
  keyed by the records entry and the split assignment, so each split is one
  contiguous memory-mapped slice (no copy when a run starts).

Reading records and resampling happen once per dataset and settings; later
runs memory-map the arrays.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
from pathlib import Path

import numpy as np

from ecgbench.data.cache import CACHE_FORMAT, CachedArrays, read_entry, write_entry
from ecgbench.hashing import stable_hash
from ecgbench.data.config import DataConfig
from ecgbench.data.preprocess import PREPROCESS_VERSION, preprocess_signal
from ecgbench.data.problems import RecordLog, check_record, skip_hint, skipped_summary, warn_skipped
from ecgbench.data.splits import SPLITS, assign_splits
from ecgbench.data.arrays import DataSplits, SignalSet
from ecgbench.kinds.dataset import Dataset
from ecgbench.errors import DatasetError


def load_signalset(dataset: Dataset, config: DataConfig, cache_dir: Path) -> SignalSet:
    """Every usable record of ``dataset``, preprocessed, in dataset order (memory-mapped)."""
    return load_records(dataset, config, Path(cache_dir)).signals


def load_splits(dataset: Dataset, config: DataConfig, cache_dir: Path) -> DataSplits:
    """Train/val/test splits of ``dataset``, preprocessed and memory-mapped; ``info`` says how they were made."""
    cache_dir = Path(cache_dir)
    records = load_records(dataset, config, cache_dir)
    full = records.signals
    meta = records.meta
    skipped_ids = {rid for entry in meta["skipped"].values() for rid in entry["records"]}
    assignment = assign_splits(
        full.record_ids, full.labels, config.split, meta.get("groups"), skipped_ids, meta.get("recordings"), meta.get("empty_recordings")
    )
    split_of = [assignment[rid] for rid in full.record_ids]
    digest = hashlib.sha256("\n".join(split_of).encode()).hexdigest()
    folder = cache_dir / f"{dataset.name}-splits-{stable_hash({'records': records.folder.name, 'assignment': digest})}"
    entry = read_entry(folder) or _write_split_layout(folder, full, split_of)
    sets = _split_views(entry)
    info = {
        "dataset": dataset.name,
        "synthetic": bool(dataset.synthetic),
        "fingerprint": meta["fingerprint"],
        "dataset_params": dataset.config.model_dump(mode="json"),
        "preprocessing": config.preprocessing(),
        "n_records": len(full),
        "split": assignment,
        "split_counts": {name: _class_counts(sets[name].labels, dataset.classes) for name in SPLITS},
        "split_seed": config.split.seed,
        "split_file": config.split.file,
        "skipped": {reason: {k: v for k, v in e.items() if k != "first"} for reason, e in meta["skipped"].items()},
        "dropped": meta["dropped"],
        "cache": str(entry.folder),
    }
    return DataSplits(
        train=sets["train"], val=sets["val"], test=sets["test"], fs_hz=config.fs_hz, window_s=config.window_s,
        classes=tuple(dataset.classes), info=info,
    )


def load_records(dataset: Dataset, config: DataConfig, cache_dir: Path) -> CachedArrays:
    """The records cache entry of ``dataset`` under ``config``'s preprocessing, built if missing."""
    fingerprint = dataset.fingerprint()
    key = stable_hash(
        {
            "format": CACHE_FORMAT,
            "preprocess_version": PREPROCESS_VERSION,
            "dataset": dataset.name,
            "fingerprint": fingerprint,
            "classes": list(dataset.classes),
            **config.preprocessing(),
        }
    )
    folder = Path(cache_dir) / f"{dataset.name}-records-{key}"
    entry = read_entry(folder) or _build_records(dataset, config, folder, fingerprint)
    skipped = entry.meta["skipped"]
    if skipped and config.on_bad_record == "error":
        # Built earlier with on_bad_record=skip: the same records are still bad.
        first = next(iter(skipped.values()))
        raise DatasetError(f"{first['first']}, {skip_hint()}")
    warn_skipped(dataset.name, skipped)
    return entry


def _build_records(dataset: Dataset, config: DataConfig, folder: Path, fingerprint: str) -> CachedArrays:
    log = RecordLog(config.on_bad_record)
    accepts_log = "log" in inspect.signature(dataset.records).parameters
    records = dataset.records(log=log) if accepts_log else dataset.records()
    signals: list[np.ndarray] = []
    record_ids: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    for record in _progress(records, dataset.name):
        if record.record_id in seen:
            raise DatasetError(f"dataset '{dataset.name}' yielded record '{record.record_id}' twice ({record.source}); record ids must be unique")
        seen.add(record.record_id)
        problem = check_record(record, tuple(dataset.classes))
        if problem is not None:
            log.problem(problem)
            continue
        signals.append(preprocess_signal(record.signal, record.fs_hz, config))
        record_ids.append(record.record_id)
        labels.append(dataset.classes.index(record.label))
    if not record_ids:
        skipped = skipped_summary(log.problems)
        why = "; ".join(f"{e['count']} {reason}, first: {e['first']}" for reason, e in skipped.items()) or "it yielded none"
        dropped = log.dropped_by_reason()
        if dropped:
            why += "; dropped by design: " + ", ".join(f"{n} {reason}" for reason, n in dropped.items())
        raise DatasetError(f"dataset '{dataset.name}' has no usable records ({why})")
    split_group = getattr(dataset, "split_group", None)
    recording = getattr(dataset, "recording", None)
    recordings = [recording(r) for r in record_ids] if callable(recording) else None
    kept = set(recordings or record_ids)
    empty = [r for r in log.dropped_from if r not in kept]  # every piece dropped: a split file may still name them
    meta = {
        "record_ids": record_ids,
        "groups": [split_group(r) for r in record_ids] if callable(split_group) else None,
        "recordings": recordings,
        "empty_recordings": {r: split_group(r) if callable(split_group) else r for r in empty},
        "dataset": dataset.name,
        "fingerprint": fingerprint,
        "preprocessing": config.preprocessing(),
        "skipped": skipped_summary(log.problems),
        "dropped": log.dropped_by_reason(),
    }
    lengths = np.array([len(s) for s in signals], dtype=np.int64)
    return write_entry(folder, signals, lengths, np.array(labels, dtype=np.int64), meta)


def _write_split_layout(folder: Path, full: SignalSet, split_of: list[str]) -> CachedArrays:
    split_index = np.array([SPLITS.index(s) for s in split_of], dtype=np.int64)
    order = np.argsort(split_index, kind="stable")
    sizes = np.bincount(split_index, minlength=len(SPLITS))
    meta = {"record_ids": [full.record_ids[i] for i in order], "sizes": sizes.tolist()}
    parts = (full.signal(int(i)) for i in order)
    return write_entry(folder, parts, full.lengths()[order], full.labels[order], meta)


def _split_views(entry: CachedArrays) -> dict[str, SignalSet]:
    """Each split as a contiguous slice of the memory-mapped arrays."""
    data = entry.signals
    bounds = np.concatenate([[0], np.cumsum(entry.meta["sizes"])])
    out = {}
    for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:]):
        start, stop = data.offsets[lo], data.offsets[hi]
        out[name] = SignalSet(data.signals[start:stop], data.offsets[lo : hi + 1] - start, data.labels[lo:hi], data.record_ids[lo:hi])
    return out


def _class_counts(labels: np.ndarray, classes) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    return {cls: int(n) for cls, n in zip(classes, counts)}


def _progress(records, name: str):
    """A progress bar on a terminal (not in CI logs, not with ``ecgbench -q``)."""
    if os.environ.get("ECGBENCH_QUIET") or not sys.stderr.isatty():
        return records
    from tqdm import tqdm

    return tqdm(records, desc=f"reading {name}", unit=" records", leave=False)
