"""Parameter counts, the sparse format and every loadable format, checked against hand-computed sizes."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from ecgbench.train.export import to_onnx
from ecgbench.measure.sizing import (
    BITMAP_BREAK_EVEN_SPARSITY_FP32,
    BITMAP_BREAK_EVEN_SPARSITY_INT8,
    FORMATS,
    canonical_zeros,
    count_params,
    decode_sparse,
    detect_format,
    encode_sparse,
    load_any,
    load_format,
    save_format,
    size_report,
)
from ecgbench.testing import TinyNet

HEADER_BYTES = 16  # magic 8 + skeleton length 4 + entry count 4
ENTRY_BYTES = 20  # index 4 + layout, itemsize, pointer and index widths 1 each + rows, non-zeros, payload length 4 each


class TwoLayer(torch.nn.Module):
    """Conv1d(1->4, k=5) then Linear(4->4): 4*5 + 4 + 4*4 + 4 = 44 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 4, 5, padding=2)
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=2))


def two_layer(pruned: bool) -> TwoLayer:
    torch.manual_seed(0)
    model = TwoLayer()
    with torch.no_grad():
        # Magnitudes in [0.5, 1] so int8 quantization rounds no weight to zero.
        for p in model.parameters():
            p.copy_((torch.rand_like(p) * 0.5 + 0.5) * torch.sign(torch.randn_like(p)))
        if pruned:
            model.conv.weight[0].zero_()  # 5 weights
            model.conv.bias[3] = 0.0  # 1
            model.fc.weight[1, 2] = 0.0  # 1
    return model.eval()


def run(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def quantize(onnx_bytes: bytes, tmp_path, weight_type: str = "QInt8", fmt: str = "QDQ", per_channel: bool = False) -> bytes:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.items = iter([{"ecg": rng.normal(size=(1, 1, 64)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.items, None)

    src, dst = tmp_path / "f.onnx", tmp_path / f"q_{weight_type}_{fmt}_{per_channel}.onnx"
    src.write_bytes(onnx_bytes)
    logging.getLogger().setLevel(logging.ERROR)  # quiet the "run pre-processing" advice
    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=getattr(QuantFormat, fmt),
        weight_type=getattr(QuantType, weight_type),
        activation_type=QuantType.QUInt8 if fmt == "QOperator" or weight_type == "QUInt8" else QuantType.QInt8,
        per_channel=per_channel,
    )
    return dst.read_bytes()


def matmul_model(weights: np.ndarray, int8: bool = False) -> bytes:
    """y = x @ W with W a [rows, cols] initializer (fp32, or int8 behind a DequantizeLinear)."""
    rows, cols = weights.shape
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", rows])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", cols])
    if int8:
        inits = [numpy_helper.from_array(weights.astype(np.int8), "w_q"), numpy_helper.from_array(np.array(0.01, np.float32), "w_scale")]
        nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"]), helper.make_node("MatMul", ["x", "w"], ["y"])]
    else:
        inits = [numpy_helper.from_array(weights.astype(np.float32), "w")]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "mm", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def skeleton_bytes(onnx_bytes: bytes, names: set[str]) -> int:
    model = onnx.load_from_string(onnx_bytes)
    for init in model.graph.initializer:
        if init.name in names:
            init.ClearField("raw_data")
    return len(model.SerializeToString())


def with_sparsity(rows: int, cols: int, zeros: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.uniform(1, 100, size=rows * cols) * rng.choice([-1, 1], size=rows * cols)
    w[rng.permutation(rows * cols)[:zeros]] = 0
    return w.reshape(rows, cols)


# --- parameter counts ------------------------------------------------------------


def test_two_layer_counts_by_hand():
    assert count_params(to_onnx(two_layer(pruned=False), 64)) == (44, 44)
    assert count_params(to_onnx(two_layer(pruned=True), 64)) == (44, 37)  # 5 + 1 + 1 zeros


def test_batchnorm_is_folded_into_the_convolutions():
    # TinyNet(2): conv1 2*1*9 + 2, conv2 2*2*9 + 2, fc 2*4 + 4 = 70 once BatchNorm is folded
    # (PyTorch also counts BN's gamma and beta: 70 + 2*2*2 = 78).
    torch.manual_seed(0)
    model = TinyNet(width=2).eval()
    assert sum(p.numel() for p in model.parameters()) == 78
    assert count_params(to_onnx(model, 64)) == (70, 70)


@pytest.mark.parametrize(
    "weight_type,fmt,per_channel",
    [("QInt8", "QDQ", False), ("QInt8", "QOperator", False), ("QUInt8", "QDQ", False), ("QInt8", "QDQ", True)],
)
def test_quantized_model_counts_the_same_parameters_without_scales(tmp_path, weight_type, fmt, per_channel):
    quantized = quantize(to_onnx(two_layer(pruned=True), 64), tmp_path, weight_type, fmt, per_channel)
    model = onnx.load_from_string(quantized)
    assert any(init.data_type in (TensorProto.INT8, TensorProto.UINT8) for init in model.graph.initializer)
    # Scales and zero points are left out; a pruned weight stays at the zero point (uint8: not 0).
    assert count_params(quantized) == (44, 37)


@pytest.mark.parametrize("weight_type,per_channel", [("QInt8", False), ("QUInt8", False), ("QInt8", True)])
def test_dynamically_quantized_model_counts_the_same_parameters(tmp_path, weight_type, per_channel):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = tmp_path / "f.onnx", tmp_path / "d.onnx"
    src.write_bytes(to_onnx(two_layer(pruned=True), 64))
    quantize_dynamic(str(src), str(dst), weight_type=getattr(QuantType, weight_type), per_channel=per_channel)
    # ConvInteger/MatMulInteger weights count; their scales (multiplied with the run-time
    # activation scale) and zero points do not; the reshape shape of the bias is int64.
    assert count_params(dst.read_bytes()) == (44, 37)


def test_integer_shape_constants_are_not_parameters():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])
    inits = [numpy_helper.from_array(np.array([3, 2], np.int64), "shape"), numpy_helper.from_array(np.ones(6, np.float32).reshape(3, 2), "b")]
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Add", ["r", "b"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    assert count_params(model.SerializeToString()) == (6, 6)


