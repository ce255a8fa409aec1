"""Host latency of ONNX models in onnxruntime, and the calibration of the ``host`` device profile.

:func:`measure_onnx_latency` times one inference the way every cell is timed:
a CPU session with ``threads`` intra-op threads, one inter-op thread and
sequential execution, ``warmup`` untimed runs, then ``repeats`` runs timed one
by one with ``time.perf_counter``.

:func:`calibrate_host_profile` measures the throughput the simulator needs
(MACs per second per operator class and precision, bytes per second, the
per-operator dispatch cost) on single-operator micro-kernels built here with
``onnx.helper``, never on the models being predicted. Three int8 kernel kinds
are told apart: QDQ groups that onnxruntime fuses into QLinearConv / QGemm
(``int8``), and the ConvInteger / MatMulInteger that dynamic quantization
leaves (``int8_dynamic``); depthwise convolutions are calibrated at stride 1
(``depthwise_conv``) and stride 2 (``depthwise_conv_strided``). Rates are per second and
stored per cycle of a nominal clock (``/proc/cpuinfo``'s, or 1 GHz): the clock
cancels out of every prediction.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ecgbench.kinds.device import DeviceProfile, DynamicOpRates, MacRates, OpRates, profile_from_dict
from ecgbench.errors import ConfigError


@dataclass(frozen=True)
class LatencyStats:
    """Wall-clock latency of one inference, in milliseconds, over ``repeats`` timed runs."""

    median_ms: float
    p95_ms: float
    mean_ms: float
    repeats: int
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def make_session(model: bytes | str | Path, threads: int = 1):
    """An onnxruntime CPU session with ``threads`` intra-op threads, one inter-op thread, sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    source = model if isinstance(model, (bytes, bytearray)) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        where = "the model bytes" if isinstance(model, (bytes, bytearray)) else str(model)
        raise ConfigError(f"onnxruntime cannot load {where}: {exc}") from None


def measure_onnx_latency(
    model: bytes | str | Path,
    input_shape: tuple[int, ...],
    threads: int = 1,
    warmup: int = 5,
    repeats: int = 30,
) -> LatencyStats:
    """Median, 95th percentile and mean wall-clock latency of one inference on random input of ``input_shape``."""
    _check_timing(threads, warmup, repeats)
    session, feed = _session_and_feed(model, input_shape, threads)
    return _time_session(session, feed, threads, warmup, repeats)


def _check_timing(threads: int, warmup: int, repeats: int) -> None:
    if threads < 1 or repeats < 1 or warmup < 0:
        raise ConfigError(f"latency needs threads >= 1, repeats >= 1, warmup >= 0 (got {threads}, {repeats}, {warmup})")


def _session_and_feed(model: bytes | str | Path, input_shape: tuple[int, ...], threads: int) -> tuple[Any, dict]:
    """A session of ``model`` and a fixed random input of ``input_shape`` for its single input."""
    session = make_session(model, threads)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ConfigError(f"host latency needs a model with one input; this one has {[i.name for i in inputs]}")
    dtype = _NUMPY_TYPES.get(inputs[0].type, np.float32)
    return session, {inputs[0].name: np.random.default_rng(0).standard_normal(tuple(input_shape)).astype(dtype)}


def measure_latency_against(
    model: bytes | str | Path,
    reference: bytes | str | Path,
    input_shape: tuple[int, ...],
    threads: int = 1,
    warmup: int = 5,
    repeats: int = 30,
) -> tuple[LatencyStats, LatencyStats]:
    """Latency of ``model`` and of ``reference``, timed alternately in one session on the same input.

    Machines drift over minutes (frequency scaling, neighbours); two models
    timed minutes apart can differ by tens of percent for nothing. Timed in
    alternation (the order flipping each round), both see the same drift, so
    the ratio of their medians is stable even where absolute times are not.
    """
    _check_timing(threads, warmup, repeats)
    sessions, feeds = zip(*(_session_and_feed(m, input_shape, threads) for m in (model, reference)))
    for _ in range(warmup):
        for session, feed in zip(sessions, feeds):
            session.run(None, feed)
    times = np.empty((2, repeats))
    for i in range(repeats):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            sessions[k].run(None, feeds[k])
            times[k, i] = time.perf_counter() - start
    model_stats, reference_stats = (_stats(row * 1e3, threads) for row in times)
    return model_stats, reference_stats


