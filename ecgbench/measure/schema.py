"""The typed metrics schema: one :class:`Metric` per figure a cell reports.

A cell's metrics are a JSON dict (:func:`ecgbench.measure.artifact.measure_artifact`);
a :class:`Metric` names one value in it by its dotted ``path`` and says how to
show it (label, unit, format), what it means (definition), which way is
better, how seeds combine and whether ``ecgbench compare`` gates on it. The
summary table, the reporters, ``compare`` and ``eval`` read values through
these declarations, so a plugin adds a metric by declaring one
(hook ``ecgbench_register_metrics``) with a ``compute`` function: its value
is stored at ``plugin_metrics.<name>`` and its declaration at
``metric_declarations.<path>`` of every cell it was measured on, so reports
and ``compare`` show it even where the plugin is not installed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal

from ecgbench.errors import PluginError
from ecgbench.text import human_bytes, kb

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

PLUGIN_SECTION = "plugin_metrics"
"""Section of a cell's metrics holding the values of plugin metrics, by name."""
DECLARATIONS_SECTION = "metric_declarations"
"""Section of a cell's metrics holding the declarations of the plugin metrics measured on it, by path."""
DEVICE = "{device}"
"""Placeholder in the path, label and column of a per-device metric, replaced by each device's name."""

Aggregate = Literal["mean_std", "all_true"]


