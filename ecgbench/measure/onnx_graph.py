"""Per-layer compute, parameters and activation sizes of an ONNX model, counted from its graph.

:func:`analyze_onnx` fixes the model's dynamic input dimensions, runs ONNX
shape inference and describes every operator as a :class:`LayerStats`. Counts
follow hand-countable rules:

- **Conv** (1-D, 2-D, grouped, depthwise; QLinearConv, ConvInteger):
  ``macs = output elements x (C_in / groups) x prod(kernel)``; ConvTranspose:
  ``input elements x (C_out / groups) x prod(kernel)``. A convolution whose
  groups equal its input channels (> 1) is ``depthwise_conv``.
- **Gemm / MatMul** (QLinearMatMul, MatMulInteger, QGemm): ``M x N x K``
  (output elements x K).
- **effective_macs** = ``macs x non-zero weights / weights``: what a kernel
  that skips zero weights would run. Layers without weights keep their MACs.
- **im2col_elements** of a dense convolution with a kernel larger than 1:
  ``output positions x (C_in / groups) x prod(kernel)``, the values an
  im2col + GEMM kernel copies into its columns (``macs / (C_out / groups)``);
  0 for 1x1 and depthwise convolutions and every other layer.
- **ops**: arithmetic that is not a multiply-accumulate: one per output element
  for element-wise operators (4 for transcendental ones: Sigmoid, Tanh, Exp,
  Softmax, ...; 2 for an unfolded BatchNormalization), output elements x kernel
  size for windowed pooling, input elements for global pooling and reductions,
  output elements for copies (Concat, Pad, Transpose, Slice, ...).
- **Parameters** are the weight and bias tensors a layer reads (Conv/Gemm
  weight and bias, BatchNormalization's four vectors, a non-scalar constant
  operand of Add/Mul/...), counted once each, as stored (int8 for quantized
  weights, int32 for quantized biases); scales, zero points and integer shape
  constants are not parameters. A quantized weight is zero when it equals its
  zero point.

Quantized graphs. onnxruntime's QOperator form (QLinearConv, QLinearMatMul,
ConvInteger, MatMulInteger, ...) runs in int8. ConvInteger and MatMulInteger
are their own kernel kind, ``quantization: "dynamic"``: they multiply uint8/int8
values into int32 sums and leave scaling to float operators around them, the
form ``quantize_dynamic`` emits after a DynamicQuantizeLinear that quantizes
each activation at run time. Every other int8 layer is ``quantization:
"static"``; float layers have ``null``. In QDQ form (quantize_static's
default) an operator whose data inputs all come from DequantizeLinear, whose
float constants (weights, bias) are all dequantized integer tensors, and whose
outputs all go to QuantizeLinear runs in int8, as onnxruntime and TFLite Micro
fuse it; its weights are the int8 initializers behind their DequantizeLinear.
One float constant left in the group (a bias the quantizer did not quantize)
keeps the operator in float, as onnxruntime's QDQ selectors do. The surrounding QuantizeLinear / DequantizeLinear nodes are
then ``free`` (the int8 kernel reads and requantizes in place) and its output
is an int8 buffer. Q/DQ nodes that convert between a float operator and an int8
one are real element-wise operators.

This QDQ rule is the format's meaning, the same on every device, and it is what
TFLite Micro runs. One runtime may fuse fewer groups: onnxruntime 1.2x-1.3x on
x86 first rewrites int8 Q->DQ pairs to uint8 (QDQS8ToU8Transformer) only where
the QuantizeLinear has a single reader, after EnsureUniqueDQForNodeUnit has
given each reader of a shared DequantizeLinear its own copy; its Conv selector
then needs input and output of one type. A convolution whose input feeds a
residual Add as well (or whose output does) keeps int8 on one side and uint8 on
the other and runs as float Conv between Q/DQ nodes. That rule depends on the
platform (no uint8 rewrite on Arm64) and is left out here.

Layers that cost nothing. Nodes whose inputs are all constants (shape
arithmetic, the DequantizeLinear of a weight) are folded at conversion time
and are not layers. Reshape, Flatten, Squeeze, Unsqueeze, Identity and Dropout
are ``free``: their output aliases their input's buffer. A Relu or Clip that is
the only reader of a float Conv/Gemm/MatMul output is ``free`` too: TFLite
converters and onnxruntime (FusedConv, Gemm activation fusion) apply it in the
producing kernel's output stage.

Unsupported operators are counted as one element-wise operation per output
element, marked ``supported: false`` and listed in ``GraphStats.unsupported``.

Shapes come from ONNX shape inference, run with onnxruntime's com.microsoft
quantized operators (QLinearAdd, QLinearGlobalAveragePool, QGemm, ...) replaced
by standard operators of the same output shape, so shapes flow through the
QOperator form as through QDQ. An operator whose output shape is still unknown
gets its first input's shape, a note saying so, and a place in
``GraphStats.unshaped`` (``unshaped_ops`` in the JSON), with a logged warning.

JSON schema of :meth:`GraphStats.to_dict` (``schema: "ecgbench.graph/1"``)::

    {
      "schema": "ecgbench.graph/1",
      "input_shape": [int, ...],               # the shape analysed, e.g. [1, 1, 9000]
      "totals": {                              # sums over layers
        "layers": int, "macs": int, "effective_macs": int, "im2col_elements": int, "ops": int,
        "params": int, "nonzero_params": int, "param_bytes": int
      },
      "layers": [{                             # one per operator, in execution order
        "name": str, "op_type": str,
        "op_class": "conv" | "depthwise_conv" | "fc" | "elementwise" | "pool" | "copy" | "free" | "other",
        "compute_dtype": "fp32" | "fp16" | "int8",
        "quantization": "static" | "dynamic" | null,   # int8 kernel kind (see above); null for float layers
        "weight_dtype": "fp32" | "fp16" | "int8" | null,
        "input_shapes": [[int, ...], ...],     # activation (non-constant) inputs
        "output_shapes": [[int, ...], ...],
        "weight_shape": [int, ...] | null,
        "strides": [int, ...],                 # convolutions: stride per spatial axis; [] for other layers
        "macs": int, "effective_macs": int, "im2col_elements": int, "ops": int,
        "params": int, "nonzero_params": int, "param_bytes": int,
        "activation_bytes_in": int, "activation_bytes_out": int,   # as stored on a device (int8 buffers: 1 byte)
        "scratch_bytes": int,                  # im2col-style working buffer, see scratch_bytes()
        "supported": bool, "note": str
      }, ...],
      "unsupported": [str, ...],               # "OpType (node name)" of each unsupported operator
      "unshaped_ops": [str, ...]               # only when some: "OpType (node name)" of each operator whose
                                               # output shape neither ONNX nor the analyser could infer
    }
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ecgbench.errors import ConfigError
from ecgbench.measure.onnx_model import ELEMENT_BYTES, OnnxModel, WeightQuant, attribute, load_onnx

SCHEMA = "ecgbench.graph/1"

_log = logging.getLogger(__name__)

LAYER_CLASSES = ("conv", "depthwise_conv", "fc", "elementwise", "pool", "copy", "free", "other")

_INT8_TYPES = (TensorProto.INT8, TensorProto.UINT8)
_SHAPE_TYPES = (TensorProto.INT64, TensorProto.UINT64, TensorProto.BOOL, TensorProto.STRING)

# Convolutions: op -> (weight input, bias input). Zero points and scales: onnx_model.WEIGHT_INPUTS.
_CONV_OPS: dict[str, tuple[int, int | None]] = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "QLinearConv": (3, 8),
    "ConvInteger": (1, None),
}
# Matrix products: op -> (candidate weight inputs, bias input).
_MATMUL_OPS: dict[str, tuple[tuple[int, ...], int | None]] = {
    "Gemm": ((1, 0), 2),
    "MatMul": ((1, 0), None),
    "QLinearMatMul": ((3, 0), None),
    "MatMulInteger": ((1, 0), None),
    "QGemm": ((3, 0), 6),  # com.microsoft, from onnxruntime's QOperator quantizer
}
# Integer-accumulating operators with float scaling around them: onnxruntime's dynamic quantization kernels.
_DYNAMIC_INT8 = frozenset({"ConvInteger", "MatMulInteger"})
# Operators that compute in int8 whatever surrounds them (onnxruntime's QOperator form).
_INT8_NATIVE = frozenset(
    {"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QGemm", "QLinearAdd", "QLinearMul",
     "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearReduceMean", "QLinearLeakyRelu",
     "QLinearSigmoid", "QLinearSoftmax", "QLinearConcat"}
)
# Element-wise operators -> operations per output element. Transcendental functions cost ~4:
# CMSIS-DSP and onnxruntime's MLAS evaluate them as short polynomials or table look-ups (estimate).
_TRANSCENDENTAL = 4
_ELEMENTWISE: dict[str, int] = {
    **dict.fromkeys(
        ["Relu", "LeakyRelu", "PRelu", "Clip", "HardSigmoid", "Abs", "Neg", "Reciprocal", "Add", "Sub", "Mul", "Div",
         "Max", "Min", "Sum", "Mean", "Where", "Cast", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual",
         "Not", "And", "Or", "Floor", "Ceil", "Round", "Sign", "QuantizeLinear", "DequantizeLinear", "QLinearAdd",
         "QLinearMul", "QLinearLeakyRelu", "QLinearSigmoid"],
        1,
    ),
    **dict.fromkeys(
        ["Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Erf", "Gelu", "Elu", "Selu", "Softplus", "Softsign", "Pow",
         "Softmax", "LogSoftmax", "QLinearSoftmax", "InstanceNormalization", "LayerNormalization"],
        _TRANSCENDENTAL,
    ),
    "HardSwish": 2,
    "BatchNormalization": 2,  # y = x * scale' + shift' once folded per channel
    "DynamicQuantizeLinear": 3,  # min/max pass, scale, quantize
}
_WINDOW_POOLS = frozenset({"MaxPool", "AveragePool", "LpPool", "QLinearAveragePool"})
_GLOBAL_POOLS = frozenset(
    {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum",
     "ReduceL2", "ReduceProd", "QLinearGlobalAveragePool", "QLinearReduceMean"}
)
_COPIES = frozenset(
    {"Concat", "QLinearConcat", "Pad", "Transpose", "Slice", "Split", "Gather", "Tile", "Expand", "Resize",
     "Upsample", "DepthToSpace", "SpaceToDepth"}
)
_ALIASES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})
# Operators whose outputs depend only on input shapes, which are static once the input shape is fixed.
_SHAPE_ONLY = frozenset({"Shape", "Size"})
# Non-weight operands that count as parameters when constant (a bias added after MatMul, a per-channel scale).
_PARAM_OPERAND_OPS = frozenset({"Add", "Sub", "Mul", "Div", "PRelu", "Max", "Min", "Where"})
# Activations applied in the output stage of the producing kernel (TFLite fused activations
# RELU / RELU6; onnxruntime FusedConv and Gemm activation fusion).
_FUSABLE_ACTIVATIONS = frozenset({"Relu", "Clip"})
_FUSING_PRODUCERS = frozenset({"Conv", "Gemm", "MatMul"})
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
_NORM_PARAMS = {"BatchNormalization": (1, 2, 3, 4), "InstanceNormalization": (1, 2), "LayerNormalization": (1, 2)}

_DTYPE_NAMES = {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16", TensorProto.INT8: "int8", TensorProto.UINT8: "int8"}


@dataclass
class LayerStats:
    """One operator of the graph: what it computes, what it stores, what it reads and writes."""

    name: str
    op_type: str
    op_class: str
    compute_dtype: str
    weight_dtype: str | None
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]
    weight_shape: list[int] | None = None
    strides: list[int] = field(default_factory=list)
    quantization: str | None = None
    macs: int = 0
    effective_macs: int = 0
    im2col_elements: int = 0
    ops: int = 0
    params: int = 0
    nonzero_params: int = 0
    param_bytes: int = 0
    activation_bytes_in: int = 0
    activation_bytes_out: int = 0
    scratch_bytes: int = 0
    supported: bool = True
    note: str = ""
    reads: list[str] = field(default_factory=list)  # activation buffers read (after aliasing), for liveness
    writes: list[str] = field(default_factory=list)  # buffers this layer allocates (none for free layers)

    def to_dict(self) -> dict:
        """The JSON form (see the module docstring); buffer names are left out."""
        out = asdict(self)
        out.pop("reads")
        out.pop("writes")
        return out


@dataclass
class GraphStats:
    """Every layer of an analysed ONNX model, its activation buffers, and what the analysis could not cost."""

    input_shape: tuple[int, ...]
    layers: list[LayerStats]
    buffer_bytes: dict[str, int]
    graph_inputs: list[str]
    graph_outputs: list[str]
    unsupported: list[str] = field(default_factory=list)
    unshaped: list[str] = field(default_factory=list)

    def _total(self, key: str) -> int:
        return int(sum(getattr(layer, key) for layer in self.layers))

    macs = property(lambda self: self._total("macs"), doc="MACs summed over layers.")
    effective_macs = property(lambda self: self._total("effective_macs"), doc="Effective MACs summed over layers.")
    params = property(lambda self: self._total("params"), doc="Parameters summed over layers.")
    nonzero_params = property(lambda self: self._total("nonzero_params"), doc="Non-zero parameters summed over layers.")
    param_bytes = property(lambda self: self._total("param_bytes"), doc="Stored parameter bytes summed over layers.")

    def to_dict(self) -> dict:
        """JSON-ready dict following the schema in the module docstring."""
        totals = {"layers": len(self.layers)}
        for key in ("macs", "effective_macs", "im2col_elements", "ops", "params", "nonzero_params", "param_bytes"):
            totals[key] = self._total(key)
        return {
            "schema": SCHEMA,
            "input_shape": list(self.input_shape),
            "totals": totals,
            "layers": [layer.to_dict() for layer in self.layers],
            "unsupported": list(self.unsupported),
            **({"unshaped_ops": list(self.unshaped)} if self.unshaped else {}),
        }


def scratch_bytes(op_class: str, channels_per_group: int, kernel: list[int], compute_dtype: str) -> int:
    """Working buffer of a convolution, sized as CMSIS-NN sizes it (0 for every other layer).

    arm_convolve_s8 keeps two im2col columns of ``C_in/groups x prod(kernel)``
    int16 values; arm_depthwise_conv_s8_opt one column of ``C x prod(kernel)``
    int16 values; a 1x1 convolution needs none. Float kernels hold the columns in
    their own precision (4 bytes fp32, 2 bytes fp16) instead of int16.
    """
    taps = math.prod(kernel) if kernel else 1
    element = {"int8": 2, "fp16": 2}.get(compute_dtype, 4)
    if op_class == "conv" and taps > 1:
        return 2 * channels_per_group * taps * element
    if op_class == "depthwise_conv":
        return channels_per_group * taps * element
    return 0


def analyze_onnx(model: onnx.ModelProto | bytes | str | Path, input_shape: tuple[int, ...] | None = None) -> GraphStats:
    """Per-layer MACs, parameters and activation sizes of ``model`` for one input of ``input_shape``."""
    proto = load_onnx(model, copy=True)
    data_input = _fix_input_shape(proto, input_shape)
    shape = tuple(d.dim_value for d in data_input.type.tensor_type.shape.dim)
    del proto.graph.value_info[:]  # stale symbolic shapes from export would shadow the concrete ones
    inferred = _infer_shapes(proto, shape)
    for _ in range(_MAX_FOLD_ROUNDS):
        if not _fold_integer_constants(inferred):
            break
        del inferred.graph.value_info[:]
        inferred = _infer_shapes(inferred, shape)
    return _Analysis(inferred).run(shape)


# Rounds of (fold integer constants, infer shapes): each round can reveal shapes the next one folds.
_MAX_FOLD_ROUNDS = 8
_INTEGER_TYPES = (TensorProto.INT64, TensorProto.INT32, TensorProto.UINT64, TensorProto.BOOL)


def _infer_shapes(proto: onnx.ModelProto, shape: tuple[int, ...]) -> onnx.ModelProto:
    """``proto`` with the shape of every tensor ONNX shape inference can reach, through onnxruntime's contrib operators too."""
    shadow = _with_stand_ins(proto)
    try:
        inferred = onnx.shape_inference.infer_shapes(shadow, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises several types for malformed graphs
        raise ConfigError(f"ONNX shape inference failed for input shape {list(shape)}: {exc}; check --input-shape") from None
    if shadow is proto:
        return inferred
    names = {o for n in proto.graph.node for o in n.output}
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    out.graph.value_info.extend(v for v in inferred.graph.value_info if v.name in names)
    del out.graph.output[:]
    out.graph.output.extend(inferred.graph.output)
    return out


# onnxruntime's com.microsoft quantized operators (QOperator form), which ONNX shape inference does not
# know: op -> (standard operator with the same output shape, its data inputs, the inputs whose element
# type the output has: its zero point, else the (same-typed) input's; () for a float output).
_STAND_INS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    "QLinearAdd": ("Add", (0, 3), (7, 2)),
    "QLinearMul": ("Mul", (0, 3), (7, 2)),
    "QLinearAveragePool": ("AveragePool", (0,), (4, 2)),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", (0,), (4, 2)),
    "QLinearReduceMean": ("ReduceMean", (0,), (4, 2)),
    "QLinearLeakyRelu": ("Identity", (0,), (4, 2)),
    "QLinearSigmoid": ("Identity", (0,), (4, 2)),
    "QLinearSoftmax": ("Identity", (0,), (4, 2)),
    "QGemm": ("Gemm", (0, 3), (8, 2)),  # float output when y_scale (input 7) is absent
    "DynamicQuantizeMatMul": ("MatMul", (0, 1), ()),
    "MatMulIntegerToFloat": ("MatMul", (0, 1), ()),
}
_STAND_IN_ATTRIBUTES = frozenset({"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "count_include_pad", "dilations",
                                  "axes", "keepdims", "transA", "transB", "axis"})