def _stats(times_ms: np.ndarray, threads: int) -> LatencyStats:
    return LatencyStats(
        median_ms=float(np.median(times_ms)),
        p95_ms=float(np.percentile(times_ms, 95)),
        mean_ms=float(times_ms.mean()),
        repeats=len(times_ms),
        threads=threads,
    )


def _time_session(session, feed: dict, threads: int, warmup: int, repeats: int) -> LatencyStats:
    for _ in range(warmup):
        session.run(None, feed)
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times[i] = time.perf_counter() - start
    return _stats(times * 1e3, threads)


# --- calibration of the host profile ----------------------------------------------------------

# Micro-kernels: 'same'-padded 1-D convolutions over 10 s at 300 Hz with kernel 16 (Hannun et al.
# 2019) at ECG-typical widths; depthwise convolutions with the kernels of 1-D depthwise-separable
# nets (k9 as in MLPerf Tiny's DS-CNN and ecgbench's dscnn; k16), once at stride 1 and once at
# stride 2 (the stride of every dscnn block); matrix-vector products of classifier size;
# element-wise operators over a 64 x 3000 activation; and a chain of tiny convolutions for the
# per-operator cost.
CALIBRATION_SAMPLES = 3000
CONV_WIDTHS = (8, 16, 32, 64)
CONV_KERNEL = 16
DEPTHWISE_SHAPES = ((16, 9), (64, 9), (16, 16), (64, 16))  # (channels, kernel)
DEPTHWISE_STRIDED = 2
FC_SHAPES = ((1, 256, 256), (1, 1024, 256))  # (M, K, N)
ELEMENTWISE_CHANNELS = 64
OVERHEAD_CHAIN = 32
OPSET = 17


@dataclass(frozen=True)
class _Kernel:
    label: str
    model: bytes
    input_shape: tuple[int, ...]
    work: float  # MACs or element operations
    im2col: float = 0.0  # values copied into im2col columns
    input_dtype: type = np.float32  # uint8 for dynamic-quantization kernels


