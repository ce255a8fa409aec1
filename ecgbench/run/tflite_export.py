"""``ecgbench export --format tflite``: a stored cell as an integer LiteRT flatbuffer (int8 weights), C array files, and a check.

The flatbuffer takes one fixed-length input (``input_s`` seconds: the
cell's ``measure.deploy_window_s`` when it was measured window by window,
else its ``measure.input_s``), as TFLite Micro firmware does. Calibration
uses the cell's training records; the check runs the cell's ONNX model
(or, for a cell whose last steps quantized it in ONNX, the float weights the
flatbuffer is made from, in ONNX) and the flatbuffer (LiteRT interpreter) on the same test
records (or validation records, ``check_split="val"``, to compare export settings without touching test), window by window and aggregated as the cell was measured, or each
record centre-cropped or zero-padded to the input, and reports both challenge F1 scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgbench import atomic
from ecgbench.data.arrays import SignalSet
from ecgbench.errors import ConfigError
from ecgbench.run.stored_cell import StoredCell

FLASH_RUNTIME = "tflite-micro"  # the flatbuffer is read in place from flash by TFLite Micro's int8 kernels
SUMMARY_FILE = "export.json"
CHECK_SPLITS = ("test", "val")


@dataclass(frozen=True)
class TFLiteExportOptions:
    """Settings of one export."""

    out: Path
    input_s: float | None = None  # None: the cell's measure.input_s
    calibration_records: int = 0  # 0: every training record
    calibration_percentile: float | None = None  # None: 95 for int8 activations, 100 (global min/max) for int16
    activation_bits: int = 8  # 16: int16 activations with int8 weights (TFLite's 16x8), twice the activation RAM
    check_records: int = 0  # 0: every record of check_split
    check_split: str = "test"  # "val" to choose export settings without looking at test records
    c_name: str = "g_model"
    tolerance_points: float = 0.5
    bootstrap_resamples: int = 1000  # paired bootstrap of the F1 gap (reported beside it; the tolerance applies to the gap itself)


def fixed_length(signal: np.ndarray, samples: int) -> np.ndarray:
    """``[1, 1, samples]``: the centre ``samples`` of a longer record, a shorter one zero-padded at its end
    (zero is the mean of a z-scored record)."""
    x = np.zeros(samples, dtype=np.float32)
    if len(signal) >= samples:
        start = (len(signal) - samples) // 2
        x[:] = signal[start : start + samples]
    else:
        x[: len(signal)] = signal
    return x.reshape(1, 1, samples)


def _spread(n_total: int, n: int) -> np.ndarray:
    """``n`` indices spread evenly over ``range(n_total)`` (all when ``n`` is 0 or larger)."""
    if n <= 0 or n >= n_total:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, n).round().astype(int))


def export_tflite(cell: StoredCell, options: TFLiteExportOptions, run_id: str = "") -> dict[str, Any]:
    """Write ``model.tflite``, ``model_data.h``/``.c`` and ``export.json`` under ``options.out``; return the summary."""
    from ecgbench.measure.scores import bootstrap_delta_ci, classification_scores
    from ecgbench.train.export import to_onnx
    from ecgbench.train.tflite import c_array_files, default_percentile, summarize, tflite_logits, to_tflite_int8

    splits = cell.splits
    measure = cell.row.config.get("measure", {})
    input_s = options.input_s or float(measure.get("deploy_window_s") or measure.get("input_s", 30.0))
    samples = int(round(input_s * splits.fs_hz))
    if samples < 16:
        raise ConfigError(f"--input-s {input_s:g} gives {samples} samples at {splits.fs_hz:g} Hz; give at least 16 samples")
    if options.check_split not in CHECK_SPLITS:
        raise ConfigError(f"--check-split {options.check_split}: choose one of {', '.join(CHECK_SPLITS)}")
    checked = getattr(splits, options.check_split)
    if len(splits.train) == 0 or len(checked) == 0:
        raise ConfigError(f"cell {cell.title()}: its dataset has no training or no {options.check_split} records to calibrate and check on")

    calibration = [fixed_length(splits.train.signal(int(i)), samples) for i in _spread(len(splits.train), options.calibration_records)]
    percentile = default_percentile(options.activation_bits) if options.calibration_percentile is None else options.calibration_percentile
    model_bytes = to_tflite_int8(cell.model, samples, calibration, percentile, options.activation_bits)
    summary = summarize(model_bytes)

    check_index = _spread(len(checked), options.check_records)
    labels = checked.labels[check_index]
    onnx_path = Path(cell.row.artifacts.get("onnx", ""))
    cell_onnx = onnx_path.read_bytes() if cell.row.artifacts.get("onnx") and onnx_path.is_file() else None
    if cell.replaced_steps:  # the flatbuffer is made from the weights before the ONNX steps: the check compares with those
        onnx_bytes = to_onnx(cell.model, samples=samples)
        onnx_source = f"the exported weights in ONNX float (before {', '.join(cell.replaced_steps)}, which the export's own int8 replaces)"
    elif cell_onnx is not None:
        onnx_bytes, onnx_source, cell_onnx = cell_onnx, str(onnx_path), None
    else:  # the run's artifacts folder was removed: the same weights exported again
        onnx_bytes, onnx_source = to_onnx(cell.model, samples=samples), "re-exported from the cell's PyTorch weights (its model.onnx is gone)"
    models = [lambda xs: _onnx_logits(onnx_bytes, xs), lambda xs: tflite_logits(model_bytes, xs)]
    if cell_onnx is not None:  # the cell's own quantized ONNX model, reported beside the check
        models.append(lambda xs: _onnx_logits(cell_onnx, xs))
    windowing = _windowing(cell, samples, splits.fs_hz)
    if windowing is None:
        inputs = [fixed_length(checked.signal(int(i)), samples) for i in check_index]
        predictions = [logits(inputs).argmax(axis=1) for logits in models]
        described = f"each record centre-cropped or zero-padded to {input_s:g} s"
    else:  # the cell was measured window by window: so is the check, with its aggregation
        predictions = _windowed_predictions(models, checked, check_index, windowing, splits.fs_hz)
        described = f"{windowing.describe()}, as the cell was measured"
    onnx_pred, tflite_pred = predictions[:2]
    onnx_scores = classification_scores(labels, onnx_pred)
    tflite_scores = classification_scores(labels, tflite_pred)
    delta = 100 * (tflite_scores["challenge_f1"] - onnx_scores["challenge_f1"])
    # A few records change class under any int8 rounding; which ones decides the F1 gap's sign, so the gap
    # is reported with its paired bootstrap interval (the same resampled records score both models).
    delta_ci = [100 * v for v in bootstrap_delta_ci(labels, tflite_pred, onnx_pred, resamples=options.bootstrap_resamples)]

    out = Path(options.out)
    files = {"tflite": out / "model.tflite"}
    arrays = c_array_files(model_bytes, options.c_name)
    for name in arrays:
        files["header" if name.endswith(".h") else "source"] = out / name
    files["summary"] = out / SUMMARY_FILE
    result = {
        "format": "tflite",
        "files": {k: str(v) for k, v in files.items()},
        "flash_bytes": len(model_bytes),
        "flash_runtime": FLASH_RUNTIME,
        "integer_only": summary.integer_only,
        "activations": summary.activations,
        "input": {
            "shape": summary.input_shape,
            "dtype": summary.input_dtype,
            **summary.input_quantization,
            "seconds": input_s,
            "fs_hz": splits.fs_hz,
            "preprocessing": {k: v for k, v in cell.row.config.get("data", {}).items() if k != "split"},  # as in training
        },
        "output": {"dtype": summary.output_dtype, **summary.output_quantization, "classes": list(splits.classes)},
        "tensor_dtypes": summary.tensor_dtypes,
        "operators": summary.operators,
        "operators_not_in_tflite_micro": summary.not_in_tflite_micro,
        "float_tensors": summary.float_tensors,
        "calibration": {"split": "train", "records": len(calibration), "percentile": percentile},
        "check": {
            "split": options.check_split,
            "records": len(check_index),
            "input": described,
            "onnx_challenge_f1": onnx_scores["challenge_f1"],
            "tflite_challenge_f1": tflite_scores["challenge_f1"],
            "delta_points": delta,
            "tolerance_points": options.tolerance_points,
            "within_tolerance": abs(delta) <= options.tolerance_points,
            "delta_points_ci95": delta_ci,
            "agreement": float(np.mean(onnx_pred == tflite_pred)),
            "disagreeing_records": int(np.sum(onnx_pred != tflite_pred)),
            "onnx": onnx_source,
            "cell_onnx_challenge_f1": classification_scores(labels, predictions[2])["challenge_f1"] if cell_onnx is not None else None,
            "cell_whole_record_test_challenge_f1": cell.row.metrics.get("test", {}).get("challenge_f1"),
        },
        "source": {
            "run": run_id,
            "cell_id": cell.row.cell_id,
            "cell": cell.title(),
            "model": cell.architecture.to_dict(),  # the exported architecture (a distilled student's, not the suite's)
            "weights": cell.weights,
            "replaced_steps": cell.replaced_steps,
        },
    }
    with atomic.all_or_nothing():  # the flatbuffer, its C array and its summary are replaced together
        atomic.write_bytes(files["tflite"], model_bytes)
        for name, text in arrays.items():
            atomic.write_text(out / name, text)
        atomic.write_text(out / SUMMARY_FILE, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def _windowing(cell: StoredCell, samples: int, fs_hz: float):
    """The cell's windowed deployment when the flatbuffer's input is its window, else None."""
    from ecgbench.measure.artifact import MeasureConfig
    from ecgbench.measure.windowing import Windowing

    windowing = Windowing.from_config(MeasureConfig.model_validate(cell.row.config.get("measure", {})))
    return windowing if windowing is not None and windowing.samples(fs_hz)[0] == samples else None


def _windowed_predictions(models: list, signals: SignalSet, index: np.ndarray, windowing, fs_hz: float) -> list[np.ndarray]:
    """Record classes of each model (a function of a list of windows to logits), each record's windows aggregated by the cell's rule."""
    from ecgbench.measure.windowing import aggregate_window_probs, record_windows, softmax

    window, hop = windowing.samples(fs_hz)
    per_record = [record_windows(signals.signal(int(i)), window, hop) for i in index]  # each [windows, 1, window]
    windows = [w[None] for r in per_record for w in r]  # each [1, 1, window]
    bounds = np.cumsum([0] + [len(r) for r in per_record])
    predictions = []
    for logits in models:
        probs = softmax(logits(windows))
        predictions.append(np.array([aggregate_window_probs(probs[a:b], windowing.aggregate).argmax() for a, b in zip(bounds[:-1], bounds[1:])]))
    return predictions


def _onnx_logits(onnx_bytes: bytes, inputs: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x})[0] for x in inputs]) if inputs else np.zeros((0, 0), np.float32)


def summary_text(result: dict[str, Any]) -> str:
    """A few lines for people."""
    check = result["check"]
    replaced = result["source"]["replaced_steps"]
    lines = [
        f"{result['source']['cell']}: {result['files']['tflite']} ({result['flash_bytes']:,} bytes of flash for {result['flash_runtime']}), "
        + (f"int8 weights, {result['activations']} activations, {result['output']['dtype']} logits" if result["integer_only"] else "NOT integer only: float tensors " + ", ".join(result["float_tensors"][:5])),
        f"  input {result['input']['shape']} {result['input']['dtype']} ({result['input']['seconds']:g} s at {result['input']['fs_hz']:g} Hz); "
        f"calibrated on {result['calibration']['records']} training records (ranges: percentile {result['calibration']['percentile']:g} of per-record extremes)",
        *([f"  operators without a TFLite Micro {result['activations']} kernel: {', '.join(result['operators_not_in_tflite_micro'])}"] if result["operators_not_in_tflite_micro"] else []),
        f"  weights: {result['source']['weights']}",
        *([_replaced_steps_line(replaced, check.get("cell_onnx_challenge_f1"))] if replaced else []),
        f"  C array: {result['files']['header']} + {result['files']['source']}",
        f"  check on {check['records']} {'validation' if check['split'] == 'val' else 'test'} records ({check['input']}): challenge F1 ONNX {check['onnx_challenge_f1']:.3f}, "
        f"LiteRT {result['activations']} {check['tflite_challenge_f1']:.3f} ({check['delta_points']:+.2f} points, 95% paired bootstrap "
        f"[{check['delta_points_ci95'][0]:+.2f}, {check['delta_points_ci95'][1]:+.2f}]; {check['agreement']:.1%} same class, "
        f"{check['disagreeing_records']} records differ)",
    ]
    if not check["within_tolerance"]:
        lines.append(f"  FAILED: the {result['activations']} flatbuffer is {abs(check['delta_points']):.2f} F1 points from ONNX, over --tolerance {check['tolerance_points']:g}")
    return "\n".join(lines)


def _replaced_steps_line(replaced: list[str], cell_onnx_f1: float | None) -> str:
    line = f"  steps {', '.join(replaced)} leave PyTorch: int8 here is LiteRT's own (static, per-channel), not theirs"
    if cell_onnx_f1 is None:
        return line
    return f"{line}; the check compares with the float weights before them (the cell's own ONNX model: challenge F1 {cell_onnx_f1:.3f})"
