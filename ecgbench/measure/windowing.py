"""Windowed deployment: a model classifies fixed-length windows of a record and the windows are aggregated.

A wearable does not hold a 30-s record in RAM; it classifies a short window,
slides on by a hop and combines the windows' outputs into the record's class.
The measure settings ``deploy_window_s``, ``deploy_hop_s`` and ``aggregate``
(:class:`ecgbench.measure.artifact.MeasureConfig`) choose this; the exported
model is unchanged (its ``samples`` axis is dynamic and it pools globally).

Windows of a record of ``n`` samples, window ``w`` and hop ``h`` samples
(:func:`window_starts`):

- ``n >= w``: windows start at ``0, h, 2h, ...`` while they fit whole; the final
  partial window is dropped (the samples after the last whole window are not scored).
- ``n < w`` (a record shorter than one window): one window, the record followed by
  zeros. Not scored whole: the device runs one fixed input buffer of ``w`` samples
  (its RAM and latency are measured for it), and training crops shorter records
  are zero-padded at the end in the same way (:func:`ecgbench.train.trainer.random_crops`).

Aggregation (:func:`aggregate_window_probs`) of the windows' softmax outputs
``[windows, classes]`` into one row of record probabilities summing to 1, whose
argmax is the record's class:

- ``mean_prob``: the mean over windows;
- ``max_prob``: each class's largest probability over windows, rescaled to sum to 1
  (a class seen confidently in any window wins);
- ``vote``: ``(votes + mean_prob) / (windows + 1)``: the class most windows predict,
  ties broken by the mean probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ecgbench.data.arrays import SignalSet

Aggregate = Literal["mean_prob", "max_prob", "vote"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
METADATA_KEY = "deploy"
"""ONNX metadata key (``ecgbench.deploy``) holding the windowing a model was measured with."""


@dataclass(frozen=True)
class Windowing:
    """Window and hop in seconds and the aggregation rule; :meth:`samples` converts at a sampling rate."""

    window_s: float
    hop_s: float
    aggregate: str = "mean_prob"

    def __post_init__(self) -> None:
        if not self.window_s > 0 or not self.hop_s > 0:
            raise ValueError(f"window and hop must be positive seconds, got window {self.window_s}, hop {self.hop_s}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got '{self.aggregate}'")

    def samples(self, fs_hz: float) -> tuple[int, int]:
        """``(window, hop)`` in samples at ``fs_hz`` (rounded, at least 1)."""
        return max(1, int(round(self.window_s * fs_hz))), max(1, int(round(self.hop_s * fs_hz)))

    def windows_in(self, record_s: float, fs_hz: float) -> int:
        """Windows (model runs) for a record of ``record_s`` seconds."""
        window, hop = self.samples(fs_hz)
        return len(window_starts(int(round(record_s * fs_hz)), window, hop))

    def to_metadata(self) -> dict[str, Any]:
        return {"window_s": self.window_s, "hop_s": self.hop_s, "aggregate": self.aggregate}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> "Windowing | None":
        """The windowing an exported model's ``ecgbench.deploy`` metadata names, or None (whole records)."""
        entry = metadata.get(METADATA_KEY)
        if not isinstance(entry, dict) or entry.get("window_s") is None:
            return None
        return cls(float(entry["window_s"]), float(entry.get("hop_s") or entry["window_s"]), str(entry.get("aggregate", "mean_prob")))

    @classmethod
    def from_config(cls, config: Any) -> "Windowing | None":
        """From a MeasureConfig (``deploy_window_s``, ``deploy_hop_s``, ``aggregate``); None when the window is unset."""
        if getattr(config, "deploy_window_s", None) is None:
            return None
        return cls(config.deploy_window_s, config.deploy_hop_s or config.deploy_window_s, config.aggregate)

    def describe(self) -> str:
        return f"{self.window_s:g}-s windows, hop {self.hop_s:g} s, {self.aggregate}"


def window_starts(n_samples: int, window: int, hop: int) -> np.ndarray:
    """Start samples of the windows of a record of ``n_samples`` (see the module docstring for the edge cases)."""
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be at least 1 sample, got {window} and {hop}")
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    return np.arange(0, n_samples - window + 1, hop, dtype=np.int64)


def record_windows(signal: np.ndarray, window: int, hop: int) -> np.ndarray:
    """``[windows, 1, window]`` float32 windows of one record (zero-padded when shorter than a window)."""
    signal = np.asarray(signal, dtype=np.float32)
    starts = window_starts(len(signal), window, hop)
    if len(signal) < window:
        out = np.zeros((1, window), dtype=np.float32)
        out[0, : len(signal)] = signal
        return out[:, None, :]
    return signal[starts[:, None] + np.arange(window)[None, :]][:, None, :]