# --- values -------------------------------------------------------------------------------
def lookup(mapping: Any, path: str | Iterable[str]) -> Any:
    """The value at a dotted path (``"test.challenge_f1"``) of nested dicts, or None where a key is missing."""
    keys = path.split(".") if isinstance(path, str) else path
    value = mapping
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, bool, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of one figure across seeds."""

    mean: float
    std: float
    n: int

    def format(self, fmt, std_fmt=None) -> str:
        """``fmt(mean)``, followed by ``± std_fmt(std)`` (default ``fmt``) when seeds were averaged and differ."""
        if self.n == 1 or self.std == 0:
            return fmt(self.mean)
        return f"{fmt(self.mean)} ± {(std_fmt or fmt)(self.std)}"


def stat(values: Iterable[Any]) -> Stat | None:
    """Mean and sample std (0 for one value) of the numeric values; None when there is none."""
    nums = [v for v in (number(x) for x in values) if v is not None]
    if not nums:
        return None
    mean = sum(nums) / len(nums)
    std = math.sqrt(sum((v - mean) ** 2 for v in nums) / (len(nums) - 1)) if len(nums) > 1 else 0.0
    return Stat(mean, std, len(nums))


def fits_text(values: list[Any]) -> str:
    """Booleans across seeds: ``yes`` (all true), ``no`` (all false), ``k/n seeds``, ``-`` (none)."""
    flags = [v for v in values if isinstance(v, bool)]
    if not flags:
        return "-"
    if all(flags):
        return "yes"
    if not any(flags):
        return "no"
    return f"{sum(flags)}/{len(flags)} seeds"


# --- formats ------------------------------------------------------------------------------
def human_number(value: float) -> str:
    """Three significant figures without exponent: ``1.23``, ``12.3``, ``123``, ``1234``."""
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio(value: float) -> str:
    """A ratio as ``12.3x`` (``142x`` from 100 up)."""
    return f"{value:.0f}x" if abs(value) >= 100 else f"{value:.1f}x"


FORMATS: dict[str, Callable[[float], str]] = {
    "bytes": human_bytes,
    "kb": kb,
    "number": human_number,
    "ratio": ratio,
    "times": lambda v: f"{v:.2f}x",
    "signed_points": lambda v: f"{v:+.2f}",
    "points": lambda v: f"{v:.2f}",
}
"""Named formats a :class:`Metric` may use; any other ``format`` is a Python format spec (``".3f"``)."""


def formatter(fmt: str) -> Callable[[float], str]:
    """The function printing a value in format ``fmt`` (a name of :data:`FORMATS` or a format spec)."""
    return FORMATS.get(fmt) or (lambda v: format(v, fmt))


# --- declarations -------------------------------------------------------------------------
@dataclass(frozen=True)
class Gate:
    """How ``ecgbench compare`` judges a metric: the largest allowed worsening from BASE to CURRENT.

    ``change="points"``: ``(current - base) * scale`` (test F1 in points: scale 100);
    ``change="relative"``: ``current / base - 1`` (0.05 = 5 % more). The change
    counts as worsening in the direction opposite to ``Metric.higher_is_better``.
    ``noun`` names the metric in the verdict ("F1 dropped 0.60 pts > 0.5").
    """

    threshold: float
    change: Literal["points", "relative"] = "points"
    scale: float = 100.0
    noun: str = ""


@dataclass(frozen=True)
class Compared:
    """How a metric appears in ``ecgbench compare``: its column label, value format and optional gate."""

    label: str
    format: str = ".3f"
    gate: Gate | None = None


@dataclass(frozen=True)
class Measurement:
    """What a metric's ``compute`` receives: the final model's outputs on validation and test, and its size.

    ``*_probabilities`` are ``[records, classes]`` softmax outputs of the exported
    model (onnxruntime), rows in the order of ``*_labels`` (class indices into ``classes``);
    ``size`` is the cell's size section (``storage_bytes``, ``nonzero_params``, ...).
    """

    classes: tuple[str, ...]
    test_labels: "np.ndarray"
    test_probabilities: "np.ndarray"
    val_labels: "np.ndarray"
    val_probabilities: "np.ndarray"
    size: dict[str, Any]

    @property
    def test_predictions(self) -> "np.ndarray":
        return self.test_probabilities.argmax(axis=1)

    @property
    def val_predictions(self) -> "np.ndarray":
        return self.val_probabilities.argmax(axis=1)


@dataclass(frozen=True)
class Metric:
    """One figure of a cell: where it lives in the metrics JSON and how every report shows it.

    - ``path``: dotted path in the cell's metrics (``"test.challenge_f1"``); a per-device
      metric has ``{device}`` in it (``"devices.{device}.latency_ms"``) and is expanded per device;
      a metric with ``compute`` lives under ``plugin_metrics.`` (``"plugin_metrics.af_sens_at_90_spec"``).
    - ``label``: summary-table column (``{device}`` and ``{ci_level}`` are filled in);
      ``term``: its name in the report's definitions (default ``label``); ``unit``: e.g. ``"ms"``.
    - ``format``: a name of :data:`FORMATS` or a format spec; ``std_format`` for the ± part.
    - ``higher_is_better``; ``aggregate``: ``mean_std`` across seeds, or ``all_true`` for booleans.
    - ``compare``: column (and gate) in ``ecgbench compare``, or None; ``summary``: a column of
      the default summary table; ``optional``: a value only some settings produce (e.g. the per-record
      figures of windowed deployment), so a summary column only when a cell of the run has one.
    - ``detail``: paths of text values shown in brackets after the summary value, each path's
      distinct values joined by ``/`` (``"size.storage_format"``: ``12.5 kB (sparse_zstd)``);
      ``{device}`` is filled in as in ``path``.
    - ``text``: builds a summary cell from the done seeds' metrics dicts and the number of seeds
      planned (built-ins with intervals beside the value); default: aggregate, format and ``detail``.
    - ``compute``: for plugin metrics, the value from a :class:`Measurement` (None when undefined).
    """

    path: str
    label: str
    definition: str = ""
    unit: str = ""
    term: str = ""
    format: str = ".3f"
    std_format: str = ""
    higher_is_better: bool = True
    aggregate: Aggregate = "mean_std"
    compare: Compared | None = None
    summary: bool = True
    optional: bool = False
    detail: tuple[str, ...] = ()
    text: Callable[[list[dict], int], str] | None = dataclasses.field(default=None, compare=False, repr=False)
    compute: Callable[[Measurement], float | None] | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.compute is not None and not (self.path.startswith(PLUGIN_SECTION + ".") and self.path.count(".") == 1):
            raise PluginError(f"metric '{self.path}' has a compute function: its path must be '{PLUGIN_SECTION}.<name>' (no further dots)")

    @property
    def name(self) -> str:
        """The registry name: the path."""
        return self.path

    @property
    def per_device(self) -> bool:
        return DEVICE in self.path

    def for_device(self, device: str) -> "Metric":
        """The metric of one device (``{device}`` replaced in path and label)."""
        return dataclasses.replace(
            self,
            path=self.path.replace(DEVICE, device),
            label=self.label.replace(DEVICE, device),
            detail=tuple(p.replace(DEVICE, device) for p in self.detail),
        )

    def show(self, value: Any) -> str:
        """One value as the reports print it (``-`` when missing)."""
        if isinstance(value, bool):
            return "yes" if value else "no"
        v = number(value)
        return formatter(self.format)(v) if v is not None else "-"

    def summarize(self, metrics: list[dict], n_cells: int | None = None) -> str:
        """The summary-table text of the done seeds' ``metrics`` (``n_cells``: seeds planned, default all done)."""
        if self.text is not None:
            return self.text(metrics, len(metrics) if n_cells is None else n_cells)
        values = [lookup(m, self.path) for m in metrics]
        if self.aggregate == "all_true":
            return fits_text(values)
        s = stat(values)
        if s is None:
            return "-"
        text = s.format(formatter(self.format), formatter(self.std_format) if self.std_format else None)
        details = ["/".join(dict.fromkeys(str(v) for v in (lookup(m, p) for m in metrics) if v not in (None, ""))) for p in self.detail]
        details = [d for d in details if d]
        return text + (f" ({', '.join(details)})" if details else "")

    def change(self, base: float | None, current: float | None) -> float | None:
        """CURRENT against BASE in the gate's terms, signed (points difference or relative change); None without a gate, a value or a positive relative base."""
        gate = self.compare.gate if self.compare else None
        if gate is None or base is None or current is None:
            return None
        if gate.change == "relative":
            return current / base - 1 if base > 0 else None
        return (current - base) * gate.scale

    def worsening(self, base: float | None, current: float | None) -> float | None:
        """How much worse CURRENT is than BASE in the gate's terms (negative: better); None where :meth:`change` is None."""
        change = self.change(base, current)
        if change is None:
            return None
        return -change if self.higher_is_better else change

    def to_dict(self) -> dict[str, Any]:
        """The declaration as JSON (without ``text`` and ``compute``), as stored beside a plugin metric's values."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("text", "compute")}
        out["compare"] = dataclasses.asdict(self.compare) if self.compare else None
        out["detail"] = list(self.detail)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Metric":
        """A declaration read back from :meth:`to_dict` (unknown keys ignored, so newer stores still read)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"text", "compute"}
        fields = {k: v for k, v in data.items() if k in names}
        compared = fields.get("compare")
        if isinstance(compared, dict):
            gate = compared.get("gate")
            fields["compare"] = Compared(**{**compared, "gate": Gate(**gate) if isinstance(gate, dict) else None})
        if "detail" in fields:
            fields["detail"] = tuple(fields["detail"] or ())
        return cls(**fields)


