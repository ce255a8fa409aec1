"""Distillation: the trainer's custom-loss/teacher path, the ``distill`` step, and a step that returns
another architecture, exported, measured, reported and cached as what it is."""

from __future__ import annotations

import copy
import json
import math
import textwrap

import onnx
import pytest
import torch

from ecgbench.config.suite import load_suite
from ecgbench.errors import CompressionError, ConfigError, EcgbenchError
from ecgbench.kinds.compressor import ModelArtifact
from ecgbench.kinds.model import ModelSpec
from ecgbench.measure.sizing import count_params
from ecgbench.registry import build_registry
from ecgbench.results import table as _table
from ecgbench.run.runner import run_suite
from ecgbench.run.store import ResultStore
from ecgbench.testing import TinyNet, TinyPlugins, fast_recipe, make_context, make_random_splits
from ecgbench.train.export import read_metadata, to_onnx
from ecgbench.train.trainer import LossInputs, Trainer
from ecgbench_plugins.compressors.distill import Distill, distillation_loss
from ecgbench_plugins.models.dscnn import DSCNN

STUDENT = {"dscnn": {"width": 4, "blocks": 2}}


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- Trainer.fit(loss_fn=..., teacher=...) ----------------------------------------------------


@pytest.fixture
def teacher():
    """A trained TinyNet at width 8."""
    torch.set_num_threads(1)
    model = TinyNet(8)
    Trainer(make_random_splits(), fast_recipe(epochs=4), seed=0).fit(model)
    return model


def test_the_default_loss_is_the_recipes_cross_entropy():
    splits = make_random_splits()
    a, b = TinyNet(4), TinyNet(4)
    b.load_state_dict(a.state_dict())
    Trainer(splits, fast_recipe(epochs=2), seed=0).fit(a)
    Trainer(splits, fast_recipe(epochs=2), seed=0).fit(b, loss_fn=LossInputs.cross_entropy)
    assert same_weights(a, b)


def test_a_teacher_reaches_the_loss_frozen_and_the_loss_decreases(teacher):
    splits = make_random_splits()
    before = copy.deepcopy(teacher.state_dict())
    teacher.train()
    seen = []

    def loss_fn(batch: LossInputs) -> torch.Tensor:
        with torch.no_grad():
            expected = teacher(batch.inputs)  # fit put the teacher in eval mode: the same logits again
        seen.append(torch.allclose(batch.teacher_logits, expected) and not batch.teacher_logits.requires_grad)
        return distillation_loss(batch, temperature=4.0, alpha=0.9)

    student = TinyNet(2)
    fit = Trainer(splits, fast_recipe(epochs=6, lr=1e-2), seed=0).fit(student, loss_fn=loss_fn, teacher=teacher)
    assert seen and all(seen)
    assert not teacher.training and all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    losses = [row["loss"] for row in fit.history]
    assert losses[-1] < losses[0]


