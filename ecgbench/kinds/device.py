"""Device profiles: the figures of a board or chip that the simulator predicts latency, energy and fit on.

A profile is data (a YAML file) registered by a plugin::

    from ecgbench import hookimpl
    from ecgbench.kinds.device import load_profile

    @hookimpl
    def ecgbench_register_devices(register):
        register(load_profile("my_board.yaml"))

Every figure carries its unit in its name and every profile lists the
sources its figures come from (datasheets, papers, or "estimate: ..." with the
reasoning). Throughput is given per operator class and per precision, because
the same core runs a dense convolution, a depthwise convolution and a
fully-connected layer at rates up to 2x apart (CMSIS-NN, Lai et al. 2018).

Two rate groups are optional, and a profile leaves them out when its software
stack has no such kernel:

- ``depthwise_conv_strided`` (in any precision's rates): depthwise
  convolutions with a stride above 1. onnxruntime's depthwise kernel runs them
  about 2.5x slower per MAC than stride 1 on the calibration machine; CMSIS-NN
  computes only the strided outputs, so the microcontroller profiles omit it
  and strided layers run at ``depthwise_conv``.
- ``int8_dynamic``: integer kernels fed by dynamic (run-time) activation
  quantization, onnxruntime's ConvInteger / MatMulInteger that
  ``quantize_dynamic`` emits. They are a different kernel from the static int8
  path (onnxruntime's ConvInteger ran 25x slower than its QDQ/QLinearConv path
  here). Dynamic quantization is a server/desktop technique: TFLite Micro and
  CMSIS-NN only run statically quantized int8, so the microcontroller profiles
  omit it; a dynamic layer then runs at the ``int8`` rates and the prediction's
  notes say so.

Profiles of measured boards (MLPerf Tiny systems: a board under one
inference engine, named in ``runtime``) live in
``plugins/devices/profiles/mlperf_tiny/``; they are not registered, and
``ecgbench devices simulate MODEL --device path/to/profile.yaml`` runs on any
profile file. Their int8 rates and power are calibrated by
``benchmarks/bench_mcu_validation.py`` (:mod:`ecgbench.measure.mcu_calibration`).

The ``host`` profile describes the machine running ecgbench with onnxruntime;
``ecgbench devices calibrate`` measures it and writes
:func:`default_host_profile_path` (or the file ``$ECGBENCH_HOST_PROFILE``
names), which the built-in plugin loads instead of the documented defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ecgbench.errors import ConfigError
from ecgbench.kinds.base import format_validation_error

OP_CLASSES = ("conv", "depthwise_conv", "fc", "elementwise")
"""Operator classes a profile gives a rate for (``ecgbench.measure.simulator`` maps pooling and copies to ``elementwise``)."""

PRECISIONS = ("fp32", "int8")
"""Precisions every profile gives rates for; fp16 layers run at the fp32 rate (no built-in core has fp16 SIMD MACs)."""

DYNAMIC_INT8 = "int8_dynamic"
"""The optional precision of dynamically quantized integer kernels (ConvInteger, MatMulInteger)."""

STRIDED_DEPTHWISE = "depthwise_conv_strided"
"""The optional operator class of depthwise convolutions with a stride above 1."""

SparseLayout = Literal["csr_int8", "bsr_1x4_int8"]
SPARSE_LAYOUTS: tuple[str, ...] = get_args(SparseLayout)
"""Sparse weight layouts a profile may declare kernels for (``sparse_layouts``); their bytes: :mod:`ecgbench.measure.flash`."""

HOST_PROFILE_ENV = "ECGBENCH_HOST_PROFILE"
"""Environment variable naming a calibrated host profile YAML to use instead of the default path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class KernelRates(_Strict):
    """Sustained multiply-accumulates per clock cycle of the convolution and matrix kernels of one precision."""

    conv: float = Field(gt=0, description="dense (full or grouped) convolution, MACs per cycle")
    depthwise_conv: float = Field(gt=0, description="depthwise convolution (groups == input channels), MACs per cycle")
    fc: float = Field(gt=0, description="fully connected / matrix multiply, MACs per cycle")
    im2col: float = Field(gt=0, description="values copied into im2col columns per cycle by dense convolutions with kernel > 1")
    depthwise_conv_strided: float | None = Field(
        None, gt=0, description="depthwise convolution with stride > 1, MACs per cycle; omitted: runs at depthwise_conv"
    )


