"""``ecgbench eval MODEL --data DIR``: score an exported model on every record of a folder.

The model carries its preprocessing in its ``ecgbench.preprocessing``
metadata (written at export), so the same sampling rate, band-pass and
normalisation are applied as in training. Records are scored whole, as in
the benchmark; the model may be stored in any format of ``ecgbench.measure.sizing``
(plain, sparse, zlib, zstd). Metrics of installed plugins (``ecgbench_register_metrics``)
are computed too, with the folder's records as both test and validation records.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ecgbench import CLASSES
from ecgbench.errors import ConfigError, EcgbenchError
from ecgbench.measure.schema import DECLARATIONS_SECTION, PLUGIN_SECTION, lookup

PREPROCESSING_KEY = "preprocessing"
PREPROCESSING_FIELDS = ("fs_hz", "normalize", "bandpass_hz", "window_s")
DEPRECATED_KEYS = ("deployable_bytes", "deployable_format")
"""``--json`` keys kept for one release as aliases of ``storage_bytes`` / ``storage_format``."""


def register(subparsers) -> None:
    """Add the ``eval`` subcommand."""
    p = subparsers.add_parser("eval", help="score an exported model on every record of a dataset folder")
    p.add_argument("model", type=Path, help="model exported by ecgbench (.onnx, or a sparse/zlib/zstd file of it)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (e.g. CinC 2017 records with REFERENCE.csv)")
    p.add_argument("--dataset", default="cinc2017", help="dataset plugin that reads the folder (default cinc2017)")
    p.add_argument("--labels", choices=("final", "v1"), help="CinC 2017 reference labels (default: the plugin's, final)")
    p.add_argument("--cache-dir", type=Path, help="keep preprocessed records here (default: a temporary folder)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads (default 0: onnxruntime chooses)")
    p.add_argument(
        "--on-bad-record",
        choices=("error", "skip"),
        default="error",
        help="a record that cannot be used stops eval (error, default) or is left out and counted (skip)",
    )
    add_window_arguments(p)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """Run ``ecgbench eval``."""
    result = evaluate_model_file(
        args.model,
        args.data,
        dataset=args.dataset,
        labels=args.labels,
        cache_dir=args.cache_dir,
        threads=args.threads,
        on_bad_record=args.on_bad_record,
        deploy_window_s=args.deploy_window_s,
        deploy_hop_s=args.deploy_hop_s,
        aggregate=args.aggregate,
    )
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else summary_text(result))
    return 0


def evaluate_model_file(
    model_path: Path,
    data_dir: Path,
    dataset: str = "cinc2017",
    labels: str | None = None,
    cache_dir: Path | None = None,
    threads: int = 0,
    on_bad_record: str = "error",
    deploy_window_s: float | str | None = None,
    deploy_hop_s: float | None = None,
    aggregate: str | None = None,
) -> dict[str, Any]:
    """Metrics of the model stored at ``model_path`` on every record of ``data_dir`` (``skipped``: records left out).

    Records are scored whole, or window by window as the model's ``ecgbench.deploy`` metadata
    says; ``deploy_*``/``aggregate`` override it (:func:`ecgbench.measure.windowing.eval_windowing`)."""
    from ecgbench.measure.windowing import eval_windowing, predict_records_windowed

    from ecgbench.train.export import read_metadata
    from ecgbench.measure.artifact import MeasureConfig
    from ecgbench.measure.scores import bootstrap_challenge_ci, classification_scores
    from ecgbench.measure.sizing import detect_format, load_format, size_report
    from ecgbench.plugin_manager import make_plugin_manager
    from ecgbench.registry import build_registry

    model_path = Path(model_path)
    if not model_path.is_file():
        raise ConfigError(_missing_model_message(model_path))
    stored = model_path.read_bytes()
    fmt = detect_format(stored)
    try:
        onnx_bytes = load_format(stored, fmt)
        metadata = read_metadata(onnx_bytes)
    except EcgbenchError:
        raise
    except Exception as exc:
        raise ConfigError(f"{model_path} is not an ONNX model nor one of ecgbench's stored formats ({exc.__class__.__name__}: {exc})") from None
    data_config = data_config_from_metadata(metadata, model_path).model_copy(update={"on_bad_record": on_bad_record})
    classes = tuple(metadata.get("classes", CLASSES))
    if classes != CLASSES:
        raise ConfigError(f"{model_path}: the model predicts classes {list(classes)}, but eval scores CinC 2017 classes {list(CLASSES)}")

    registry = build_registry(make_plugin_manager())
    with tempfile.TemporaryDirectory(prefix="ecgbench-eval-") as tmp:
        # The temporary cache outlives prediction: the loader may memory-map its files.
        entry = _load_records(registry, dataset, data_dir, labels, data_config, Path(cache_dir or tmp))
        signals = entry.signals
        windowing = eval_windowing(metadata, deploy_window_s, deploy_hop_s, aggregate)
        if windowing is None:
            logits = predict_records(onnx_bytes, signals, threads=threads, model_path=model_path)
        else:
            logits = predict_records_windowed(onnx_bytes, signals, windowing, data_config.fs_hz, threads)
    y_pred = logits.argmax(axis=1)
    measure = MeasureConfig()  # the benchmark's interval settings, so eval and cells agree
    scores = classification_scores(signals.labels, y_pred)
    scores["challenge_f1_ci"] = list(
        bootstrap_challenge_ci(signals.labels, y_pred, measure.bootstrap_resamples, measure.bootstrap_seed, measure.ci_level)
    )
    size = size_report(onnx_bytes)
    plugin_values, declarations = _plugin_metrics(registry, signals.labels, logits, size)
    return {
        **scores,
        "ci_level": measure.ci_level,
        "storage_bytes": size["storage_bytes"],
        "storage_format": size["storage_format"],
        # Deprecated aliases of storage_*, kept for one release: "deployable" named a file no device executes.
        "deployable_bytes": size["storage_bytes"],
        "deployable_format": size["storage_format"],
        "deprecated": {key: f"use {key.replace('deployable', 'storage')}; removed in the next release" for key in DEPRECATED_KEYS},
        "nonzero_params": size["nonzero_params"],
        "total_params": size["total_params"],
        "file_bytes": len(stored),
        "file_format": fmt,
        "model": str(model_path),
        "data": str(data_dir),
        "dataset": dataset,
        "labels": labels,
        "preprocessing": data_config.model_dump(mode="json"),
        "windowing": windowing.to_metadata() if windowing else None,
        "skipped": {reason: {"count": e["count"], "records": e["records"]} for reason, e in entry.meta.get("skipped", {}).items()},
        "exported": {k: metadata[k] for k in ("pipeline", "model", "dataset", "seed", "precision", "cell_id", "version") if k in metadata},
        **({PLUGIN_SECTION: plugin_values, DECLARATIONS_SECTION: declarations} if declarations else {}),
    }


def add_window_arguments(p) -> None:
    """``--deploy-window-s``, ``--deploy-hop-s``, ``--aggregate``: override the windowing in the model's metadata."""
    from ecgbench.measure.windowing import AGGREGATES, parse_window_arg

    p.add_argument("--deploy-window-s", type=parse_window_arg, metavar="S", help="score windows of S seconds aggregated per record, or 'whole' (default: the model's metadata, else whole records)")
    p.add_argument("--deploy-hop-s", type=float, metavar="S", help="seconds between window starts (default: the window)")
    p.add_argument("--aggregate", choices=AGGREGATES, help="how windows make the record's class (default: the model's metadata, else mean_prob)")


