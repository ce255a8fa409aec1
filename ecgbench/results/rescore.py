"""A stored run's models scored again on exactly the records each cell was tested (or validated, or trained) on.

Each cell's stored config names its dataset with its settings and content
fingerprint, the preprocessing, the split settings and the training recipe.
From those the cell's splits are rebuilt as the run built them, and the
cell's final model is scored with :func:`ecgbench.measure.artifact.score_split`,
the function the cell's own measurement used: the test figures equal the
stored ones exactly (``ecgbench eval --run RUN --split test``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgbench.errors import ConfigError
from ecgbench.run.store import CellRow, RunResults

SPLIT_CHOICES = ("test", "val", "train", "all")
MODELS_FOLDER = "models"  # where the models reporter puts a run's models, beside its other reports
INDEX_FILE = "index.json"


@dataclass(frozen=True)
class Rescored:
    """One cell's model scored again on one split (``all``: the three together)."""

    cell: CellRow
    split: str
    scores: dict[str, Any]  # classification_scores plus challenge_f1_ci
    model_file: str
    stored: dict[str, Any] | None  # the scores the run stored for this split (test and val only)

    def to_dict(self) -> dict[str, Any]:
        stored_f1 = (self.stored or {}).get("challenge_f1")
        return {
            "cell_id": self.cell.cell_id,
            "dataset": self.cell.dataset,
            "model": self.cell.model,
            "pipeline": self.cell.pipeline,
            "seed": self.cell.seed,
            "split": self.split,
            "model_file": self.model_file,
            **self.scores,
            "stored_challenge_f1": stored_f1,
            "matches_stored": None if stored_f1 is None else self.scores["challenge_f1"] == stored_f1,
        }


def rescore_run(
    results: RunResults,
    split: str = "test",
    only: str | None = None,
    data_dir: str | Path | None = None,
    cache_dir: str | Path = ".ecgbench/data",
    report_dir: str | Path | None = None,
    registry=None,
) -> list[Rescored]:
    """Every finished cell of ``results`` (those matching ``only``) scored on ``split``.

    ``data_dir`` replaces the folder the run read its dataset from (its content
    must be the same: the fingerprint is checked). A cell's model is its stored
    artifact, or, for a run read from a JSON report, the file the ``models``
    reporter wrote for it under ``<report_dir>/models/``.
    """
    from ecgbench.registry import process_registry
    from ecgbench.run.runner import matches_only

    if split not in SPLIT_CHOICES:
        raise ConfigError(f"--split {split}: choose one of {', '.join(SPLIT_CHOICES)}")
    registry = registry or process_registry()
    done = [c for c in results.cells if c.status == "done"]
    cells = [c for c in done if matches_only(f"{c.dataset}/{c.model}/{c.pipeline}/seed{c.seed}", c.pipeline, c.cell_id, only)]
    if not cells:
        what = f"matches --only {only!r}" if only else "is done"
        labels = ", ".join(sorted({c.pipeline for c in done})) or "none"
        raise ConfigError(f"no cell of run {results.run.run_id} {what}; its finished pipelines: {labels}")
    index = _published_models(Path(report_dir)) if report_dir else {}
    splits_of: dict[str, Any] = {}
    out = []
    for cell in cells:
        splits = _cell_splits(cell, data_dir, Path(cache_dir), registry, splits_of)
        onnx_bytes, model_file = _cell_model(cell, index, report_dir)
        scores = _score(cell, splits, onnx_bytes, split)
        stored = cell.metrics.get(split) if split in ("test", "val") else None
        out.append(Rescored(cell, split, scores, model_file, stored))
    return out