class OpRates(KernelRates):
    """Sustained multiply-accumulates per clock cycle of one operator class (element operations for ``elementwise``)."""

    elementwise: float = Field(gt=0, description="element-wise, pooling and copy operations, element operations per cycle")


class DynamicOpRates(KernelRates):
    """Rates of dynamically quantized integer kernels (ConvInteger, MatMulInteger); element-wise work around them is float."""


class MacRates(_Strict):
    """Throughput per precision: fp32 (FPU), int8 (SIMD/DSP extension kernels) and, optionally, dynamic int8."""

    fp32: OpRates
    int8: OpRates
    int8_dynamic: DynamicOpRates | None = Field(
        None, description="dynamically quantized kernels (onnxruntime ConvInteger / MatMulInteger); omitted: they run at the int8 rates"
    )


class DeviceProfile(_Strict):
    """What the simulator needs to know about a device, with units in every name.

    ``macs_per_cycle`` are sustained rates of a realistic kernel library
    (CMSIS-NN, esp-nn, onnxruntime MLAS), not peak instruction rates. A dense
    convolution also pays for building its im2col columns (``im2col`` values
    per cycle; CMSIS-NN's arm_convolve_s8 and onnxruntime's Conv both do), a
    cost that weighs most on narrow layers.
    ``sparse_kernels`` says whether the software stack can skip zero weights
    of unstructured sparsity; only then does the simulator use a layer's
    effective MACs, at ``sparse_efficiency`` of the dense rate (index decoding
    and irregular access cost the rest).
    ``runtime`` names the software that runs the model, and so the form its
    flash figure counts (:mod:`ecgbench.measure.flash`): dense weights, or a
    sparse layout of ``sparse_layouts`` (which needs ``sparse_kernels``).
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="short name used in suites, e.g. nrf52840")
    description: str = Field(min_length=1, description="one line: the device class this profile stands for")
    core: str = Field(min_length=1, description="processor core and extensions, e.g. 'Arm Cortex-M4F (DSP, FPU)'")
    sources: list[str] = Field(min_length=1, description="where the figures come from: datasheet sections, papers, or 'estimate: why'")
    clock_hz: float = Field(gt=0, description="core clock while running inference")
    macs_per_cycle: MacRates
    runtime: str = Field(min_length=1, description="the inference runtime and kernel library the figures assume, e.g. 'TFLite Micro + CMSIS-NN'")
    sparse_kernels: bool = Field(description="true when the software stack runs sparse (zero-skipping) kernels")
    sparse_layouts: list[SparseLayout] = Field(
        default_factory=list, description="sparse weight layouts the runtime executes from flash (csr_int8, bsr_1x4_int8); [] for dense kernels only"
    )
    sparse_efficiency: float = Field(gt=0, le=1, description="sparse-kernel rate as a fraction of the dense rate (used only with sparse_kernels)")
    bandwidth_bytes_per_s: float = Field(gt=0, description="sustained bytes per second between memory and core (weights and activations)")
    flash_bytes: int = Field(gt=0, description="non-volatile memory available for the model")
    ram_bytes: int = Field(gt=0, description="RAM available for activations and scratch buffers")
    active_power_mw: float = Field(gt=0, description="power while running inference")
    sleep_power_uw: float = Field(gt=0, description="power between inferences (deepest mode that keeps a timed wake-up)")
    layer_overhead_cycles: float = Field(gt=0, description="fixed cost of dispatching one operator (interpreter, kernel set-up)")
    calibration: str = Field("", description="how the figures were measured on this machine; empty for datasheet figures and estimates")

    @model_validator(mode="after")
    def _layouts_need_sparse_kernels(self) -> "DeviceProfile":
        if self.sparse_layouts and not self.sparse_kernels:
            raise ValueError("sparse_layouts lists layouts the runtime runs, so sparse_kernels must be true (or list no layouts: [])")
        if len(set(self.sparse_layouts)) != len(self.sparse_layouts):
            raise ValueError(f"sparse_layouts lists a layout twice: {list(self.sparse_layouts)}")
        return self

    def rate(self, precision: str, op_class: str) -> float:
        """MACs (or element operations) per cycle for ``precision`` ('fp32', 'fp16', 'int8', 'int8_dynamic') and an operator class."""
        return self.resolve_rate(precision, op_class)[0]

    def resolve_rate(self, precision: str, op_class: str) -> tuple[float, str]:
        """(rate, note): the note says which rate stood in for one this profile does not give, "" when none did.

        ``op_class`` is an OP_CLASSES name, ``im2col`` or ``depthwise_conv_strided``
        (falls back to ``depthwise_conv`` without a note: that is its documented meaning).
        ``int8_dynamic`` falls back to the ``int8`` rates, with a note.
        """
        note = ""
        rates: KernelRates = self.macs_per_cycle.int8 if precision == "int8" else self.macs_per_cycle.fp32
        if precision == DYNAMIC_INT8:
            dynamic = self.macs_per_cycle.int8_dynamic
            if dynamic is not None and hasattr(dynamic, op_class):
                rates = dynamic
            else:
                rates = self.macs_per_cycle.int8
                if dynamic is None:
                    note = f"profile '{self.name}' gives no int8_dynamic rates: dynamic-quantized layers (ConvInteger, MatMulInteger) use its int8 rates"
        value = getattr(rates, op_class)
        if value is None and op_class == STRIDED_DEPTHWISE:
            value = rates.depthwise_conv
        return value, note

    def to_yaml(self) -> str:
        """The profile as YAML that :func:`load_profile` reads back."""
        return yaml.safe_dump(self.model_dump(exclude_none=True), sort_keys=False, width=120)


def profile_from_dict(data: Any, where: str) -> DeviceProfile:
    """Validate a mapping into a DeviceProfile; ConfigError lines read ``where.field: problem``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a device profile must be a mapping of fields, got {type(data).__name__}")
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        detail = format_validation_error(exc, where, DeviceProfile)
        raise ConfigError(f"invalid device profile: {detail} (fix these fields in {where})") from None


