"""Flash bytes: the bytes of a form of the model that a device's runtime executes in place from flash.

:func:`ecgbench.measure.sizing.size_report`'s ``storage_bytes`` is the smallest
lossless file (often ``sparse_zstd``): what an over-the-air update sends. A
microcontroller cannot run it; it would first have to decompress it into RAM.
:func:`flash_figure` counts instead the weights as a runtime such as TFLite
Micro with CMSIS-NN kernels reads them from flash, per parameter tensor (the
initializers :func:`ecgbench.measure.sizing.parameter_arrays` counts):

- **float** (fp32, fp16, bf16, fp64): dense fp32, 4 bytes per element. A model
  whose weights are float runs float kernels, which read fp32 weights; a
  narrower stored float would have to be widened into RAM first
  (microcontroller runtimes have no fp16 kernels).
- **int8 / uint8**: dense int8, 1 byte per element, as CMSIS-NN's
  ``arm_convolve_s8`` and ``arm_fully_connected_s8`` read them; other integer
  tensors at their own width (**int32** biases: 4 bytes per element).
- **quantization parameters** of every integer tensor: one fp32 scale and one
  int64 zero point per channel (12 bytes; TFLite's ``QuantizationParameters``
  hold ``scale: [float]`` and ``zero_point: [long]``). Channels are the size of
  the tensor's scale in the ONNX graph (its zero point's where it has no scale);
  an int32 bias whose scale is implicit (QLinearConv, QGemm: input scale x
  weight scale) has one per element, i.e. per output channel.
- **sparse int8 layouts**, only for the layouts a profile lists in
  ``sparse_layouts`` (it has kernels that run them), and only for int8
  weights of convolutions and matrix products. With ``rows`` output channels
  (the per-channel quantization axis, else the reading operator's output axis),
  ``cols`` = elements / rows, ``k`` non-zero weights (the stored value differs
  from its zero point) and ``b`` blocks of 4 consecutive weights along a row
  holding a non-zero one::

      csr_int8      (rows + 1) x p + k x (i + 1)   row pointers, column indices, values
      bsr_1x4_int8  (rows + 1) x p + b x (i + 4)   row pointers, block column indices, 4 values per block

  ``p`` and ``i`` are the bytes of the narrowest unsigned integer (8, 16 or 32
  bits) holding the non-zero (block) count and the largest (block) column
  index. Each tensor takes the smallest of dense int8 and the declared
  layouts (dense on ties); its quantization parameters stay as they are.

The model is costed in the form it is stored in: an fp32 model as dense fp32
(a runtime running an fp32 graph stores fp32 weights), an int8 QDQ or
QOperator model as int8. Compressed files (zlib, zstd) never count as flash.

Not counted (no constant overhead is modelled): the model's graph description
(a TFLite flatbuffer's tensor and operator tables and per-activation scales,
typically a few kB), integer shape constants, and the runtime's own code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from ecgbench.measure.onnx_model import ELEMENT_BYTES, OnnxModel, WEIGHT_INPUTS, attribute
from ecgbench.measure.sizing import parameter_arrays

FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE})
INT8_TYPES = frozenset({TensorProto.INT8, TensorProto.UINT8})
FLOAT_WEIGHT_BYTES = 4
QUANT_PARAM_BYTES = 4 + 8
"""Bytes per channel of a quantized tensor's parameters: an fp32 scale and an int64 zero point (TFLite)."""

BLOCK_WIDTH: dict[str, int] = {"csr_int8": 1, "bsr_1x4_int8": 4}
"""Weights per block of each sparse layout of :data:`ecgbench.kinds.device.SPARSE_LAYOUTS` (a block is stored whole when any of its weights is non-zero)."""

# The weight operand of each convolution / matrix operator, and the stored weight's output axis
# (None: Gemm's, 0 with transB, else -1).
MAC_WEIGHTS: dict[str, tuple[int, int | None]] = {
    "Conv": (1, 0),
    "ConvInteger": (1, 0),
    "QLinearConv": (3, 0),
    "MatMul": (1, -1),
    "MatMulInteger": (1, -1),
    "QLinearMatMul": (3, -1),
    "DynamicQuantizeMatMul": (1, -1),
    "Gemm": (1, None),
    "QGemm": (3, None),
}
# int32 bias inputs whose scale the operator implies (input scale x weight scale).
IMPLICIT_BIAS_SCALE: dict[str, int] = {"QLinearConv": 8, "QGemm": 6}


@dataclass(frozen=True)
class TensorFlash:
    """One parameter tensor as the runtime stores it: ``layout`` ('fp32', 'int8', 'int32', a sparse layout, ...)."""

    name: str
    layout: str
    elements: int
    value_bytes: int
    index_bytes: int = 0
    quant_bytes: int = 0

    @property
    def bytes(self) -> int:
        return self.value_bytes + self.index_bytes + self.quant_bytes


@dataclass(frozen=True)
class FlashFigure:
    """Flash bytes of a model on one runtime: ``format`` ('fp32', 'int8', 'csr_int8', 'int8+fp32', ...)."""

    bytes: int
    format: str
    runtime: str
    tensors: tuple[TensorFlash, ...] = field(default=(), repr=False)