def _model(nodes, inputs, outputs, initializers) -> bytes:
    graph = helper.make_graph(nodes, "calibration", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model.SerializeToString()


def _float_input(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _qdq(name: str, out: str, scale: str = "s", zero: str = "zp") -> list[onnx.NodeProto]:
    """QuantizeLinear then DequantizeLinear: how quantize_static (QDQ) marks an int8 activation."""
    return [helper.make_node("QuantizeLinear", [name, scale, zero], [out + "_q"]), helper.make_node("DequantizeLinear", [out + "_q", scale, zero], [out])]


def _activation_quant_inits() -> list[TensorProto]:
    return [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "zp")]


def _int8_weight(name: str, values: np.ndarray, axis: int | None) -> tuple[list[TensorProto], onnx.NodeProto]:
    """Symmetric int8 weight (zero point 0), per channel along ``axis`` or per tensor, behind a DequantizeLinear."""
    channels = values.shape[axis] if axis is not None else 1
    scale = np.full(channels, 0.01, np.float32) if axis is not None else np.array(0.01, np.float32)
    zero = np.zeros(channels, np.int8) if axis is not None else np.array(0, np.int8)
    inits = [numpy_helper.from_array(values, name + "_int8"), numpy_helper.from_array(scale, name + "_scale"),
             numpy_helper.from_array(zero, name + "_zp")]
    node = helper.make_node("DequantizeLinear", [name + "_int8", name + "_scale", name + "_zp"], [name], **({"axis": axis} if axis is not None else {}))
    return inits, node


@dataclass(frozen=True)
class _ConvShape:
    """A 'same'-padded 1-D convolution over CALIBRATION_SAMPLES: its ONNX attributes, sizes and work."""

    attributes: dict
    outputs: int
    weight_shape: tuple[int, int, int]
    macs: int
    im2col: int


def _conv_shape(c_in: int, c_out: int, kernel: int, groups: int, stride: int) -> _ConvShape:
    pads = [(kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2]
    outputs = (CALIBRATION_SAMPLES - 1) // stride + 1
    im2col = outputs * c_in * kernel if groups != c_in or c_in == 1 else 0
    attributes = dict(group=groups, pads=pads, kernel_shape=[kernel], strides=[stride])
    return _ConvShape(attributes, outputs, (c_out, c_in // groups, kernel), c_out * outputs * (c_in // groups) * kernel, im2col)


def _conv_kernel(c_in: int, c_out: int, kernel: int, groups: int, int8: bool, rng: np.random.Generator, stride: int = 1) -> _Kernel:
    """A 'same'-padded 1-D convolution, fp32, or int8 in the QDQ form quantize_static emits (per-channel weights)."""
    samples = CALIBRATION_SAMPLES
    shape = _conv_shape(c_in, c_out, kernel, groups, stride)
    x, y = _float_input("x", (1, c_in, samples)), _float_input("y", (1, c_out, shape.outputs))
    label = f"conv {'int8' if int8 else 'fp32'} {c_in}->{c_out} k{kernel} g{groups} s{stride}"
    if not int8:
        w = numpy_helper.from_array(rng.standard_normal(shape.weight_shape).astype(np.float32), "w")
        b = numpy_helper.from_array(np.zeros(c_out, np.float32), "b")
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **shape.attributes)
        return _Kernel(label, _model([node], [x], [y], [w, b]), (1, c_in, samples), shape.macs, shape.im2col)
    w_inits, w_node = _int8_weight("w", rng.integers(-127, 128, shape.weight_shape).astype(np.int8), axis=0)
    b_inits = [numpy_helper.from_array(np.zeros(c_out, np.int32), "b_int32"), numpy_helper.from_array(np.full(c_out, 5e-4, np.float32), "b_scale"),
               numpy_helper.from_array(np.zeros(c_out, np.int32), "b_zp")]
    b_node = helper.make_node("DequantizeLinear", ["b_int32", "b_scale", "b_zp"], ["b"], axis=0)
    nodes = _qdq("x", "xd") + [w_node, b_node, helper.make_node("Conv", ["xd", "w", "b"], ["c"], **shape.attributes)] + _qdq("c", "y")
    return _Kernel(label, _model(nodes, [x], [y], _activation_quant_inits() + w_inits + b_inits), (1, c_in, samples), shape.macs, shape.im2col)


def _integer_weight(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> list[TensorProto]:
    """Symmetric int8 weight and its one zero point (0), as quantize_dynamic stores them (scales stay in the float Mul after)."""
    return [numpy_helper.from_array(rng.integers(-127, 128, shape).astype(np.int8), name),
            numpy_helper.from_array(np.array(0, np.int8), name + "_zp")]


def _conv_integer_kernel(c_in: int, c_out: int, kernel: int, groups: int, rng: np.random.Generator, stride: int = 1) -> _Kernel:
    """The ConvInteger that onnxruntime's quantize_dynamic emits for a conv (uint8 activations, int8 weights).

    Only the integer kernel: the DynamicQuantizeLinear before it and the
    Cast / Mul / Add after it are float element-wise layers the analyzer costs
    on their own (about 3 % of a quantize_dynamic'd 16 -> 16, k16 conv here).
    """
    samples = CALIBRATION_SAMPLES
    shape = _conv_shape(c_in, c_out, kernel, groups, stride)
    inits = _integer_weight("w", shape.weight_shape, rng) + [numpy_helper.from_array(np.array(128, np.uint8), "x_zp")]
    node = helper.make_node("ConvInteger", ["x", "w", "x_zp", "w_zp"], ["y"], **shape.attributes)
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, c_in, samples])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [1, c_out, shape.outputs])
    label = f"conv int8_dynamic {c_in}->{c_out} k{kernel} g{groups} s{stride}"
    return _Kernel(label, _model([node], [x], [y], inits), (1, c_in, samples), shape.macs, shape.im2col, np.uint8)


def _matmul_integer_kernel(m: int, k: int, n: int, rng: np.random.Generator) -> _Kernel:
    """The MatMulInteger that quantize_dynamic emits for a Linear layer (uint8 activations, int8 weights)."""
    inits = _integer_weight("w", (k, n), rng) + [numpy_helper.from_array(np.array(128, np.uint8), "x_zp")]
    node = helper.make_node("MatMulInteger", ["x", "w", "x_zp", "w_zp"], ["y"])
    x, y = helper.make_tensor_value_info("x", TensorProto.UINT8, [m, k]), helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])
    return _Kernel(f"fc int8_dynamic {m}x{k}x{n}", _model([node], [x], [y], inits), (m, k), m * k * n, 0.0, np.uint8)


