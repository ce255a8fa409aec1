"""One cell = dataset + model + training recipe + compressor pipeline + seed, and how it runs.

Cells travel to executors as picklable :class:`CellJob` objects holding typed, validated settings; a
worker builds plugins from those settings, trains (or reuses) the dense
baseline through the artifact cache, applies the pipeline, measures the
final model and returns a :class:`CellResult`. Failures are results.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import ecgbench
from ecgbench.run.artifact_cache import ArtifactCache
from ecgbench.kinds.compressor import CompressionContext, ModelArtifact, ModelBuilder, RoundCheckpoints
from ecgbench.kinds.model import ModelSpec, build_family_model
from ecgbench.config.suite import PluginRef, Suite, baseline_identity_of, non_default, runtime_identity
from ecgbench.hashing import stable_hash
from ecgbench.data.arrays import DataSplits
from ecgbench.train.export import to_onnx, with_metadata
from ecgbench.measure.sizing import canonical_zeros
from ecgbench.measure.windowing import METADATA_KEY as WINDOWING_KEY, Windowing
from ecgbench.errors import EcgbenchError
from ecgbench.registry import Registry, process_registry
from ecgbench.train.trainer import Trainer, TrainRecipe, load_checkpoint, save_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from ecgbench.data.config import DataConfig
    from ecgbench.measure.artifact import MeasureConfig

BASELINE_KIND = "baselines"


@dataclass(frozen=True)
class CellSpec:
    """Everything that determines a cell, as validated, typed, picklable settings."""

    cell_id: str
    position: int
    dataset: PluginRef
    model: PluginRef
    pipeline: str  # label
    steps: tuple[PluginRef, ...]
    seed: int
    data: "DataConfig"
    training: TrainRecipe
    measure: "MeasureConfig"
    devices: tuple[str, ...]
    baseline_key: str
    synthetic: bool = False
    fingerprint: str = ""  # the dataset's content fingerprint
    runtime: dict = field(default_factory=dict)  # runtime_identity() the cell id was made with

    def labels(self) -> dict[str, Any]:
        return {"dataset": self.dataset.name, "model": self.model.name, "pipeline": self.pipeline, "seed": self.seed}

    def model_spec(self) -> ModelSpec:
        """The architecture of the cell's own (dense, teacher) model."""
        return ModelSpec(self.model.name, self.model.params())

    def title(self) -> str:
        return f"{self.dataset.name}/{self.model.name}/{self.pipeline}/seed{self.seed}"

    def config(self) -> dict[str, Any]:
        """The cell's settings as JSON-ready data (stored with every result and read by reports)."""
        return {
            "cell_id": self.cell_id,
            "dataset": {**_ref_dict(self.dataset), "fingerprint": self.fingerprint},
            "model": _ref_dict(self.model),
            "pipeline": self.pipeline,
            "steps": [_ref_dict(step) for step in self.steps],
            "seed": self.seed,
            "data": self.data.model_dump(mode="json"),
            "training": self.training.model_dump(mode="json"),
            "measure": self.measure.model_dump(mode="json"),
            "devices": list(self.devices),
            "baseline_key": self.baseline_key,
            "synthetic": self.synthetic,
        }


def _ref_dict(ref: PluginRef) -> dict[str, Any]:
    return {"name": ref.name, "params": ref.params()}


@dataclass
class CellJob:
    """A unit of work handed to an executor."""

    spec: CellSpec
    stage: str  # "baseline" | "cell"
    home: str  # artifact cache root
    artifacts_dir: str
    progress: bool = False


@dataclass
class CellResult:
    """What a worker hands back to the driving process."""

    cell_id: str
    status: str  # done | failed
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    error: str | None = None