def aggregate_window_probs(probs: np.ndarray, rule: str = "mean_prob") -> np.ndarray:
    """One row of record probabilities from the windows' ``[windows, classes]`` probabilities (module docstring)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"expected [windows, classes] probabilities with at least one window, got shape {probs.shape}")
    mean = probs.mean(axis=0)
    if rule == "mean_prob":
        return mean
    if rule == "max_prob":
        top = probs.max(axis=0)
        return top / top.sum()
    if rule == "vote":
        votes = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
        return (votes + mean) / (probs.shape[0] + 1)
    raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got '{rule}'")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of logits ``[records, classes]`` (rows sum to 1)."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def predict_windowed(session, signals: "SignalSet", windowing: Windowing, fs_hz: float, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities [records, classes], windows per record)`` of an onnxruntime ``session`` run on windows.

    Every record is cut into windows (:func:`record_windows`), the windows of
    many records are batched, and each record's windows are aggregated by
    ``windowing.aggregate``. The model's input is ``[batch, 1, samples]``.
    """
    window, hop = windowing.samples(fs_hz)
    name = session.get_inputs()[0].name
    fixed_batch = session.get_inputs()[0].shape[0]
    if isinstance(fixed_batch, int):
        batch_size = fixed_batch
    per_record = [record_windows(signals.signal(i), window, hop) for i in range(len(signals))]
    counts = np.array([len(w) for w in per_record], dtype=np.int64)
    if not per_record:
        return np.zeros((0, 0)), counts
    stacked = np.concatenate(per_record)
    outputs = [session.run(None, {name: stacked[s : s + batch_size]})[0] for s in range(0, len(stacked), batch_size)]
    probs = softmax(np.concatenate(outputs))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    records = np.stack([aggregate_window_probs(probs[bounds[i] : bounds[i + 1]], windowing.aggregate) for i in range(len(counts))])
    return records, counts


def probabilities_as_logits(probs: np.ndarray) -> np.ndarray:
    """Logits whose softmax gives ``probs`` back (and whose argmax is the same): ``log(probs)``."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-30, None)).astype(np.float32)


def onnx_session(onnx_bytes: bytes, threads: int = 0):
    """A CPU onnxruntime session with ``threads`` intra-op threads (0: onnxruntime chooses)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def predict_records_windowed(onnx_bytes: bytes, signals: "SignalSet", windowing: Windowing, fs_hz: float, threads: int = 0) -> np.ndarray:
    """Record-level logits (``log`` of the aggregated probabilities) of an ONNX model run on windows."""
    probs, _counts = predict_windowed(onnx_session(onnx_bytes, threads), signals, windowing, fs_hz)
    return probabilities_as_logits(probs)


WHOLE = "whole"
"""``--deploy-window-s whole``: score whole records even when the model's metadata names a window."""


def parse_window_arg(text: str) -> float | str:
    """``--deploy-window-s`` value: positive seconds, or ``whole``."""
    if text.strip().lower() == WHOLE:
        return WHOLE
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        import argparse

        raise argparse.ArgumentTypeError(f"expected positive seconds (e.g. 10) or '{WHOLE}', got '{text}'")
    return value


def eval_windowing(
    metadata: dict[str, Any], window_s: float | str | None = None, hop_s: float | None = None, aggregate: str | None = None
) -> Windowing | None:
    """The windowing ``ecgbench eval`` applies: the model's ``ecgbench.deploy`` metadata, with any of
    ``window_s`` (seconds or ``"whole"``), ``hop_s`` and ``aggregate`` given on the command line overriding it."""
    from ecgbench.errors import ConfigError

    stored = Windowing.from_metadata(metadata)
    if window_s == WHOLE:
        if hop_s is not None or aggregate is not None:
            raise ConfigError("--deploy-hop-s and --aggregate apply to windows; drop them or give --deploy-window-s SECONDS")
        return None
    if window_s is None and stored is None:
        if hop_s is not None or aggregate is not None:
            raise ConfigError("the model names no deploy window: give --deploy-window-s SECONDS with --deploy-hop-s/--aggregate")
        return None
    window = float(window_s) if window_s is not None else stored.window_s
    same_window = stored is not None and window_s is None
    hop = hop_s if hop_s is not None else (stored.hop_s if same_window else window)
    rule = aggregate or (stored.aggregate if stored is not None else "mean_prob")
    try:
        return Windowing(window, float(hop), rule)
    except ValueError as exc:
        raise ConfigError(f"--deploy-window-s/--deploy-hop-s/--aggregate: {exc}") from None
