"""The ONNX graph analyzer: MACs, parameters and op classes checked against hand counts."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from ecgbench.errors import ConfigError
from ecgbench.train.export import to_onnx
from ecgbench.measure.onnx_graph import LAYER_CLASSES, SCHEMA, analyze_onnx, scratch_bytes

logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's pre-processing advice


class Conv1dNet(torch.nn.Module):
    """conv(1->4, k5, pad 2) -> ReLU -> conv(4->6, k3, stride 2, pad 1) -> mean -> Linear(6->3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv1d(1, 4, 5, padding=2)
        self.conv2 = torch.nn.Conv1d(4, 6, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=2))


class SeparableNet(torch.nn.Module):
    """stem conv(1->8, k3) -> depthwise conv(8, k9, groups 8) -> pointwise conv(8->16, k1) -> mean -> Linear(16->4)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv1d(1, 8, 3, padding=1)
        self.depthwise = torch.nn.Conv1d(8, 8, 9, padding=4, groups=8, bias=False)
        self.pointwise = torch.nn.Conv1d(8, 16, 1, bias=False)
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.pointwise(torch.relu(self.depthwise(x))))
        return self.fc(x.mean(dim=2))


# Hand counts for 100 samples.
# conv1: 4 x 100 outputs x 1 x 5 = 2000; conv2: 6 x 50 outputs x 4 x 3 = 3600; fc: 6 x 3 = 18.
CONV1D_MACS = {"conv1": 2000, "conv2": 3600, "fc": 18}
CONV1D_PARAMS = 4 * 5 + 4 + 6 * 4 * 3 + 6 + 6 * 3 + 3  # 123
# stem: 8 x 100 x 3 = 2400; depthwise: 8 x 100 x 9 = 7200; pointwise: 16 x 100 x 8 = 12800; fc: 64.
SEPARABLE_MACS = {"stem": 2400, "depthwise": 7200, "pointwise": 12800, "fc": 64}


def _export(model: torch.nn.Module, samples: int = 100) -> bytes:
    torch.manual_seed(0)
    return to_onnx(model.eval(), samples)


@pytest.fixture(scope="module")
def conv1d_onnx() -> bytes:
    torch.manual_seed(0)
    return _export(Conv1dNet())


def _by_op(graph, op_class: str):
    return [layer for layer in graph.layers if layer.op_class == op_class]


def _macs_by_name(graph, names):
    return {key: next(layer.macs for layer in graph.layers if key in layer.name) for key in names}


def test_conv1d_macs_and_params_match_hand_counts(conv1d_onnx):
    graph = analyze_onnx(conv1d_onnx, input_shape=(1, 1, 100))
    assert _macs_by_name(graph, CONV1D_MACS) == CONV1D_MACS
    assert graph.macs == sum(CONV1D_MACS.values()) == 5618
    assert graph.params == CONV1D_PARAMS
    assert graph.param_bytes == 4 * CONV1D_PARAMS
    conv2 = next(layer for layer in graph.layers if "conv2" in layer.name)
    assert conv2.input_shapes == [[1, 4, 100]] and conv2.output_shapes == [[1, 6, 50]]
    assert conv2.weight_shape == [6, 4, 3] and conv2.weight_dtype == "fp32" and conv2.compute_dtype == "fp32"
    assert conv2.activation_bytes_in == 4 * 100 * 4 and conv2.activation_bytes_out == 6 * 50 * 4
    assert conv2.scratch_bytes == 2 * 4 * 3 * 4  # two im2col columns of C_in x k fp32 values
    conv1 = graph.layers[0]
    assert (conv1.im2col_elements, conv2.im2col_elements) == (100 * 1 * 5, 50 * 4 * 3)  # positions x C_in x k
    # The ReLUs are the only readers of their conv's output: applied in the conv's output stage.
    assert [layer.op_class for layer in graph.layers] == ["conv", "free", "conv", "free", "pool", "fc"]
    assert "activation fusion" in graph.layers[1].note


def test_accepts_a_model_proto_and_a_path(conv1d_onnx, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(conv1d_onnx)
    proto = onnx.load_from_string(conv1d_onnx)
    assert analyze_onnx(path, (1, 1, 100)).macs == analyze_onnx(str(path), (1, 1, 100)).macs == analyze_onnx(proto, (1, 1, 100)).macs == 5618
    assert proto.graph.input[0].type.tensor_type.shape.dim[2].dim_param == "samples"  # the caller's proto is untouched


def test_sparse_weights_give_effective_macs_by_hand(conv1d_onnx):
    torch.manual_seed(0)
    model = Conv1dNet()
    with torch.no_grad():
        model.conv2.weight[:3] = 0.0  # half the output channels: 36 of 72 weights
        model.fc.weight[:, :2] = 0.0  # 6 of 18 weights
    graph = analyze_onnx(_export(model), (1, 1, 100))
    conv2 = next(layer for layer in graph.layers if "conv2" in layer.name)
    fc = next(layer for layer in graph.layers if "fc" in layer.name)
    assert conv2.macs == 3600 and conv2.effective_macs == 1800
    assert fc.macs == 18 and fc.effective_macs == 12
    assert conv2.nonzero_params == 36 + 6  # weights left plus the 6 biases
    assert graph.effective_macs == 2000 + 1800 + 12


def test_conv2d_and_grouped_conv_macs():
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 4, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv2d"),
        helper.make_node("Conv", ["a", "w2"], ["y"], group=2, strides=[2, 2], name="grouped"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w1, w2],
    )
    stats = analyze_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), (1, 3, 16, 16))
    conv2d, grouped = stats.layers
    assert conv2d.macs == 8 * 16 * 16 * 3 * 3 * 3 == 55296
    assert grouped.output_shapes == [[1, 8, 7, 7]]
    assert grouped.macs == 8 * 7 * 7 * 4 * 3 * 3 == 14112  # C_in / groups = 4
    assert grouped.op_class == "conv"  # grouped, not depthwise
    assert grouped.scratch_bytes == 2 * 4 * 9 * 4


def test_depthwise_separable_net():
    torch.manual_seed(0)
    graph = analyze_onnx(_export(SeparableNet()), (1, 1, 100))
    assert _macs_by_name(graph, SEPARABLE_MACS) == SEPARABLE_MACS
    classes = {key: next(layer.op_class for layer in graph.layers if key in layer.name) for key in SEPARABLE_MACS}
    assert classes == {"stem": "conv", "depthwise": "depthwise_conv", "pointwise": "conv", "fc": "fc"}
    pointwise = next(layer for layer in graph.layers if "pointwise" in layer.name)
    depthwise = next(layer for layer in graph.layers if "depthwise" in layer.name)
    assert pointwise.scratch_bytes == 0  # a 1x1 convolution needs no im2col
    assert depthwise.scratch_bytes == 8 * 9 * 4


class _Reader:
    """onnxruntime CalibrationDataReader over a few random inputs."""

    def __init__(self, samples: int = 100) -> None:
        rng = np.random.default_rng(0)
        self._feeds = iter([{"ecg": rng.standard_normal((1, 1, samples)).astype(np.float32)} for _ in range(4)])

    def get_next(self):
        return next(self._feeds, None)


def _quantize(fp32: bytes, tmp_path, mode: str) -> bytes:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    src, dst = tmp_path / "fp32.onnx", tmp_path / f"{mode}.onnx"
    src.write_bytes(fp32)
    if mode == "dynamic":
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8)
    else:
        fmt = QuantFormat.QDQ if mode == "qdq" else QuantFormat.QOperator
        quantize_static(str(src), str(dst), _Reader(), quant_format=fmt, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QInt8)
    return dst.read_bytes()


@pytest.mark.parametrize("mode, conv_op", [("qdq", "Conv"), ("qoperator", "QLinearConv"), ("dynamic", "ConvInteger")])
def test_int8_models_keep_macs_and_count_int8(conv1d_onnx, tmp_path, mode, conv_op):
    graph = analyze_onnx(_quantize(conv1d_onnx, tmp_path, mode), (1, 1, 100))
    convs = [layer for layer in graph.layers if layer.op_class == "conv"]
    assert [layer.op_type for layer in convs] == [conv_op, conv_op]
    assert [layer.macs for layer in convs] == [2000, 3600]
    assert all(layer.compute_dtype == "int8" and layer.weight_dtype == "int8" for layer in convs)
    assert graph.macs == 5618
    assert not graph.unsupported
    if mode != "dynamic":  # int8 weights plus int32 biases stored with the conv
        assert [layer.param_bytes for layer in convs] == [4 * 5 + 4 * 4, 6 * 4 * 3 + 6 * 4]


def test_dynamic_quantization_is_its_own_kernel_kind(conv1d_onnx, tmp_path):
    graph = analyze_onnx(_quantize(conv1d_onnx, tmp_path, "dynamic"), (1, 1, 100))
    integer = [layer for layer in graph.layers if layer.op_type in ("ConvInteger", "MatMulInteger")]
    assert [(layer.op_type, layer.macs) for layer in integer] == [("ConvInteger", 2000), ("ConvInteger", 3600), ("MatMulInteger", 18)]
    assert all(layer.compute_dtype == "int8" and layer.quantization == "dynamic" for layer in integer)
    # the run-time quantizers and the float rescaling around the integer kernels stay float
    around = [layer for layer in graph.layers if layer.op_type in ("DynamicQuantizeLinear", "Cast", "Mul")]
    assert around and all(layer.quantization is None and layer.compute_dtype == "fp32" for layer in around)


def test_static_int8_layers_are_marked_static(conv1d_onnx, tmp_path):
    for mode in ("qdq", "qoperator"):
        graph = analyze_onnx(_quantize(conv1d_onnx, tmp_path, mode), (1, 1, 100))
        convs = [layer for layer in graph.layers if layer.op_class == "conv"]
        assert [layer.quantization for layer in convs] == ["static", "static"], mode


def _qdq_conv_graph(input_through_dq: bool = True, weight_through_dq: bool = True, output_to_q: bool = True, residual: bool = False):
    """x -> [Q -> DQ] -> Conv(4->4, k3; weight [int8 -> DQ] or float) -> [Q -> DQ] (-> Add with the conv input) -> y."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "zp")]
    nodes = []
    x = "x"
    if input_through_dq:
        nodes += [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"])]
        x = "xd"
    if weight_through_dq:
        inits += [numpy_helper.from_array(rng.integers(-127, 128, (4, 4, 3)).astype(np.int8), "w_int8"),
                  numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_scale"), numpy_helper.from_array(np.zeros(4, np.int8), "w_zp")]
        nodes.append(helper.make_node("DequantizeLinear", ["w_int8", "w_scale", "w_zp"], ["w"], axis=0))
    else:
        inits.append(numpy_helper.from_array(rng.standard_normal((4, 4, 3)).astype(np.float32), "w"))
    nodes.append(helper.make_node("Conv", [x, "w"], ["c"], pads=[1, 1], name="conv"))
    out = "c"
    if output_to_q:
        nodes += [helper.make_node("QuantizeLinear", ["c", "s", "zp"], ["cq"]), helper.make_node("DequantizeLinear", ["cq", "s", "zp"], ["cd"])]
        out = "cd"
    if residual:
        nodes.append(helper.make_node("Add", [out, x], ["sum"], name="add"))
        out = "sum"
    nodes.append(helper.make_node("Identity", [out], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "input_dq, weight_dq, output_q, expected",
    [(True, True, True, "int8"), (False, True, True, "fp32"), (True, False, True, "fp32"), (True, True, False, "fp32")],
)
def test_qdq_rule_needs_dequantized_input_and_weight_and_a_quantized_output(input_dq, weight_dq, output_q, expected):
    graph = analyze_onnx(_qdq_conv_graph(input_dq, weight_dq, output_q))
    conv = next(layer for layer in graph.layers if layer.op_type == "Conv")
    assert conv.compute_dtype == expected
    assert conv.quantization == ("static" if expected == "int8" else None)
    assert conv.macs == 4 * 8 * 4 * 3


def test_qdq_rule_ignores_activation_fan_out():
    """A conv whose input also feeds a residual Add stays int8: the QDQ meaning, not onnxruntime's x86 rewrite (module docstring)."""
    graph = analyze_onnx(_qdq_conv_graph(residual=True))
    conv = next(layer for layer in graph.layers if layer.op_type == "Conv")
    assert conv.compute_dtype == "int8" and conv.quantization == "static"


def test_qdq_pairs_around_int8_operators_are_free_and_buffers_int8(conv1d_onnx, tmp_path):
    graph = analyze_onnx(_quantize(conv1d_onnx, tmp_path, "qdq"), (1, 1, 100))
    first = graph.layers[0]
    assert first.op_type == "QuantizeLinear" and first.op_class == "elementwise"  # the float input is really quantized
    fused = [layer for layer in graph.layers if layer.op_type in ("QuantizeLinear", "DequantizeLinear") and layer.op_class == "free"]
    assert fused, "Q/DQ pairs between int8 operators fuse into them"
    conv2 = next(layer for layer in graph.layers if layer.op_class == "conv" and layer.macs == 3600)
    assert conv2.activation_bytes_in == 4 * 100 * 1 and conv2.activation_bytes_out == 6 * 50 * 1
    assert conv2.scratch_bytes == 2 * 4 * 3 * 2  # CMSIS-NN's int16 im2col columns


def test_unfolded_batchnorm_pool_and_reshape_rules():
    rng = np.random.default_rng(0)
    c = 4
    inits = [numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), n) for n in ("s", "b", "m")]
    inits.append(numpy_helper.from_array(np.ones(c, np.float32), "v"))
    inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), "shape"))
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("MaxPool", ["bn"], ["mp"], kernel_shape=[2], strides=[2], name="pool"),
        helper.make_node("Reshape", ["mp", "shape"], ["flat"], name="reshape"),
        helper.make_node("Softmax", ["flat"], ["y"], name="softmax"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    stats = analyze_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    bn, pool, reshape, softmax = stats.layers
    assert (bn.op_class, bn.params, bn.ops) == ("elementwise", 4 * c, 2 * c * 10)
    assert (pool.op_class, pool.ops, pool.output_shapes) == ("pool", c * 5 * 2, [[1, c, 5]])
    assert (reshape.op_class, reshape.params, reshape.writes) == ("free", 0, [])  # int64 shape is no parameter
    assert softmax.reads == pool.writes  # the reshape aliases the pooled buffer
    assert (softmax.ops, softmax.output_shapes) == (4 * c * 5, [[1, c * 5]])
    assert stats.macs == 0 and stats.params == 16


def test_relu_stays_a_layer_when_the_conv_output_has_another_reader():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((2, 2, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Add", ["c", "r"], ["y"], name="add"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
    stats = analyze_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert [layer.op_class for layer in stats.layers] == ["conv", "elementwise", "elementwise"]
    assert stats.layers[1].ops == 16


def test_qdq_conv_with_a_float_bias_stays_float():
    from ecgbench.measure.latency import _conv_kernel

    kernel = _conv_kernel(4, 4, 3, 1, True, np.random.default_rng(0))
    int8 = analyze_onnx(kernel.model)
    conv = next(layer for layer in int8.layers if layer.op_type == "Conv")
    assert (conv.compute_dtype, conv.weight_dtype, conv.params) == ("int8", "int8", 4 * 4 * 3 + 4)
    proto = onnx.load_from_string(kernel.model)
    node = next(n for n in proto.graph.node if n.op_type == "Conv")
    proto.graph.initializer.append(numpy_helper.from_array(np.zeros(4, np.float32), "float_bias"))
    node.input[2] = "float_bias"
    mixed = analyze_onnx(proto)
    conv = next(layer for layer in mixed.layers if layer.op_type == "Conv")
    assert conv.compute_dtype == "fp32" and conv.weight_dtype == "int8"
    assert all(layer.op_class != "free" for layer in mixed.layers)  # no Q/DQ fuses into a float conv


def test_unsupported_operator_is_counted_and_flagged():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("MysteryOp", ["r"], ["y"], name="mystery", domain="example.custom"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)])
    stats = analyze_onnx(model)
    mystery = stats.layers[1]
    assert stats.unsupported == ["MysteryOp (mystery)"]
    assert (mystery.supported, mystery.op_class, mystery.ops) == (False, "other", 10)
    assert "unsupported" in mystery.note
    assert stats.to_dict()["unsupported"] == ["MysteryOp (mystery)"]


def test_dynamic_input_without_a_shape_asks_for_one(conv1d_onnx):
    with pytest.raises(ConfigError, match=r"--input-shape 1,1,3000"):
        analyze_onnx(conv1d_onnx)
    with pytest.raises(ConfigError, match="3 dimensions"):
        analyze_onnx(conv1d_onnx, input_shape=(1, 100))
    with pytest.raises(ConfigError, match="fixed size 1 on axis 1"):
        analyze_onnx(conv1d_onnx, input_shape=(1, 2, 100))


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        analyze_onnx(tmp_path / "nope.onnx", (1, 1, 100))


def test_exporter_pads_are_folded_so_hannun34_shapes_are_known():
    """hannun34 pads with exporter-computed pads; MACs must match a hook count over the PyTorch model."""
    from ecgbench_plugins.models.hannun34 import Hannun34Config, Hannun34Net

    torch.manual_seed(0)
    net = Hannun34Net(Hannun34Config(width=4, blocks=3), 4).eval()
    counted = []

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv1d):
            counted.append(output.numel() * module.in_channels // module.groups * module.kernel_size[0])
        elif isinstance(module, torch.nn.Linear):
            counted.append(module.in_features * module.out_features)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Linear))]
    with torch.no_grad():
        net(torch.zeros(1, 1, 301))
    for h in handles:
        h.remove()
    stats = analyze_onnx(to_onnx(net, 301), (1, 1, 301))
    assert stats.macs == sum(counted)
    assert all("unknown" not in layer.note for layer in stats.layers)


