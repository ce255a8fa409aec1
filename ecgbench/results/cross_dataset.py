"""Models trained on one dataset scored on another: which models to score, and the report (Markdown + JSON).

A folder of models written by the ``models`` reporter has an ``index.json``
naming each model's pipeline, cell and seed; its in-distribution test scores
come from the index (``test_challenge_f1``, ``test_af_f1``) or, for an index
written before those keys, from the run's ``results.json`` beside the folder.

The report puts each model's in-distribution test F1 next to its F1 on the
new dataset, each with its change from the dense model on the same dataset
(in points), and the per-class F1 on the new dataset. When one of N, A, O is
absent from the new dataset the challenge score (their mean F1) would count
that class as 0, so the headline is AF F1 instead, and absent classes are
left out, never scored as 0.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecgbench import CLASSES
from ecgbench.errors import ConfigError
from ecgbench.measure.scores import CHALLENGE_CLASSES

INDEX_FILE = "index.json"
RESULTS_FILE = "results.json"  # the json reporter's file, beside the models folder
MODEL_SUFFIXES = (".onnx", ".onnx.sparse", ".onnx.zst", ".onnx.zlib", ".onnx.sparse.zst", ".onnx.sparse.zlib")
REPORT_MD, REPORT_JSON = "report.md", "report.json"
HEADLINES = {"challenge_f1": "challenge F1", "af_f1": "AF F1"}


@dataclass
class ModelEntry:
    """A model file to score, with what is known of its origin and in-distribution test scores."""

    path: Path
    pipeline: str | None = None
    cell_id: str | None = None
    seed: int | None = None
    in_distribution: dict[str, float] = field(default_factory=dict)  # challenge_f1, af_f1 on its own test split


def model_entries(paths: list[str | Path]) -> list[ModelEntry]:
    """The models named by ``paths``: files, or folders (their ``index.json`` entries, else every model file in them)."""
    from ecgbench.measure.sizing import FORMAT_SUFFIXES

    suffixes = tuple(FORMAT_SUFFIXES.values())
    entries: list[ModelEntry] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            listed = _index_entries(path)
            if listed is None:
                listed = [ModelEntry(p) for p in sorted(path.iterdir()) if p.is_file() and p.name.endswith(suffixes)]
            if not listed:
                raise ConfigError(f"{path}: no model files (ending {', '.join(suffixes)}) and no {INDEX_FILE}; pass model files or a folder written by the models reporter")
            entries.extend(listed)
        else:
            listed = {e.path.name: e for e in (_index_entries(path.parent) or [])}
            entries.append(listed.get(path.name, ModelEntry(path)))
    for entry in entries:
        if entry.pipeline is None and entry.path.is_file():
            _fill_from_metadata(entry)
    return entries


def _index_entries(folder: Path) -> list[ModelEntry] | None:
    """Entries of ``folder/index.json`` that have a file, with in-distribution scores; None when there is no index."""
    index_path = folder / INDEX_FILE
    if not index_path.is_file():
        return None
    try:
        index = json.loads(index_path.read_text())
        models = index["models"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{index_path}: not a models index ({exc}); write it with `ecgbench report RUN --format models`") from None
    stored = _stored_test_scores(folder.parent / RESULTS_FILE)
    entries, unscored = [], []
    for item in models:
        if not isinstance(item, dict) or not item.get("file"):
            unscored.append(str(item.get("pipeline") if isinstance(item, dict) else item))  # listed, but too large to copy or missing
            continue
        scores = {k: item[f"test_{k}"] for k in HEADLINES if isinstance(item.get(f"test_{k}"), (int, float))}
        if not scores:
            scores = stored.get(item.get("cell_id"), {})
        entries.append(ModelEntry(folder / item["file"], item.get("pipeline"), item.get("cell_id"), item.get("seed"), scores))
    if unscored:
        warnings.warn(f"{index_path} lists {len(unscored)} model(s) without a file, not scored: {', '.join(unscored)}", stacklevel=2)
    return entries


def _stored_test_scores(results_path: Path) -> dict[str, dict[str, float]]:
    """``{cell_id: {challenge_f1, af_f1}}`` of a JSON report's cells (empty when there is none)."""
    try:
        cells = json.loads(results_path.read_text()).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return {}
    out = {}
    for cell in cells:
        test = (cell.get("metrics") or {}).get("test") or {}
        out[cell.get("cell_id")] = {k: test[k] for k in HEADLINES if isinstance(test.get(k), (int, float))}
    return out


def _fill_from_metadata(entry: ModelEntry) -> None:
    """Pipeline, cell and seed from the model's export metadata (a model file given alone)."""
    from ecgbench.measure.model_file import read_model_file

    exported = read_model_file(entry.path).exported()
    entry.pipeline = exported.get("pipeline")
    entry.cell_id = entry.cell_id or exported.get("cell_id")
    entry.seed = entry.seed if entry.seed is not None else exported.get("seed")


# --- the report ------------------------------------------------------------------------
def headline_metric(class_counts: dict[str, int]) -> tuple[str, list[str]]:
    """``(metric, absent classes)``: challenge F1 when N, A and O are all present, else AF F1."""
    absent = [name for name in CLASSES if not class_counts.get(name)]
    challenge_absent = [CLASSES[i] for i in CHALLENGE_CLASSES if CLASSES[i] in absent]
    return ("af_f1" if challenge_absent else "challenge_f1"), absent