def _plugin_metrics(registry, labels: np.ndarray, logits: np.ndarray, size: dict[str, Any]) -> tuple[dict, dict]:
    """Values and declarations of the registry's computing metrics; the scored records stand for test and validation."""
    from ecgbench.measure.artifact import softmax
    from ecgbench.measure.schema import Measurement, compute_plugin_metrics

    probabilities = softmax(logits)
    measurement = Measurement(CLASSES, labels, probabilities, labels, probabilities, dict(size))
    return compute_plugin_metrics(registry.tables.get("metrics", {}).values(), measurement)


def _missing_model_message(model_path: Path) -> str:
    """Says the file is missing and, when the same model lies beside it in another stored format, names that file."""
    from ecgbench.measure.sizing import FORMAT_SUFFIXES

    stem = model_path.name[: -len(".onnx")] if model_path.name.endswith(".onnx") else model_path.name
    siblings = [model_path.with_name(stem + suffix) for suffix in FORMAT_SUFFIXES.values()]
    found = [p for p in siblings if p != model_path and p.is_file()]
    if found:
        return f"model file {model_path} does not exist; the same model is stored beside it as {found[0]}: pass that file"
    return f"model file {model_path} does not exist; pass the .onnx written by 'ecgbench run' (artifacts/<cell>/model.onnx) or a published model file"