def test_to_dict_follows_the_documented_schema(conv1d_onnx):
    doc = analyze_onnx(conv1d_onnx, (1, 1, 100)).to_dict()
    assert set(doc) == {"schema", "input_shape", "totals", "layers", "unsupported"}
    assert doc["schema"] == SCHEMA and doc["input_shape"] == [1, 1, 100]
    assert set(doc["totals"]) == {"layers", "macs", "effective_macs", "im2col_elements", "ops", "params", "nonzero_params", "param_bytes"}
    assert all(isinstance(v, int) for v in doc["totals"].values())
    types = {
        "name": str, "op_type": str, "op_class": str, "compute_dtype": str, "input_shapes": list, "output_shapes": list,
        "macs": int, "effective_macs": int, "im2col_elements": int, "ops": int, "params": int, "nonzero_params": int, "param_bytes": int,
        "activation_bytes_in": int, "activation_bytes_out": int, "scratch_bytes": int, "supported": bool, "note": str,
        "strides": list,
    }
    for layer in doc["layers"]:
        assert set(layer) == set(types) | {"weight_dtype", "weight_shape", "quantization"}
        assert layer["quantization"] is None  # a float model
        for key, kind in types.items():
            assert isinstance(layer[key], kind), key
        assert layer["op_class"] in LAYER_CLASSES
        assert layer["weight_dtype"] in (None, "fp32", "fp16", "int8")
    assert [layer["strides"] for layer in doc["layers"] if layer["macs"] and layer["op_type"] == "Conv"] == [[1], [2]]
    import json

    assert json.loads(json.dumps(doc)) == doc