def test_custom_loss_keeps_the_schedule_and_the_batch_cap():
    splits = make_random_splits()  # 64 training records: 4 batches of 16 without the cap
    calls = []

    def loss_fn(batch: LossInputs) -> torch.Tensor:
        calls.append(len(batch.targets))
        return batch.cross_entropy()

    recipe = fast_recipe(epochs=4, lr=0.02, lr_schedule="cosine", max_batches_per_epoch=2)
    fit = Trainer(splits, recipe, seed=0).fit(TinyNet(4), loss_fn=loss_fn)
    assert calls == [16] * 8  # 2 batches x 4 epochs
    expected = [0.02 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert [row["lr"] for row in fit.history] == pytest.approx(expected)


def test_a_teacher_needs_a_loss():
    with pytest.raises(EcgbenchError, match="needs a loss_fn"):
        Trainer(make_random_splits(), fast_recipe(epochs=1), seed=0).fit(TinyNet(2), teacher=TinyNet(4))


# --- ctx.build_model and the distill step -----------------------------------------------------


def test_ctx_builds_registered_models_and_names_the_teacher(tmp_path):
    _, ctx = make_context(tmp_path, recipe=fast_recipe(epochs=1))
    assert ctx.model_spec == ModelSpec("tinynet", {"width": 8})
    student, spec = ctx.build_model("dscnn", {"width": 4, "blocks": 2})
    again, _ = ctx.build_model("dscnn", {"width": 4, "blocks": 2})
    assert spec == ModelSpec("dscnn", {"width": 4, "blocks": 2}) and same_weights(student, again)  # seeded
    assert params(student) == params(DSCNN.from_params({"width": 4, "blocks": 2}).build(4))
    assert isinstance(ctx.build_model(), TinyNet)  # no name: the incoming model at its initial weights
    with pytest.raises(ConfigError, match=r"model 'dscnn'\.widht"):
        ctx.build_model("dscnn", {"widht": 4})
    with pytest.raises(ConfigError, match="unknown model 'dscn'"):
        ctx.build_model("dscn", {})


def test_distill_returns_the_student_with_its_spec(tmp_path):
    torch.set_num_threads(1)
    teacher, ctx = make_context(tmp_path, recipe=fast_recipe(epochs=3))
    step = Distill.from_params({"student": STUDENT, "epochs": 2})
    out = step.run(ModelArtifact(model=teacher, spec=ctx.model_spec), ctx)
    assert out.artifact.spec == ModelSpec("dscnn", {"width": 4, "blocks": 2})
    assert params(out.artifact.model) == params(DSCNN.from_params(STUDENT["dscnn"]).build(4)) == out.record["student_params"]
    assert out.record["teacher_params"] == params(teacher) and out.record["teacher"] == {"name": "tinynet", "params": {"width": 8}}
    assert out.record["epochs_run"] == 2 and out.artifact.masks is None


def test_a_step_that_keeps_the_architecture_keeps_the_spec(tmp_path):
    from ecgbench_plugins.compressors.magnitude import MagnitudePruning

    model, ctx = make_context(tmp_path, recipe=fast_recipe(epochs=1))
    out = MagnitudePruning.from_params({"sparsity": 0.5, "finetune_epochs": 0}).run(ModelArtifact(model=model, spec=ctx.model_spec), ctx)
    assert out.artifact.spec == ctx.model_spec


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"student": {"dscnn": {}, "tinynet": {}}}, "exactly one student"),
        ({}, "student"),
        ({"student": STUDENT, "alpha": 1.5}, "alpha"),
    ],
)
def test_distill_settings_are_checked(settings, message):
    with pytest.raises(ConfigError, match=message):
        Distill.from_params(settings)


def test_distill_needs_a_pytorch_model(tmp_path):
    _, ctx = make_context(tmp_path, recipe=fast_recipe(epochs=1))
    with pytest.raises(CompressionError, match="works on PyTorch models"):
        Distill.from_params({"student": STUDENT}).run(ModelArtifact(None, onnx=b"x", precision="int8"), ctx)


# --- a run: exported, measured, reported and cached as the student ----------------------------


SUITE = """
name: distill-test
data: {fs_hz: 100, window_s: 4, split: {val: 0.25, test: 0.25}}
training: {epochs: 2, batch_size: 8, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 20, latency_repeats: 1, latency_warmup: 0, input_s: 4}
matrix:
  datasets: [tiny]
  models: [tinynet: {width: 8}]
  compressors:
    - dense
    - {label: distill, steps: [distill: {student: {dscnn: {width: 4, blocks: 2}}, epochs: 2}]}
    - {label: distill+int8, steps: [distill: {student: {dscnn: {width: 4, blocks: 2}}, epochs: 2}, int8_static: {calibration_records: 8}]}
  devices: [nrf52840]
"""


@pytest.fixture
def distill_run(tmp_path, plugin_manager):
    torch.set_num_threads(1)
    plugin_manager.register(TinyPlugins(), name="tiny-plugins")
    registry = build_registry(plugin_manager)
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE))
    suite = load_suite(path, registry)
    store = ResultStore(tmp_path / "home" / "results.sqlite")
    summary = run_suite(suite, registry, plugin_manager, store, tmp_path / "home", progress=False)
    assert (summary.done, summary.failed) == (3, 0)
    return suite, registry, plugin_manager, store, tmp_path / "home", summary


