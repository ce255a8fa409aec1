"""``int8_dynamic``, ``int8_static``, ``fp16``: quantized models run in onnxruntime, keep accuracy and pruned zeros."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from ecgbench.kinds.compressor import ModelArtifact
from ecgbench.errors import CompressionError, ConfigError
from ecgbench.train.export import read_metadata, to_onnx, with_metadata
from ecgbench.testing import fast_recipe, make_context
from ecgbench_plugins.compressors.quantization import Fp16, Int8Dynamic, Int8Static, topologically_sort

QUANTIZERS = [Int8Dynamic, Int8Static, Fp16]
STORED_TYPE = {"int8": onnx.TensorProto.INT8, "fp16": onnx.TensorProto.FLOAT16}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    model, ctx = make_context(tmp_path_factory.mktemp("quantization"), recipe=fast_recipe(epochs=5, lr=3e-2))
    assert ctx.dense_val_challenge_f1 > 0.6  # learned the separable classes: accuracy can be lost
    return model, ctx


@pytest.fixture(scope="module")
def pruned(trained):
    """The trained model with the first half of conv2's output filters masked: 4 x 8 x 9 = 288 zero weights."""
    model, _ = trained
    mask = torch.ones_like(model.conv2.weight)
    mask[:4] = 0
    copy = type(model)()
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        copy.conv2.weight.mul_(mask)
    return ModelArtifact(copy, masks={"conv2.weight": mask})


def _stored_weight_types(onnx_bytes):
    return {t.data_type for t in onnx.load_from_string(onnx_bytes).graph.initializer}


@pytest.mark.parametrize("quantizer", QUANTIZERS, ids=lambda q: q.name)
def test_quantized_model_runs_in_onnxruntime_and_keeps_accuracy(trained, quantizer):
    model, ctx = trained
    out = quantizer().run(ModelArtifact(model), ctx)
    artifact, record = out.artifact, out.record
    assert artifact.is_onnx and artifact.precision == quantizer.precision
    json.dumps(record, allow_nan=False)  # the record is stored as JSON
    # The source model stays for size reports, as the step's own copy.
    assert artifact.model is not model
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in artifact.model.state_dict().items())
    assert STORED_TYPE[quantizer.precision] in _stored_weight_types(artifact.onnx)
    fp32 = ctx.trainer.evaluate_onnx(to_onnx(model, 3000), "val")["challenge_f1"]
    quantized = ctx.trainer.evaluate_onnx(artifact.onnx, "val")["challenge_f1"]
    assert record["val_challenge_f1_fp32"] == pytest.approx(fp32)
    assert record["val_challenge_f1_quantized"] == pytest.approx(quantized)
    assert quantized >= fp32 - 0.05  # within 5 points on the separable data
    logits = ctx.trainer.predict_onnx(artifact.onnx, "val")  # whole records of any length
    assert logits.shape == (len(ctx.trainer.splits.val), 4) and np.isfinite(logits).all()


@pytest.mark.parametrize("quantizer", QUANTIZERS, ids=lambda q: q.name)
def test_pruned_weights_stay_zero_after_quantization(trained, pruned, quantizer):
    _, ctx = trained
    out = quantizer().run(pruned, ctx)
    record = out.record
    assert record["weights_counted"] == 680
    assert record["zero_weights_fp32"] == 288
    assert record["zero_weights_quantized"] >= 288 and record["zeros_preserved"] is True
    assert out.artifact.masks is pruned.masks


def test_int8_static_weights_are_zero_where_masked(trained, pruned):
    _, ctx = trained
    proto = onnx.load_from_string(Int8Static().run(pruned, ctx).artifact.onnx)
    stored = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    conv_weights = [v for k, v in stored.items() if k.endswith("_quantized") and v.shape == (8, 8, 9)]
    assert len(conv_weights) == 1 and conv_weights[0].dtype == np.int8
    assert np.all(conv_weights[0][:4] == 0) and np.count_nonzero(conv_weights[0][4:]) > 250


def test_static_calibration_uses_the_requested_training_crops(trained, monkeypatch):
    _, ctx = trained
    seen = []
    real = ctx.trainer.calibration_inputs
    monkeypatch.setattr(ctx.trainer, "calibration_inputs", lambda n: seen.append(n) or real(n))
    record = Int8Static.from_params({"calibration_records": 8}).run(ModelArtifact(trained[0]), ctx).record
    assert seen == [8] and record["calibration_records"] == 8 and record["calibration_split"] == "train"


def test_fp32_onnx_input_is_accepted_and_its_metadata_kept(trained):
    model, ctx = trained
    fp32 = with_metadata(to_onnx(model, 3000), {"fs_hz": 100.0})
    out = Fp16().run(ModelArtifact(None, onnx=fp32), ctx)
    assert read_metadata(out.artifact.onnx) == {"fs_hz": 100.0}
    assert out.record["onnx_bytes_quantized"] < out.record["onnx_bytes_fp32"]


@pytest.mark.parametrize("quantizer", QUANTIZERS, ids=lambda q: q.name)
def test_a_second_quantization_is_rejected(trained, quantizer):
    _, ctx = trained
    with pytest.raises(CompressionError, match="already quantized to int8"):
        quantizer().run(ModelArtifact(None, onnx=b"x", precision="int8"), ctx)


def test_topological_sort_puts_producers_first():
    add = helper.make_node("Add", ["a", "x"], ["y"], name="add")
    relu = helper.make_node("Relu", ["x0"], ["a"], name="relu")
    graph = helper.make_graph(
        [add, relu],  # add reads a before relu produces it
        "g",
        [helper.make_tensor_value_info("x0", onnx.TensorProto.FLOAT, [1]), helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    topologically_sort(graph)
    assert [n.name for n in graph.node] == ["relu", "add"]


@pytest.mark.parametrize("quantizer", QUANTIZERS, ids=lambda q: q.name)
@pytest.mark.parametrize(("family", "settings"), [("hannun34", {"width": 4, "blocks": 4, "double_every": 2}), ("dscnn", {"width": 8})])
def test_builtin_model_families_quantize_and_keep_zeros(trained, registry, quantizer, family, settings):
    try:
        model_family = registry.get("models", family)
    except ConfigError:
        pytest.skip(f"model family {family} is not available in this build")
    _, ctx = trained
    torch.manual_seed(0)
    model = model_family.from_params(settings).build(4).eval()
    masks = {n: (torch.rand_like(p) > 0.6).float() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in masks:
                param.mul_(masks[name])
    out = quantizer().run(ModelArtifact(model, masks=masks), ctx)
    assert out.record["weights_counted"] == sum(m.numel() for m in masks.values())
    assert out.record["zero_weights_fp32"] == sum(int((m == 0).sum()) for m in masks.values())
    assert out.record["zeros_preserved"] is True
    logits = ctx.trainer.predict_onnx(out.artifact.onnx, "val")
    assert np.isfinite(logits).all()


def test_registered(registry):
    for quantizer in QUANTIZERS:
        assert registry.get("compressors", quantizer.name) is quantizer