def data_config_from_metadata(metadata: dict[str, Any], model_path: Path):
    """The DataConfig stored in a model's ``ecgbench.preprocessing`` metadata, or a ConfigError saying what is missing."""
    from ecgbench.data.config import DataConfig

    needed = ", ".join(PREPROCESSING_FIELDS)
    prep = metadata.get(PREPROCESSING_KEY)
    if not isinstance(prep, dict) or "fs_hz" not in prep:
        raise ConfigError(
            f"{model_path}: no 'ecgbench.{PREPROCESSING_KEY}' metadata with fs_hz: the model was not exported by ecgbench. "
            f"eval needs the preprocessing the model was trained with ({needed}); add it with "
            f"ecgbench.train.export.with_metadata(onnx_bytes, {{'{PREPROCESSING_KEY}': {{'fs_hz': 300, ...}}}})"
        )
    known = {k: v for k, v in prep.items() if k in DataConfig.model_fields and k != "split"}
    try:
        # Through JSON, so lists stored in the metadata validate as the config's tuples.
        return DataConfig.model_validate_json(json.dumps(known))
    except Exception as exc:
        raise ConfigError(f"{model_path}: 'ecgbench.{PREPROCESSING_KEY}' metadata is invalid ({exc}); it must hold {needed}") from None


def _load_records(registry, dataset: str, data_dir: Path, labels: str | None, data_config, cache_dir: Path):
    from ecgbench.data.loader import load_records
    from ecgbench.data.problems import EVAL_SKIP_HINT, skip_hint_of

    cls = registry.get("datasets", dataset, "--dataset")
    params: dict[str, Any] = {"path": str(Path(data_dir).resolve())}
    if labels is not None:
        if "labels" not in cls.Config.model_fields:
            raise ConfigError(f"--labels applies to datasets with reference label versions (cinc2017); '{dataset}' has none")
        params["labels"] = labels
    ds = cls.from_params(params, where=f"--dataset {dataset}")
    with skip_hint_of(EVAL_SKIP_HINT):
        return load_records(ds, data_config, cache_dir)


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


def summary_text(result: dict[str, Any]) -> str:
    """A few lines for people: score with interval, per-class F1, size."""
    from ecgbench.measure.schema import stored_declarations

    lo, hi = result["challenge_f1_ci"]
    per_class = "  ".join(f"{name} {value:.3f}" for name, value in result["f1"].items())
    plugin_lines = [f"{m.label}: {m.show(lookup(result, m.path))}" for m in stored_declarations([result])]
    return "\n".join(
        [
            f"{result['model']}: {result['n_records']} records of {result['data']} ({result['dataset']})",
            f"challenge F1 (mean of N, A, O) {result['challenge_f1']:.3f}  [{result['ci_level']:.0%} CI {lo:.3f}-{hi:.3f}]"
            + (f"  ({_windows_text(result['windowing'])})" if result.get("windowing") else ""),
            f"F1 {per_class}  |  macro F1 {result['macro_f1']:.3f}  accuracy {result['accuracy']:.3f}",
            f"size: {result['storage_bytes']:,} bytes stored ({result['storage_format']}, the smallest lossless file); "
            f"{result['nonzero_params']:,} of {result['total_params']:,} parameters non-zero",
            *plugin_lines,
            *_skipped_text(result.get("skipped") or {}),
        ]
    )


def _windows_text(windowing: dict[str, Any]) -> str:
    from ecgbench.measure.windowing import Windowing

    return "record class from " + Windowing(windowing["window_s"], windowing["hop_s"], windowing["aggregate"]).describe()


def _skipped_text(skipped: dict[str, dict]) -> list[str]:
    """Lines naming the records ``--on-bad-record skip`` left out (none when nothing was skipped)."""
    from ecgbench.results.records import skipped_lines

    if not skipped:
        return []
    total = sum(e["count"] for e in skipped.values())
    return [f"skipped {total} record(s) (--on-bad-record skip):", *(f"  {line}" for line in skipped_lines(skipped))]
