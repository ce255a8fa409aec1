"""What every cell reports, computed the same way for every strategy from the exported ONNX model.

One function, :func:`measure_artifact`, turns the final model of a cell into
its metrics JSON: accuracy on validation and test (with a bootstrap interval),
size in every loadable format (``size.storage_bytes``: the smallest), MACs, host latency and simulated device figures,
at the paths the built-in metrics declare (:mod:`ecgbench.measure.builtin_metrics`),
plus the values of plugin metrics (``plugin_metrics.<name>``, with their
declarations under ``metric_declarations``).
Because the ONNX file is the only input, a pruned PyTorch model, an int8
ONNX model and the dense baseline go through exactly the same code.

With ``deploy_window_s`` (windowed deployment, :mod:`ecgbench.measure.windowing`)
records are scored window by window and aggregated to record-level scores; MACs,
host latency and device figures are for one window, with ``..._per_window`` and
``..._per_record`` device keys and a ``windowing`` section saying how.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from pydantic import Field, model_validator

from ecgbench.measure.scores import bootstrap_challenge_ci, bootstrap_delta_ci, classification_scores
from ecgbench.kinds.base import PluginConfig
from ecgbench.measure.schema import DECLARATIONS_SECTION, PLUGIN_SECTION, Measurement, Metric, compute_plugin_metrics
from ecgbench.measure.flash import flash_figure
from ecgbench.measure.onnx_model import OnnxModel
from ecgbench.measure.sizing import canonical_zeros, size_report
from ecgbench.measure.windowing import (
    Aggregate,
    Windowing,
    onnx_session,
    predict_windowed,
    probabilities_as_logits,
    softmax,  # noqa: F401  (re-exported: ecgbench.measure.model_eval uses it)
    window_starts,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ecgbench.train.trainer import Trainer


class MeasureConfig(PluginConfig):
    """How a cell's final model is measured (suite key ``measure``)."""

    bootstrap_resamples: int = Field(1000, ge=1, description="bootstrap resamples of the test records for the challenge-score interval")
    bootstrap_seed: int = Field(0, description="seed of the bootstrap resampling (the same for every cell, so intervals are comparable)")
    ci_level: float = Field(0.95, gt=0, lt=1, description="coverage of the percentile bootstrap interval")
    input_s: float = Field(
        30.0,
        gt=0,
        description="seconds of ECG per inference for MACs, latency and device figures (CinC 2017 records are 9-61 s, most 30 s); "
        "with deploy_window_s, the record length that per-record device figures count windows in",
    )
    deploy_window_s: float | None = Field(
        None,
        gt=0,
        description="seconds of one deployed inference: records are scored window by window and aggregated (ecgbench.measure.windowing); "
        "latency, energy, RAM and MACs are per window. null: whole records, one inference each",
    )
    deploy_hop_s: float | None = Field(None, gt=0, description="seconds between window starts (default: deploy_window_s, windows side by side)")
    aggregate: Aggregate = Field("mean_prob", description="how windows make the record's class: mean_prob, max_prob or vote (ecgbench.measure.windowing)")
    latency_threads: int = Field(1, ge=1, description="onnxruntime intra-op threads for host latency (1: comparable across machines)")
    latency_warmup: int = Field(5, ge=0, description="untimed runs before host latency is timed")
    latency_repeats: int = Field(30, ge=1, description="timed runs of host latency (median and 95th percentile reported)")
    screening_interval_min: float = Field(5.0, gt=0, description="energy per day assumes one input_s recording classified every N minutes")

    @model_validator(mode="before")
    @classmethod
    def _hop_of_one_window_is_the_default(cls, data: Any) -> Any:
        """``deploy_hop_s`` equal to the window is the default spelt out: the same cell identity."""
        if isinstance(data, dict) and data.get("deploy_hop_s") is not None and data.get("deploy_hop_s") == data.get("deploy_window_s"):
            return {k: v for k, v in data.items() if k != "deploy_hop_s"}
        return data

    @model_validator(mode="after")
    def _window_settings_need_a_window(self) -> "MeasureConfig":
        if self.deploy_window_s is None:
            for key, default in (("deploy_hop_s", None), ("aggregate", "mean_prob")):
                if getattr(self, key) != default:
                    raise ValueError(f"{key} applies to windowed deployment only: set deploy_window_s too, or remove {key}")
        return self