_STAND_IN_PREFIX = "__ecgbench_shape__"


def _with_stand_ins(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` whose contrib quantized operators are standard ones of the same output shape (``proto`` when it has none).

    Data inputs are cast to float and outputs back to the zero point's type, so
    ONNX infers both shape and element type. Only used for shape inference.
    """
    if not any(n.domain == "com.microsoft" and (n.op_type in _STAND_INS or n.op_type == "QLinearConcat") for n in proto.graph.node):
        return proto
    constants = {t.name: t.data_type for t in proto.graph.initializer}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 17)
    shadow = onnx.ModelProto()
    shadow.CopyFrom(proto)
    nodes: list[onnx.NodeProto] = []
    for index, node in enumerate(proto.graph.node):
        stand_in = _stand_in(node, index, constants, opset) if node.domain == "com.microsoft" else None
        nodes.extend(stand_in if stand_in is not None else [node])
    del shadow.graph.node[:]
    shadow.graph.node.extend(nodes)
    return shadow


def _stand_in(node: onnx.NodeProto, index: int, constants: dict[str, int], opset: int) -> list[onnx.NodeProto] | None:
    """Standard nodes computing ``node``'s output shape and type, or None when there is no stand-in (it stays unshaped)."""
    make = onnx.helper.make_node
    prefix = f"{_STAND_IN_PREFIX}{index}_"
    if node.op_type == "QLinearConcat":  # y_scale, y_zero_point, then (x, x_scale, x_zero_point) triples
        return [make("Concat", list(node.input[2::3]), [node.output[0]], axis=attribute(node, "axis", 0))]
    if node.op_type not in _STAND_INS or attribute(node, "channels_last", 0):
        return None
    op, data, typed_like = _STAND_INS[node.op_type]
    given = list(node.input) + [""] * 9  # trailing optional inputs may be left out
    if not all(given[i] for i in data):
        return None
    if not typed_like or (node.op_type == "QGemm" and not given[7]):
        out_type = TensorProto.FLOAT
    else:
        known = [constants[given[i]] for i in typed_like if given[i] in constants]
        if not known:
            return None
        out_type = known[0]
    nodes = [make("Cast", [node.input[i]], [f"{prefix}in{i}"], to=TensorProto.FLOAT) for i in data]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute if a.name in _STAND_IN_ATTRIBUTES}
    inputs = [f"{prefix}in{i}" for i in data]
    if op == "ReduceMean" and opset >= 18 and "axes" in attributes:  # axes became an input in opset 18
        axes = attributes.pop("axes")
        nodes.append(make("Constant", [], [f"{prefix}axes"], value=numpy_helper.from_array(np.array(axes, np.int64))))
        inputs.append(f"{prefix}axes")
    nodes.append(make(op, inputs, [f"{prefix}out"], **attributes))
    nodes.append(make("Cast", [f"{prefix}out"], [node.output[0]], to=out_type))
    return nodes


def _fold_integer_constants(proto: onnx.ModelProto) -> bool:
    """Evaluate integer subgraphs computed from constants and known shapes (the exporter's pads and reshape targets).

    ONNX shape inference cannot see through them, so the outputs of e.g. Pad
    stay unknown. Float constants (weights, their DequantizeLinear) are left
    alone: the analysis reads weights as stored. Returns whether anything was folded.
    """
    graph = proto.graph
    types: dict[str, tuple[int, list[int] | None]] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        types[value.name] = _type_of(value)
    initializers = {t.name: t for t in graph.initializer}
    static = set(initializers) | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    shape_values: dict[str, np.ndarray] = {}
    fold: list[onnx.NodeProto] = []
    for node in graph.node:
        outputs = [o for o in node.output if o]
        inputs = [i for i in node.input if i]
        if node.op_type in _SHAPE_ONLY and inputs and types.get(inputs[0], (0, None))[1] is not None:
            dims = np.array(types[inputs[0]][1], dtype=np.int64)
            if node.op_type == "Size":
                shape_values[outputs[0]] = np.array(int(np.prod(dims)), dtype=np.int64)
            else:
                start, end = attribute(node, "start", 0), attribute(node, "end", None)
                shape_values[outputs[0]] = dims[start:end]
        elif node.op_type != "Constant" and inputs and all(i in static for i in inputs) and all(
            types.get(o, (TensorProto.UNDEFINED, None))[0] in _INTEGER_TYPES for o in outputs
        ):
            fold.append(node)
        else:
            continue
        static.update(outputs)
    if not fold and not shape_values:
        return False
    folded_outputs = {o for n in fold for o in n.output if o} | set(shape_values)
    folded_ids = {id(n) for n in fold} | {id(n) for n in graph.node if n.op_type in _SHAPE_ONLY and n.output[0] in shape_values}
    remaining = [n for n in graph.node if id(n) not in folded_ids]
    needed = sorted({i for n in remaining for i in n.input if i in folded_outputs} | ({o.name for o in graph.output} & folded_outputs))
    values = dict(shape_values)
    to_evaluate = [n for n in needed if n not in values]
    if to_evaluate:
        values.update(_evaluate(proto, fold, shape_values, to_evaluate))
    del graph.node[:]
    graph.node.extend(remaining)
    graph.initializer.extend(numpy_helper.from_array(np.asarray(values[name]), name) for name in needed)
    return True


def _evaluate(proto: onnx.ModelProto, nodes: list[onnx.NodeProto], known: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    """Run the constant subgraph ``nodes`` with onnx's reference evaluator; return ``outputs``."""
    from onnx.reference import ReferenceEvaluator

    constants = [n for n in proto.graph.node if n.op_type == "Constant"]
    feeds_needed = {i for n in nodes for i in n.input if i}
    initializers = [t for t in proto.graph.initializer if t.name in feeds_needed]
    initializers += [numpy_helper.from_array(np.asarray(v), k) for k, v in known.items() if k in feeds_needed]
    sub = onnx.helper.make_graph(
        constants + nodes,
        "fold",
        [],
        [onnx.helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None) for name in outputs],
        initializer=initializers,
    )
    model = onnx.helper.make_model(sub, opset_imports=list(proto.opset_import))
    try:
        results = ReferenceEvaluator(model).run(None, {})
    except Exception as exc:  # noqa: BLE001 - any failure means the graph computes shapes in a way we cannot fold
        raise ConfigError(f"could not evaluate the model's constant shape arithmetic ({exc}); re-export it with constant folding") from None
    return dict(zip(outputs, results))


def _fix_input_shape(proto: onnx.ModelProto, input_shape: tuple[int, ...] | None) -> onnx.ValueInfoProto:
    """Set the data input's dimensions from ``input_shape``; error when a dynamic one is left unset."""
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if not inputs:
        raise ConfigError("the ONNX model has no input; export it with an input tensor")
    for position, value in enumerate(inputs):
        dims = value.type.tensor_type.shape.dim
        given = input_shape if position == 0 else None
        if given is not None:
            if len(given) != len(dims):
                raise ConfigError(
                    f"input '{value.name}' has {len(dims)} dimensions but the input shape {list(given)} has {len(given)}; "
                    f"pass --input-shape with {len(dims)} comma-separated sizes"
                )
            for axis, (dim, size) in enumerate(zip(dims, given)):
                if int(size) < 1:
                    raise ConfigError(f"input shape {list(given)}: dimension {axis} must be >= 1")
                if dim.HasField("dim_value") and dim.dim_value != int(size):
                    raise ConfigError(
                        f"input '{value.name}' has a fixed size {dim.dim_value} on axis {axis}, but the input shape says {size}; "
                        "pass a shape that matches the model"
                    )
                dim.dim_value = int(size)
        dynamic = [axis for axis, dim in enumerate(dims) if not dim.HasField("dim_value") or dim.dim_value < 1]
        if dynamic:
            labels = [d.dim_param or "?" if not d.HasField("dim_value") else str(d.dim_value) for d in dims]
            example = input_shape_hint(dims)
            raise ConfigError(
                f"input '{value.name}' has dynamic dimensions [{', '.join(labels)}]; pass the shape of one inference, "
                f"{len(dims)} sizes, e.g. --input-shape {example} (input_shape=({example.replace(',', ', ')}))"
            )
    return inputs[0]


def input_shape_hint(dims) -> str:
    """An --input-shape example with the input's rank: fixed sizes kept, a dynamic batch axis 1, other dynamic axes named.

    An [N, C, L] signal input with a dynamic length gets 3000 (10 s at 300 Hz):
    [batch, 1, samples] -> '1,1,3000'; [batch, 640] -> '1,640'; [batch, 3, h, w] -> '1,3,H,W'.
    """
    parts = []
    for axis, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value >= 1:
            parts.append(str(dim.dim_value))
        elif axis == 0:
            parts.append("1")
        elif len(dims) == 3 and axis == 2:
            parts.append("3000")
        else:
            parts.append((dim.dim_param or f"D{axis}").upper())
    return ",".join(parts)


class _Analysis:
    """One pass over a shape-inferred graph; builds the LayerStats list."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.model = OnnxModel(proto)
        self.graph = proto.graph
        self.initializers = self.model.initializers
        self.constants = self.model.constants
        self.types: dict[str, tuple[int, list[int] | None]] = {}
        for value in list(self.graph.input) + list(self.graph.value_info) + list(self.graph.output):
            self.types[value.name] = _type_of(value)
        for name, tensor in self.constants.items():
            self.types[name] = (tensor.data_type, list(tensor.dims))
        self.nodes, self.producer, self.consumers = self.model.nodes, self.model.producer, self.model.consumers
        self.graph_output_names = {o.name for o in self.graph.output}
        self.static = self._static_tensors()
        self.claimed: set[str] = set()

    # --- classification ---------------------------------------------------------------

    def _static_tensors(self) -> set[str]:
        """Tensors known before inference: initializers, constants, and whatever is computed only from them."""
        static = set(self.constants)
        for node in self.nodes:
            inputs = [n for n in node.input if n]
            if node.op_type in _SHAPE_ONLY or node.op_type == "Constant" or (inputs and all(n in static for n in inputs)):
                static.update(n for n in node.output if n)
        return static

    def _is_activation_dq(self, node: onnx.NodeProto) -> bool:
        return node.op_type == "DequantizeLinear" and node.input[0] not in self.static

    def _qdq_int8(self) -> set[int]:
        """Nodes that onnxruntime / TFLite Micro run in int8 because QDQ pairs surround them."""
        out = set()
        for index, node in enumerate(self.nodes):
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") or self._is_static_node(node):
                continue
            data = [n for n in node.input if n and n not in self.static]
            if not data or not all(n in self.producer and self._is_activation_dq(self.nodes[self.producer[n]]) for n in data):
                continue
            if any(self._raw_float_constant(n) for n in node.input if n in self.static):
                continue
            outputs = [n for n in node.output if n]
            if all(
                n not in self.graph_output_names
                and self.consumers.get(n)
                and all(self.nodes[c].op_type == "QuantizeLinear" for c in self.consumers[n])
                for n in outputs
            ):
                out.add(index)
        return out

    def _raw_float_constant(self, name: str) -> bool:
        """A float constant that no DequantizeLinear produces (an unquantized weight or bias)."""
        traced = self.model.trace(name)
        return traced is not None and traced[1] is None and self.constants[traced[0]].data_type in _FLOAT_TYPES

    def _is_static_node(self, node: onnx.NodeProto) -> bool:
        outputs = [n for n in node.output if n]
        return bool(outputs) and all(n in self.static for n in outputs)

    # --- constants ------------------------------------------------------------------------

    def _param_stats(self, operands: Iterable[WeightQuant | None]) -> tuple[int, int, int, str | None, list[int] | None]:
        """(params, non-zero params, stored bytes, dtype of the first, shape of the first) of constant operands.

        Each stored tensor counts once per graph; None (an operand that is no constant) counts nothing.
        """
        params = nonzero = stored = 0
        first_dtype, first_shape = None, None
        for quant in operands:
            if quant is None:
                continue
            tensor = self.constants[quant.stored]
            if tensor.data_type in _SHAPE_TYPES:
                continue
            values = self.model.array(quant.stored)
            if first_dtype is None:
                first_dtype = _DTYPE_NAMES.get(tensor.data_type, TensorProto.DataType.Name(tensor.data_type).lower())
                first_shape = list(values.shape)
            if quant.stored in self.claimed:
                continue
            self.claimed.add(quant.stored)
            params += int(values.size)
            nonzero += self.model.nonzero(quant)
            stored += int(values.size) * ELEMENT_BYTES.get(tensor.data_type, 4)
        return params, nonzero, stored, first_dtype, first_shape

    # --- shapes and buffers -----------------------------------------------------------------

    def _shape(self, name: str) -> list[int] | None:
        entry = self.types.get(name)
        return entry[1] if entry else None

    def _elements(self, name: str) -> int:
        shape = self._shape(name)
        return math.prod(shape) if shape is not None else 0

    def run(self, input_shape: tuple[int, ...]) -> GraphStats:
        int8_nodes = self._qdq_int8()
        alias: dict[str, str] = {}
        buffer_bytes: dict[str, int] = {}
        graph_inputs = [i.name for i in self.graph.input if i.name not in self.initializers]
        for name in graph_inputs:
            alias[name] = name
            buffer_bytes[name] = self._elements(name) * ELEMENT_BYTES.get(self.types[name][0], 4)
        layers: list[LayerStats] = []
        unsupported: list[str] = []
        unshaped: list[str] = []
        for index, node in enumerate(self.nodes):
            if self._is_static_node(node):
                continue  # folded at conversion time (constants, shape arithmetic, weight dequantization)
            name = node.name or f"{node.op_type}_{index}"
            data_inputs = [n for n in node.input if n and n not in self.static]
            outputs = [n for n in node.output if n]
            note = self._fill_unknown_shapes(node, data_inputs, outputs)
            folded = self._folds_away(node, index, int8_nodes)
            layer = self._describe(node, name, data_inputs, outputs, index in int8_nodes, folded)
            if note:
                layer.note = "; ".join(filter(None, [layer.note, note]))
                unshaped.append(f"{node.op_type} ({name})")
            if not layer.supported:
                unsupported.append(f"{node.op_type} ({name})")
            layer.reads = list(dict.fromkeys(alias.get(n, n) for n in data_inputs))
            if layer.op_class == "free" and data_inputs:
                for out in outputs:
                    alias[out] = alias.get(data_inputs[0], data_inputs[0])
            else:
                int8_out = index in int8_nodes
                for out in outputs:
                    alias[out] = out
                    element = 1 if int8_out else ELEMENT_BYTES.get(self.types.get(out, (TensorProto.FLOAT, None))[0], 4)
                    buffer_bytes[out] = self._elements(out) * element
                layer.writes = list(outputs)
            layer.activation_bytes_in = sum(buffer_bytes.get(b, 0) for b in layer.reads)
            layer.activation_bytes_out = sum(buffer_bytes.get(alias.get(o, o), 0) for o in outputs)
            layers.append(layer)
        graph_outputs = list(dict.fromkeys(alias.get(o.name, o.name) for o in self.graph.output))
        if unshaped:
            _log.warning("output shapes unknown, assumed equal to the input's (MACs may be wrong): %s", ", ".join(unshaped))
        return GraphStats(tuple(int(d) for d in input_shape), layers, buffer_bytes, graph_inputs, graph_outputs, unsupported, unshaped)

    def _fill_unknown_shapes(self, node: onnx.NodeProto, data_inputs: list[str], outputs: list[str]) -> str:
        """Shape inference left an output unknown (custom operator): assume the first input's shape, and say so."""
        missing = [o for o in outputs if self._shape(o) is None]
        if not missing:
            return ""
        if node.op_type in _MATMUL_OPS and len(missing) == 1:
            shape = self._matmul_output_shape(node)
            if shape is not None:
                self.types[missing[0]] = (self.types.get(missing[0], (TensorProto.FLOAT, None))[0] or TensorProto.FLOAT, shape)
                return ""
        source = next((n for n in data_inputs if self._shape(n) is not None), None)
        for out in missing:
            if source is not None:
                self.types[out] = (self.types[source][0], list(self._shape(source)))
            else:
                self.types[out] = (TensorProto.FLOAT, [])
        return "output shape unknown to ONNX shape inference: assumed equal to the input's"

    def _matmul_output_shape(self, node: onnx.NodeProto) -> list[int] | None:
        """[..., M, N] of a matrix product whose operator ONNX cannot infer (com.microsoft QGemm)."""
        b_index = _MATMUL_OPS[node.op_type][0][0]
        a_shape = self._shape(node.input[0])
        b_shape = self._shape(node.input[b_index]) if len(node.input) > b_index else None
        if not a_shape or not b_shape:
            return None
        if node.op_type in ("Gemm", "QGemm"):
            m = a_shape[1] if attribute(node, "transA", 0) else a_shape[0]
            n = b_shape[0] if attribute(node, "transB", 0) else b_shape[1]
            return [m, n]
        return list(a_shape[:-1]) + [b_shape[-1]]

    def _folds_away(self, node: onnx.NodeProto, index: int, int8_nodes: set[int]) -> str:
        """Why this node fuses into a neighbour ("" when it does not): QDQ pairs, activations after conv/fc."""
        if node.op_type in _FUSABLE_ACTIVATIONS and node.input[0] in self.producer:
            producer = self.nodes[self.producer[node.input[0]]]
            sole_reader = self.consumers.get(node.input[0], []) == [index] and node.input[0] not in self.graph_output_names
            if producer.op_type in _FUSING_PRODUCERS and sole_reader and self.producer[node.input[0]] not in int8_nodes:
                return f"applied in the output stage of {producer.op_type} '{producer.name}' (activation fusion)"
            return ""
        reason = "fused into the neighbouring int8 operator (QDQ)"
        if node.op_type == "QuantizeLinear":
            source = node.input[0]
            return reason if source in self.producer and self.producer[source] in int8_nodes else ""
        if self._is_activation_dq(node):
            users = self.consumers.get(node.output[0], [])
            fused = bool(users) and all(u in int8_nodes for u in users) and node.output[0] not in self.graph_output_names
            return reason if fused else ""
        return ""

    # --- per-operator rules ------------------------------------------------------------------

    def _describe(
        self, node: onnx.NodeProto, name: str, data_inputs: list[str], outputs: list[str], qdq_int8: bool, folded: str
    ) -> LayerStats:
        op = node.op_type
        compute = self._compute_dtype(node, data_inputs, qdq_int8)
        in_shapes = [list(self._shape(n) or []) for n in data_inputs]
        out_shapes = [list(self._shape(n) or []) for n in outputs]
        layer = LayerStats(name, op, "other", compute, None, in_shapes, out_shapes)
        out_elems = self._elements(outputs[0]) if outputs else 0
        if folded:
            layer.op_class = "free"
            layer.note = folded
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                layer.compute_dtype = "int8"
        elif op in _CONV_OPS:
            self._conv(node, layer, data_inputs, out_elems)
        elif op in _MATMUL_OPS:
            self._matmul(node, layer, data_inputs, out_elems)
        elif op in _ALIASES:
            layer.op_class = "free"
        elif op in _WINDOW_POOLS:
            layer.op_class = "pool"
            layer.ops = out_elems * math.prod(attribute(node, "kernel_shape", [1]))
        elif op in _GLOBAL_POOLS:
            layer.op_class = "pool"
            layer.ops = self._elements(data_inputs[0]) if data_inputs else 0
        elif op in _COPIES:
            layer.op_class = "copy"
            layer.ops = sum(self._elements(o) for o in outputs)
        elif op in _ELEMENTWISE:
            layer.op_class = "elementwise"
            layer.ops = out_elems * _ELEMENTWISE[op]
            positions = _NORM_PARAMS.get(op, ())
            if op in _PARAM_OPERAND_OPS:
                positions = [i for i, n in enumerate(node.input) if n in self.static and self._elements(n) > 1]
            if positions:
                layer.params, layer.nonzero_params, layer.param_bytes, layer.weight_dtype, _ = self._param_stats(
                    self.model.operand_quant(node, i) for i in positions
                )
        else:
            layer.supported = False
            layer.ops = out_elems
            layer.note = f"unsupported operator {node.domain + '.' if node.domain else ''}{op}: counted as one element-wise operation per output element"
        if layer.op_class not in ("conv", "depthwise_conv", "fc"):
            layer.effective_macs = layer.macs
        if layer.compute_dtype == "int8" and layer.op_class != "free":
            layer.quantization = "dynamic" if op in _DYNAMIC_INT8 else "static"
        return layer

    def _compute_dtype(self, node: onnx.NodeProto, data_inputs: list[str], qdq_int8: bool) -> str:
        if qdq_int8 or node.op_type in _INT8_NATIVE:
            return "int8"
        elem = self.types.get(data_inputs[0], (TensorProto.FLOAT, None))[0] if data_inputs else TensorProto.FLOAT
        return {TensorProto.FLOAT16: "fp16", TensorProto.INT8: "int8", TensorProto.UINT8: "int8"}.get(elem, "fp32")

    def _conv(self, node: onnx.NodeProto, layer: LayerStats, data_inputs: list[str], out_elems: int) -> None:
        w_index, b_index = _CONV_OPS[node.op_type]
        weight = node.input[w_index] if len(node.input) > w_index else ""
        w_shape = self._shape(weight) if weight else None
        groups = attribute(node, "group", 1)
        c_in = (self._shape(data_inputs[0]) or [0, 0])[1] if data_inputs else 0
        depthwise = node.op_type != "ConvTranspose" and groups > 1 and groups == c_in
        layer.op_class = "depthwise_conv" if depthwise else "conv"
        if w_shape is None:
            layer.note = "weight shape unknown: MACs not counted"
            return
        per_output = math.prod(w_shape[1:])  # (C_in / groups) x prod(kernel), or (C_out / groups) x prod(kernel) transposed
        if node.op_type == "ConvTranspose":
            layer.macs = (self._elements(data_inputs[0]) if data_inputs else 0) * per_output
        else:
            layer.macs = out_elems * per_output
        bias = self.model.operand_quant(node, b_index) if b_index is not None else None
        self._weights(layer, self.model.operand_quant(node, w_index), bias)
        kernel = list(w_shape[2:])
        layer.strides = [int(v) for v in attribute(node, "strides", [1] * len(kernel))]
        channels = w_shape[1] if not depthwise else c_in
        layer.scratch_bytes = scratch_bytes(layer.op_class, channels, kernel, layer.compute_dtype)
        if layer.op_class == "conv" and math.prod(kernel) > 1 and node.op_type != "ConvTranspose":
            layer.im2col_elements = out_elems * per_output // max(w_shape[0] // groups, 1) if w_shape[0] else 0

    def _matmul(self, node: onnx.NodeProto, layer: LayerStats, data_inputs: list[str], out_elems: int) -> None:
        candidates, b_index = _MATMUL_OPS[node.op_type]
        layer.op_class = "fc"
        a_index = 0
        a_shape = self._shape(node.input[a_index]) or []
        if node.op_type == "Gemm":
            k = a_shape[0] if attribute(node, "transA", 0) else (a_shape[1] if len(a_shape) > 1 else 0)
        else:
            k = a_shape[-1] if a_shape else 0
        layer.macs = out_elems * k
        w_position = next((i for i in candidates if len(node.input) > i and node.input[i] in self.static), None)
        if w_position is None:
            return  # a product of two activations: MACs, no parameters
        bias = self.model.operand_quant(node, b_index) if b_index is not None and len(node.input) > b_index and node.input[b_index] in self.static else None
        self._weights(layer, self.model.operand_quant(node, w_position), bias)

    def _weights(self, layer: LayerStats, weight: WeightQuant | None, bias: WeightQuant | None) -> None:
        """Parameters of a conv/fc layer, and its effective MACs from the weight tensor's non-zero fraction."""
        layer.params, layer.nonzero_params, layer.param_bytes, layer.weight_dtype, layer.weight_shape = self._param_stats([weight, bias])
        layer.effective_macs = layer.macs
        if weight is None:
            return
        size = int(self.model.array(weight.stored).size)
        if size:
            # Each weight is used macs / size times, an integer for Conv and Gemm, so this is exact.
            layer.effective_macs = layer.macs * self.model.nonzero(weight) // size


def _type_of(value: onnx.ValueInfoProto) -> tuple[int, list[int] | None]:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return tensor_type.elem_type, None
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
    if any(d < 0 for d in dims):
        return tensor_type.elem_type, None
    return tensor_type.elem_type, dims