# --- stored metrics of older versions ------------------------------------------------------
RENAMED_KEYS: dict[str, str] = {
    "size.deployable_bytes": "size.storage_bytes",
    "size.deployable_format": "size.storage_format",
}
"""Old path -> today's, for metrics stored by older versions (values unchanged)."""

LEGACY_FLASH_KEY = "legacy_storage_flash_bytes"
"""Where :func:`upgrade_metrics` keeps a device's old flash figure: the smallest compressed file, which no device executes."""
LEGACY_FITS_KEY = "legacy_fits"
"""Where :func:`upgrade_metrics` keeps a device's old fit verdict, judged on that figure."""
LEGACY_WHY = (
    "flash unknown: stored before ecgbench counted an executable form (its flash figure was the compressed "
    f"file, kept as {LEGACY_FLASH_KEY}); run the suite again to measure it"
)


def upgrade_metrics(metrics: dict | None) -> dict:
    """A cell's stored metrics with today's keys (a new dict; ``metrics`` is left as it is).

    - ``size.deployable_bytes`` / ``_format`` become ``size.storage_bytes`` / ``_format``
      (the same figure: the smallest lossless file);
    - a device figure of ``ecgbench.device-prediction/1`` whose flash was that file
      (``flash_source: "deployable"``) loses ``flash_bytes``: it moves to
      :data:`LEGACY_FLASH_KEY`, and its ``fits`` to :data:`LEGACY_FITS_KEY`. The
      verdict stays ``false`` when peak RAM alone exceeds the device's, and is
      unknown (no ``fits``) otherwise; ``why`` says so.
    """
    import copy

    out = copy.deepcopy(metrics) if isinstance(metrics, dict) else {}
    for old, new in RENAMED_KEYS.items():
        old_section, old_key = old.rsplit(".", 1)
        section = lookup(out, old_section)
        if isinstance(section, dict) and old_key in section:
            value = section.pop(old_key)
            section.setdefault(new.rsplit(".", 1)[1], value)
    for figures in (out.get("devices") or {}).values():
        if not isinstance(figures, dict) or figures.get("flash_source") != "deployable":
            continue
        figures[LEGACY_FLASH_KEY] = figures.pop("flash_bytes", None)
        figures["flash_source"] = "legacy_storage"
        if "fits" in figures:
            figures[LEGACY_FITS_KEY] = figures.pop("fits")
        ram, capacity = number(figures.get("peak_ram_bytes")), number(figures.get("ram_capacity_bytes"))
        ram_reasons = [r for r in str(figures.get("why") or "").split("; ") if " RAM, has " in r]
        if ram is not None and capacity is not None and ram > capacity:
            figures["fits"] = False
            figures["why"] = "; ".join(ram_reasons) or f"peak RAM {ram:.0f} B exceeds {capacity:.0f} B"
        else:
            figures["why"] = LEGACY_WHY
    return out


