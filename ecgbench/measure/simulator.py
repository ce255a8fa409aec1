"""Predict latency, energy and memory fit of an analysed ONNX graph on a device profile.

Latency, per layer (a roofline plus a dispatch cost)::

    compute_cycles = work / macs_per_cycle[precision][class]
                     + im2col_elements / macs_per_cycle[precision].im2col       (dense convolutions)
    memory_cycles  = (activation bytes in + out + parameter bytes) / bandwidth_bytes_per_s x clock_hz
    cycles         = max(compute_cycles, memory_cycles) + layer_overhead_cycles

``work`` is the layer's MACs for conv / depthwise_conv / fc layers and its
element operations otherwise (pooling, copies and unsupported operators use the
``elementwise`` rate). Statically quantized int8 layers use the int8 rates;
dynamically quantized ones (ConvInteger, MatMulInteger: the analyzer's
``quantization: "dynamic"``) the profile's ``int8_dynamic`` rates, or the int8
rates with a note in ``notes`` when the profile gives none; fp32 and fp16 the
fp32 rates. A depthwise convolution with a stride above 1 runs at the
``depthwise_conv_strided`` rate when the profile gives one. Unstructured
sparsity earns nothing unless the profile declares sparse kernels: then a layer
with weights runs ``effective_macs / (rate x sparse_efficiency)`` cycles when
that beats its dense cycles. ``free`` layers
(aliases, fused Q/DQ) cost nothing.

Memory. Peak RAM is the largest, over the layers in execution order, of the
activation buffers alive at that layer (each from the layer that writes it to
the last layer that reads it; the input from the start, outputs to the end;
no in-place reuse) plus that layer's scratch buffer
(:func:`ecgbench.measure.onnx_graph.scratch_bytes`, CMSIS-NN's im2col sizes). Flash need
is ``flash``, the bytes of the form the profile's runtime executes in place
(:func:`ecgbench.measure.flash.flash_figure`: dense fp32, int8, or a sparse layout the
profile declares kernels for; never a compressed file), or ``flash_bytes`` when the
caller gives a number, else the parameters' stored bytes. The model fits when
both its flash need and its peak RAM are within the profile's; ``why`` says which
is exceeded. Neither counts the runtime's own code or RAM.

Energy. ``energy_mj = active_power_mw x latency_s``. A day of screening runs
one inference per recording, one recording every ``screening_interval_min``
minutes, and sleeps the rest of the day:
``energy_per_day_j = active_s x active_power + (86400 - active_s) x sleep_power``.
The ECG front end and the radio are not counted.

JSON schema of :meth:`DevicePrediction.to_dict` (``schema: "ecgbench.device-prediction/2"``;
version 1 had no ``flash_format`` and ``flash_runtime``, and its ``flash_source: "deployable"``
was the smallest compressed file, which no device executes)::

    {
      "schema": "ecgbench.device-prediction/2",
      "device": str,
      "latency_ms": float, "energy_mj": float, "energy_per_day_j": float,
      "inferences_per_day": float, "duty_cycle": float,      # share of the day spent computing
      "peak_ram_bytes": int, "ram_capacity_bytes": int,
      "flash_bytes": int, "flash_capacity_bytes": int,
      "flash_format": str,                                   # "fp32", "int8", "csr_int8", ... ("" unless runtime)
      "flash_runtime": str,                                  # the profile's runtime, e.g. "TFLite Micro + CMSIS-NN"
      "flash_source": "runtime" | "given" | "parameters",    # flash_figure, the caller's number, stored parameter bytes
      "fits": bool, "why": str,                              # why is "" when it fits
      "sparse_kernels_used": bool,
      "notes": [str, ...],                                   # rates the profile lacked and what stood in
      "per_layer": [{
        "name": str, "op_type": str, "op_class": str,
        "precision": "fp32" | "int8" | "int8_dynamic",        # the rate table used
        "work": int,                                         # MACs or element operations costed
        "compute_cycles": float, "memory_cycles": float, "cycles": float,
        "latency_ms": float, "bound": "compute" | "memory" | "free",
        "sparse": bool,                                      # effective MACs were used
        "live_bytes": int                                    # activations alive + scratch at this layer
      }, ...]
    }
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ecgbench.kinds.device import DYNAMIC_INT8, STRIDED_DEPTHWISE, DeviceProfile
from ecgbench.measure.flash import FlashFigure
from ecgbench.measure.onnx_graph import GraphStats, LayerStats
from ecgbench.text import human_bytes

SCHEMA = "ecgbench.device-prediction/2"
SECONDS_PER_DAY = 86_400.0

# Layer class -> the profile's operator class whose rate it runs at.
RATE_CLASS = {
    "conv": "conv",
    "depthwise_conv": "depthwise_conv",
    "fc": "fc",
    "elementwise": "elementwise",
    "pool": "elementwise",
    "copy": "elementwise",
    "other": "elementwise",
}
MAC_CLASSES = ("conv", "depthwise_conv", "fc")


@dataclass
class LayerPrediction:
    """Predicted cost of one layer on one device."""

    name: str
    op_type: str
    op_class: str
    precision: str
    work: int
    compute_cycles: float
    memory_cycles: float
    cycles: float
    latency_ms: float
    bound: str
    sparse: bool
    live_bytes: int


@dataclass
class DevicePrediction:
    """Latency, energy, memory and fit of one model on one device."""

    device: str
    latency_ms: float
    energy_mj: float
    energy_per_day_j: float
    inferences_per_day: float
    duty_cycle: float
    peak_ram_bytes: int
    ram_capacity_bytes: int
    flash_bytes: int
    flash_capacity_bytes: int
    flash_format: str
    flash_runtime: str
    flash_source: str
    fits: bool
    why: str
    sparse_kernels_used: bool
    notes: list[str] = field(default_factory=list)
    per_layer: list[LayerPrediction] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict following the schema in the module docstring."""
        return {"schema": SCHEMA, **asdict(self)}