def cross_dataset_report(entries: list[ModelEntry], results: list[dict[str, Any]], label: str | None = None) -> dict[str, Any]:
    """The report's data: per model, in-distribution and new-dataset headline F1, their changes from dense, per-class F1.

    ``label`` names the new dataset in the report (e.g. ``cpsc2021``, the dataset file's name); default: the plugin's name.
    """
    if not results:
        raise ConfigError("no model was scored; pass at least one model")
    first = results[0]
    metric, absent = headline_metric(first["class_counts"])
    present = [name for name in CLASSES if name not in absent]
    rows = []
    for entry, result in zip(entries, results):
        dense_entry, dense_result = _dense_of(entry, entries, results)
        rows.append(
            {
                "pipeline": entry.pipeline,
                "file": str(entry.path),
                "cell_id": entry.cell_id,
                "seed": entry.seed,
                "in_distribution": {**entry.in_distribution, "dataset": result.get("exported", {}).get("dataset")},
                "cross": {
                    "challenge_f1": result["challenge_f1"],
                    "af_f1": result["af_f1"],
                    "challenge_f1_ci": result["challenge_f1_ci"],
                    "f1": {name: result["f1"][name] for name in present},
                    "n_records": result["n_records"],
                },
                "delta_points": {
                    "in_distribution": _delta(entry.in_distribution.get(metric), dense_entry.in_distribution.get(metric) if dense_entry else None),
                    "cross": _delta(result[metric], dense_result[metric] if dense_result else None),
                },
            }
        )
    return {
        "format": "ecgbench-cross-dataset",
        "format_version": 1,
        "label": label or first["dataset_settings"]["name"],
        "dataset": first["dataset_settings"],
        "data": _shown_path(first["data"]),
        "headline": metric,
        "classes_present": present,
        "classes_absent": absent,
        "class_counts": first["class_counts"],
        "n_records": first["n_records"],
        "dropped": first.get("dropped", {}),
        "skipped": {reason: e["count"] for reason, e in (first.get("skipped") or {}).items()},
        "models": rows,
    }


def _dense_of(entry: ModelEntry, entries: list[ModelEntry], results: list[dict]) -> tuple[ModelEntry | None, dict | None]:
    """The dense model ``entry`` is compared with: the one of its seed, else the first dense one, else none."""
    dense = [(e, r) for e, r in zip(entries, results) if e.pipeline == "dense"]
    same_seed = [(e, r) for e, r in dense if e.seed == entry.seed]
    return (same_seed or dense or [(None, None)])[0]


def _delta(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else (value - reference) * 100


def report_markdown(report: dict[str, Any]) -> str:
    """A short Markdown page: what was scored, how, and one table."""
    metric = HEADLINES[report["headline"]]
    dataset = report["label"]
    trained_on = next((r["in_distribution"]["dataset"] for r in report["models"] if r["in_distribution"].get("dataset")), None) or "own"
    settings = ", ".join(f"{k}: {v}" for k, v in report["dataset"]["settings"].items() if k != "path" and v is not None)
    counts = ", ".join(f"{name} {report['class_counts'][name]}" for name in report["classes_present"])
    lines = [
        f"# Cross-dataset evaluation: {trained_on} models on {dataset}",
        "",
        f"- Data: `{report['data']}`, read by the `{report['dataset']['name']}` dataset plugin ({settings}).",
        f"- Records scored: {report['n_records']} ({counts}).",
    ]
    if report["classes_absent"]:
        lines.append(
            f"- Absent from {dataset}: {', '.join(report['classes_absent'])}; an absent class is not scored (its F1 is left out, "
            f"not counted as 0), so the headline is {metric}" + ("." if report["headline"] == "af_f1" else " (N, A and O are present).")
        )
    dropped = report.get("dropped") or {}
    lines.append("- Dropped by the dataset's settings: " + (", ".join(f"{n} {reason}" for reason, n in dropped.items()) or "none") + ".")
    if report.get("skipped"):
        lines.append("- Unusable records skipped: " + ", ".join(f"{n} {reason}" for reason, n in report["skipped"].items()) + ".")
    lines += [
        f"- Δ: change of {metric} from the dense model on the same dataset, in points.",
        "",
        f"| model | {trained_on} test {metric} | Δ | {dataset} {metric} | Δ | {dataset} F1 per class |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in report["models"]:
        own = row["in_distribution"].get(report["headline"])
        per_class = " · ".join(f"{name} {value:.3f}" for name, value in row["cross"]["f1"].items())
        lines.append(
            f"| {row['pipeline'] or Path(row['file']).name} | {_fmt(own)} | {_fmt_delta(row['delta_points']['in_distribution'])} "
            f"| {_fmt(row['cross'][report['headline']])} | {_fmt_delta(row['delta_points']['cross'])} | {per_class} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _fmt_delta(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f}"


def write_cross_dataset_report(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``report.md`` and ``report.json`` in ``out_dir``."""
    from ecgbench import atomic

    folder = atomic.ensure_dir(out_dir, "pass another --out")
    with atomic.all_or_nothing():
        md = atomic.write_text(folder / REPORT_MD, report_markdown(report), hint="pass another --out")
        js = atomic.write_text(folder / REPORT_JSON, json.dumps(report, indent=1, sort_keys=False) + "\n", hint="pass another --out")
    return [md, js]


def _shown_path(path: str) -> str:
    """``path`` relative to the working folder, so a published report names no machine path."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
