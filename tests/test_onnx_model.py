"""The shared ONNX reader: stored weights, their scales and zero points (QDQ and QOperator), non-zero counts by hand."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ecgbench.errors import ConfigError
from ecgbench.measure.onnx_model import OnnxModel, WeightQuant, count_nonzero, load_onnx, topological

# Weight [2 channels, 3]: channel 0 has zero point 1 (two entries equal it), channel 1 zero point -2 (one entry).
WEIGHT = np.array([[1, 1, 5], [-2, 0, 3]], np.int8)
CHANNEL_ZP = np.array([1, -2], np.int8)
NONZERO_PER_CHANNEL = 1 + 2


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def qdq_matmul(axis: int = 0) -> onnx.ModelProto:
    """x [1, 3] @ DequantizeLinear(w_int8, w_scale, w_zp, axis)^T through a Transpose."""
    inits = [
        numpy_helper.from_array(WEIGHT, "w_int8"),
        numpy_helper.from_array(np.array([0.1, 0.2], np.float32), "w_scale"),
        numpy_helper.from_array(CHANNEL_ZP, "w_zp"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_int8", "w_scale", "w_zp"], ["w"], axis=axis),
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "wt"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    return _model(nodes, [x], [y], inits)


def qoperator_conv() -> onnx.ModelProto:
    """QLinearConv reading its int8 weight [2, 1, 3] through an Identity, per-channel zero point along axis 0."""
    scalars = {"x_s": np.float32(0.1), "x_zp": np.uint8(128), "y_s": np.float32(0.2), "y_zp": np.uint8(128)}
    inits = [numpy_helper.from_array(np.array(v), k) for k, v in scalars.items()]
    inits += [
        numpy_helper.from_array(WEIGHT.reshape(2, 1, 3), "w_int8"),
        numpy_helper.from_array(np.array([0.1, 0.2], np.float32), "w_s"),
        numpy_helper.from_array(CHANNEL_ZP, "w_zp"),
        numpy_helper.from_array(np.array([0, 7], np.int32), "bias"),
    ]
    nodes = [
        helper.make_node("Identity", ["w_int8"], ["w"]),
        helper.make_node("QLinearConv", ["x", "x_s", "x_zp", "w", "w_s", "w_zp", "y_s", "y_zp", "bias"], ["y"], kernel_shape=[3]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 1, 5])
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 2, 3])
    return _model(nodes, [x], [y], inits)


def test_qdq_weight_is_traced_through_dequantize_and_transpose():
    model = OnnxModel(qdq_matmul())
    quant = model.operand_quant(model.nodes[2], 1)
    assert quant == WeightQuant("w_int8", "w_scale", "w_zp", 0)
    assert model.weight_quant == {"w_int8": quant}
    assert model.nonzero(quant) == NONZERO_PER_CHANNEL
    assert model.operand_quant(model.nodes[2], 0) is None  # x is an activation


def test_qdq_axis_defaults_to_one():
    """DequantizeLinear's axis attribute defaults to 1: here a [2, 3] weight with a 3-long zero point."""
    proto = qdq_matmul()
    del proto.graph.node[0].attribute[:]
    proto.graph.initializer[2].CopyFrom(numpy_helper.from_array(np.array([1, 0, 3], np.int8), "w_zp"))
    model = OnnxModel(proto)
    quant = model.weight_quant["w_int8"]
    assert quant.axis == 1
    # column 0: 1, -2 vs 1 -> one differs; column 1: 1, 0 vs 0 -> one; column 2: 5, 3 vs 3 -> one
    assert model.nonzero(quant) == 3


def test_qoperator_weight_takes_the_operators_own_zero_point_and_scale():
    model = OnnxModel(qoperator_conv())
    conv = model.nodes[1]
    assert model.operand_quant(conv, 3) == WeightQuant("w_int8", "w_s", "w_zp", 0)
    assert model.operand_quant(conv, 8) == WeightQuant("bias")  # int32 bias: no zero point
    assert model.nonzero(model.weight_quant["w_int8"]) == NONZERO_PER_CHANNEL
    assert model.nonzero(WeightQuant("bias")) == 1


def test_qgemm_with_transposed_b_runs_its_zero_point_along_axis_0():
    inits = [numpy_helper.from_array(np.array(v), k) for k, v in {"a_s": np.float32(1), "a_zp": np.uint8(0), "b_s": np.float32(1)}.items()]
    inits += [numpy_helper.from_array(WEIGHT, "b"), numpy_helper.from_array(CHANNEL_ZP, "b_zp")]
    node = helper.make_node("QGemm", ["a", "a_s", "a_zp", "b", "b_s", "b_zp"], ["y"], domain="com.microsoft", transB=1)
    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    model = OnnxModel(_model([node], [a], [y], inits))
    assert model.weight_quant["b"] == WeightQuant("b", "b_s", "b_zp", 0)
    assert model.nonzero(model.weight_quant["b"]) == NONZERO_PER_CHANNEL


def test_scales_and_zero_points_are_quantization_parameters_but_not_shared_ones():
    assert OnnxModel(qoperator_conv()).quantization_parameters() == {"x_s", "x_zp", "y_s", "y_zp", "w_s", "w_zp"}
    proto = qdq_matmul()
    proto.graph.node.append(helper.make_node("Add", ["y", "w_scale"], ["z"]))  # w_scale is now also an operand
    assert OnnxModel(proto).quantization_parameters() == {"w_zp"}


@pytest.mark.parametrize(
    "values, zero_point, axis, expected",
    [
        (np.array([0, 3, 0, -1], np.int8), None, 1, 2),
        (np.array([3, 3, 0, -1], np.int8), np.array(3, np.int8), 1, 2),
        (WEIGHT, CHANNEL_ZP, 0, NONZERO_PER_CHANNEL),
        (WEIGHT, CHANNEL_ZP, -2, NONZERO_PER_CHANNEL),
        (np.array([0.0, 1.0, 1.0], np.float32), np.array(1, np.int8), 1, 2),  # float values: zero point ignored
    ],
)
def test_count_nonzero_by_hand(values, zero_point, axis, expected):
    assert count_nonzero(values, zero_point, axis) == expected


def test_trace_stops_at_computed_operands():
    proto = qdq_matmul()
    proto.graph.node.insert(1, helper.make_node("Relu", ["w"], ["w_relu"]))
    proto.graph.node[2].input[0] = "w_relu"
    model = OnnxModel(proto)
    assert model.trace("wt") is None
    assert model.trace("w") == ("w_int8", model.nodes[0])


def test_nodes_are_put_in_execution_order():
    a, b = helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Abs", ["h"], ["y"])
    assert topological([b, a], {"x"}) == [a, b]
    proto = _model([b, a], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [])
    model = OnnxModel(proto)
    assert [n.op_type for n in model.nodes] == ["Relu", "Abs"]
    assert model.producer == {"h": 0, "y": 1} and model.consumers == {"x": [0], "h": [1]}


def test_load_onnx_reads_bytes_and_paths_and_copies_on_request(tmp_path):
    proto = qdq_matmul()
    assert load_onnx(proto) is proto
    copy = load_onnx(proto, copy=True)
    assert copy is not proto and copy == proto
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    assert load_onnx(path) == load_onnx(proto.SerializeToString()) == proto
    with pytest.raises(ConfigError, match="does not exist"):
        load_onnx(tmp_path / "missing.onnx")