def simulate(
    graph: GraphStats,
    profile: DeviceProfile,
    flash_bytes: int | None = None,
    screening_interval_min: float = 5.0,
    flash: FlashFigure | None = None,
) -> DevicePrediction:
    """Predict one inference of ``graph`` on ``profile`` and a day of screening every ``screening_interval_min`` minutes.

    ``flash``: the model's :func:`~ecgbench.measure.flash.flash_figure` for this profile's runtime;
    ``flash_bytes``: a flash need given by the caller instead (neither: the parameters' stored bytes).
    """
    if screening_interval_min <= 0:
        raise ValueError("screening_interval_min must be positive")
    live = live_bytes_per_layer(graph, _as_run(graph))
    notes: list[str] = []
    per_layer = [_layer(layer, profile, live_now, notes) for layer, live_now in zip(graph.layers, live)]
    latency_s = sum(p.cycles for p in per_layer) / profile.clock_hz
    peak_ram = max(live, default=sum(graph.buffer_bytes.get(b, 0) for b in graph.graph_inputs))
    if flash_bytes is not None:
        flash_need, flash_format, flash_source = int(flash_bytes), "", "given"
    elif flash is not None:
        flash_need, flash_format, flash_source = flash.bytes, flash.format, "runtime"
    else:
        flash_need, flash_format, flash_source = graph.param_bytes, "", "parameters"
    inferences = 24 * 60 / screening_interval_min
    active_s = min(inferences * latency_s, SECONDS_PER_DAY)
    energy_per_day_j = active_s * profile.active_power_mw / 1e3 + (SECONDS_PER_DAY - active_s) * profile.sleep_power_uw / 1e6
    reasons = []
    if flash_need > profile.flash_bytes:
        form = f" ({flash_format} on {profile.runtime})" if flash_format else ""
        reasons.append(f"needs {human_bytes(flash_need)} flash{form}, has {human_bytes(profile.flash_bytes)}")
    if peak_ram > profile.ram_bytes:
        reasons.append(f"needs {human_bytes(peak_ram)} RAM, has {human_bytes(profile.ram_bytes)}")
    return DevicePrediction(
        device=profile.name,
        latency_ms=latency_s * 1e3,
        energy_mj=profile.active_power_mw * latency_s,
        energy_per_day_j=energy_per_day_j,
        inferences_per_day=inferences,
        duty_cycle=active_s / SECONDS_PER_DAY,
        peak_ram_bytes=int(peak_ram),
        ram_capacity_bytes=profile.ram_bytes,
        flash_bytes=flash_need,
        flash_capacity_bytes=profile.flash_bytes,
        flash_format=flash_format,
        flash_runtime=profile.runtime,
        flash_source=flash_source,
        fits=not reasons,
        why="; ".join(reasons),
        sparse_kernels_used=any(p.sparse for p in per_layer),
        notes=notes,
        per_layer=per_layer,
    )


