"""``int8_dynamic``, ``int8_static``, ``fp16``: post-training quantization of the exported ONNX model.

All three export the PyTorch model (30 s of input at the dataset's rate, with
dynamic batch and length axes) and quantize it with onnxruntime's own tools;
the validation F1 before and after is measured by running both models in
onnxruntime, never simulated. Pruned weights stay zero: onnxruntime keeps
0.0 exactly representable in int8 (zero point 0 for the default symmetric
qint8 weights, the zero point itself for quint8), and 0.0 is exact in fp16;
the record counts the zero weights before and after to show it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import onnx
from onnx import numpy_helper
from pydantic import Field

from ecgbench import hookimpl
from ecgbench.kinds.compressor import CompressionContext, Compressor, ModelArtifact, StepOutcome
from ecgbench.errors import CompressionError
from ecgbench.train.export import to_onnx
from ecgbench.kinds.base import PluginConfig

# Ops whose second input is a weight tensor worth counting (conv kernels, dense matrices).
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
# Exported input length: 30 s, the CinC 2017 records' typical length; the length axis stays dynamic.
EXPORT_SECONDS = 30

QuantTypeName = Literal["qint8", "quint8"]


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer warns on the root logger for every BatchNorm that precedes a conv
    ("Axis 1 is out-of-range"): harmless for these models and it floods suite logs."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class OnnxQuantizer(Compressor):
    """Base of the post-training quantizers: export (or take) an fp32 ONNX model, quantize it, score both."""

    accepts_onnx: ClassVar[bool] = True
    produces_onnx: ClassVar[bool] = True
    precision: ClassVar[str] = "fp32"

    def quantize(self, fp32_path: Path, workdir: Path, ctx: CompressionContext) -> tuple[Path, Path, dict]:
        """Quantize the model at ``fp32_path``; return (quantized file, float reference file, settings record)."""
        raise NotImplementedError

    def compress(self, artifact: ModelArtifact, ctx: CompressionContext) -> StepOutcome:
        if artifact.is_onnx and artifact.precision != "fp32":
            raise CompressionError(
                f"'{self.name}' got a model already quantized to {artifact.precision}; quantize once, as the last step of the pipeline"
            )
        if not artifact.is_onnx and artifact.model is None:
            raise CompressionError(f"'{self.name}' got an artifact with neither a PyTorch nor an ONNX model")
        fp32 = artifact.onnx if artifact.is_onnx else to_onnx(artifact.model, samples=int(ctx.fs_hz * EXPORT_SECONDS))
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=ctx.workdir))
        try:
            fp32_path = workdir / "fp32.onnx"
            fp32_path.write_bytes(fp32)
            quantized_path, reference_path, settings = self.quantize(fp32_path, workdir, ctx)
            quantized = _with_metadata_of(onnx.load(str(quantized_path)), onnx.load_from_string(fp32)).SerializeToString()
            zeros = zero_weight_counts(onnx.load(str(reference_path)), onnx.load_from_string(quantized))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        f1_fp32 = ctx.trainer.evaluate_onnx(fp32, "val")["challenge_f1"]
        f1_quantized = ctx.trainer.evaluate_onnx(quantized, "val")["challenge_f1"]
        record = {
            "precision": self.precision,
            **settings,
            "val_challenge_f1_fp32": f1_fp32,
            "val_challenge_f1_quantized": f1_quantized,
            "f1_drop_points": round(100 * (f1_fp32 - f1_quantized), 4),
            "onnx_bytes_fp32": len(fp32),
            "onnx_bytes_quantized": len(quantized),
            **zeros,
        }
        ctx.log(f"{self.name}: val F1 {f1_fp32:.4f} -> {f1_quantized:.4f}, {len(fp32)} -> {len(quantized)} bytes")
        return StepOutcome(
            ModelArtifact(model=artifact.model, masks=artifact.masks, onnx=quantized, precision=self.precision), record
        )


# --- int8 ------------------------------------------------------------------------------------


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8 if name == "qint8" else QuantType.QUInt8


def _preprocessed(fp32_path: Path, workdir: Path, enabled: bool) -> Path:
    """onnxruntime's recommended pre-processing (shape inference, graph optimisation) before quantizing.

    Symbolic shape inference is skipped: it fails ("Incomplete symbolic shape
    inference") on hannun34's length-dependent padding; ONNX's own shape
    inference, which quant_pre_process still runs, is enough for these CNNs.
    """
    if not enabled:
        return fp32_path
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = workdir / "preprocessed.onnx"
    quant_pre_process(str(fp32_path), str(out), skip_symbolic_shape=True)
    return out


class Int8Quantizer(OnnxQuantizer):
    """Base of the int8 quantizers: onnxruntime's pre-processing (``preprocess``), then one quantizer call."""

    precision = "int8"

    def quantize(self, fp32_path: Path, workdir: Path, ctx: CompressionContext) -> tuple[Path, Path, dict]:
        source = _preprocessed(fp32_path, workdir, self.config.preprocess)
        out = workdir / f"{self.name}.onnx"
        with _quiet_root_logger():
            settings = self.quantize_int8(source, out, ctx)
        return out, source, settings

    def quantize_int8(self, source: Path, out: Path, ctx: CompressionContext) -> dict:
        """Write the int8 model of the fp32 model at ``source`` to ``out``; return the settings record."""
        raise NotImplementedError


class Int8DynamicConfig(PluginConfig):
    """Settings of ``int8_dynamic``."""

    per_channel: bool = Field(True, description="one weight scale per output channel instead of one per tensor")
    weight_type: QuantTypeName = Field("qint8", description="int8 weight type: qint8 (symmetric, zero point 0) or quint8")
    preprocess: bool = Field(True, description="run onnxruntime's quant_pre_process (shape inference, optimisation) first")


class Int8Dynamic(Int8Quantizer):
    """int8 weights; activations quantized on the fly per inference (onnxruntime quantize_dynamic).

    Activations are quantized to uint8 at run time (ONNX DynamicQuantizeLinear
    is uint8 only) and Conv/MatMul become ConvInteger/MatMulInteger, which
    onnxruntime runs on CPU. No calibration data is needed. onnxruntime
    (checked with 1.32) quantizes ConvInteger weights per tensor even with
    ``per_channel``; per-channel scales apply to MatMul (classifier) weights.
    """

    name = "int8_dynamic"
    description = "post-training dynamic int8 quantization (onnxruntime quantize_dynamic: int8 weights, uint8 activations at run time)"
    Config = Int8DynamicConfig

    def quantize_int8(self, source: Path, out: Path, ctx: CompressionContext) -> dict:
        from onnxruntime.quantization import quantize_dynamic

        cfg: Int8DynamicConfig = self.config
        quantize_dynamic(str(source), str(out), per_channel=cfg.per_channel, weight_type=_quant_type(cfg.weight_type))
        return {"per_channel": cfg.per_channel, "weight_type": cfg.weight_type, "activation_type": "quint8 (dynamic)"}


class CalibrationReader:
    """Feeds training-split crops to onnxruntime's calibrator (its CalibrationDataReader protocol), one at a time."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self._feeds = iter([{input_name: batch} for batch in batches])

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


class Int8StaticConfig(PluginConfig):
    """Settings of ``int8_static``."""

    calibration_records: int = Field(64, ge=1, description="training-split crops used to calibrate activation ranges")
    calibrate_method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="how activation ranges are chosen from the calibration data (onnxruntime CalibrationMethod)"
    )
    # onnxruntime's quantization guide: S8S8 (int8 activations and weights) in QDQ format is the default and
    # first choice on CPU; it is also TFLite Micro / CMSIS-NN's scheme (int8 per-channel symmetric weights,
    # int8 asymmetric activations), so scores carry over to microcontrollers.
    activation_type: QuantTypeName = Field("qint8", description="activation type: qint8 (S8S8, onnxruntime's default) or quint8 (U8S8)")
    per_channel: bool = Field(True, description="one weight scale per output channel instead of one per tensor")
    preprocess: bool = Field(True, description="run onnxruntime's quant_pre_process (shape inference, optimisation) first")


class Int8Static(Int8Quantizer):
    """int8 weights and activations with ranges calibrated on training crops (onnxruntime quantize_static, QDQ)."""

    name = "int8_static"
    description = "post-training static int8 quantization (onnxruntime quantize_static, QDQ, per-channel, training-split calibration)"
    Config = Int8StaticConfig

    def quantize_int8(self, source: Path, out: Path, ctx: CompressionContext) -> dict:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        cfg: Int8StaticConfig = self.config
        input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
        batches = ctx.calibration_batches(cfg.calibration_records)
        reader = CalibrationReader(input_name, batches)
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
        quantize_static(
            str(source),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=cfg.per_channel,
            weight_type=QuantType.QInt8,
            activation_type=_quant_type(cfg.activation_type),
            calibrate_method=method[cfg.calibrate_method],
        )
        return {
            "per_channel": cfg.per_channel,
            "weight_type": "qint8",
            "activation_type": cfg.activation_type,
            "calibrate_method": cfg.calibrate_method,
            "calibration_records": len(batches),
            "calibration_split": "train",
        }


# --- fp16 ------------------------------------------------------------------------------------


class Fp16Config(PluginConfig):
    """``fp16`` has no settings: every float tensor becomes float16, inputs and outputs stay float32."""


class Fp16(OnnxQuantizer):
    """float16 weights and activations; float32 input and output (onnxruntime's float16 converter).

    onnxconverter-common is not a dependency: onnxruntime ships the same
    converter as ``onnxruntime.transformers.float16``. On CPU, onnxruntime runs
    nodes without an fp16 kernel in fp32 behind inserted casts, so the scores
    reflect fp16 rounding of weights and of the activations between nodes.
    """

    name = "fp16"
    description = "float16 weights and activations (onnxruntime's float16 converter), float32 input/output"
    Config = Fp16Config
    precision = "fp16"

    def quantize(self, fp32_path: Path, workdir: Path, ctx: CompressionContext) -> tuple[Path, Path, dict]:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
        topologically_sort(model.graph)  # the converter appends the input casts at the end
        out = workdir / "fp16.onnx"
        onnx.save(model, str(out))
        return out, fp32_path, {"io_types": "float32"}


def topologically_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (Kahn's algorithm)."""
    available = {t.name for t in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(range(len(graph.node)))
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [i for i in pending if all(name in available for name in graph.node[i].input)]
        if not ready:
            raise CompressionError("the converted ONNX graph has a cycle or a missing input; report this model to ecgbench")
        for i in ready:
            ordered.append(graph.node[i])
            available.update(graph.node[i].output)
        pending = [i for i in pending if i not in set(ready)]
    copies = [onnx.NodeProto.FromString(node.SerializeToString()) for node in ordered]
    del graph.node[:]
    graph.node.extend(copies)


# --- shared records ----------------------------------------------------------------------------


def zero_weight_counts(reference: onnx.ModelProto, quantized: onnx.ModelProto) -> dict:
    """Zero weights of the conv/linear kernels before and after quantization, and whether every zero stayed zero.

    A quantized weight counts as zero when it equals its zero point (int8) or is
    0.0 (fp16). Quantization may add zeros (tiny weights round to 0), never remove them.
    """
    weights = _weight_initializers(reference)
    stored = {t.name: t for t in quantized.graph.initializer}
    consumers = {name: node for node in quantized.graph.node for name in node.input}
    total = zeros_before = zeros_after = 0
    preserved = True
    for name, tensor in weights.items():
        before = numpy_helper.to_array(tensor)
        after = _dequantized_zero_pattern(name, stored, consumers)
        if after is None:
            continue  # left in float32 by the quantizer (e.g. a tiny layer); not counted
        total += before.size
        zeros_before += int((before == 0).sum())
        zeros_after += int(after.sum())
        preserved &= bool(after[before == 0].all())
    return {
        "weights_counted": total,
        "zero_weights_fp32": zeros_before,
        "zero_weights_quantized": zeros_after,
        "sparsity_fp32": zeros_before / total if total else 0.0,
        "sparsity_quantized": zeros_after / total if total else 0.0,
        "zeros_preserved": preserved,
    }


def _weight_initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    initializers = {t.name: t for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type in WEIGHT_OPS and len(node.input) > 1 and node.input[1] in initializers:
            tensor = initializers[node.input[1]]
            if tensor.data_type == onnx.TensorProto.FLOAT:
                out[node.input[1]] = tensor
    return out


def _dequantized_zero_pattern(name: str, stored: dict, consumers: dict) -> np.ndarray | None:
    """Boolean array (shaped like the float weight) of entries that are exactly zero after quantization."""
    if name in stored and stored[name].data_type == onnx.TensorProto.FLOAT16:  # fp16: same name, new type
        return numpy_helper.to_array(stored[name]) == 0
    # onnxruntime names a quantized weight <name>_quantized, or <name>_Transposed_quantized when it turned Gemm into MatMul.
    base = next((n for n in (name, f"{name}_Transposed") if f"{n}_quantized" in stored), None)
    if base is None:
        return None
    q_name, zp_name = f"{base}_quantized", f"{base}_zero_point"
    q = numpy_helper.to_array(stored[q_name]).astype(np.int32)
    zp = numpy_helper.to_array(stored[zp_name]).astype(np.int32) if zp_name in stored else np.zeros(1, np.int32)
    if zp.size > 1:  # per channel: broadcast along the quantization axis
        node = consumers.get(q_name)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) if node is not None and node.op_type == "DequantizeLinear" else 0
        if node is not None and node.op_type == "MatMulInteger":
            axis = 1
        shape_zp = [1] * q.ndim
        shape_zp[axis] = zp.size
        zp = zp.reshape(shape_zp)
    pattern = q == zp
    return pattern.T if base.endswith("_Transposed") else pattern


def _with_metadata_of(model: onnx.ModelProto, source: onnx.ModelProto) -> onnx.ModelProto:
    """Copy ``source``'s metadata (ecgbench.* preprocessing settings) onto ``model``."""
    have = {p.key for p in model.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in have:
            entry = model.metadata_props.add()
            entry.key, entry.value = prop.key, prop.value
    return model


@hookimpl
def ecgbench_register_compressors(register):
    register(Int8Dynamic)
    register(Int8Static)
    register(Fp16)