# --- sparse format ---------------------------------------------------------------


@pytest.mark.parametrize("pruned", [False, True])
def test_sparse_round_trip_is_bit_exact_and_runs_the_same(pruned):
    onnx_bytes = to_onnx(two_layer(pruned), 64)
    decoded = decode_sparse(encode_sparse(onnx_bytes))
    assert decoded == onnx_bytes
    original = {i.name: i.raw_data for i in onnx.load_from_string(onnx_bytes).graph.initializer}
    restored = {i.name: i.raw_data for i in onnx.load_from_string(decoded).graph.initializer}
    assert restored == original
    x = np.random.default_rng(1).normal(size=(3, 1, 64)).astype(np.float32)
    assert np.array_equal(run(decoded, x), run(onnx_bytes, x))


def test_sparse_round_trip_of_a_quantized_model(tmp_path):
    quantized = quantize(to_onnx(two_layer(pruned=True), 64), tmp_path)
    decoded = decode_sparse(encode_sparse(quantized))
    assert decoded == quantized
    x = np.random.default_rng(2).normal(size=(2, 1, 64)).astype(np.float32)
    assert np.array_equal(run(decoded, x), run(quantized, x))


def test_negative_zeros_round_trip_and_canonical_zeros_keeps_outputs():
    w = with_sparsity(32, 32, zeros=900)
    w[w == 0] = -0.0  # what weight * mask leaves for negative weights
    onnx_bytes = matmul_model(w)
    assert decode_sparse(encode_sparse(onnx_bytes)) == onnx_bytes  # -0.0 bit patterns are kept
    canonical = canonical_zeros(onnx_bytes)
    stored = numpy_helper.to_array(onnx.load_from_string(canonical).graph.initializer[0])
    assert not np.signbit(stored[stored == 0]).any()
    x = np.random.default_rng(3).normal(size=(5, 32)).astype(np.float32)
    assert np.array_equal(run(canonical, x), run(onnx_bytes, x))
    assert count_params(canonical) == count_params(onnx_bytes) == (1024, 124)
    # Once canonical, the zeros cost nothing: bitmap 128 + 124*4 bytes instead of 1024*4.
    assert len(encode_sparse(canonical)) < len(encode_sparse(onnx_bytes)) // 3
    assert canonical_zeros(canonical) == canonical


def test_bitmap_size_by_hand():
    # 64x64 fp32 at 50 % sparsity: bitmap 4096/8 = 512 bytes + 2048 values * 4 bytes.
    onnx_bytes = matmul_model(with_sparsity(64, 64, zeros=2048))
    encoded = encode_sparse(onnx_bytes)
    assert len(encoded) == HEADER_BYTES + ENTRY_BYTES + skeleton_bytes(onnx_bytes, {"w"}) + 512 + 2048 * 4
    assert decode_sparse(encoded) == onnx_bytes


