"""Packed signal arrays on disk: written once, atomically, then memory-mapped by every run.

An entry is a folder ``<cache_dir>/<name>-<key>/`` holding ``signals.npy``
(float32, records end to end), ``offsets.npy``, ``labels.npy`` and
``meta.json``. It is written in a temporary folder and renamed into place
(``os.replace``), so a reader sees a whole entry or none, and concurrent
runs building the same entry keep whichever lands first. The key is a hash of
everything the arrays depend on; changing any of it writes a new entry (old
entries stay until the cache folder is deleted).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ecgbench import atomic
from ecgbench.data.arrays import SignalSet

CACHE_FORMAT = 1  # bump when the layout of an entry changes
META_FILE = "meta.json"


@dataclass
class CachedArrays:
    """A cache entry: the memory-mapped records and their metadata."""

    folder: Path
    signals: SignalSet
    meta: dict


def read_entry(folder: Path) -> CachedArrays | None:
    """The entry in ``folder``, memory-mapped, or None when absent or incomplete."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
        signals = np.load(folder / "signals.npy", mmap_mode="r")
        offsets = np.load(folder / "offsets.npy")
        labels = np.load(folder / "labels.npy")
        record_ids = meta["record_ids"]
    except (OSError, ValueError, KeyError, TypeError):  # absent, truncated or garbled: built again
        return None
    if len(offsets) != len(record_ids) + 1 or len(labels) != len(record_ids) or offsets[-1] != len(signals):
        return None
    return CachedArrays(folder, SignalSet(signals, offsets, labels, record_ids), meta)


CACHE_HINT = "or point ECGBENCH_HOME (ecgbench eval: --cache-dir) at a disk with room"


def write_entry(folder: Path, parts: Iterable[np.ndarray], lengths: np.ndarray, labels: np.ndarray, meta: dict) -> CachedArrays:
    """Write records ``parts`` (float32 arrays of ``lengths``) as one entry, atomically; returns it memory-mapped.

    The signals are written with ordinary file writes, not through a memory map:
    a full disk then raises ENOSPC (a one-line :class:`~ecgbench.atomic.WriteError`)
    instead of killing the process with SIGBUS, and the temporary folder is removed.
    """
    atomic.ensure_dir(folder.parent, CACHE_HINT)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    needed = int(offsets[-1]) * 4 + offsets.nbytes + len(labels) * 8 + (1 << 20)
    free = shutil.disk_usage(folder.parent).free
    if free < needed:
        raise atomic.WriteError(
            f"cannot write cache entry {folder}: it needs {needed / 1e6:.1f} MB and {folder.parent} has {free / 1e6:.1f} MB free; "
            f"free some space {CACHE_HINT}"
        )
    with atomic.translated(folder, CACHE_HINT):
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
        try:
            _write_signals(tmp / "signals.npy", parts, int(offsets[-1]))
            np.save(tmp / "offsets.npy", offsets)
            np.save(tmp / "labels.npy", np.asarray(labels, dtype=np.int64))
            (tmp / META_FILE).write_text(json.dumps(meta, sort_keys=True))
            if folder.exists() and read_entry(folder) is None:
                shutil.rmtree(folder, ignore_errors=True)  # a broken entry (interrupted copy, deleted file)
            try:
                os.replace(tmp, folder)
            except OSError:
                if read_entry(folder) is None:  # not a concurrent writer that finished first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    entry = read_entry(folder)
    if entry is None:
        raise OSError(f"cache entry {folder} could not be read back after writing it; delete {folder.parent} and retry")
    return entry


def _write_signals(path: Path, parts: Iterable[np.ndarray], total: int) -> None:
    """One float32 ``.npy`` of ``total`` values, written part by part (never a second copy of all records in memory)."""
    dtype = np.dtype("<f4")
    written = 0
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (total,)})
        for part in parts:
            data = np.ascontiguousarray(part, dtype=dtype)
            f.write(data.tobytes())
            written += data.size
        f.flush()
        os.fsync(f.fileno())
    if written != total:
        raise ValueError(f"cache entry {path.parent}: records hold {written} values, their lengths say {total}")