def measure_artifact(
    onnx_bytes: bytes,
    trainer: "Trainer",
    config: MeasureConfig,
    devices: list[Any],
    dense: dict | None = None,
    dense_onnx: bytes | None = None,
    canonical: bool = False,
    metrics: Iterable[Metric] = (),
) -> dict:
    """The metrics JSON of one model; ``dense`` is the dense baseline's own measure_artifact dict.

    With ``dense_onnx`` (the dense baseline's ONNX), host latency is timed in
    alternation with it and ``latency.host_vs_dense`` is the ratio of the medians;
    both models also score the test records, and ``delta_f1_ci_points`` is the paired
    bootstrap interval of the test ΔF1 (same resampled records for both, in points).
    Each of ``metrics`` with a ``compute`` function (the registry's ``metrics``)
    is computed from a :class:`~ecgbench.measure.schema.Measurement` of the model.

    The model is measured and scored as :func:`ecgbench.measure.sizing.canonical_zeros`
    stores it (``-0.0`` weights as ``+0.0``, identical outputs); ``canonical=True`` says
    ``onnx_bytes`` already is.
    """
    from ecgbench.measure.latency import measure_latency_against, measure_onnx_latency
    from ecgbench.measure.onnx_graph import analyze_onnx
    from ecgbench.measure.simulator import simulate

    if not canonical:
        onnx_bytes = canonical_zeros(onnx_bytes)
    computing = [m for m in metrics if m.compute is not None]
    windowing = Windowing.from_config(config)
    val_logits = predict_split(onnx_bytes, trainer, "val", config)
    val = classification_scores(trainer.split("val").labels, val_logits.argmax(axis=1))  # as trainer.evaluate_onnx
    test, test_labels, test_logits = score_split(onnx_bytes, trainer, "test", config)

    size = size_report(onnx_bytes)
    if dense is not None:
        # A model with no non-zero weight left would divide by zero; it cannot classify anyway.
        size["compression_ratio"] = dense["size"]["nonzero_params"] / max(size["nonzero_params"], 1)
        size["size_reduction"] = dense["size"]["onnx"] / size["storage_bytes"]
    else:
        size["compression_ratio"] = 1.0
        size["size_reduction"] = size["onnx"] / size["storage_bytes"]

    fs_hz = trainer.splits.fs_hz
    samples = windowing.samples(fs_hz)[0] if windowing else int(round(config.input_s * fs_hz))
    input_shape = (1, 1, samples)  # one inference: a window, or a whole input_s record
    graph = analyze_onnx(onnx_bytes, input_shape=input_shape)
    graph_dict = graph.to_dict()
    compute = {
        "input_samples": samples,
        "macs": int(graph_dict["totals"]["macs"]),
        "effective_macs": int(graph_dict["totals"]["effective_macs"]),
        "per_layer": graph_dict["layers"],
    }

    timing_args = dict(threads=config.latency_threads, warmup=config.latency_warmup, repeats=config.latency_repeats)
    if dense_onnx is None:
        timing = measure_onnx_latency(onnx_bytes, input_shape, **timing_args)
    else:
        timing, dense_timing = measure_latency_against(onnx_bytes, dense_onnx, input_shape, **timing_args)
    latency = {
        "host_median_ms": timing.median_ms,
        "host_p95_ms": timing.p95_ms,
        "threads": timing.threads,
        "repeats": timing.repeats,
    }
    if dense_onnx is not None:
        latency["dense_host_median_ms"] = dense_timing.median_ms
        latency["host_vs_dense"] = timing.median_ms / dense_timing.median_ms

    windows = windowing.windows_in(config.input_s, fs_hz) if windowing else 1
    device_figures = {}
    model = OnnxModel(onnx_bytes)
    for profile in devices:
        flash = flash_figure(model, profile.sparse_layouts, profile.runtime)  # never a compressed file
        # A recording every screening_interval_min runs `windows` inferences: energy per day counts them all.
        interval_min = config.screening_interval_min / windows
        prediction = simulate(graph, profile, flash=flash, screening_interval_min=interval_min)
        figures = prediction.to_dict()
        figures.pop("per_layer", None)  # per-layer figures live in "compute" only
        device_figures[profile.name] = per_record_figures(figures, windows) if windowing else figures

    if windowing:
        compute["windows_per_record"] = windows
        latency["host_median_ms_per_record"] = timing.median_ms * windows
    delta = (test["challenge_f1"] - dense["test"]["challenge_f1"]) * 100 if dense is not None else 0.0
    delta_ci = None
    if dense_onnx is not None:
        dense_pred = predict_split(dense_onnx, trainer, "test", config).argmax(axis=1)  # at the same window
        lo, hi = bootstrap_delta_ci(test_labels, test_logits.argmax(axis=1), dense_pred, config.bootstrap_resamples, config.bootstrap_seed, config.ci_level)
        delta_ci = [lo * 100, hi * 100]
    out = {
        "val": val,
        "test": test,
        "size": size,
        "compute": compute,
        "latency": latency,
        "devices": device_figures,
        "delta_f1_points": delta,
    }
    if windowing:
        window, hop = windowing.samples(fs_hz)
        out["windowing"] = {
            **windowing.to_metadata(),
            "window_samples": window,
            "hop_samples": hop,
            "record_s": config.input_s,
            "windows_per_record": windows,
            "test_windows": int(sum(len(window_starts(int(n), window, hop)) for n in trainer.split("test").lengths())),
        }
    if delta_ci is not None:
        out["delta_f1_ci_points"] = delta_ci
    if computing:
        measurement = Measurement(
            classes=tuple(trainer.splits.classes),
            test_labels=test_labels,
            test_probabilities=softmax(test_logits),
            val_labels=trainer.split("val").labels,
            val_probabilities=softmax(val_logits),
            size=dict(size),
        )
        out[PLUGIN_SECTION], out[DECLARATIONS_SECTION] = compute_plugin_metrics(computing, measurement)
    return out


