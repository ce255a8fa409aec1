"""Suites: YAML -> frozen, typed, validated configs, with errors naming file and key path.

A suite is a matrix of datasets x models x compressor pipelines x seeds,
with suite-wide data, training and measurement settings, and the device
profiles every cell is simulated on::

    name: quick
    data: {fs_hz: 100, window_s: 30}
    training: {epochs: 8}
    matrix:
      datasets: [synthetic: {n_records: 240}]
      models: [hannun34: {width: 4}]
      compressors:
        - dense
        - magnitude: {sparsity: 0.8}
        - [lth_ecg, int8_static]
        - {label: mag-90-iter, steps: [magnitude: {sparsity: 0.9, steps: 3}]}
      devices: [nrf52840, host]
      seeds: [0]

Everything is checked before anything runs: unknown keys, wrong types,
unknown plugin names (with a close-match suggestion), empty lists, a
PyTorch-only step after a quantizer, duplicate pipeline labels.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ecgbench.config.labels import pipeline_label, settings_text, unique
from ecgbench.errors import ConfigError
from ecgbench.kinds.base import PluginConfig, format_validation_error, parse_config
from ecgbench.registry import Registry
from ecgbench.train.trainer import TrainRecipe, resolve_device, uses_amp


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatrixSpec(_Strict):
    """The axes of the suite; entries are plugin names, ``{name: params}`` or pipelines."""

    datasets: list[Any] = Field(min_length=1)
    models: list[Any] = Field(min_length=1)
    compressors: list[Any] = Field(min_length=1, description="pipelines: a step, or a list of steps applied left to right")
    devices: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)


class ReportSpec(_Strict):
    """Reports written after the run (``ecgbench report`` can write more later)."""

    formats: list[str] = Field(default_factory=lambda: ["md"])
    out: str | None = Field(None, description="folder for reports, relative to the current directory; default reports/<suite name>")
    settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="settings of each reporter by name, e.g. {models: {max_bytes: 2500000}}"
    )


class SuiteSpec(_Strict):
    """Top level of a suite file."""

    name: str
    description: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    measure: dict[str, Any] = Field(default_factory=dict)
    matrix: MatrixSpec
    executor: Any = "local"
    report: ReportSpec = ReportSpec()
    loggers: dict[str, dict[str, Any] | None] = Field(
        default_factory=dict, description="experiment loggers enabled for every run, by name with their settings, e.g. {mlflow: {experiment: quick}}"
    )


@dataclass(frozen=True)
class PluginRef:
    """A plugin chosen by name with its validated config."""

    kind: str
    name: str
    config: PluginConfig

    def identity(self) -> dict[str, Any]:
        """Name plus non-default settings: adding a defaulted field never renames old results."""
        return {"name": self.name, **self.config.model_dump(mode="json", exclude_defaults=True)}

    def params(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json", exclude_defaults=True)


@dataclass(frozen=True)
class Pipeline:
    """Compressor steps applied left to right, with the label reports use."""

    label: str
    steps: tuple[PluginRef, ...]

    def identity(self) -> list[dict[str, Any]]:
        return [step.identity() for step in self.steps]


@dataclass(frozen=True)
class Suite:
    """A validated suite, ready to expand into cells."""

    path: Path
    name: str
    description: str
    data: PluginConfig  # ecgbench.data.config.DataConfig
    training: TrainRecipe
    measure: PluginConfig  # ecgbench.measure.artifact.MeasureConfig
    datasets: tuple[PluginRef, ...]
    models: tuple[PluginRef, ...]
    pipelines: tuple[Pipeline, ...]
    devices: tuple[str, ...]
    seeds: tuple[int, ...]
    executor: PluginRef
    report: ReportSpec
    loggers: tuple[PluginRef, ...] = ()  # experiment loggers enabled for its runs; not part of any result's identity
    raw: dict = field(default_factory=dict, compare=False)


def load_suite(path: str | Path, registry: Registry, overrides: dict[str, dict[str, Any]] | None = None) -> Suite:
    """Read and validate a suite file; ``overrides`` maps a dataset name to params set from the command line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read suite {path}: {exc.strerror}") from None
    raw = parse_yaml(text, str(path))
    return build_suite(raw, path, registry, overrides or {})