def _cell_splits(cell: CellRow, data_dir, cache_dir: Path, registry, memo: dict):
    """The cell's DataSplits, rebuilt from its stored dataset, preprocessing and split settings."""
    from ecgbench.config.dataset_ref import dataset_ref
    from ecgbench.data.config import DataConfig
    from ecgbench.data.loader import load_splits
    from ecgbench.kinds.base import parse_config

    config = cell.config
    where = f"cell {cell.cell_id} ({cell.pipeline})"
    stored = config.get("dataset") or {}
    params = dict(stored.get("params") or {})
    if data_dir is not None:
        params["path"] = str(Path(data_dir).resolve())
    elif params.get("path") and not Path(params["path"]).exists():
        raise ConfigError(f"{where}: the run read its {cell.dataset} records from {params['path']}, which does not exist here; pass --data DIR")
    ref = dataset_ref(stored.get("name", cell.dataset), params, f"{where}: dataset", registry)
    data = parse_config(DataConfig, config.get("data"), f"{where}: data")
    key = json.dumps([ref.name, ref.params(), data.model_dump(mode="json")], sort_keys=True)
    if key not in memo:
        dataset = registry.get("datasets", ref.name)(ref.config)
        expected = stored.get("fingerprint")
        if expected and dataset.fingerprint() != expected:
            folder = params.get("path", "the default folder")
            raise ConfigError(
                f"{where}: the {ref.name} records at {folder} differ from those the run was trained and tested on "
                f"(fingerprint {dataset.fingerprint()[:12]}, stored {expected[:12]}); pass --data with the run's dataset folder"
            )
        memo[key] = load_splits(dataset, data, cache_dir)
    return memo[key]


def _score(cell: CellRow, splits, onnx_bytes: bytes, split: str) -> dict[str, Any]:
    """The scores :func:`ecgbench.run.cell.run_cell` computes, on ``split`` (``all``: the three splits together)."""
    from ecgbench.kinds.base import parse_config
    from ecgbench.measure.artifact import MeasureConfig, predict_split, score_split, scores_with_interval
    from ecgbench.train.trainer import Trainer, TrainRecipe

    where = f"cell {cell.cell_id} ({cell.pipeline})"
    recipe = parse_config(TrainRecipe, cell.config.get("training"), f"{where}: training")
    measure = parse_config(MeasureConfig, cell.config.get("measure"), f"{where}: measure")
    trainer = Trainer(splits, recipe, cell.seed)
    if split != "all":
        return score_split(onnx_bytes, trainer, split, measure)[0]
    labels, predicted = [], []
    for name in ("train", "val", "test"):
        labels.append(trainer.split(name).labels)
        predicted.append(predict_split(onnx_bytes, trainer, name, measure).argmax(axis=1))
    return scores_with_interval(np.concatenate(labels), np.concatenate(predicted), measure)


def _cell_model(cell: CellRow, index: dict[str, Path], report_dir) -> tuple[bytes, str]:
    """The cell's final model as measured (its artifact, else its published file) and where it came from."""
    from ecgbench.measure.model_file import read_model_file

    artifact = cell.artifacts.get("onnx")
    if artifact and Path(artifact).is_file():
        return read_model_file(artifact).onnx_bytes, artifact
    if cell.cell_id in index:
        return read_model_file(index[cell.cell_id]).onnx_bytes, str(index[cell.cell_id])
    where = f"{Path(report_dir) / MODELS_FOLDER / INDEX_FILE}" if report_dir else "a report folder (pass the run's report folder as --run)"
    raise ConfigError(
        f"cell {cell.cell_id} ({cell.pipeline}): its model {artifact or '(none stored)'} does not exist and is not listed in {where}; "
        "run the suite again on this machine, or write its models with `ecgbench report RUN --format models`"
    )


def _published_models(report_dir: Path) -> dict[str, Path]:
    """``{cell_id: model file}`` of the ``models`` reporter's index under ``report_dir`` (empty when there is none)."""
    path = report_dir / MODELS_FOLDER / INDEX_FILE
    try:
        entries = json.loads(path.read_text()).get("models", [])
    except (OSError, ValueError, AttributeError):
        return {}
    return {e["cell_id"]: path.parent / e["file"] for e in entries if isinstance(e, dict) and e.get("cell_id") and e.get("file")}
