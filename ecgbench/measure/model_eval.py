"""A stored model scored on every record of a dataset (``ecgbench eval MODEL``).

The records are read by a dataset plugin with the settings of a
:class:`~ecgbench.config.suite.PluginRef` (as a suite's ``matrix.datasets``
item), preprocessed as the model's metadata says, and scored whole, as in the
benchmark. Metrics of installed plugins (``ecgbench_register_metrics``) are
computed too, with the records as both test and validation records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ecgbench import CLASSES
from ecgbench.config.suite import PluginRef
from ecgbench.errors import ConfigError
from ecgbench.measure.model_file import read_model_file
from ecgbench.measure.schema import DECLARATIONS_SECTION, PLUGIN_SECTION

DEPRECATED_KEYS = ("deployable_bytes", "deployable_format")
"""Result keys kept for one release as aliases of ``storage_bytes`` / ``storage_format``."""


def evaluate_model_file(
    model_path: str | Path,
    dataset: PluginRef,
    cache_dir: str | Path,
    threads: int = 0,
    on_bad_record: str = "error",
    registry=None,
    windows: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of the model stored at ``model_path`` on every record of ``dataset``.

    Records are scored whole, or window by window as the model's ``ecgbench.deploy`` metadata says;
    ``windows`` (``window_s``, ``hop_s``, ``aggregate``, from ``eval --deploy-window-s/--deploy-hop-s/--aggregate``)
    overrides it (:func:`ecgbench.measure.windowing.eval_windowing`); ``windowing`` says what was applied.

    Besides the scores: ``dataset_settings`` (plugin name and every setting used),
    ``class_counts`` (records per true class), ``dropped`` (pieces the dataset left
    out by design, by reason) and ``skipped`` (unusable records left out by
    ``on_bad_record="skip"``). ``cache_dir`` keeps the preprocessed records (several
    models with the same preprocessing share them).
    """
    from ecgbench.measure.artifact import MeasureConfig, scores_with_interval
    from ecgbench.measure.sizing import size_report
    from ecgbench.measure.windowing import eval_windowing, predict_records_windowed
    from ecgbench.registry import process_registry

    model = read_model_file(model_path)
    data_config = model.data_config().model_copy(update={"on_bad_record": on_bad_record})
    registry = registry or process_registry()
    entry = load_dataset_records(registry, dataset, data_config, Path(cache_dir))
    signals = entry.signals
    windowing = eval_windowing(model.metadata, **(windows or {}))
    if windowing is None:
        logits = predict_records(model.onnx_bytes, signals, threads=threads, model_path=model.path)
    else:
        logits = predict_records_windowed(model.onnx_bytes, signals, windowing, data_config.fs_hz, threads)
    measure = MeasureConfig()  # the benchmark's interval settings, so eval and cells agree
    scores = scores_with_interval(signals.labels, logits.argmax(axis=1), measure)
    size = size_report(model.onnx_bytes)
    plugin_values, declarations = plugin_metrics(registry, signals.labels, logits, size)
    counts = np.bincount(np.asarray(signals.labels, dtype=np.int64), minlength=len(CLASSES))
    return {
        **scores,
        "ci_level": measure.ci_level,
        "windowing": windowing.to_metadata() if windowing else None,
        "class_counts": {name: int(n) for name, n in zip(CLASSES, counts)},
        "storage_bytes": size["storage_bytes"],
        "storage_format": size["storage_format"],
        # Deprecated aliases of storage_*, kept for one release: "deployable" named a file no device executes.
        "deployable_bytes": size["storage_bytes"],
        "deployable_format": size["storage_format"],
        "deprecated": {key: f"use {key.replace('deployable', 'storage')}; removed in the next release" for key in DEPRECATED_KEYS},
        "nonzero_params": size["nonzero_params"],
        "total_params": size["total_params"],
        "file_bytes": model.file_bytes,
        "file_format": model.fmt,
        "model": str(model.path),
        "data": str(getattr(dataset.config, "path", None) or ""),
        "dataset": dataset.name,
        "dataset_settings": {"name": dataset.name, "settings": dataset.config.model_dump(mode="json")},
        "labels": getattr(dataset.config, "labels", None),
        "preprocessing": data_config.model_dump(mode="json"),
        "dropped": dict(entry.meta.get("dropped") or {}),
        "skipped": {reason: {"count": e["count"], "records": e["records"]} for reason, e in entry.meta.get("skipped", {}).items()},
        "exported": model.exported(),
        **({PLUGIN_SECTION: plugin_values, DECLARATIONS_SECTION: declarations} if declarations else {}),
    }


def load_dataset_records(registry, dataset: PluginRef, data_config, cache_dir: Path):
    """The preprocessed records cache entry of ``dataset`` (record errors suggest ``--on-bad-record skip``)."""
    from ecgbench.data.loader import load_records
    from ecgbench.data.problems import EVAL_SKIP_HINT, skip_hint_of

    plugin = registry.get("datasets", dataset.name, "--dataset")(dataset.config)
    with skip_hint_of(EVAL_SKIP_HINT):
        return load_records(plugin, data_config, cache_dir)


def plugin_metrics(registry, labels: np.ndarray, logits: np.ndarray, size: dict[str, Any]) -> tuple[dict, dict]:
    """Values and declarations of the registry's computing metrics; the scored records stand for test and validation."""
    from ecgbench.measure.artifact import softmax
    from ecgbench.measure.schema import Measurement, compute_plugin_metrics

    probabilities = softmax(logits)
    measurement = Measurement(CLASSES, labels, probabilities, labels, probabilities, dict(size))
    return compute_plugin_metrics(registry.tables.get("metrics", {}).values(), measurement)


def predict_records(onnx_bytes: bytes, signals, threads: int = 0, batch_size: int = 64, model_path: Path | str = "the model") -> np.ndarray:
    """Logits ``[n_records, n_classes]`` of whole records, run in onnxruntime (records of equal length batched).

    The model's input must be ``[batch, 1, samples]`` with any number of samples;
    a model exported with a fixed batch of 1 is run one record at a time.
    """
    import onnxruntime as ort

    from ecgbench.train.trainer import length_buckets

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    name, shape = model_input.name, list(model_input.shape)
    fixed_length = len(shape) == 3 and isinstance(shape[2], int)
    if len(shape) != 3 or shape[1] not in (1, "1") or (fixed_length and len(set(signals.lengths().tolist())) > 1):
        raise ConfigError(
            f"{model_path}: input '{name}' has shape {shape}; eval feeds whole records as [batch, 1, samples] "
            "with a free samples axis (re-export the model with dynamic axes on batch and samples)"
        )
    if fixed_length and int(signals.lengths()[0]) != shape[2]:
        raise ConfigError(f"{model_path}: input '{name}' has shape {shape}, but the records hold {int(signals.lengths()[0])} samples after preprocessing")
    if isinstance(shape[0], int):
        batch_size = shape[0]  # a fixed batch (usually 1): one record at a time
        if batch_size != 1:
            raise ConfigError(f"{model_path}: input '{name}' has a fixed batch of {batch_size} ({shape}); eval needs a free batch axis or a batch of 1")
    out = np.zeros((len(signals), len(CLASSES)), dtype=np.float32)
    for idx, x in length_buckets(signals, batch_size):
        out[idx] = session.run(None, {name: x})[0]
    return out