def test_the_student_is_exported_measured_and_reported_as_itself(distill_run, tmp_path):
    _, registry, _, store, _, summary = distill_run
    results = store.run_results(summary.run_id)
    cells = {c.pipeline: c for c in results.cells}
    student = DSCNN.from_params(STUDENT["dscnn"]).build(4)
    student(torch.randn(8, 1, 400))  # BatchNorm statistics as training leaves them (fresh ones fold into shared zero biases)
    student_total, _ = count_params(to_onnx(student, samples=400))
    for label in ("distill", "distill+int8"):
        cell = cells[label]
        metadata = read_metadata(cell.artifacts["onnx"])
        assert metadata["model"] == {"name": "dscnn", "params": {"width": 4, "blocks": 2}}
        assert cell.metrics["architecture"] == {"name": "dscnn", "params": {"width": 4, "blocks": 2}, "changed": True}
        assert _table.cell_row(cell)["model"] == "dscnn"
        assert cell.metrics["compute"]["macs"] < cells["dense"].metrics["compute"]["macs"]
    # Sizes come from the student's own graph: its parameter count, not the teacher's.
    assert cells["distill"].metrics["size"]["total_params"] == student_total
    dense_meta = read_metadata(cells["dense"].artifacts["onnx"])
    assert dense_meta["model"] == {"name": "tinynet", "params": {"width": 8}}
    assert cells["dense"].metrics["architecture"]["changed"] is False and _table.cell_row(cells["dense"])["model"] == "tinynet"
    int8 = onnx.load(cells["distill+int8"].artifacts["onnx"])
    assert any(i.data_type == onnx.TensorProto.INT8 for i in int8.graph.initializer)
    table = _table.summary_table(results)
    assert table.headers[:2] == ["model", "pipeline"]
    models = {row[1]: row[0] for row in table.rows}
    assert models == {"dense": "tinynet", "distill": "dscnn (width=4, blocks=2)", "distill+int8": "dscnn (width=4, blocks=2)"}
    registry.get("reporters", "models")().write(results, tmp_path / "report")
    index = {e["pipeline"]: e for e in json.loads((tmp_path / "report" / "models" / "index.json").read_text())["models"]}
    assert index["distill"]["model"] == {"name": "dscnn", "params": {"width": 4, "blocks": 2}}
    assert index["dense"]["model"] == {"name": "tinynet", "params": {"width": 8}}


def test_the_distilled_step_is_cached_and_rebuilt(distill_run):
    suite, registry, pm, store, home, summary = distill_run
    cells = {c.pipeline: c for c in store.run_results(summary.run_id).cells}
    first = cells["distill"].metrics["compression"]["steps"][0]
    assert "reused" not in first and first["architecture"]["name"] == "dscnn"
    # The second pipeline shares the distill step: it was read back from the cache, as a dscnn.
    reused = cells["distill+int8"].metrics["compression"]["steps"][0]
    assert reused["reused"] is True and reused["record"] == first["record"]

    again = run_suite(suite, registry, pm, store, home, only="distill", force=True, progress=False)
    assert again.done == 1
    cell = next(c for c in store.run_results(again.run_id).cells if c.pipeline == "distill")
    assert cell.metrics["compression"]["steps"][0]["reused"] is True
    assert read_metadata(cell.artifacts["onnx"])["model"]["name"] == "dscnn"
    assert cell.metrics["test"]["challenge_f1"] == cells["distill"].metrics["test"]["challenge_f1"]
    assert cell.metrics["size"]["total_params"] == cells["distill"].metrics["size"]["total_params"]


@pytest.mark.parametrize(
    ("student", "message"),
    [
        ("{dscn: {}}", r"unknown model 'dscn' in .*compressors\[1\]\.steps\[0\]\.distill\.student; did you mean 'dscnn'"),
        ("{dscnn: {widht: 4}}", r"compressors\[1\]\.steps\[0\]\.distill\.student\.dscnn\.widht"),
    ],
)
def test_a_bad_student_fails_when_the_suite_loads(tmp_path, registry, student, message):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE).replace("{dscnn: {width: 4, blocks: 2}}", student).replace("tinynet: {width: 8}", "dscnn").replace("[tiny]", "[synthetic]"))
    with pytest.raises(ConfigError, match=message):
        load_suite(path, registry)
