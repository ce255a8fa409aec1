"""One record in, one model-ready signal out: resample, optional band-pass, per-record normalisation.

Training and ``ecgbench eval`` both call :func:`preprocess_signal`, with the
settings an exported model carries in its metadata, so a model always sees
signals prepared the same way.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal as sps

from ecgbench.data.config import DataConfig

PREPROCESS_VERSION = 1  # bump when the output of preprocess_signal changes, to invalidate caches

# Butterworth order 2, applied forwards and backwards (sosfiltfilt): an
# effective 4th-order zero-phase response, the usual choice for ECG band-pass
# filtering because it keeps QRS timing and shape (no phase distortion).
BANDPASS_ORDER = 2

# Rates are rounded to a ratio of integers with a denominator at most this
# large: exact for the usual ECG rates (100, 125, 128, 250, 256, 300, 360, 500).
MAX_RATIO_DENOMINATOR = 1000


def resampling_ratio(fs_in_hz: float, fs_out_hz: float) -> tuple[int, int]:
    """``(up, down)`` with ``fs_out/fs_in = up/down`` in lowest terms."""
    ratio = Fraction(fs_out_hz / fs_in_hz).limit_denominator(MAX_RATIO_DENOMINATOR)
    return ratio.numerator, ratio.denominator


def resampled_length(n_samples: int, fs_in_hz: float, fs_out_hz: float) -> int:
    """Length of a signal of ``n_samples`` after :func:`preprocess_signal` resamples it."""
    up, down = resampling_ratio(fs_in_hz, fs_out_hz)
    return -(-n_samples * up // down)  # ceil, as scipy.signal.resample_poly


def preprocess_signal(signal: np.ndarray, fs_in_hz: float, config: DataConfig) -> np.ndarray:
    """Resample to ``config.fs_hz``, band-pass if asked, normalise per record; returns float32."""
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"preprocess_signal expects a 1-D single-lead signal, got shape {x.shape}")
    if fs_in_hz <= 0:
        raise ValueError(f"sampling rate must be positive, got {fs_in_hz}")
    up, down = resampling_ratio(fs_in_hz, config.fs_hz)
    if (up, down) != (1, 1):
        # padtype="line" continues the baseline's trend past the ends, so edges do not dip to zero.
        x = sps.resample_poly(x, up, down, padtype="line")
    if config.bandpass_hz is not None:
        x = bandpass(x, config.fs_hz, config.bandpass_hz[0], config.bandpass_hz[1])
    if config.normalize == "zscore":
        x = zscore(x)
    return x.astype(np.float32)


def bandpass(x: np.ndarray, fs_hz: float, low_hz: float, high_hz: float) -> np.ndarray:
    """Zero-phase Butterworth band-pass (see BANDPASS_ORDER)."""
    sos = sps.butter(BANDPASS_ORDER, [low_hz, high_hz], btype="bandpass", fs=fs_hz, output="sos")
    padlen = min(3 * (2 * len(sos) + 1), len(x) - 1)  # scipy's default, shortened for very short records
    return sps.sosfiltfilt(sos, x, padlen=max(padlen, 0))


def zscore(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation (a constant signal becomes zeros)."""
    centred = x - x.mean()
    std = centred.std()
    return centred / std if std > 0 else centred
