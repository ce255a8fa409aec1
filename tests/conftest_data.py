"""Helpers for the data-layer tests: tiny WFDB folders written in milliseconds.

Imported by the ``test_data_*`` and ``test_dataset_*`` modules (not a pytest
conftest: plain functions, so each test builds exactly the folder it needs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import wfdb

from ecgbench.data.synthetic import synthesize


def ecg(label: str = "N", seconds: float = 2.0, fs_hz: float = 300.0, seed: int = 0) -> np.ndarray:
    """A short synthetic single-lead ECG in millivolts."""
    return synthesize(np.random.default_rng(seed), label, int(round(seconds * fs_hz)), fs_hz).astype(np.float64)


def write_record(folder: Path, name: str, signal: np.ndarray, fs_hz: float = 300.0, sig_names: list[str] | None = None) -> Path:
    """Write a WFDB record (format 16, 1000 adu/mV) and return its header path."""
    folder.mkdir(parents=True, exist_ok=True)
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim == 1:
        signal = signal[:, None]
    n_sig = signal.shape[1]
    wfdb.wrsamp(
        name,
        fs=fs_hz,
        units=["mV"] * n_sig,
        sig_name=sig_names or [f"ECG{i}" if i else "ECG" for i in range(n_sig)],
        p_signal=signal,
        fmt=["16"] * n_sig,
        adc_gain=[1000.0] * n_sig,
        baseline=[0] * n_sig,
        write_dir=str(folder),
    )
    return folder / f"{name}.hea"


def write_cinc_folder(folder: Path, labels: dict[str, str], seconds: float = 2.0, fs_hz: float = 300.0, records_file: bool = True) -> Path:
    """A CinC-2017-shaped folder: one record per entry of ``labels``, RECORDS and REFERENCE.csv."""
    for i, (name, label) in enumerate(labels.items()):
        write_record(folder, name, ecg(label if label in "NAO~" and label else "N", seconds, fs_hz, seed=i), fs_hz)
    if records_file:
        (folder / "RECORDS").write_text("".join(f"{name}\n" for name in labels))
    (folder / "REFERENCE.csv").write_text("".join(f"{name},{label}\n" for name, label in labels.items()))
    return folder


def write_rhythm_annotations(folder: Path, name: str, samples: list[int], notes: list[str], fs_hz: float) -> None:
    """A WFDB ``atr`` annotation file holding rhythm changes (``+`` annotations with aux_note codes)."""
    ann = wfdb.Annotation(name, "atr", sample=np.array(samples), symbol=["+"] * len(samples), aux_note=notes, fs=fs_hz)
    ann.wrann(write_fs=True, write_dir=str(folder))