def _fc_kernel(m: int, k: int, n: int, int8: bool, rng: np.random.Generator) -> _Kernel:
    x, y = _float_input("x", (m, k)), _float_input("y", (m, n))
    label = f"fc {'int8' if int8 else 'fp32'} {m}x{k}x{n}"
    if not int8:
        w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
        return _Kernel(label, _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [x], [y], [w]), (m, k), m * k * n)
    w_inits, w_node = _int8_weight("w", rng.integers(-127, 128, (k, n)).astype(np.int8), axis=1)
    nodes = _qdq("x", "xd") + [w_node, helper.make_node("MatMul", ["xd", "w"], ["c"])] + _qdq("c", "y")
    return _Kernel(label, _model(nodes, [x], [y], _activation_quant_inits() + w_inits), (m, k), m * k * n)


def _elementwise_kernel(op: str, int8: bool) -> _Kernel:
    """Relu / Add over 64 x 3000 values (fp32), or a QDQ int8 Add; one operation per output value."""
    shape = (1, ELEMENTWISE_CHANNELS, CALIBRATION_SAMPLES)
    x, y = _float_input("x", shape), _float_input("y", shape)
    n = math.prod(shape)
    if not int8:
        node = helper.make_node(op, ["x", "x"] if op == "Add" else ["x"], ["y"])
        return _Kernel(f"{op} fp32", _model([node], [x], [y], []), shape, n)
    nodes = _qdq("x", "xd") + [helper.make_node(op, ["xd", "xd"] if op == "Add" else ["xd"], ["c"])] + _qdq("c", "y")
    return _Kernel(f"{op} int8", _model(nodes, [x], [y], _activation_quant_inits()), shape, n)


def _qdq_kernel(channels: int) -> _Kernel:
    """Only the QuantizeLinear + DequantizeLinear that surround an int8 micro-kernel (its time is subtracted)."""
    shape = (1, channels, CALIBRATION_SAMPLES)
    nodes = _qdq("x", "y")
    return _Kernel(f"QDQ {channels} channels", _model(nodes, [_float_input("x", shape)], [_float_input("y", shape)], _activation_quant_inits()), shape, 0)


def _conv_chain_kernel(length: int, rng: np.random.Generator) -> _Kernel:
    """``length`` tiny convolutions (4 -> 4 channels, k3, 16 samples, 768 MACs each): time per node ~ dispatch cost."""
    shape = (1, 4, 16)
    w = numpy_helper.from_array(rng.standard_normal((4, 4, 3)).astype(np.float32), "w")
    names = ["x"] + [f"t{i}" for i in range(length - 1)] + ["y"]
    nodes = [helper.make_node("Conv", [names[i], "w"], [names[i + 1]], pads=[1, 1]) for i in range(length)]
    return _Kernel(f"tiny conv chain x{length}", _model(nodes, [_float_input("x", shape)], [_float_input("y", shape)], [w]), shape, length)


# Each micro-kernel is timed in this many rounds and the fastest round's median kept: on a shared
# machine other processes only ever slow a round down.
CALIBRATION_ROUNDS = 3


def _seconds(kernel: _Kernel, threads: int, repeats: int) -> float:
    session = make_session(kernel.model, threads)
    rng = np.random.default_rng(0)
    if kernel.input_dtype == np.uint8:
        values = rng.integers(0, 256, kernel.input_shape).astype(np.uint8)
    else:
        values = rng.standard_normal(kernel.input_shape).astype(kernel.input_dtype)
    feed = {session.get_inputs()[0].name: values}
    rounds = [_time_session(session, feed, threads, warmup=3 if i == 0 else 1, repeats=repeats) for i in range(CALIBRATION_ROUNDS)]
    return min(r.median_ms for r in rounds) / 1e3