def expand_cells(suite: Suite, registry: Registry) -> list[CellSpec]:
    """All cells of the suite, in matrix order (dataset, model, seed, pipeline)."""
    cells = []
    runtime = runtime_identity(suite.training)
    for dataset_ref in suite.datasets:
        dataset_cls = registry.get("datasets", dataset_ref.name)
        fingerprint = dataset_cls(dataset_ref.config).fingerprint()
        for model_ref in suite.models:
            for seed in suite.seeds:
                baseline_identity = baseline_identity_of(suite, dataset_ref, fingerprint, model_ref, seed, runtime)
                baseline_key = stable_hash(baseline_identity)
                for pipeline in suite.pipelines:
                    cell_identity = {
                        **baseline_identity,
                        "pipeline": pipeline.identity(),
                        "measure": non_default(suite.measure),
                        "devices": list(suite.devices),
                    }
                    cells.append(
                        CellSpec(
                            cell_id=stable_hash(cell_identity),
                            position=len(cells),
                            dataset=dataset_ref,
                            model=model_ref,
                            pipeline=pipeline.label,
                            steps=pipeline.steps,
                            seed=seed,
                            data=suite.data,
                            training=suite.training,
                            measure=suite.measure,
                            devices=tuple(suite.devices),
                            baseline_key=baseline_key,
                            synthetic=bool(getattr(dataset_cls, "synthetic", False)),
                            fingerprint=fingerprint,
                            runtime=runtime,
                        )
                    )
    return cells


# --- execution (runs in the driver or in a worker process) ---------------------------
def execute_job(job: CellJob, registry: Registry | None = None) -> CellResult:
    """Run one job; any exception, ``sys.exit()`` included, becomes a failed result with its traceback.

    Only Ctrl-C (KeyboardInterrupt) goes through: it stops the whole run.
    """
    start = time.perf_counter()
    try:
        registry = registry or process_registry()
        _check_runtime(job.spec)
        if job.stage == "baseline":
            baseline = ensure_baseline(job, registry)
            return CellResult(job.spec.cell_id, "done", timings={"baseline_s": baseline["trained_s"]})
        return run_cell(job, registry)
    except KeyboardInterrupt:
        raise
    except BaseException:  # a plugin's sys.exit() (SystemExit) fails its cell, not the suite
        return CellResult(job.spec.cell_id, "failed", timings={"total_s": time.perf_counter() - start}, error=traceback.format_exc())


def _check_runtime(spec: CellSpec) -> None:
    """A worker must compute with the libraries and device the cell's id names (a Ray worker may differ from the driver)."""
    if spec.runtime and runtime_identity(spec.training) != spec.runtime:
        raise EcgbenchError(
            f"this worker computes with {runtime_identity(spec.training)} but cell {spec.cell_id} was named for {spec.runtime}; "
            "run the driver and the workers with the same torch, onnxruntime, numpy and device"
        )


def _plugin(registry: Registry, kind: str, ref: PluginRef):
    return registry.get(kind, ref.name)(ref.config)


_SPLITS_CACHE: dict[tuple, DataSplits] = {}
_SPLITS_CACHE_SIZE = 4


def load_cell_splits(job: CellJob, registry: Registry) -> DataSplits:
    """Preprocessed splits for the cell's dataset (disk cache, plus a small in-process cache)."""
    from ecgbench.data.loader import load_splits

    spec = job.spec
    key = (json.dumps(_ref_dict(spec.dataset), sort_keys=True), spec.data.model_dump_json(), job.home)
    if key not in _SPLITS_CACHE:
        if len(_SPLITS_CACHE) >= _SPLITS_CACHE_SIZE:
            _SPLITS_CACHE.pop(next(iter(_SPLITS_CACHE)))
        dataset = _plugin(registry, "datasets", spec.dataset)
        _SPLITS_CACHE[key] = load_splits(dataset, spec.data, Path(job.home) / "data")
    return _SPLITS_CACHE[key]


def build_model(registry: Registry, spec: CellSpec, n_classes: int) -> torch.nn.Module:
    """The cell's model at its seeded initialisation."""
    family = _plugin(registry, "models", spec.model)
    torch.manual_seed(spec.seed)
    return family.build(n_classes)