def parse_yaml(text: str, where: str) -> Any:
    """YAML with ``1e-3`` read as a number (YAML 1.1 would make it a string)."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}:{loc}: malformed YAML: {problem}") from None


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<' merges may be overridden by explicit keys
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}' (first on line {first[key]}); keep one of them", key_node.start_mark
                    )
                first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)$|^[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)


def build_suite(raw: Any, path: Path, registry: Registry, overrides: dict[str, dict[str, Any]]) -> Suite:
    """Validate a parsed suite mapping (see module docstring)."""
    from ecgbench.data.config import DataConfig
    from ecgbench.measure.artifact import MeasureConfig

    where = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a suite must be a mapping with at least 'name' and 'matrix'")
    try:
        spec = SuiteSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"{where} at ", SuiteSpec).replace(" at .", " at ")) from None

    data = parse_config(DataConfig, spec.data, f"{where} at data")
    training = parse_config(TrainRecipe, spec.training, f"{where} at training")
    measure = parse_config(MeasureConfig, spec.measure, f"{where} at measure")
    matrix = spec.matrix

    datasets = tuple(
        _plugin_ref("datasets", entry, f"{where} at matrix.datasets[{i}]", registry, overrides)
        for i, entry in enumerate(matrix.datasets)
    )
    models = tuple(_plugin_ref("models", entry, f"{where} at matrix.models[{i}]", registry) for i, entry in enumerate(matrix.models))
    pipelines = _labelled([_pipeline(entry, f"{where} at matrix.compressors[{i}]", registry) for i, entry in enumerate(matrix.compressors)], where)
    _check_unique([settings_text(_named((d,))) for d in datasets], f"{where} at matrix.datasets", "dataset", "remove the duplicate")
    _check_unique([settings_text(_named((m,))) for m in models], f"{where} at matrix.models", "model", "remove the duplicate")
    devices = []
    for i, name in enumerate(matrix.devices):
        registry.get("devices", name, f"{where} at matrix.devices[{i}]")
        devices.append(name)
    _check_unique(devices, f"{where} at matrix.devices", "device", "remove the duplicate")
    _check_unique([str(s) for s in matrix.seeds], f"{where} at matrix.seeds", "seed", "remove the duplicate")
    executor = _plugin_ref("executors", spec.executor, f"{where} at executor", registry)
    for i, fmt in enumerate(spec.report.formats):
        registry.get("reporters", fmt, f"{where} at report.formats[{i}]")
    for fmt, settings in spec.report.settings.items():
        if fmt not in spec.report.formats:
            raise ConfigError(f"{where} at report.settings.{fmt}: '{fmt}' is not in report.formats {spec.report.formats}; add it there or remove its settings")
        registry.get("reporters", fmt, f"{where} at report.settings").from_params(settings, f"{where} at report.settings.{fmt}")
    loggers = tuple(_plugin_ref("loggers", {name: settings}, f"{where} at loggers", registry) for name, settings in spec.loggers.items())
    return Suite(
        path=path,
        name=spec.name,
        description=spec.description,
        data=data,
        training=training,
        measure=measure,
        datasets=datasets,
        models=models,
        pipelines=pipelines,
        devices=tuple(devices),
        seeds=tuple(matrix.seeds),
        executor=executor,
        report=spec.report,
        loggers=loggers,
        raw=raw,
    )


def with_loggers(suite: Suite, names: list[str], registry: Registry) -> Suite:
    """The suite with the loggers ``names`` enabled too (``ecgbench run --log NAME``): at default settings
    unless the suite lists them with its own."""
    refs = list(suite.loggers)
    for name in names:
        if all(ref.name != name for ref in refs):
            refs.append(_plugin_ref("loggers", name, "--log", registry))
    return dataclasses.replace(suite, loggers=tuple(refs))


def _split_entry(entry: Any, where: str) -> tuple[str, Any]:
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and len(entry) == 1:
        (name, params), = entry.items()
        if not isinstance(name, str):
            raise ConfigError(f"{where}: expected a plugin name, got {name!r}")
        return name, params if params is not None else {}
    raise ConfigError(f"{where}: expected a plugin name or a one-key mapping {{name: {{settings}}}}, got {entry!r}")


def _plugin_ref(kind: str, entry: Any, where: str, registry: Registry, overrides: dict | None = None) -> PluginRef:
    name, params = _split_entry(entry, where)
    cls = registry.get(kind, name, where)
    if overrides and name in overrides:
        params = {**(params or {}), **overrides[name]}
    config = parse_config(cls.Config, params, f"{where}.{name}")
    return PluginRef(kind, name, config)


def _pipeline(entry: Any, where: str, registry: Registry) -> Pipeline:
    label = None
    if isinstance(entry, dict) and "steps" in entry:
        extra = set(entry) - {"steps", "label"}
        if extra:
            raise ConfigError(f"{where}: unknown key '{sorted(extra)[0]}' in a pipeline; allowed: label, steps")
        label, steps_raw = entry.get("label"), entry["steps"]
        if label is not None and not isinstance(label, str):
            raise ConfigError(f"{where}.label: expected a string, got {label!r}")
    elif isinstance(entry, list):
        steps_raw = entry
    else:
        steps_raw = [entry]
    if not isinstance(steps_raw, list) or not steps_raw:
        raise ConfigError(f"{where}: a pipeline needs at least one step (use 'dense' for none)")
    if isinstance(entry, list):
        step_where = [f"{where}[{j}]" for j in range(len(steps_raw))]
    elif isinstance(entry, dict) and "steps" in entry:
        step_where = [f"{where}.steps[{j}]" for j in range(len(steps_raw))]
    else:
        step_where = [where]
    steps = tuple(_plugin_ref("compressors", s, w, registry) for s, w in zip(steps_raw, step_where))
    onnx_from = None
    for step, step_at in zip(steps, step_where):
        cls = registry.get("compressors", step.name)
        cls.check_config(step.config, registry, f"{step_at}.{step.name}")
        if onnx_from and not cls.accepts_onnx:
            raise ConfigError(
                f"{where}: '{step.name}' works on PyTorch models but follows '{onnx_from}', which outputs ONNX; "
                f"put '{onnx_from}' last"
            )
        if cls.produces_onnx:
            onnx_from = step.name
    return Pipeline(label or "", steps)


def _named(steps: tuple[PluginRef, ...]) -> list[tuple[str, dict[str, Any]]]:
    return [(step.name, step.params()) for step in steps]


def auto_label(steps: tuple[PluginRef, ...]) -> str:
    """``magnitude`` for defaults, ``magnitude-s0.9`` otherwise, steps joined by ``+`` (:mod:`ecgbench.config.labels`)."""
    return pipeline_label(_named(steps))


def _labelled(pipelines: list[Pipeline], where: str) -> tuple[Pipeline, ...]:
    """Pipelines with their labels: chosen ones checked for duplicates, automatic ones made distinct (``-2``)."""
    automatic = [not p.label for p in pipelines]
    _check_unique([p.label for p in pipelines if p.label], f"{where} at matrix.compressors", "pipeline label", "give each a distinct 'label'")
    _check_unique(
        [settings_text(_named(p.steps)) for p in pipelines],
        f"{where} at matrix.compressors", "pipeline", "remove the duplicate (the same steps and settings make the same cells)",
    )
    labels = unique([p.label or auto_label(p.steps) for p in pipelines], automatic)
    return tuple(Pipeline(label, p.steps) for label, p in zip(labels, pipelines))


def _check_unique(values: list[str], where: str, what: str, fix: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"{where}: {what} '{value}' appears twice; {fix}")
        seen.add(value)


# --- identity -------------------------------------------------------------------
# Everything that changes a computed result is part of the identity of a cell, of its
# dense baseline and of its cached pipeline steps (issue 17); what only changes how a
# run is carried out (executor, --workers, progress bars) is not.
#
# The ecgbench version is not part of it: a release that changes docs, reports or the
# CLI must not rename every stored result. RESULTS_EPOCH is bumped by hand, in the same
# commit, by a change that alters computed results (training loop, metrics,
# preprocessing, a compressor's algorithm); then every result is recomputed.
RESULTS_EPOCH = 2
# 2 (2026-12-04): measurements changed without a change to training: device rates calibrated on
# MLPerf Tiny boards, flash bytes of the executable form and the fit verdict on them, fp16 graphs
# costed in RAM as fp32, the paired ΔF1 interval, windowed deployment. Old rows would mix both.

# TrainRecipe fields that change how fast, not what is computed. None today: num_threads
# changes the trained weights (the same lth cell scored 0.861 with 2 threads, 0.928 with 1).
EXECUTION_ONLY: frozenset[str] = frozenset()
# device and amp enter the identity as resolved (runtime_identity): 'auto' on a CPU-only
# machine computes exactly what 'cpu' does, and amp changes nothing off CUDA.
RESOLVED = frozenset({"device", "amp"})


def non_default(config: PluginConfig, drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {k: v for k, v in config.model_dump(mode="json", exclude_defaults=True).items() if k not in drop}


def numeric_libraries() -> dict[str, str]:
    """Versions of the libraries whose kernels compute the results.

    torch trains and runs the PyTorch models; onnxruntime quantizes and scores every
    exported model; numpy draws the batch order and training crops (NEP 19 lets a
    Generator method's algorithm change between numpy releases). scipy is left out:
    its filters and resampling, used once in preprocessing, are fixed algorithms.
    """
    import numpy
    import onnxruntime

    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__}


def runtime_identity(training: TrainRecipe) -> dict[str, Any]:
    """The machine-dependent part of a result's identity: library versions, and the device
    and mixed precision actually used when they are not the CPU's (as the Trainer resolves them)."""
    device = resolve_device(training.device)
    out: dict[str, Any] = {"libraries": numeric_libraries()}
    if device.type != "cpu":
        out["device"] = device.type
        out["amp"] = uses_amp(training, device)
    return out


def baseline_identity_of(
    suite: Suite, dataset: PluginRef, fingerprint: str, model: PluginRef, seed: int, runtime: dict[str, Any]
) -> dict[str, Any]:
    """What the dense baseline depends on; a cell adds its pipeline, measurement and devices."""
    identity_params = {k: v for k, v in dataset.params().items() if k != "path"}  # a folder's place is not its content
    return {
        "dataset": {"name": dataset.name, "params": identity_params, "fingerprint": fingerprint},
        "data": non_default(suite.data),
        "model": model.identity(),
        "training": non_default(suite.training, EXECUTION_ONLY | RESOLVED),
        "seed": seed,
        "results_epoch": RESULTS_EPOCH,
        "runtime": runtime,
    }