def host_clock_hz() -> float:
    """The CPU's nominal clock from /proc/cpuinfo, else 1 GHz (predictions do not depend on it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1]) * 1e6
    except (OSError, ValueError, IndexError):
        pass
    return 1e9


def _physical_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


# A rate the fit leaves unconstrained (a term it finds negligible) is stored as this many per second.
_NEGLIGIBLE_RATE_PER_S = 1e15


def fit_conv_rates(kernels: list[_Kernel], seconds: list[float]) -> tuple[float, float]:
    """(MACs per second, im2col values per second) that best explain ``t = macs / R + im2col / E``.

    Non-negative least squares on relative error, so every width counts alike.
    """
    from scipy.optimize import nnls

    a = np.array([[k.work / t, k.im2col / t] for k, t in zip(kernels, seconds)])
    inverse, _residual = nnls(a, np.ones(len(kernels)))
    return tuple(1.0 / v if v > 0 else _NEGLIGIBLE_RATE_PER_S for v in inverse)


def calibrate_host_profile(threads: int = 1, repeats: int = 15, base: DeviceProfile | None = None) -> tuple[DeviceProfile, list[dict]]:
    """Measure this machine's onnxruntime throughput; returns the ``host`` profile and one record per micro-kernel.

    Each micro-kernel's time is the fastest of CALIBRATION_ROUNDS medians of
    ``repeats`` runs. Dense-convolution MAC and im2col rates are fitted jointly over the widths
    in CONV_WIDTHS (:func:`fit_conv_rates`); other rates are work / median time
    (geometric mean over shapes). int8 kernels are in quantize_static's QDQ
    form, with the time of their surrounding QuantizeLinear/DequantizeLinear
    subtracted; int8_dynamic kernels are the ConvInteger / MatMulInteger that
    quantize_dynamic emits, alone. Depthwise rates are calibrated at stride 1
    and, as ``depthwise_conv_strided``, at stride DEPTHWISE_STRIDED. The per-operator cost is the time per node of a chain of tiny
    convolutions. Power figures cannot be measured here and come from ``base``.
    """
    rng = np.random.default_rng(0)
    clock = host_clock_hz()
    records: list[dict] = []
    qdq_s: dict[int, float] = {}

    def timed(kernel: _Kernel, subtract_channels: int | None = None, repeats_: int | None = None) -> float:
        seconds = _seconds(kernel, threads, repeats_ or repeats)
        net = seconds
        if subtract_channels is not None:
            if subtract_channels not in qdq_s:
                qdq_s[subtract_channels] = _seconds(_qdq_kernel(subtract_channels), threads, repeats)
            net = max(seconds - qdq_s[subtract_channels], 0.05 * seconds)  # never a negative or vanishing time
        records.append({"kernel": kernel.label, "work": kernel.work, "median_ms": seconds * 1e3, "net_ms": net * 1e3})
        return net

    def mean_rate(kernels: list[_Kernel], subtract: list[int | None]) -> float:
        """Geometric mean of work / net time (QDQ subtracted for the input's channel count when given)."""
        rates = [k.work / timed(k, c) for k, c in zip(kernels, subtract)]
        return math.exp(statistics.fmean(math.log(r) for r in rates))

    per_second: dict[str, dict[str, float]] = {}
    for precision, int8 in (("fp32", False), ("int8", True)):
        subtract = [c if int8 else None for c in CONV_WIDTHS]
        dense = [_conv_kernel(c, c, CONV_KERNEL, 1, int8, rng) for c in CONV_WIDTHS]
        conv_rate, im2col_rate = fit_conv_rates(dense, [timed(k, c) for k, c in zip(dense, subtract)])
        depthwise_subtract = [c if int8 else None for c, _k in DEPTHWISE_SHAPES]
        per_second[precision] = {
            "conv": conv_rate,
            "im2col": im2col_rate,
            "depthwise_conv": mean_rate([_conv_kernel(c, c, k, c, int8, rng) for c, k in DEPTHWISE_SHAPES], depthwise_subtract),
            "depthwise_conv_strided": mean_rate(
                [_conv_kernel(c, c, k, c, int8, rng, DEPTHWISE_STRIDED) for c, k in DEPTHWISE_SHAPES], depthwise_subtract
            ),
            "fc": mean_rate([_fc_kernel(m, k, n, int8, rng) for m, k, n in FC_SHAPES], [None] * len(FC_SHAPES)),
            "elementwise": mean_rate([_elementwise_kernel("Relu" if not int8 else "Add", int8)], [ELEMENTWISE_CHANNELS if int8 else None]),
        }
    dense = [_conv_integer_kernel(c, c, CONV_KERNEL, 1, rng) for c in CONV_WIDTHS]
    conv_rate, im2col_rate = fit_conv_rates(dense, [timed(k) for k in dense])
    no_subtract = [None] * len(DEPTHWISE_SHAPES)
    per_second["int8_dynamic"] = {
        "conv": conv_rate,
        "im2col": im2col_rate,
        "depthwise_conv": mean_rate([_conv_integer_kernel(c, c, k, c, rng) for c, k in DEPTHWISE_SHAPES], no_subtract),
        "depthwise_conv_strided": mean_rate([_conv_integer_kernel(c, c, k, c, rng, DEPTHWISE_STRIDED) for c, k in DEPTHWISE_SHAPES], no_subtract),
        "fc": mean_rate([_matmul_integer_kernel(m, k, n, rng) for m, k, n in FC_SHAPES], [None] * len(FC_SHAPES)),
    }
    add = _elementwise_kernel("Add", False)
    bandwidth = 3 * 4 * add.work / timed(add)  # two fp32 operands read, one written
    long_chain, short_chain = _conv_chain_kernel(OVERHEAD_CHAIN + 1, rng), _conv_chain_kernel(1, rng)
    overhead_s = max((timed(long_chain, repeats_=4 * repeats) - timed(short_chain, repeats_=4 * repeats)) / OVERHEAD_CHAIN, 1e-8)

    import onnxruntime as ort

    base_data = base.model_dump() if base is not None else {}
    data = {
        **base_data,
        "name": "host",
        "description": f"this machine in onnxruntime {ort.__version__} with {threads} intra-op thread(s), calibrated",
        "core": platform.processor() or platform.machine() or "unknown CPU",
        "sources": [
            "measured by `ecgbench devices calibrate` on single-operator micro-kernels (ecgbench.measure.latency)",
            "active_power_mw and sleep_power_uw: documented defaults, not measured",
        ],
        "clock_hz": clock,
        "macs_per_cycle": MacRates(
            fp32=OpRates(**{k: v / clock for k, v in per_second["fp32"].items()}),
            int8=OpRates(**{k: v / clock for k, v in per_second["int8"].items()}),
            int8_dynamic=DynamicOpRates(**{k: v / clock for k, v in per_second["int8_dynamic"].items()}),
        ).model_dump(),
        "runtime": f"onnxruntime {ort.__version__} (CPU)",
        "sparse_kernels": False,  # onnxruntime's CPU Conv/MatMul kernels are dense
        "sparse_layouts": [],
        "sparse_efficiency": base_data.get("sparse_efficiency", 1.0),
        "bandwidth_bytes_per_s": bandwidth,
        "flash_bytes": _physical_memory_bytes(),
        "ram_bytes": _physical_memory_bytes(),
        "active_power_mw": base_data.get("active_power_mw", 15000.0),
        "sleep_power_uw": base_data.get("sleep_power_uw", 1e6),
        "layer_overhead_cycles": overhead_s * clock,
        "calibration": (
            f"{time.strftime('%Y-%m-%d %H:%M')} on {platform.node() or 'this machine'}: onnxruntime {ort.__version__}, "
            f"{threads} thread(s), fastest of {CALIBRATION_ROUNDS} medians of {repeats} runs per micro-kernel"
        ),
    }
    return profile_from_dict(data, "calibrated host profile"), records
