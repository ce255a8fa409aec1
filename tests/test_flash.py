"""Flash bytes: the form a runtime executes in place, never a compressed file; checked against hand-counted sizes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from ecgbench.errors import ConfigError
from ecgbench.kinds.device import profile_from_dict
from ecgbench.kinds.device import SPARSE_LAYOUTS
from ecgbench.measure.flash import BLOCK_WIDTH, QUANT_PARAM_BYTES, flash_figure, sparse_bytes
from ecgbench.measure.onnx_graph import analyze_onnx
from ecgbench.measure.simulator import simulate
from ecgbench.measure.sizing import FORMATS, size_report
from ecgbench.train.export import to_onnx
from test_sizing import quantize, two_layer

K, N = 256, 256  # y[batch, N] = x[batch, K] @ W[K, N]
NONZERO = 3276  # of K * N = 65536 weights: 95 % sparse
RUNTIME = "TFLite Micro + CMSIS-NN"


def sparse_weights(dtype=np.float32, blocks: bool = False) -> np.ndarray:
    """A [K, N] weight with NONZERO non-zero values: scattered, or in NONZERO / 4 runs of 4 along K (aligned blocks)."""
    rng = np.random.default_rng(0)
    w = np.zeros((K, N), dtype=dtype)
    if blocks:
        for flat in rng.choice((K // 4) * N, NONZERO // 4, replace=False):
            start, n = divmod(int(flat), N)
            w[4 * start : 4 * start + 4, n] = rng.uniform(1, 100, 4)
    else:
        flat = rng.choice(K * N, NONZERO, replace=False)
        w.flat[flat] = rng.uniform(1, 100, NONZERO) * rng.choice([-1, 1], NONZERO)  # non-zero as int8 too
    return w


def matmul_model(weights: np.ndarray, int8: bool) -> bytes:
    """x @ W with W fp32, or int8 behind DequantizeLinear (per-tensor scale, zero point 0)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, N])
    if int8:
        inits = [
            numpy_helper.from_array(weights.astype(np.int8), "w_q"),
            numpy_helper.from_array(np.array(0.01, np.float32), "w_scale"),
            numpy_helper.from_array(np.array(0, np.int8), "w_zp"),
        ]
        nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"]), helper.make_node("MatMul", ["x", "w"], ["y"])]
    else:
        inits = [numpy_helper.from_array(weights.astype(np.float32), "w")]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "mm", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def profile(**overrides):
    rates = {"conv": 1.0, "depthwise_conv": 1.0, "fc": 1.0, "elementwise": 1.0, "im2col": 1.0}
    data = dict(
        name="board", description="test board", core="core", runtime=RUNTIME, sources=["test"], clock_hz=1e6,
        macs_per_cycle={"fp32": rates, "int8": rates}, sparse_kernels=False, sparse_layouts=[], sparse_efficiency=0.5,
        bandwidth_bytes_per_s=1e9, flash_bytes=16 * 1024, ram_bytes=64 * 1024, active_power_mw=1.0, sleep_power_uw=1.0,
        layer_overhead_cycles=10.0,
    )
    data.update(overrides)
    return profile_from_dict(data, "board.yaml")


def test_a_sparse_zstd_model_is_never_flash_on_a_profile_without_sparse_kernels(registry):
    """The acceptance test of issue 16: storage is the small sparse_zstd file, flash the dense fp32 weights."""
    onnx_bytes = matmul_model(sparse_weights(), int8=False)
    size = size_report(onnx_bytes)
    assert size["storage_format"] == "sparse_zstd"
    assert size["storage_bytes"] < K * N * 4 / 10  # much smaller than the dense weights

    nrf = registry.get("devices", "nrf52840")
    assert nrf.sparse_layouts == [] and nrf.runtime == RUNTIME
    flash = flash_figure(onnx_bytes, nrf.sparse_layouts, nrf.runtime)
    assert (flash.bytes, flash.format, flash.runtime) == (K * N * 4, "fp32", RUNTIME)  # every weight, zeros included
    assert flash.bytes not in {size[fmt] for fmt in FORMATS if fmt != "onnx"}

    # The fit is judged on the flash bytes: a board whose flash holds the compressed file but not the weights.
    board = profile(flash_bytes=size["storage_bytes"] * 2)
    prediction = simulate(analyze_onnx(onnx_bytes), board, flash=flash_figure(onnx_bytes, board.sparse_layouts, board.runtime))
    assert prediction.flash_bytes == K * N * 4 and prediction.flash_source == "runtime"
    assert not prediction.fits and f"(fp32 on {RUNTIME})" in prediction.why and "flash" in prediction.why