def predict_split(onnx_bytes: bytes, trainer: "Trainer", split: str, config: MeasureConfig) -> "np.ndarray":
    """Record-level logits ``[records, classes]`` on the records ``trainer`` holds for ``split``.

    Whole records by default; with ``config.deploy_window_s``, the log of the window
    probabilities aggregated per record (:func:`ecgbench.measure.windowing.predict_windowed`),
    whose argmax is the record's class and whose softmax gives the aggregated probabilities.
    """
    windowing = Windowing.from_config(config)
    if windowing is None:
        return trainer.predict_onnx(onnx_bytes, split)
    session = onnx_session(onnx_bytes, trainer.recipe.num_threads)
    probs, _counts = predict_windowed(session, trainer.split(split), windowing, trainer.splits.fs_hz)
    return probabilities_as_logits(probs)


def score_split(onnx_bytes: bytes, trainer: "Trainer", split: str, config: MeasureConfig) -> tuple[dict, "np.ndarray", "np.ndarray"]:
    """``(scores, labels, logits)`` of the model on the records ``trainer`` holds for ``split``: the
    record-level classification scores (windowed as ``config`` says) with a bootstrap interval of the
    challenge score (``challenge_f1_ci``).

    A cell's test scores are computed here, and so are ``ecgbench eval --run``'s: the same
    records, predictions and interval settings give the same figures.
    """
    labels = trainer.split(split).labels  # the records predict_split scores
    logits = predict_split(onnx_bytes, trainer, split, config)
    return scores_with_interval(labels, logits.argmax(axis=1), config), labels, logits


def scores_with_interval(labels: "np.ndarray", predicted: "np.ndarray", config: MeasureConfig) -> dict:
    """:func:`classification_scores` plus ``challenge_f1_ci``, the percentile bootstrap interval ``config`` sets."""
    scores = classification_scores(labels, predicted)
    lo, hi = bootstrap_challenge_ci(labels, predicted, config.bootstrap_resamples, config.bootstrap_seed, config.ci_level)
    scores["challenge_f1_ci"] = [lo, hi]
    return scores


def per_record_figures(figures: dict, windows: int) -> dict:
    """A device's figures for one window plus ``latency_ms``/``energy_mj`` ``_per_window`` and ``_per_record``
    (``windows`` runs per record); peak RAM and fit are per window, as the device runs one window at a time."""
    return {
        **figures,
        "windows_per_record": windows,
        "latency_ms_per_window": figures["latency_ms"],
        "latency_ms_per_record": figures["latency_ms"] * windows,
        "energy_mj_per_window": figures["energy_mj"],
        "energy_mj_per_record": figures["energy_mj"] * windows,
    }