def test_csr_is_chosen_when_very_sparse_by_hand():
    # 64x64 fp32 with 41 non-zeros: CSR = 65 uint8 row pointers + 41 * (uint8 column + 4 bytes) = 270
    # beats bitmap 512 + 41*4 = 676.
    onnx_bytes = matmul_model(with_sparsity(64, 64, zeros=4096 - 41))
    encoded = encode_sparse(onnx_bytes)
    assert len(encoded) == HEADER_BYTES + ENTRY_BYTES + skeleton_bytes(onnx_bytes, {"w"}) + 65 + 41 * 5
    assert decode_sparse(encoded) == onnx_bytes
    x = np.random.default_rng(4).normal(size=(2, 64)).astype(np.float32)
    assert np.array_equal(run(decode_sparse(encoded), x), run(onnx_bytes, x))


def test_csr_uses_uint16_columns_beyond_256():
    # 4 rows of 300 columns, 10 non-zeros: 5 uint8 pointers + 10 * (2 + 4) = 65 bytes.
    onnx_bytes = matmul_model(with_sparsity(4, 300, zeros=1190))
    encoded = encode_sparse(onnx_bytes)
    assert len(encoded) == HEADER_BYTES + ENTRY_BYTES + skeleton_bytes(onnx_bytes, {"w"}) + 5 + 10 * 6
    assert decode_sparse(encoded) == onnx_bytes


@pytest.mark.parametrize("int8,break_even", [(False, BITMAP_BREAK_EVEN_SPARSITY_FP32), (True, BITMAP_BREAK_EVEN_SPARSITY_INT8)])
def test_sparse_is_smaller_than_dense_above_the_documented_sparsity(int8, break_even):
    assert break_even == (1 / 8 if int8 else 1 / 32)
    n = 64 * 64
    below = int(n * (break_even - 0.005))
    above = int(n * (break_even + 0.01))
    dense_below = matmul_model(with_sparsity(64, 64, below), int8)
    dense_above = matmul_model(with_sparsity(64, 64, above), int8)
    # Below break-even the tensor stays in the graph: only the 16-byte header is added.
    assert len(encode_sparse(dense_below)) == len(dense_below) + HEADER_BYTES
    assert len(encode_sparse(dense_above)) < len(dense_above)
    assert decode_sparse(encode_sparse(dense_above)) == dense_above


def test_sparse_loader_rejects_other_bytes():
    from ecgbench.errors import EcgbenchError

    with pytest.raises(EcgbenchError, match="not an ecgbench sparse model"):
        decode_sparse(b"\x08\x08not sparse")


# --- formats and the size report -------------------------------------------------


def test_every_format_loads_back_and_is_detected():
    onnx_bytes = to_onnx(two_layer(pruned=True), 64)
    x = np.random.default_rng(5).normal(size=(1, 1, 64)).astype(np.float32)
    for fmt in FORMATS:
        stored = save_format(onnx_bytes, fmt)
        assert detect_format(stored) == fmt
        assert load_format(stored, fmt) == onnx_bytes
        assert load_any(stored) == onnx_bytes
    assert np.array_equal(run(load_any(save_format(onnx_bytes, "sparse_zstd")), x), run(onnx_bytes, x))


def test_size_report_picks_the_smallest_loadable_format():
    torch.manual_seed(0)
    model = TinyNet(width=32).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_((torch.rand_like(p) > 0.9).float())  # ~90 % of weights pruned, -0.0 included
    onnx_bytes = to_onnx(model, 64)
    report = size_report(onnx_bytes)
    assert set(report) == set(FORMATS) | {"storage_bytes", "storage_format", "total_params", "nonzero_params"}
    assert report["onnx"] == len(onnx_bytes)
    assert report["storage_bytes"] == min(report[f] for f in FORMATS)
    assert report["storage_format"].startswith("sparse")
    assert report["sparse"] < report["onnx"] / 3
    total, nonzero = count_params(onnx_bytes)
    assert (report["total_params"], report["nonzero_params"]) == (total, nonzero)
    assert nonzero < 0.2 * total


def test_size_report_of_a_dense_model_encodes_nothing():
    onnx_bytes = to_onnx(two_layer(pruned=False), 64)
    report = size_report(onnx_bytes)
    assert report["sparse"] == report["onnx"] + HEADER_BYTES  # nothing to gain, nothing encoded
    assert report["storage_bytes"] == min(report[f] for f in FORMATS)


def test_unknown_format_is_a_clear_error():
    from ecgbench.errors import EcgbenchError

    with pytest.raises(EcgbenchError, match="known formats: onnx"):
        save_format(b"", "tflite")
