"""Export PyTorch models to integer LiteRT (TFLite) flatbuffers (int8 weights), the format TFLite Micro runs.

Three steps, all by Google's maintained packages (the optional extra
``tflite``: ``pip install 'ecgbench-harness[tflite]'``):

1. ``litert-torch`` converts the model (BatchNorm folded, :func:`fold_batchnorm`), at one
   fixed input length, to a float flatbuffer;
2. ``ai-edge-quantizer`` quantizes it to integers (:func:`quantization_recipe`: per-channel int8
   weights, int32 biases, int8 input and activations, or int16 with ``activation_bits=16``),
   with ranges from real records (:func:`calibrate_ranges`); the classifier's logits stay
   int16 (:func:`int16_logits`);
3. :func:`strip_names` drops tensor names, which firmware does not read;
4. :func:`c_array_files` writes the flatbuffer as an aligned C array for firmware.

:func:`tflite_logits` runs a flatbuffer in the LiteRT interpreter (``ai-edge-litert``).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

from ecgbench.errors import ConfigError

EXTRA_HINT = f"install the optional extra beside the torch you have: pip install -e '.[tflite]' torch=={torch.__version__.split('+')[0]}"
# Each activation's int8 range: this percentile over calibration records of each record's maximum (and
# 100 minus it of the minima). 100 is the global min/max; chosen on CinC 2017 validation records (see
# calibrate_ranges), never on test records.
CALIBRATION_PERCENTILE = 95.0
# With int16 activations a step is 1/65535 of the range: the global min/max costs no resolution, while a
# percentile clips the records beyond it (on a CinC 2017 hannun34, 97.6% same class as ONNX at 95, see README).
CALIBRATION_PERCENTILE_INT16 = 100.0
# A BatchNorm channel whose running variance is below its eps times this saw a constant input in training.
CONSTANT_VARIANCE_RATIO = 1e-5
ACTIVATION_BITS = (8, 16)  # 16: TFLite's "16x8" scheme (int8 weights, int16 activations), twice the activation RAM
ARRAY_ALIGNMENT = 16  # bytes; TFLite Micro reads the flatbuffer in place and needs it 16-byte aligned
# Builtin operators TFLite Micro has int8 kernels for (tflite::MicroMutableOpResolver's Add* methods);
# the others this exporter could meet are named in the summary, since firmware could not run them.
TFLITE_MICRO_INT8_OPS = frozenset(
    "ADD AVERAGE_POOL_2D BATCH_MATMUL CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEQUANTIZE EXPAND_DIMS "
    "FULLY_CONNECTED GATHER HARD_SWISH LEAKY_RELU LOGISTIC MAX_POOL_2D MEAN MUL PACK PAD PADV2 QUANTIZE "
    "REDUCE_MAX RELU RELU6 RESHAPE SHAPE SOFTMAX SPLIT SPLIT_V SQUEEZE STRIDED_SLICE SUB SUM TANH "
    "TRANSPOSE TRANSPOSE_CONV UNPACK".split()
)

# Of those, the operators whose TFLite Micro reference kernels take int16 activations (16x8: int8 weights;
# conv, depthwise and fully connected with int64 bias), read from tensorflow/tflite-micro's
# tensorflow/lite/micro/kernels (``case kTfLiteInt16``); RESHAPE copies bytes of any type. Operators
# the 16x8 exporter could meet beyond these are named, as not known to run in int16.
TFLITE_MICRO_INT16_OPS = frozenset(
    "ADD CONV_2D DEPTHWISE_CONV_2D FULLY_CONNECTED MAX_POOL_2D MEAN MUL PAD RESHAPE TRANSPOSE".split()
)


def default_percentile(activation_bits: int) -> float:
    """The calibration percentile of ``activation_bits``-bit activations (chosen on validation records)."""
    return CALIBRATION_PERCENTILE_INT16 if activation_bits == 16 else CALIBRATION_PERCENTILE


def require_tflite() -> None:
    """Raise a ConfigError naming the extra when the converter packages are not installed."""
    import importlib.util

    missing = [name for name in ("litert_torch", "ai_edge_quantizer", "ai_edge_litert") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"--format tflite needs the packages {', '.join(missing)} (not installed); {EXTRA_HINT}")


def to_tflite_int8(
    model: torch.nn.Module,
    samples: int,
    calibration: Iterable[np.ndarray],
    percentile: float | None = None,
    activation_bits: int = 8,
) -> bytes:
    """An integer LiteRT flatbuffer of ``model`` (``[1, 1, samples]`` -> int16 logits), calibrated on ``calibration``.

    ``calibration``: float32 inputs of shape ``[1, 1, samples]``, preprocessed as in training;
    ``percentile``: see :func:`calibrate_ranges` (None: :func:`default_percentile`); ``activation_bits``: 8 (int8 throughout but the
    logits) or 16 (TFLite's 16x8: int16 activations, input and logits, int8 weights).
    """
    require_tflite()
    percentile = default_percentile(activation_bits) if percentile is None else percentile
    if not 50 < percentile <= 100:
        raise ConfigError(f"calibration percentile {percentile:g}: give a number above 50 and at most 100 (100: global min/max)")
    if activation_bits not in ACTIVATION_BITS:
        raise ConfigError(f"--activations int{activation_bits}: choose int8 or int16")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import litert_torch
    from ai_edge_quantizer import quantizer, recipe

    model = fold_batchnorm(model.to("cpu").eval())
    example = torch.zeros(1, 1, samples)
    float_model = litert_torch.convert(model, (example,)).model_content()
    (signature,) = _signatures(float_model)
    input_name = signature["inputs"][0]
    batches = [{input_name: np.asarray(x, dtype=np.float32).reshape(1, 1, samples)} for x in calibration]
    if not batches:
        raise ConfigError("int8 calibration needs at least one record; the calibration split is empty")
    ranges = calibrate_ranges(bytes(float_model), recipe.static_wi8_ai8(), {signature["key"]: batches}, percentile)
    q = quantizer.Quantizer(bytes(float_model), quantization_recipe(activation_bits))
    return strip_names(int16_logits(bytes(q.quantize(ranges, enable_progress_report=False).quantized_model)))


def quantization_recipe(activation_bits: int = 8):
    """ai-edge-quantizer's static recipe (per-channel int8 weights, ``activation_bits`` activations), with every
    FULLY_CONNECTED (here: the classifier head) in 16x8, so that its logits come out in int16.

    At int8, a logit step is about 1/255 of the logits' range: on short-trained CinC 2017 DS-CNNs
    0.7-1.4% of validation records had two tied top logits and took the first class; in int16 none do.
    """
    from ai_edge_quantizer import qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    ops = qtyping.TFLOperationName
    manager.add_static_config(regex=".*", operation_name=ops.ALL_SUPPORTED, activation_num_bits=activation_bits, weight_num_bits=8)
    manager.add_static_config(regex=".*", operation_name=ops.FULLY_CONNECTED, activation_num_bits=16, weight_num_bits=8)
    return manager.get_quantization_recipe()


def int16_logits(model_bytes: bytes) -> bytes:
    """The flatbuffer without the QUANTIZE op the quantizer puts after an int16 graph output to make it int8
    (it keeps the model's outputs in the input's type): the int16 logits become the output."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(model_bytes)
    graph = model.subgraphs[0]
    outputs = list(graph.outputs)
    for index, op in enumerate(graph.operators):
        code = flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
        source = graph.tensors[op.inputs[0]]
        if code == flatbuffer_utils.BuiltinOperator.QUANTIZE and op.outputs[0] in outputs and source.type == flatbuffer_utils.TensorType.INT16:
            outputs[outputs.index(op.outputs[0])] = op.inputs[0]
            del graph.operators[index]
            break
    graph.outputs = outputs
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def calibrate_ranges(float_model: bytes, quant_recipe, data: dict, percentile: float = CALIBRATION_PERCENTILE) -> dict:
    """Each tensor's range from its per-record minima and maxima (:func:`percentile_ranges`).

    At 100, the global minimum and maximum, as TensorFlow's converter and
    onnxruntime's MinMax calibrator do. Below, a record whose activations
    reach far beyond the others' no longer widens the int8 step of every
    record. On a CinC 2017 DS-CNN's validation records (30 s, all training
    records calibrating), the share classified as the float model does:
    97.7% at 100, 98.4% at 98, 98.8% at 95, 98.5% at 90; the quantizer's
    own default, a moving average weighted to the last ~20 records, did worse than 100.
    """
    from ai_edge_quantizer import calibrator, recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(quant_recipe)
    calib = calibrator.Calibrator(float_model, num_threads=1, qsv_update_func=_collect_per_record)
    calib.calibrate(data, manager)
    return percentile_ranges(calib.get_model_qsvs(), percentile)


def _collect_per_record(qsv: dict, new: dict) -> dict:
    """The calibrator's update: the global range so far, and each record's minimum and maximum."""
    mins, maxs = new.get("mins", [new["min"]]), new.get("maxs", [new["max"]])
    if not qsv:
        return {"min": new["min"], "max": new["max"], "mins": list(mins), "maxs": list(maxs)}
    return {
        "min": np.minimum(qsv["min"], new["min"]),
        "max": np.maximum(qsv["max"], new["max"]),
        "mins": qsv.get("mins", [qsv["min"]]) + list(mins),
        "maxs": qsv.get("maxs", [qsv["max"]]) + list(maxs),
    }


def percentile_ranges(qsvs: dict, percentile: float) -> dict:
    """``{tensor: {"min", "max"}}``: max the ``percentile`` of the per-record maxima, min the ``100 - percentile``
    of the minima (100: global min/max). Tensors without per-record ranges (weights) keep theirs."""
    ranges = {}
    for name, qsv in qsvs.items():
        if "maxs" not in qsv:
            ranges[name] = qsv
            continue
        low = np.percentile(np.stack(qsv["mins"]), 100 - percentile, axis=0)
        high = np.percentile(np.stack(qsv["maxs"]), percentile, axis=0)
        ranges[name] = {"min": np.asarray(low, dtype=np.float32), "max": np.asarray(high, dtype=np.float32)}
    return ranges


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """A copy with every BatchNorm that follows a convolution folded into its weights (torch.fx).

    The converter keeps such a BatchNorm as an element-wise MUL and ADD with
    per-tensor int8 constants (a quantization step more, and a larger file).
    A BatchNorm that precedes its convolution (pre-activation blocks) stays. Channels whose
    input was constant in training are silenced first (:func:`silence_constant_channels`).
    A model torch.fx cannot trace is converted unfolded.
    """
    import copy

    from torch.fx.experimental.optimization import fuse

    model = silence_constant_channels(copy.deepcopy(model))
    try:
        return fuse(model)
    except Exception:  # torch.fx cannot trace it (data-dependent control flow)
        return model


def silence_constant_channels(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (changed in place) with the scale of every BatchNorm channel whose input never varied in
    training set to 0: the channel outputs its shift, as it did on every training record.

    Pruning leaves channels whose input is constant (all weights into them zero): running variance 0,
    so a float scale ``gamma / sqrt(eps)``, about 316 gamma against the others' 0.1-5. A BatchNorm the
    converter keeps (one that precedes its convolution) becomes a MUL by a per-tensor int8 constant, and
    one step of that constant then exceeds the live channels' scales: on an 88x LTH-ECG ticket
    ``hannun34`` the int8 flatbuffer classified 44% of validation records as the float model did.
    A channel counts as constant when its running variance is below ``eps * 1e-5``
    (standard deviation under 1e-5: the change to its output is under 0.3% of ``gamma``).
    """
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.affine and module.running_var is not None:
            with torch.no_grad():
                module.weight[module.running_var < module.eps * CONSTANT_VARIANCE_RATIO] = 0.0
    return model


def strip_names(model_bytes: bytes) -> bytes:
    """The flatbuffer without tensor names and signatures (TFLite Micro reads neither; the
    names of a converted PyTorch model can outweigh a small model's weights).

    Weights the quantizer stored past the flatbuffer's end (it does from
    256 KB on) are written back inside it, where every TFLite Micro reads them.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(model_bytes)  # resolves buffers stored by offset
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _signatures(model_bytes: bytes) -> list[dict]:
    from ai_edge_litert.interpreter import Interpreter

    listed = Interpreter(model_content=model_bytes).get_signature_list()
    return [{"key": key, **value} for key, value in listed.items()]


@dataclass
class TFLiteSummary:
    """What a flatbuffer holds: input shape, tensor types, operators, and whether it is integer only."""

    input_shape: list[int]
    input_dtype: str
    output_dtype: str
    tensor_dtypes: dict[str, int]
    operators: dict[str, int]
    float_tensors: list[str] = field(default_factory=list)
    input_quantization: dict[str, float] = field(default_factory=dict)  # real = scale * (q - zero_point)
    output_quantization: dict[str, float] = field(default_factory=dict)

    @property
    def not_in_tflite_micro(self) -> list[str]:
        """Operators without a TFLite Micro kernel for the activations' type (int8, or int16 for 16x8;
        empty: firmware can run every one)."""
        kernels = TFLITE_MICRO_INT16_OPS if self.activations == "int16" else TFLITE_MICRO_INT8_OPS
        return sorted(set(self.operators) - kernels)

    @property
    def integer_only(self) -> bool:
        """Integer input and output (int8 or int16) and no float tensor: nothing for firmware to compute in float."""
        return not self.float_tensors and {self.input_dtype, self.output_dtype} <= {"int8", "int16"}

    @property
    def activations(self) -> str:
        """The activations' type: the input's (int8, or int16 for 16x8)."""
        return self.input_dtype


def summarize(model_bytes: bytes) -> TFLiteSummary:
    """Inspect a flatbuffer in the LiteRT interpreter."""
    interpreter = _interpreter(model_bytes)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    tensors = interpreter.get_tensor_details()
    dtypes = Counter(np.dtype(t["dtype"]).name for t in tensors)
    floats = [t["name"] for t in tensors if np.issubdtype(np.dtype(t["dtype"]), np.floating)]
    ops = Counter(op["op_name"] for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE")
    return TFLiteSummary(
        input_shape=[int(d) for d in inp["shape"]],
        input_dtype=np.dtype(inp["dtype"]).name,
        output_dtype=np.dtype(out["dtype"]).name,
        tensor_dtypes=dict(sorted(dtypes.items())),
        operators=dict(sorted(ops.items())),
        float_tensors=floats,
        input_quantization=_quantization(inp),
        output_quantization=_quantization(out),
    )


def _quantization(detail: dict) -> dict[str, float]:
    scale, zero_point = detail["quantization"]
    return {"scale": float(scale), "zero_point": int(zero_point)} if scale else {}


def _interpreter(model_bytes: bytes):
    require_tflite()
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # The reference kernels, without XNNPACK: the arithmetic TFLite Micro's int8 kernels follow.
    interpreter = Interpreter(model_content=model_bytes, num_threads=1, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    return interpreter


def tflite_logits(model_bytes: bytes, inputs: Iterable[np.ndarray]) -> np.ndarray:
    """Float logits ``[n, classes]`` of each ``[1, 1, samples]`` float input, run in the LiteRT interpreter.

    An integer input is quantized with the model's own scale and zero point, an
    integer output dequantized, as firmware does around ``Invoke()``.
    """
    interpreter = _interpreter(model_bytes)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for x in inputs:
        x = np.asarray(x, dtype=np.float32).reshape(inp["shape"])
        interpreter.set_tensor(inp["index"], _quantize(x, inp))
        interpreter.invoke()
        rows.append(_dequantize(interpreter.get_tensor(out["index"]), out).reshape(-1))
    return np.stack(rows) if rows else np.zeros((0, int(out["shape"][-1])), np.float32)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer):
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if not np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return y.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def c_array_files(model_bytes: bytes, name: str = "g_model", header: str = "model_data.h") -> dict[str, str]:
    """``{header: declarations, source: the aligned array}`` for firmware, as TFLite Micro's examples ship a model.

    The source compiles as C11 and as C++11 (``alignas``); the header declares
    ``const unsigned char NAME[]`` and ``const unsigned int NAME_len`` with C linkage.
    """
    if not name.isidentifier():
        raise ConfigError(f"--c-name '{name}' is not a C identifier; use letters, digits and underscores, e.g. g_model")
    guard = "ECGBENCH_" + header.upper().replace(".", "_").replace("-", "_") + "_"
    declarations = "\n".join(
        [
            "// An integer LiteRT flatbuffer (int8 weights) for TFLite Micro, written by `ecgbench export --format tflite`.",
            f"#ifndef {guard}",
            f"#define {guard}",
            "",
            "#ifdef __cplusplus",
            'extern "C" {',
            "#endif",
            "",
            f"// The model, {ARRAY_ALIGNMENT}-byte aligned: pass it to tflite::GetModel({name}).",
            f"extern const unsigned char {name}[];",
            f"extern const unsigned int {name}_len;",
            "",
            "#ifdef __cplusplus",
            "}",
            "#endif",
            "",
            f"#endif  // {guard}",
            "",
        ]
    )
    rows = [", ".join(f"0x{b:02x}" for b in model_bytes[i : i + 12]) for i in range(0, len(model_bytes), 12)]
    source = "\n".join(
        [
            f'#include "{header}"',
            "",
            "#if defined(__cplusplus)",
            f"#define ECGBENCH_MODEL_ALIGN alignas({ARRAY_ALIGNMENT})",
            "#else",
            f"#define ECGBENCH_MODEL_ALIGN _Alignas({ARRAY_ALIGNMENT})",
            "#endif",
            "",
            f"ECGBENCH_MODEL_ALIGN const unsigned char {name}[] = {{",
            *(f"  {row}," for row in rows),
            "};",
            f"const unsigned int {name}_len = {len(model_bytes)};",
            "",
        ]
    )
    return {header: declarations, header.rsplit(".", 1)[0] + ".c": source}