@dataclass
class CellModels:
    """The architectures one cell works with: its own model at its initial weights, and any other
    a step returned (a distilled student), rebuilt from its :class:`ModelSpec` at the cell's seed."""

    registry: Registry
    spec: ModelSpec  # the cell's own model
    initial: torch.nn.Module  # ... at its initial weights
    n_classes: int
    seed: int

    def initial_of(self, spec: ModelSpec | None) -> torch.nn.Module:
        """A new model of ``spec`` (None: the cell's own) at its initial weights."""
        if spec is None or spec == self.spec:
            return copy.deepcopy(self.initial)
        family = self.registry.get("models", spec.name, where="a cached pipeline step")
        return build_family_model(family, spec.params, self.n_classes, self.seed)[0]

    def builder(self, spec: ModelSpec | None) -> ModelBuilder:
        """``ctx.build_model`` for a step whose incoming model has ``spec``."""
        return ModelBuilder(
            lambda: self.initial_of(spec),
            families=lambda name: self.registry.get("models", name, where="ctx.build_model"),
            n_classes=self.n_classes,
            seed=self.seed,
        )

    def context_for(self, ctx: CompressionContext, spec: ModelSpec | None) -> CompressionContext:
        """``ctx`` for a step whose incoming model has ``spec``: its builder, spec and initial state."""
        spec = spec or self.spec
        changes: dict[str, Any] = {"build_model": self.builder(spec), "model_spec": spec}
        if spec != self.spec:
            changes["initial_state"] = {k: v.clone() for k, v in self.initial_of(spec).state_dict().items()}
        return dataclasses.replace(ctx, **changes)


def ensure_baseline(job: CellJob, registry: Registry) -> dict[str, Any]:
    """Train the dense baseline once per content key; later calls read it from the cache."""
    spec = job.spec
    cache = ArtifactCache(job.home)
    if cache.is_done(BASELINE_KIND, spec.baseline_key):
        return cache.read_done(BASELINE_KIND, spec.baseline_key)
    with cache.locked(BASELINE_KIND, spec.baseline_key) as folder:
        if cache.is_done(BASELINE_KIND, spec.baseline_key):  # built by another process meanwhile
            return cache.read_done(BASELINE_KIND, spec.baseline_key)
        splits = load_cell_splits(job, registry)
        model = build_model(registry, spec, len(splits.classes))
        save_checkpoint(model, folder / "initial.pt")
        _write_split_file(splits, folder / "split.csv")
        trainer = Trainer(splits, spec.training, spec.seed, job.progress, label=f"dense {spec.model.name}")
        fit = trainer.fit(model)
        save_checkpoint(model, folder / "model.pt")
        dense_spec = dataclasses.replace(spec, pipeline="dense", steps=(PluginRef("compressors", "dense", registry.get("compressors", "dense").Config()),))
        dense_onnx = with_metadata(to_onnx(model, samples=_input_samples(spec, splits)), export_metadata(dense_spec, splits, "fp32"))
        dense_reference = _dense_reference(dense_onnx, trainer, spec)
        info = {
            "fit": asdict(fit),
            "trained_s": fit.seconds,
            "dense": dense_reference,
            "model": _ref_dict(spec.model),
            "seed": spec.seed,
            "ecgbench_version": ecgbench.__version__,
        }
        cache.mark_done(BASELINE_KIND, spec.baseline_key, info)
        return info


def _write_split_file(splits: DataSplits, path: Path) -> None:
    """``record_id,split`` of every record, kept with the baseline so a run can be reproduced exactly
    (and reused as a suite's ``data.split.file``)."""
    assignment = splits.info.get("split") or {}
    rows = [f"{rid},{name}" for rid, name in sorted(assignment.items())]
    path.write_text("record,split\n" + "\n".join(rows) + "\n")