def load_profile(path: str | Path) -> DeviceProfile:
    """Read a device profile YAML, raising ConfigError naming the file and the field at fault."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"device profile {path} does not exist; check the path (or run `ecgbench devices calibrate` for the host)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"device profile {path} is not valid YAML: {exc}") from None
    return profile_from_dict(data, str(path))


def save_profile(profile: DeviceProfile, path: str | Path) -> Path:
    """Write ``profile`` as YAML (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profile.to_yaml(), encoding="utf-8")
    return path


def default_host_profile_path() -> Path:
    """Where ``ecgbench devices calibrate`` writes the host profile: ``$ECGBENCH_HOME/devices/host.yaml``."""
    # The rule of ecgbench.run.runner.default_home, repeated here because importing the
    # runner pulls in torch and this runs every time the device plugins register.
    return Path(os.environ.get("ECGBENCH_HOME", ".ecgbench")) / "devices" / "host.yaml"


def calibrated_host_profile_path() -> Path | None:
    """The calibrated host profile to use: ``$ECGBENCH_HOST_PROFILE`` (must exist), else the default path if present."""
    explicit = os.environ.get(HOST_PROFILE_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{HOST_PROFILE_ENV}={explicit} names no file; run `ecgbench devices calibrate --out {explicit}` or unset it")
        return path
    path = default_host_profile_path()
    return path if path.is_file() else None
