"""An ONNX model loaded once: its constants, its node order, and how each quantized weight is stored.

:class:`OnnxModel` is what :mod:`ecgbench.measure.onnx_graph` (per-layer
analysis) and :mod:`ecgbench.measure.sizing` (parameter counts) both read.
It answers, for the two forms onnxruntime's quantizer writes:

- **QDQ** (``quantize_static``'s default): an integer initializer read through
  ``DequantizeLinear(x, x_scale, x_zero_point, axis=1)``;
- **QOperator**: the integer initializer is an input of the int8 operator
  itself, whose scale and zero point are further inputs (QLinearConv,
  QLinearMatMul, com.microsoft QGemm; ConvInteger, MatMulInteger and
  com.microsoft DynamicQuantizeMatMul of ``quantize_dynamic``, whose scale sits
  in a float Mul after them).

A weight may reach its reader through shape-only nodes (Identity, Cast,
Reshape, Transpose, ...); :meth:`OnnxModel.trace` walks back through them. A
quantized value is zero when it equals its zero point (per tensor, or per
channel along the quantization axis): :func:`count_nonzero`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ecgbench.errors import ConfigError

ELEMENT_BYTES: dict[int, int] = {
    TensorProto.FLOAT: 4,
    TensorProto.FLOAT16: 2,
    TensorProto.BFLOAT16: 2,
    TensorProto.DOUBLE: 8,
    TensorProto.INT8: 1,
    TensorProto.UINT8: 1,
    TensorProto.INT16: 2,
    TensorProto.UINT16: 2,
    TensorProto.INT32: 4,
    TensorProto.UINT32: 4,
    TensorProto.INT64: 8,
    TensorProto.UINT64: 8,
    TensorProto.BOOL: 1,
}
"""Bytes per element of each ONNX element type."""

# Integer weight inputs: op -> {weight position: (scale position or None, zero-point position,
# per-channel axis; None reads the node's ``axis`` attribute, default 1)}. ONNX spec and
# onnxruntime's com.microsoft contrib operators. The A operand of a matrix product has a
# per-row zero point (axis -2); ConvInteger, MatMulInteger and DynamicQuantizeMatMul leave
# scaling to a float Mul after them.
WEIGHT_INPUTS: dict[str, dict[int, tuple[int | None, int, int | None]]] = {
    "DequantizeLinear": {0: (1, 2, None)},
    "QLinearConv": {3: (4, 5, 0)},
    "ConvInteger": {1: (None, 3, 0)},
    "QLinearMatMul": {3: (4, 5, -1), 0: (1, 2, -2)},
    "MatMulInteger": {1: (None, 3, -1), 0: (None, 2, -2)},
    "DynamicQuantizeMatMul": {1: (2, 3, -1)},
    "QGemm": {3: (4, 5, -1), 0: (1, 2, -2)},  # B's axis is 0 when transB=1
}

# Input positions holding scales / zero points, per operator (QLinearConcat: see quantization_parameters).
QUANT_PARAM_INPUTS: dict[str, frozenset[int]] = {
    "QuantizeLinear": frozenset({1, 2}),
    "DequantizeLinear": frozenset({1, 2}),
    "QLinearConv": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearMatMul": frozenset({1, 2, 4, 5, 6, 7}),
    "QGemm": frozenset({1, 2, 4, 5, 7, 8}),
    "ConvInteger": frozenset({2, 3}),
    "MatMulInteger": frozenset({2, 3}),
    "QLinearAdd": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearMul": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearAveragePool": frozenset({1, 2, 3, 4}),
    "QLinearGlobalAveragePool": frozenset({1, 2, 3, 4}),
    "QLinearReduceMean": frozenset({1, 2, 3, 4}),
    "QLinearLeakyRelu": frozenset({1, 2, 3, 4}),
    "QLinearSigmoid": frozenset({1, 2, 3, 4}),
    "QLinearSoftmax": frozenset({1, 2, 3, 4}),
    "DynamicQuantizeMatMul": frozenset({2, 3}),
    "MatMulIntegerToFloat": frozenset({2, 3, 4, 5}),
}

# Nodes a weight may pass through on its way from the stored tensor to the operator that reads it.
PASS_THROUGH = frozenset({"Identity", "Cast", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten"})
_MAX_CONSTANT_CHAIN = 16


@dataclass(frozen=True)
class WeightQuant:
    """The stored tensor behind an operand and how it is quantized: ``real = (stored - zero_point) * scale``.

    ``scale`` and ``zero_point`` name tensors (None for a float weight, or where
    the operator has none); per-channel ones run along ``axis`` of the stored tensor.
    """

    stored: str
    scale: str | None = None
    zero_point: str | None = None
    axis: int = 1


def load_onnx(model: onnx.ModelProto | bytes | str | Path, copy: bool = False) -> onnx.ModelProto:
    """``model`` as a ModelProto (a copy of a given one when ``copy``); ConfigError for a missing or unreadable file."""
    if isinstance(model, onnx.ModelProto):
        if not copy:
            return model
        duplicate = onnx.ModelProto()
        duplicate.CopyFrom(model)
        return duplicate
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    path = Path(model)
    if not path.is_file():
        raise ConfigError(f"ONNX model {path} does not exist; check the path")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise ConfigError(f"{path} is not a readable ONNX model: {exc}") from None


def attribute(node: onnx.NodeProto, name: str, default):
    """The value of ``node``'s attribute ``name``, or ``default``."""
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def count_nonzero(values: np.ndarray, zero_point: np.ndarray | None = None, axis: int = 1) -> int:
    """Entries of ``values`` that differ from zero, or from their zero point (per tensor, or per channel along ``axis``)."""
    if zero_point is None or zero_point.size == 0 or not np.issubdtype(values.dtype, np.integer):
        return int(np.count_nonzero(values))
    if zero_point.size == 1:
        return int(np.count_nonzero(values != zero_point.reshape(())))
    shape = [1] * values.ndim
    shape[axis % values.ndim] = zero_point.size
    return int(np.count_nonzero(values != zero_point.reshape(shape)))


def topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` in an order where each comes after the producers of its inputs (ONNX requires it; some tools break it)."""
    available = set(available) | {""}
    seen = set(available)
    for node in nodes:
        if not all(i in seen for i in node.input):
            break
        seen.update(node.output)
    else:
        return nodes  # already in order: keep it, it is the order the exporter and onnxruntime run
    ordered, pending = [], list(nodes)
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            ordered.extend(pending)  # inputs from outside the graph (subgraph captures): keep the file's order
            break
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    return ordered


class OnnxModel:
    """One ONNX model, read once: constants by name, nodes in execution order, and its quantized weights."""

    def __init__(self, model: onnx.ModelProto | bytes | str | Path) -> None:
        self.proto = load_onnx(model)
        self.graph = self.proto.graph
        self.initializers: dict[str, TensorProto] = {t.name: t for t in self.graph.initializer}
        self.constants: dict[str, TensorProto] = dict(self.initializers)  # plus the values of Constant nodes
        for node in self.graph.node:
            if node.op_type == "Constant" and node.output:
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.constants[node.output[0]] = value
        self.nodes = topological(list(self.graph.node), set(self.initializers) | {i.name for i in self.graph.input})
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        for index, node in enumerate(self.nodes):
            for name in node.output:
                if name:
                    self.producer[name] = index
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(index)
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str) -> np.ndarray:
        """The values of constant ``name`` (decoded once)."""
        if name not in self._arrays:
            self._arrays[name] = numpy_helper.to_array(self.constants[name])
        return self._arrays[name]

    def trace(self, name: str) -> tuple[str, onnx.NodeProto | None] | None:
        """The stored constant behind operand ``name`` and the DequantizeLinear on the way there, if any.

        Walks back through DequantizeLinear and :data:`PASS_THROUGH` nodes; None
        when the operand is computed some other way (an activation).
        """
        dequantize = None
        for _ in range(_MAX_CONSTANT_CHAIN):
            if name in self.constants:
                return name, dequantize
            if name not in self.producer:
                return None
            node = self.nodes[self.producer[name]]
            if node.op_type == "DequantizeLinear":
                dequantize = node
            elif node.op_type not in PASS_THROUGH:
                return None
            name = node.input[0]
        return None

    def operand_quant(self, node: onnx.NodeProto, position: int) -> WeightQuant | None:
        """How input ``position`` of ``node`` is stored: the operator's own scale and zero point
        (QOperator form), else those of the DequantizeLinear on the way (QDQ form); None for an activation."""
        if position >= len(node.input) or not node.input[position]:
            return None
        traced = self.trace(node.input[position])
        if traced is None:
            return None
        stored, dequantize = traced
        spec = WEIGHT_INPUTS.get(node.op_type, {}).get(position)
        if spec is None:
            if dequantize is None:
                return WeightQuant(stored)
            node, spec = dequantize, WEIGHT_INPUTS["DequantizeLinear"][0]
        scale_at, zero_at, axis = spec
        if axis is None:
            axis = int(attribute(node, "axis", 1))
        if node.op_type == "QGemm" and position == 3 and attribute(node, "transB", 0):
            axis = 0
        return WeightQuant(stored, _input(node, scale_at), _input(node, zero_at), axis)

    @cached_property
    def weight_quant(self) -> dict[str, WeightQuant]:
        """Stored integer weight -> how it is quantized, from every operator that reads it as a weight."""
        out: dict[str, WeightQuant] = {}
        for node in self.nodes:
            for position in WEIGHT_INPUTS.get(node.op_type, {}):
                quant = self.operand_quant(node, position)
                if quant is not None and quant.zero_point is not None:
                    out[quant.stored] = quant
        return out

    def nonzero(self, quant: WeightQuant) -> int:
        """Non-zero values of ``quant.stored``: those that differ from its zero point when that is a constant."""
        zero_point = self.array(quant.zero_point) if quant.zero_point in self.constants else None
        return count_nonzero(self.array(quant.stored), zero_point, quant.axis)

    def quantization_parameters(self) -> set[str]:
        """Initializers used only as a scale or zero point (not weights)."""
        as_quant: set[str] = set()
        elsewhere: set[str] = set()
        # Dynamic quantization (quantize_dynamic) multiplies the weight scale with the activation
        # scale computed at run time (output 1 of DynamicQuantizeLinear).
        dynamic_scales = {n.output[1] for n in self.graph.node if n.op_type == "DynamicQuantizeLinear" and len(n.output) > 1}
        for node in self.graph.node:
            positions = QUANT_PARAM_INPUTS.get(node.op_type)
            if node.op_type == "Mul" and dynamic_scales.intersection(node.input):
                positions = frozenset(i for i, name in enumerate(node.input) if name not in dynamic_scales)
            for i, name in enumerate(node.input):
                if node.op_type == "QLinearConcat":  # y_scale, y_zp, then (x, x_scale, x_zp) triples
                    is_quant = i < 2 or (i - 2) % 3 != 0
                else:
                    is_quant = positions is not None and i in positions
                (as_quant if is_quant else elsewhere).add(name)
        return (as_quant - elsewhere) & set(self.initializers)


def _input(node: onnx.NodeProto, position: int | None) -> str | None:
    return node.input[position] if position is not None and len(node.input) > position and node.input[position] else None