def _dense_reference(dense_onnx: bytes, trainer: Trainer, spec: CellSpec) -> dict[str, Any]:
    """The dense model's figures every compressed cell is compared with (no device simulation).

    Scored on whole records whatever the cell's windowing: the baseline is shared by cells
    with and without ``deploy_window_s`` (its key leaves the measure settings out), and a
    windowed cell scores the dense model on its own windows (:func:`_windowed_dense`).
    """
    from ecgbench.measure.artifact import measure_artifact

    whole_records = spec.measure.model_copy(update={"deploy_window_s": None, "deploy_hop_s": None, "aggregate": "mean_prob"})
    return measure_artifact(dense_onnx, trainer, whole_records, devices=[], dense=None)


def _windowed_dense(dense: dict[str, Any], dense_onnx: bytes, trainer: Trainer, spec: CellSpec) -> dict[str, Any]:
    """The dense reference of a cell: the baseline's, with its scores on the cell's windows when it deploys windows
    (so ΔF1 compares the two models at the same window)."""
    from ecgbench.measure.artifact import predict_split, score_split
    from ecgbench.measure.scores import classification_scores

    if spec.measure.deploy_window_s is None:
        return dense
    test, _labels, _logits = score_split(dense_onnx, trainer, "test", spec.measure)
    val = classification_scores(trainer.split("val").labels, predict_split(dense_onnx, trainer, "val", spec.measure).argmax(axis=1))
    return {**dense, "test": test, "val": val}


def _input_samples(spec: CellSpec, splits: DataSplits) -> int:
    return int(round(spec.measure.input_s * splits.fs_hz))


