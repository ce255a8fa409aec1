"""Pruned, then int8: ``[magnitude, int8_static]`` keeps every pruned weight an exact int8 zero,
and the storage and flash figures count the sparse int8 form."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from ecgbench.kinds.compressor import ModelArtifact
from ecgbench.measure.flash import flash_figure
from ecgbench.measure.onnx_model import OnnxModel
from ecgbench.measure.sizing import size_report
from ecgbench.testing import fast_recipe, make_context
from ecgbench_plugins.compressors.magnitude import MagnitudePruning
from ecgbench_plugins.compressors.quantization import Int8Static


@pytest.fixture(scope="module")
def pruned_int8(tmp_path_factory):
    torch.set_num_threads(1)
    model, ctx = make_context(tmp_path_factory.mktemp("p8"), recipe=fast_recipe(epochs=3))
    pruned = MagnitudePruning.from_params({"sparsity": 0.8, "finetune_epochs": 1}).run(ModelArtifact(model=model, spec=ctx.model_spec), ctx)
    quantized = Int8Static.from_params({"calibration_records": 8}).run(pruned.artifact, ctx)
    return pruned, quantized


def int8_weights(onnx_bytes: bytes) -> dict[str, np.ndarray]:
    """The int8 kernels of the convolutions and matrix products (ndim >= 2), by initializer name."""
    proto = onnx.load_from_string(onnx_bytes)
    return {
        i.name: numpy_helper.to_array(i)
        for i in proto.graph.initializer
        if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 2
    }


def test_pruned_zeros_are_int8_zeros(pruned_int8):
    pruned, quantized = pruned_int8
    mask_zeros = sum(int((m == 0).sum()) for m in pruned.artifact.masks.values())
    weights = int8_weights(quantized.artifact.onnx)
    assert len(weights) == 3  # conv1, conv2, fc
    assert sum(int((w == 0).sum()) for w in weights.values()) >= mask_zeros > 0
    # Symmetric per-channel int8 weights: every zero point is 0, so a stored 0 is a real 0.0.
    model = OnnxModel(quantized.artifact.onnx)
    weight_zero_points = [model.array(f"{name[: -len('_quantized')]}_zero_point") for name in weights]
    assert all(np.all(zp == 0) for zp in weight_zero_points)
    record = quantized.record
    assert record["zeros_preserved"] is True and record["zero_weights_quantized"] >= record["zero_weights_fp32"] == mask_zeros
    assert quantized.artifact.spec == pruned.artifact.spec  # an ONNX step keeps the architecture's spec


def test_storage_and_flash_count_the_sparse_int8_form(pruned_int8):
    _, quantized = pruned_int8
    sizes = size_report(quantized.artifact.onnx)
    assert sizes["sparse"] < sizes["onnx"]  # the zero int8 bytes are left out of the sparse file
    assert sizes["nonzero_params"] < sizes["total_params"]
    dense = flash_figure(quantized.artifact.onnx)
    sparse = flash_figure(quantized.artifact.onnx, sparse_layouts=["csr_int8"])
    assert dense.format == "int8" and "csr_int8" in sparse.format
    assert sparse.bytes < dense.bytes