def aggregate(metric: Metric, metrics: list[dict]) -> Stat | bool | None:
    """The seeds' values of ``metric`` combined: a :class:`Stat` (mean_std) or whether all are true (all_true)."""
    values = [lookup(m, metric.path) for m in metrics]
    if metric.aggregate == "all_true":
        flags = [v for v in values if isinstance(v, bool)]
        return all(flags) if flags else None
    return stat(values)


def expand(metrics: Iterable[Metric], devices: Iterable[str]) -> list[Metric]:
    """Every metric for concrete cells: a per-device metric once per device (metrics first, then device by device)."""
    metrics = list(metrics)
    devices = list(devices)
    out = [m for m in metrics if not m.per_device]
    for device in devices:
        out += [m.for_device(device) for m in metrics if m.per_device]
    return out


def stored_declarations(metrics_dicts: Iterable[dict | None]) -> list[Metric]:
    """The plugin metrics declared in cells' metrics (``metric_declarations``), first seen first."""
    found: dict[str, Metric] = {}
    for metrics in metrics_dicts:
        for path, data in (lookup(metrics, [DECLARATIONS_SECTION]) or {}).items():
            if path not in found and isinstance(data, dict):
                try:
                    found[path] = Metric.from_dict({**data, "path": path})
                except (TypeError, ValueError, PluginError):
                    continue  # a declaration this version cannot read: its values still show in CSV/JSON
    return list(found.values())


def schema(metrics_dicts: Iterable[dict | None], devices: Iterable[str] = ()) -> list[Metric]:
    """The built-in metrics (per device expanded) and then the plugin metrics stored in the cells."""
    from ecgbench.measure.builtin_metrics import BUILTIN_METRICS

    return expand(BUILTIN_METRICS, devices) + stored_declarations(metrics_dicts)


def definitions(metrics: Iterable[Metric]) -> list[tuple[str, str]]:
    """(term, definition) of the metrics that have one, each pair once, in order (per-device metrics unexpanded)."""
    out: list[tuple[str, str]] = []
    for m in metrics:
        entry = (m.term or m.label, m.definition)
        if m.definition and entry not in out:
            out.append(entry)
    return out


def compute_plugin_metrics(metrics: Iterable[Metric], measurement: Measurement) -> tuple[dict[str, float | None], dict[str, dict]]:
    """``(values by name, declarations by path)`` of every metric with a ``compute`` function."""
    values: dict[str, float | None] = {}
    declarations: dict[str, dict] = {}
    for metric in metrics:
        if metric.compute is None:
            continue
        try:
            value = metric.compute(measurement)
        except Exception as exc:
            raise PluginError(f"metric '{metric.path}': its compute function failed ({exc.__class__.__name__}: {exc}); fix the plugin that declares it") from exc
        if value is not None and not isinstance(value, bool):
            value = float(value)
        values[metric.path.split(".", 1)[1]] = value
        declarations[metric.path] = metric.to_dict()
    return values, declarations