def test_a_csr_profile_stores_an_int8_model_as_csr_counted_by_hand():
    onnx_bytes = matmul_model(sparse_weights(), int8=True)
    dense = flash_figure(onnx_bytes)
    assert (dense.bytes, dense.format) == (K * N + QUANT_PARAM_BYTES, "int8")
    csr = flash_figure(onnx_bytes, ["csr_int8"], RUNTIME)
    # rows = N output channels, cols = K: (256 + 1) row pointers of uint16 (3276 > 255 non-zeros),
    # a uint8 column index (K - 1 = 255) and one int8 value per non-zero; the scale and zero point stay.
    assert (csr.bytes, csr.format) == ((N + 1) * 2 + NONZERO * (1 + 1) + QUANT_PARAM_BYTES, "csr_int8")
    [tensor] = csr.tensors
    assert (tensor.layout, tensor.index_bytes, tensor.value_bytes) == ("csr_int8", (N + 1) * 2 + NONZERO, NONZERO)
    # The same weights as fp32: csr_int8 kernels do not run them, so they stay dense.
    assert flash_figure(matmul_model(sparse_weights(), int8=False), ["csr_int8"]).bytes == K * N * 4


def test_block_sparse_counts_whole_blocks():
    onnx_bytes = matmul_model(sparse_weights(blocks=True), int8=True)
    blocks = NONZERO // 4
    bsr = flash_figure(onnx_bytes, ["bsr_1x4_int8"])
    # (N + 1) row pointers of uint16 (819 blocks), a uint8 block-column index (K / 4 - 1 = 63), 4 values per block.
    assert (bsr.bytes, bsr.format) == ((N + 1) * 2 + blocks * (1 + 4) + QUANT_PARAM_BYTES, "bsr_1x4_int8")
    # With both layouts declared, each tensor takes the smaller: here the blocks beat CSR's 257 x 2 + 3276 x 2.
    assert flash_figure(onnx_bytes, ["csr_int8", "bsr_1x4_int8"]).bytes == bsr.bytes


def test_sparse_bytes_by_hand():
    mask = np.array([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=bool)
    # CSR: 4 row pointers + 8 non-zeros, 1-byte indices: index 4 + 8 = 12 bytes, values 8.
    assert sparse_bytes(mask, 1) == (4 + 8, 8)
    # 1x4 blocks on 8 padded columns: rows hold 2, 0 and 2 blocks -> 4 blocks of 4 values.
    assert sparse_bytes(mask, 4) == (4 + 4, 16)


def test_a_dense_model_keeps_dense_layouts_where_sparse_is_larger():
    weights = np.arange(1, K * N + 1).reshape(K, N) % 100 + 1  # no zero
    figure = flash_figure(matmul_model(weights, int8=True), ["csr_int8", "bsr_1x4_int8"])
    assert (figure.bytes, figure.format) == (K * N + QUANT_PARAM_BYTES, "int8")


def test_qdq_and_qoperator_int8_models_cost_the_same_per_channel_form(tmp_path):
    fp32 = to_onnx(two_layer(False), 64)
    qdq, qop = quantize(fp32, tmp_path, per_channel=True), quantize(fp32, tmp_path, fmt="QOperator", per_channel=True)
    # conv [4, 1, 5] and fc [4, 4] int8 weights; int32 biases of 4; each of the four tensors has 4 channels of parameters.
    expected = 20 + 16 + 4 * 4 + 4 * 4 + 4 * 4 * QUANT_PARAM_BYTES
    assert flash_figure(qdq).bytes == flash_figure(qop).bytes == expected
    assert flash_figure(qdq).format == flash_figure(qop).format == "int8"
    assert flash_figure(fp32).bytes == 44 * 4  # the fp32 model: 44 parameters of 4 bytes


def test_profiles_validate_runtime_and_sparse_layouts():
    with pytest.raises(ConfigError, match=r"board.yaml.sparse_layouts\[0\]"):
        profile(sparse_kernels=True, sparse_layouts=["coo_int8"])
    with pytest.raises(ConfigError, match="sparse_kernels must be true"):
        profile(sparse_layouts=["csr_int8"])
    with pytest.raises(ConfigError, match="lists a layout twice"):
        profile(sparse_kernels=True, sparse_layouts=["csr_int8", "csr_int8"])
    with pytest.raises(ConfigError, match="board.yaml.runtime"):
        profile(runtime="")
    assert profile(sparse_kernels=True, sparse_layouts=["csr_int8"]).sparse_layouts == ["csr_int8"]


def test_every_layout_a_profile_may_declare_has_a_size_rule():
    assert set(BLOCK_WIDTH) == set(SPARSE_LAYOUTS) == {"csr_int8", "bsr_1x4_int8"}
    with pytest.raises(ValueError, match="unknown sparse layout"):
        flash_figure(matmul_model(sparse_weights(), int8=True), ["coo_int8"])


def test_builtin_profiles_name_a_runtime_and_declare_no_sparse_layouts(registry):
    for name, device in registry.tables["devices"].items():
        assert device.runtime, name
        assert device.sparse_layouts == [], f"{name}: no built-in runtime has sparse kernels"