def test_scratch_bytes_rule():
    assert scratch_bytes("conv", 8, [16], "int8") == 2 * 8 * 16 * 2
    assert scratch_bytes("conv", 8, [1], "fp32") == 0
    assert scratch_bytes("depthwise_conv", 8, [9], "fp32") == 8 * 9 * 4
    assert scratch_bytes("fc", 8, [], "int8") == 0


class ResidualNet(torch.nn.Module):
    """conv(1->8, k5) -> conv(8->8, k5) + residual -> conv(8->8, k5, stride 2) -> mean -> Linear(8->4).

    The strided conv reads the residual Add: in QOperator form that Add is
    com.microsoft QLinearAdd, and its output shape decides the strided conv's MACs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv1d(1, 8, 5, padding=2)
        self.conv2 = torch.nn.Conv1d(8, 8, 5, padding=2)
        self.conv3 = torch.nn.Conv1d(8, 8, 5, stride=2, padding=2)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h) + h)
        return self.fc(torch.relu(self.conv3(h)).mean(dim=2))


# 100 samples: conv1 8 x 100 x 1 x 5; conv2 8 x 100 x 8 x 5; conv3 8 x 50 x 8 x 5; fc 8 x 4.
RESIDUAL_MACS = 4000 + 32000 + 16000 + 32


@pytest.mark.parametrize("mode", ["qdq", "qoperator"])
def test_qoperator_and_qdq_forms_give_the_hand_counted_macs(tmp_path, mode):
    graph = analyze_onnx(_quantize(_export(ResidualNet()), tmp_path, mode), (1, 1, 100))
    assert graph.macs == RESIDUAL_MACS
    assert graph.unshaped == [] and "unshaped_ops" not in graph.to_dict()
    if mode == "qoperator":
        add = next(layer for layer in graph.layers if layer.op_type == "QLinearAdd")
        assert add.output_shapes == [[1, 8, 100]] and add.note == ""
        conv3 = [layer for layer in graph.layers if layer.op_type == "QLinearConv"][2]
        assert conv3.output_shapes == [[1, 8, 50]] and conv3.activation_bytes_out == 8 * 50  # int8 buffer


def _int8_scalars(prefix: str) -> list[TensorProto]:
    return [numpy_helper.from_array(np.array(0.1, np.float32), prefix + "_s"), numpy_helper.from_array(np.array(0, np.int8), prefix + "_zp")]


def test_contrib_pooling_and_concat_are_shaped():
    """QLinearAveragePool (k2, stride 2) then QLinearConcat of it with itself along channels: [1, 4, 10] -> [1, 4, 5] -> [1, 8, 5]."""
    nodes = [
        helper.make_node("QLinearAveragePool", ["x", "a_s", "a_zp", "b_s", "b_zp"], ["p"], name="pool", domain="com.microsoft",
                         kernel_shape=[2], strides=[2]),
        helper.make_node("QLinearConcat", ["c_s", "c_zp", "p", "b_s", "b_zp", "p", "b_s", "b_zp"], ["y"], name="concat",
                         domain="com.microsoft", axis=1),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 4, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, None)],
                              initializer=_int8_scalars("a") + _int8_scalars("b") + _int8_scalars("c"))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    stats = analyze_onnx(model)
    assert [layer.output_shapes for layer in stats.layers] == [[[1, 4, 5]], [[1, 8, 5]]]
    assert stats.layers[0].ops == 4 * 5 * 2  # output elements x kernel
    assert [layer.activation_bytes_out for layer in stats.layers] == [20, 40]  # int8 buffers
    assert stats.unshaped == []


def test_an_operator_without_a_shape_is_reported(caplog):
    nodes = [
        helper.make_node("MysteryOp", ["x"], ["m"], name="mystery", domain="example.custom"),
        helper.make_node("Relu", ["m"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)])
    with caplog.at_level(logging.WARNING, logger="ecgbench.measure.onnx_graph"):
        stats = analyze_onnx(model)
    # the Relu's shape is inferred from the MysteryOp's, which was assumed: both are unreliable
    assert stats.unshaped == ["MysteryOp (mystery)", "Relu (relu)"]
    assert stats.to_dict()["unshaped_ops"] == ["MysteryOp (mystery)", "Relu (relu)"]
    assert "MysteryOp (mystery)" in caplog.text