def precision_of(layer: LayerStats) -> str:
    """The rate table a layer runs at: 'int8_dynamic' (ConvInteger, MatMulInteger), 'int8' or 'fp32' (also for fp16)."""
    if layer.quantization == "dynamic":
        return DYNAMIC_INT8
    return "int8" if layer.compute_dtype == "int8" else "fp32"


def rate_class_of(layer: LayerStats) -> str:
    """The profile's operator class for a layer: RATE_CLASS, with strided depthwise convolutions apart."""
    if layer.op_class == "depthwise_conv" and any(s > 1 for s in layer.strides):
        return STRIDED_DEPTHWISE
    return RATE_CLASS[layer.op_class]


def _layer(layer: LayerStats, profile: DeviceProfile, live_now: int, notes: list[str]) -> LayerPrediction:
    precision = precision_of(layer)
    if layer.op_class == "free":
        return LayerPrediction(layer.name, layer.op_type, layer.op_class, precision, 0, 0.0, 0.0, 0.0, 0.0, "free", False, live_now)
    rate, note = profile.resolve_rate(precision, rate_class_of(layer))
    if note and note not in notes:
        notes.append(note)
    work = layer.macs if layer.op_class in MAC_CLASSES else layer.ops
    compute = work / rate
    sparse = False
    if profile.sparse_kernels and layer.op_class in MAC_CLASSES and layer.effective_macs < layer.macs:
        sparse_cycles = layer.effective_macs / (rate * profile.sparse_efficiency)
        if sparse_cycles < compute:
            compute, work, sparse = sparse_cycles, layer.effective_macs, True
    if layer.im2col_elements:
        compute += layer.im2col_elements / profile.rate(precision, "im2col")
    moved = layer.activation_bytes_in + layer.activation_bytes_out + layer.param_bytes
    memory = moved / profile.bandwidth_bytes_per_s * profile.clock_hz
    cycles = max(compute, memory) + profile.layer_overhead_cycles
    bound = "memory" if memory > compute else "compute"
    return LayerPrediction(
        layer.name, layer.op_type, layer.op_class, precision, int(work), compute, memory, cycles,
        cycles / profile.clock_hz * 1e3, bound, sparse, live_now,
    )


def _as_run(graph: GraphStats) -> dict[str, int]:
    """Activation buffer bytes as a profile's runtime holds them: no profile computes in fp16 (see
    ``ecgbench.kinds.device.PRECISIONS``), so an fp16 layer runs in fp32 and its outputs take 4 bytes an element."""
    widened = dict(graph.buffer_bytes)
    for layer in graph.layers:
        if layer.compute_dtype == "fp16":
            for name in layer.writes:
                widened[name] = graph.buffer_bytes.get(name, 0) * 2
    return widened


def live_bytes_per_layer(graph: GraphStats, buffer_bytes: dict[str, int] | None = None) -> list[int]:
    """Bytes of activation buffers alive at each layer (written earlier or now, read now or later) plus its scratch.

    ``buffer_bytes``: each buffer's size (default: as stored in the ONNX graph, ``graph.buffer_bytes``).
    """
    sizes = graph.buffer_bytes if buffer_bytes is None else buffer_bytes
    last = len(graph.layers)
    start: dict[str, int] = {name: -1 for name in graph.graph_inputs}
    end: dict[str, int] = {}
    for step, layer in enumerate(graph.layers):
        for name in layer.writes:
            start.setdefault(name, step)
        for name in layer.reads:
            end[name] = step
    for name in graph.graph_outputs:
        end[name] = last
    out = []
    for step, layer in enumerate(graph.layers):
        alive = sum(
            size for name, size in sizes.items() if start.get(name, last + 1) <= step <= end.get(name, start.get(name, -2))
        )
        out.append(int(alive + layer.scratch_bytes))
    return out