def flash_figure(
    model: bytes | str | Path | onnx.ModelProto | OnnxModel, sparse_layouts=(), runtime: str = ""
) -> FlashFigure:
    """The bytes ``runtime`` reads from flash to run ``model``, using the sparse ``layouts`` it has kernels for (module docstring)."""
    unknown = [layout for layout in sparse_layouts if layout not in BLOCK_WIDTH]
    if unknown:
        raise ValueError(f"unknown sparse layout(s) {unknown}; known: {', '.join(BLOCK_WIDTH)}")
    model = model if isinstance(model, OnnxModel) else OnnxModel(model)
    channels = _quant_channels(model)
    weights = _mac_weight_axes(model)
    tensors = []
    for name, values in parameter_arrays(model).items():
        dtype = model.initializers[name].data_type
        n = int(values.size)
        if dtype in FLOAT_TYPES:
            tensors.append(TensorFlash(name, "fp32", n, n * FLOAT_WEIGHT_BYTES))
            continue
        quant = channels.get(name, 0) * QUANT_PARAM_BYTES
        dense = TensorFlash(name, _type_name(dtype), n, n * ELEMENT_BYTES.get(dtype, values.itemsize), 0, quant)
        candidates = [dense]
        if dtype in INT8_TYPES and name in weights and values.ndim >= 2:
            mask = _nonzero_mask(model, name, values)
            rows_first = np.moveaxis(mask, weights[name] % values.ndim, 0).reshape(values.shape[weights[name] % values.ndim], -1)
            for layout in sparse_layouts:
                index, value = sparse_bytes(rows_first, BLOCK_WIDTH[layout])
                candidates.append(TensorFlash(name, layout, n, value, index, quant))
        tensors.append(min(candidates, key=lambda t: t.bytes))  # first (dense) wins ties
    return FlashFigure(sum(t.bytes for t in tensors), _format(tensors), runtime, tuple(tensors))


def sparse_bytes(mask: np.ndarray, block: int) -> tuple[int, int]:
    """``(index bytes, value bytes)`` of a [rows, cols] non-zero ``mask`` in block-CSR with 1 x ``block`` blocks (1: CSR)."""
    rows, cols = mask.shape
    block_cols = -(-cols // block)
    padded = np.zeros((rows, block_cols * block), dtype=bool)
    padded[:, :cols] = mask
    blocks = int(padded.reshape(rows, block_cols, block).any(axis=2).sum())
    pointer, index = _uint_bytes(blocks), _uint_bytes(max(block_cols - 1, 0))
    return (rows + 1) * pointer + blocks * index, blocks * block


def _uint_bytes(max_value: int) -> int:
    """Bytes of the narrowest unsigned integer (8, 16 or 32 bits) holding ``max_value``."""
    return 1 if max_value <= 0xFF else 2 if max_value <= 0xFFFF else 4


def _type_name(dtype: int) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(dtype).name.replace("uint8", "int8")


def _format(tensors: list[TensorFlash]) -> str:
    """The model's form: its integer layouts (sparse ones by name), then 'fp32' if any float tensor is left."""
    integer = [t for t in tensors if t.layout != "fp32" and t.layout != "int32"]
    layouts = list(dict.fromkeys(t.layout for t in integer if t.layout in BLOCK_WIDTH))
    if not layouts and integer:
        layouts = ["int8"] if any(t.layout == "int8" for t in integer) else list(dict.fromkeys(t.layout for t in integer))
    if any(t.layout == "fp32" for t in tensors) or not layouts:
        layouts.append("fp32")
    return "+".join(layouts)


def _nonzero_mask(model: OnnxModel, name: str, values: np.ndarray) -> np.ndarray:
    """Where the stored value differs from its zero point (per tensor or per channel)."""
    quant = model.weight_quant.get(name)
    if quant is None or quant.zero_point not in model.constants:
        return values != 0
    zero_point = model.array(quant.zero_point)
    if zero_point.size <= 1:
        return values != zero_point.reshape(())
    shape = [1] * values.ndim
    shape[quant.axis % values.ndim] = zero_point.size
    return values != zero_point.reshape(shape)


def _quant_channels(model: OnnxModel) -> dict[str, int]:
    """Stored integer tensor -> its quantization channels (size of its scale, else of its zero point)."""
    out: dict[str, int] = {}
    for node in model.nodes:
        for position in WEIGHT_INPUTS.get(node.op_type, {}):
            quant = model.operand_quant(node, position)
            if quant is None:
                continue
            for param in (quant.scale, quant.zero_point):
                if param in model.constants:
                    out[quant.stored] = max(out.get(quant.stored, 0), int(model.array(param).size))
                    break
        bias_at = IMPLICIT_BIAS_SCALE.get(node.op_type)
        if bias_at is not None and len(node.input) > bias_at and node.input[bias_at]:
            traced = model.trace(node.input[bias_at])
            if traced is not None:
                out.setdefault(traced[0], int(model.array(traced[0]).size))
    return out


def _mac_weight_axes(model: OnnxModel) -> dict[str, int]:
    """Stored weight of a convolution or matrix product -> its output-channel axis.

    The per-channel quantization axis where there is one, else the reading
    operator's output axis (Conv: 0; MatMul: -1; Gemm: 0 with transB, else -1).
    """
    out: dict[str, int] = {}
    for node in model.nodes:
        spec = MAC_WEIGHTS.get(node.op_type)
        if spec is None or len(node.input) <= spec[0] or not node.input[spec[0]]:
            continue
        traced = model.trace(node.input[spec[0]])
        if traced is None:
            continue
        axis = spec[1] if spec[1] is not None else (0 if attribute(node, "transB", 0) else -1)
        quant = model.weight_quant.get(traced[0])
        if quant is not None and quant.scale in model.constants and model.array(quant.scale).size > 1:
            axis = quant.axis
        out[traced[0]] = axis
    return out
