"""A finished cell read back from a run: its PyTorch weights (from the artifact cache) and its records.

``ecgbench export`` needs the model a cell measured, in PyTorch, to convert
it again. The artifact cache keeps the dense baseline and every pipeline
prefix a later pipeline may reuse (``steps/<key>/model.pt``); this module
finds the last of them that is a PyTorch model. A step that leaves PyTorch
(the ONNX quantizers) is named in ``replaced_steps``: the exporter quantizes
the weights before it with its own int8 scheme instead.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ecgbench.data.arrays import DataSplits
from ecgbench.errors import ConfigError, EcgbenchError
from ecgbench.kinds.model import ModelSpec, build_family_model
from ecgbench.registry import Registry
from ecgbench.run.artifact_cache import ArtifactCache
from ecgbench.run.cell import BASELINE_KIND, STEP_KIND, _prefix_key
from ecgbench.run.store import CellRow, RunResults
from ecgbench.train.trainer import load_checkpoint


@dataclass
class StoredCell:
    """What an export needs of a finished cell."""

    row: CellRow
    model: torch.nn.Module
    splits: DataSplits
    weights: str  # which cache entry the weights come from, for people
    architecture: ModelSpec  # of ``model``: the suite's, or the one a step returned (a distilled student)
    replaced_steps: list[str] = field(default_factory=list)  # ONNX steps the export's own int8 stands in for

    def title(self) -> str:
        return f"{self.row.dataset}/{self.row.model}/{self.row.pipeline}/seed{self.row.seed}"


def find_cell(results: RunResults, ref: str) -> CellRow:
    """The one finished cell of ``results`` whose id starts with ``ref``, whose pipeline label is ``ref``,
    or whose ``dataset/model/pipeline/seedN`` title matches the glob ``ref``."""
    cells = [c for c in results.cells if c.status == "done"]

    def title(c: CellRow) -> str:
        return f"{c.dataset}/{c.model}/{c.pipeline}/seed{c.seed}"

    found = [c for c in cells if c.cell_id.startswith(ref) or c.pipeline == ref or fnmatch.fnmatch(title(c), ref)]
    run = results.run.run_id
    if not found:
        labels = ", ".join(dict.fromkeys(c.pipeline for c in cells)) or "none"
        # A suite name means its latest run: one just started (another seed) has nothing finished yet.
        hint = f"; run {run} is {results.run.status}: pass the id of the run that made the cell (ecgbench runs lists them)" if not cells else ""
        raise ConfigError(
            f"--cell {ref!r} matches no finished cell of run {run}; its pipelines: {labels} "
            f"(a cell is a pipeline label, a cell id prefix or a dataset/model/pipeline/seedN glob){hint}"
        )
    if len(found) > 1:
        names = "; ".join(f"{title(c)} ({c.cell_id[:10]})" for c in found)
        raise ConfigError(f"--cell {ref!r} matches {len(found)} cells of run {run}: {names}; pass a title or a cell id prefix")
    return found[0]


def load_stored_cell(row: CellRow, home: str | Path, registry: Registry) -> StoredCell:
    """The cell's records (same preprocessing and split) and its last PyTorch weights from ``home``'s artifact cache."""
    from ecgbench.data.config import DataConfig
    from ecgbench.data.loader import load_splits

    config = row.config
    dataset_ref, model_ref = config["dataset"], config["model"]
    dataset = registry.get("datasets", dataset_ref["name"]).from_params(dataset_ref.get("params") or {}, f"cell {row.cell_id[:10]} dataset")
    data = DataConfig.model_validate(config["data"])
    splits = load_splits(dataset, data, Path(home) / "data")
    family = registry.get("models", model_ref["name"]).from_params(model_ref.get("params") or {}, f"cell {row.cell_id[:10]} model")
    torch.manual_seed(int(config.get("seed", row.seed)))
    model = family.build(len(splits.classes))
    own_spec = ModelSpec.of(family)

    cache, baseline_key, steps = ArtifactCache(home), config["baseline_key"], config.get("steps") or []
    replaced = []
    for index in reversed(range(len(steps))):
        key = _prefix_key(baseline_key, steps[: index + 1])
        name = steps[index]["name"]
        if not cache.is_done(STEP_KIND, key):
            raise EcgbenchError(
                f"cell {row.cell_id[:10]} ({row.pipeline}): step {index + 1} '{name}' is not in the artifact cache "
                f"{cache.entry(STEP_KIND, key)}; a step that changes the architecture (structured) is never cached, "
                "and a cache from another ECGBENCH_HOME is not seen: run the suite again with this ECGBENCH_HOME"
            )
        info = cache.read_done(STEP_KIND, key)
        if info.get("onnx"):
            replaced.append(name)
            continue
        spec = ModelSpec.from_dict(info["spec"]) if info.get("spec") else own_spec
        if spec != own_spec:  # the step returned another architecture (distill's student)
            family = registry.get("models", spec.name, where="a cached pipeline step")
            model = build_family_model(family, spec.params, len(splits.classes), int(config.get("seed", row.seed)))[0]
        load_checkpoint(model, cache.entry(STEP_KIND, key) / "model.pt")
        where = f"step {index + 1} '{name}' ({cache.entry(STEP_KIND, key)})"
        return StoredCell(row, model.eval(), splits, where, spec, replaced[::-1])
    baseline = cache.entry(BASELINE_KIND, baseline_key)
    if not cache.is_done(BASELINE_KIND, baseline_key):
        raise EcgbenchError(f"cell {row.cell_id[:10]}: its dense baseline {baseline} is not in the artifact cache; run the suite again with this ECGBENCH_HOME")
    load_checkpoint(model, baseline / "model.pt")
    return StoredCell(row, model.eval(), splits, f"dense baseline ({baseline})", own_spec, replaced[::-1])