def run_cell(job: CellJob, registry: Registry) -> CellResult:
    """Baseline (cached), pipeline, measurement, exported model."""
    from ecgbench.measure.artifact import measure_artifact

    spec = job.spec
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    splits = load_cell_splits(job, registry)
    timings["data_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    baseline = ensure_baseline(job, registry)
    folder = ArtifactCache(job.home).entry(BASELINE_KIND, spec.baseline_key)
    # The cell's one build of the model: every other copy is a deepcopy of it at its initial weights.
    initial = load_checkpoint(build_model(registry, spec, len(splits.classes)), folder / "initial.pt")
    initial_state = {k: v.clone() for k, v in initial.state_dict().items()}
    model = load_checkpoint(copy.deepcopy(initial), folder / "model.pt")
    timings["baseline_s"] = time.perf_counter() - t

    trainer = Trainer(splits, spec.training, spec.seed, job.progress, label=spec.pipeline)
    workdir = Path(job.artifacts_dir) / spec.cell_id
    workdir.mkdir(parents=True, exist_ok=True)
    models = CellModels(registry, spec.model_spec(), initial, len(splits.classes), spec.seed)
    ctx = CompressionContext(
        trainer=trainer,
        build_model=models.builder(models.spec),
        model_spec=models.spec,
        initial_state=initial_state,
        dense_val_challenge_f1=baseline["fit"]["best_val_challenge_f1"],
        seed=spec.seed,
        workdir=workdir,
        fs_hz=splits.fs_hz,
        log=lambda msg: None,
        dense_model=copy.deepcopy(model),
    )
    dense_onnx = to_onnx(copy.deepcopy(model), samples=_input_samples(spec, splits))  # timed beside the compressed model
    dense = _windowed_dense(baseline["dense"], dense_onnx, trainer, spec)
    artifact = ModelArtifact(model=model, spec=models.spec)
    steps = []
    t = time.perf_counter()
    for index in range(len(spec.steps)):  # suite validation put every ONNX-producing step last
        trainer.reseed(index + 1)
        artifact, entry = _run_step(job, registry, index, artifact, ctx, models)
        steps.append(entry)
    timings["compress_s"] = time.perf_counter() - t

    t = time.perf_counter()
    onnx_bytes = artifact.onnx if artifact.is_onnx else to_onnx(artifact.model, samples=_input_samples(spec, splits))
    # Stored as measured: -0.0 weights (left by masking) written as +0.0, same outputs, smaller sparse form.
    architecture = artifact.spec or models.spec
    onnx_bytes = canonical_zeros(with_metadata(onnx_bytes, export_metadata(spec, splits, artifact.precision, architecture)))
    devices = [registry.get("devices", name) for name in spec.devices]
    declared = list(registry.tables.get("metrics", {}).values())  # plugin metrics with a compute function are measured
    metrics = measure_artifact(
        onnx_bytes,
        trainer,
        spec.measure,
        devices=devices,
        dense=dense,
        dense_onnx=dense_onnx,
        canonical=True,
        metrics=declared,
    )
    timings["measure_s"] = time.perf_counter() - t
    metrics["compression"] = {"steps": steps, "precision": artifact.precision}
    # The measured model's own architecture: a distilled student's, not the suite's model.
    metrics["architecture"] = {**architecture.to_dict(), "changed": architecture != models.spec}
    metrics["baseline"] = {
        "val_challenge_f1": baseline["fit"]["best_val_challenge_f1"],
        "test_challenge_f1": dense["test"]["challenge_f1"],
        "epochs": baseline["fit"]["epochs_run"],
        "best_epoch": baseline["fit"]["best_epoch"],
        "train_s": baseline["fit"]["seconds"],
    }
    metrics["data"] = {
        "dataset": spec.dataset.name,
        "synthetic": spec.synthetic,
        "fs_hz": splits.fs_hz,
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_test": len(splits.test),
        "skipped": splits.info.get("skipped", {}),
        "dropped": dict(splits.info.get("dropped") or {}),
        "dropped_total": sum((splits.info.get("dropped") or {}).values()),
        "split_counts": splits.info.get("split_counts", {}),
    }
    model_path = workdir / "model.onnx"
    model_path.write_bytes(onnx_bytes)
    timings["total_s"] = time.perf_counter() - t0
    artifacts = {"onnx": str(model_path)}
    if (folder / "split.csv").exists():
        artifacts["split"] = str(folder / "split.csv")
    return CellResult(spec.cell_id, "done", metrics=metrics, timings=timings, artifacts=artifacts)


STEP_KIND = "steps"


def _run_step(job: CellJob, registry: Registry, index: int, artifact: ModelArtifact, ctx, models: CellModels):
    """Apply one pipeline step, or reuse it when another pipeline already ran the same prefix.

    ``[lth_ecg]`` and ``[lth_ecg, int8_static]`` share their first step: the
    ticket search runs once. While it runs, the step's
    :class:`RoundCheckpoints` live in its entry: a run killed mid-search resumes
    from the last saved round. Prefixes are keyed by the baseline and the steps'
    settings. A step that returns another architecture with its spec (a
    distilled student) is cached with the spec and rebuilt from it; one whose
    weights fit no spec (structured pruning removes channels but keeps its
    spec) is not cached, since its checkpoint cannot be loaded into the model
    its spec builds.
    """
    spec = job.spec
    step = spec.steps[index]
    cache = ArtifactCache(job.home)
    key = step_key(spec, index)
    with cache.locked(STEP_KIND, key) as folder:
        if cache.is_done(STEP_KIND, key):
            info = cache.read_done(STEP_KIND, key)
            return _load_step(folder, info, models), {**info["entry"], "reused": True}
        # An iterative step saves its rounds in its own entry, so a killed run resumes mid-search.
        checkpoints = RoundCheckpoints(folder)
        step_ctx = dataclasses.replace(models.context_for(ctx, artifact.spec), checkpoints=checkpoints)
        outcome = _plugin(registry, "compressors", step).run(artifact, step_ctx)
        entry = {**_ref_dict(step), "seconds": outcome.seconds, "record": outcome.record}
        out_spec = outcome.artifact.spec or models.spec
        if out_spec != models.spec:
            entry["architecture"] = out_spec.to_dict()
        if _save_step(folder, outcome.artifact, models):
            cache.mark_done(
                STEP_KIND,
                key,
                {"entry": entry, "precision": outcome.artifact.precision, "onnx": outcome.artifact.is_onnx, "spec": out_spec.to_dict()},
            )
        checkpoints.clear()  # done: the entry (or, for an uncached step, the cell's result) holds what it made
        return outcome.artifact, entry


def step_key(spec: CellSpec, index: int) -> str:
    """Cache key of the pipeline prefix ending at step ``index``: the baseline's key (all it depends on) plus the steps."""
    return _prefix_key(spec.baseline_key, [_ref_dict(s) for s in spec.steps[: index + 1]])


def _prefix_key(baseline_key: str, steps: list[dict]) -> str:
    return stable_hash({"baseline": baseline_key, "steps": steps})


def step_progress(home: str | Path, config: dict) -> str | None:
    """What the last step of a cell still running reported through ``ctx.progress`` (read from the
    step's cache entry), or None. ``config``: the cell's stored :meth:`CellSpec.config`."""
    steps, cache = config.get("steps") or [], ArtifactCache(home)
    for index in reversed(range(len(steps))):
        path = cache.entry(STEP_KIND, _prefix_key(config.get("baseline_key", ""), steps[: index + 1])) / RoundCheckpoints.PROGRESS_FILE
        try:
            return path.read_text().strip() or None
        except OSError:
            continue
    return None


def _save_step(folder: Path, artifact: ModelArtifact, models: CellModels) -> bool:
    if artifact.is_onnx:
        (folder / "model.onnx").write_bytes(artifact.onnx)
        return True
    reference = models.initial_of(artifact.spec).state_dict()
    state = artifact.model.state_dict()
    if set(state) != set(reference) or any(state[k].shape != reference[k].shape for k in state):
        return False
    save_checkpoint(artifact.model, folder / "model.pt")
    if artifact.masks:
        torch.save({k: v.detach().cpu() for k, v in artifact.masks.items()}, folder / "masks.pt")
    return True


def _load_step(folder: Path, info: dict, models: CellModels) -> ModelArtifact:
    spec = ModelSpec.from_dict(info["spec"]) if info.get("spec") else models.spec  # entries before specs: the cell's own
    if info["onnx"]:
        return ModelArtifact(model=None, onnx=(folder / "model.onnx").read_bytes(), precision=info["precision"], spec=spec)
    model = load_checkpoint(models.initial_of(spec), folder / "model.pt")
    masks_path = folder / "masks.pt"
    masks = torch.load(masks_path, map_location="cpu", weights_only=True) if masks_path.exists() else None
    return ModelArtifact(model=model, masks=masks, precision=info["precision"], spec=spec)


def export_metadata(spec: CellSpec, splits: DataSplits, precision: str, architecture: ModelSpec | None = None) -> dict[str, Any]:
    """What an exported model carries so ``ecgbench eval`` needs nothing else.

    ``model`` is the exported model's own architecture (``architecture``, default the cell's):
    a distilled student's, not the suite's model it was distilled from.
    """
    preprocessing = spec.data.model_dump(mode="json", exclude={"split"})
    preprocessing["fs_hz"] = splits.fs_hz
    windowing = Windowing.from_config(spec.measure)
    deploy = {WINDOWING_KEY: windowing.to_metadata()} if windowing else {}  # absent: whole records (and the bytes of older exports)
    return {
        "version": ecgbench.__version__,
        "preprocessing": preprocessing,
        "classes": list(splits.classes),
        "window_policy": f"{windowing.describe()}, global average pooling over time" if windowing else "whole record, global average pooling over time",
        **deploy,
        "pipeline": spec.pipeline,
        "steps": [_ref_dict(s) for s in spec.steps],
        "model": (architecture or spec.model_spec()).to_dict(),
        "dataset": spec.dataset.name,
        "seed": spec.seed,
        "precision": precision,
        "cell_id": spec.cell_id,
    }
