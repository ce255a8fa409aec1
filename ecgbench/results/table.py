"""What every reporter shares: a run's cells as flat rows, the summary table, plot inputs, the Pareto front.

A cell's metrics follow the schema of :func:`ecgbench.measure.artifact.measure_artifact`
plus the ``compression``, ``baseline`` and ``data`` sections added by
:func:`ecgbench.run.cell.run_cell`; the summary table's columns and definitions are
the metrics declared in :mod:`ecgbench.measure.schema` (built-in and plugin ones).
Every lookup here tolerates a missing key: a failed cell has empty metrics, and
an older store may lack newer sections.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

from pydantic import Field

from ecgbench import PluginConfig
from ecgbench.errors import ConfigError
from ecgbench.kinds.model import model_label
from ecgbench.kinds.reporter import SingleFileReporter
from ecgbench.registry import process_registry
from ecgbench.measure.schema import (  # noqa: F401  (re-exported: the reporters' helpers)
    DECLARATIONS_SECTION,
    DEVICE,
    Metric,
    Stat,
    aggregate,
    definitions,
    fits_text,
    human_bytes,
    lookup,
    number,
    ratio,
    schema,
    stat,
    stored_declarations,
)

# The measurement default (ecgbench.measure.artifact.MeasureConfig.ci_level) when a cell's config does not say.
DEFAULT_CI_LEVEL = 0.95

# Left out of CSV rows: one dict per layer per cell would bury the other columns (kept in the JSON report).
CSV_SKIPPED_KEYS = ("compute.per_layer",)
# Left out of every flat row: the plugin metrics' declarations describe columns, they are not values.
ROW_SKIPPED_KEYS = (DECLARATIONS_SECTION,)

STORAGE = "size.storage_bytes"
"""The size figure the budget verdict and the size plot use: the smallest lossless file."""

IDENTITY_COLUMNS = ("cell_id", "dataset", "model", "pipeline", "seed", "status", "outcome", "error_line")

# --- lookups and formatting -----------------------------------------------------------
def error_line(error: str | None) -> str:
    """The last non-empty line of a traceback (the exception and its message)."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --- flat rows (CSV, JSON) ------------------------------------------------------------
def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys; lists and scalars are kept as they are."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        elif isinstance(value, dict):
            continue  # an empty section has no column
        else:
            out[name] = value
    return out


def measured_model(cell) -> str:
    """The name of the model a cell measured: a distilled student's (``architecture.name``), else the suite's model."""
    name = lookup(cell.metrics, "architecture.name")
    return name if isinstance(name, str) and name else cell.model


def architecture_label(cell) -> str | None:
    """``"dscnn (width=8)"`` when a step of the cell returned another architecture than the suite's model, else None."""
    arch = lookup(cell.metrics, "architecture")
    if not isinstance(arch, dict) or not arch.get("changed") or not isinstance(arch.get("name"), str):
        return None
    return model_label(arch["name"], arch.get("params") if isinstance(arch.get("params"), dict) else None)


def cell_row(cell, skip: Iterable[str] = ()) -> dict[str, Any]:
    """One flat row: the cell's labels and status, then its metrics and timings with dotted keys."""
    row: dict[str, Any] = {
        "cell_id": cell.cell_id,
        "dataset": cell.dataset,
        "model": measured_model(cell),
        "pipeline": cell.pipeline,
        "seed": cell.seed,
        "status": cell.status,
        "outcome": cell.outcome,
        "error_line": error_line(cell.error),
    }
    skipped = (*ROW_SKIPPED_KEYS, *skip)
    for key, value in flatten(cell.metrics or {}).items():
        if not any(key == s or key.startswith(s + ".") for s in skipped):
            row[key] = value
    for key, value in flatten(cell.timings or {}, "timings.").items():
        row[key] = value
    return row


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of the rows, identity columns first, the rest in order of first appearance."""
    seen = dict.fromkeys(IDENTITY_COLUMNS)
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


# --- the run ----------------------------------------------------------------------------
def synthetic_datasets(results) -> list[str]:
    """Names of the run's datasets that are synthetic (from the cells' config or metrics)."""
    names = []
    for cell in results.cells:
        flagged = (cell.config or {}).get("synthetic") or lookup(cell.metrics, "data.synthetic")
        if flagged and cell.dataset not in names:
            names.append(cell.dataset)
    return names


def device_names(results) -> list[str]:
    """The suite's devices in its order, then any other device found in the cells' metrics."""
    names = [str(d) for d in (lookup(results.run.suite, "matrix.devices") or []) if isinstance(d, str)]
    for cell in results.cells:
        for name in (cell.config or {}).get("devices") or []:
            if name not in names:
                names.append(name)
        for name in lookup(cell.metrics, "devices") or {}:
            if name not in names:
                names.append(name)
    return names


def ci_level(cell) -> float:
    level = number(lookup(cell.config, "measure.ci_level"))
    return level if level is not None else DEFAULT_CI_LEVEL


def unfinished_reason(cell) -> str | None:
    """Why a cell has no results (the last line of its error), or None for a done cell."""
    if cell.status == "done":
        return None
    if cell.status == "failed":
        return error_line(cell.error) or "failed without an error message"
    return "interrupted before it finished (run the suite again to resume)"


@dataclass
class PipelineGroup:
    """The cells of one pipeline on one dataset and model, one per seed."""

    dataset: str
    model: str
    pipeline: str
    cells: list = field(default_factory=list)

    @property
    def done(self) -> list:
        return [c for c in self.cells if c.status == "done"]

    def values(self, path: str) -> list[Any]:
        return [lookup(c.metrics, path) for c in self.done]

    def stat(self, path: str) -> Stat | None:
        return stat(self.values(path))


def pipeline_groups(results) -> list[PipelineGroup]:
    """Cells grouped by (dataset, model, pipeline), in the order the suite lists them."""
    groups: dict[tuple[str, str, str], PipelineGroup] = {}
    for cell in results.cells:
        key = (cell.dataset, cell.model, cell.pipeline)
        groups.setdefault(key, PipelineGroup(*key)).cells.append(cell)
    return list(groups.values())


# --- the summary table ------------------------------------------------------------------
@dataclass
class Table:
    """A table as text cells, for Markdown and HTML alike.

    ``numeric`` marks right-aligned columns, ``strong`` (row, column) cells to set in bold;
    ``paths`` names each column (``pipeline``, a metric's path) and ``sort_keys`` holds
    each cell's value to sort by (a metric's mean across seeds, 1/0 for a flag, the text
    of a label column; None when missing).
    """

    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    strong: set[tuple[int, int]] = field(default_factory=set)
    paths: list[str] = field(default_factory=list)
    sort_keys: list[list[float | str | None]] = field(default_factory=list)


class TableSettings(PluginConfig):
    """Settings of the reporters that show the summary table."""

    devices: list[str] | None = Field(None, description="device columns to show, in this order (default: every device of the run)")
    f1_budget_points: float | None = Field(
        None, ge=0, description="mark pipelines more than this many test-F1 points below dense, bold the best of the others"
    )


def run_schema(results, devices: Iterable[str] | None = None) -> list[Metric]:
    """The run's metrics: built-in (per-device ones for ``devices``, default every device of the run), then plugin ones;
    an optional metric (e.g. windowed deployment's) only when a cell of the run has it."""
    metrics = schema((c.metrics for c in results.cells), device_names(results) if devices is None else devices)
    return [m for m in metrics if _shown(results, m)]


def checked_devices(results, devices: Iterable[str] | None) -> list[str]:
    """``devices`` (default: every device of the run), each checked to be one of the run's."""
    known = device_names(results)
    devices = known if devices is None else list(devices)
    unknown = [d for d in devices if d not in known]
    if unknown:
        raise ConfigError(f"report setting devices: {', '.join(unknown)} not among the run's devices ({', '.join(known) or 'none'})")
    return devices


def select_metrics(results, columns: str | list[str], devices: Iterable[str] | None = None, setting: str = "columns") -> list[Metric]:
    """The metrics of a table's columns: ``"key"``, ``"all"`` or a list of metric paths.

    ``key``: :data:`~ecgbench.measure.builtin_metrics.KEY_COLUMNS`, device ones for
    ``devices`` (default: the run's first device); ``all``: every summary metric, device
    ones for ``devices`` (default: every device). A listed path may be any metric of
    the run, summary or not; consecutive paths with ``{device}`` are repeated for each of
    ``devices`` (default every device), a device's own path (``devices.nrf52840.fits``)
    stands alone. ``setting`` names the setting in errors (``md.columns``).
    """
    from ecgbench.measure.builtin_metrics import BUILTIN_METRICS, KEY_COLUMNS

    if columns == "all":
        return [m for m in run_schema(results, checked_devices(results, devices)) if m.summary]
    if columns == "key":
        declared = {m.path: m for m in BUILTIN_METRICS}
        names = [p for p in KEY_COLUMNS if _shown(results, declared[p])]
        devices = device_names(results)[:1] if devices is None else devices
    else:
        names = list(columns)
    shown = checked_devices(results, devices)
    templates = {m.path: m for m in BUILTIN_METRICS if m.per_device}
    plain = {m.path: m for m in run_schema(results, device_names(results))}
    out: list[Metric] = []
    pending: list[Metric] = []  # consecutive per-device metrics, shown device by device

    def flush() -> None:
        out.extend(m.for_device(d) for d in shown for m in pending)
        pending.clear()

    for name in names:
        if name in templates:
            pending.append(templates[name])
            continue
        flush()
        if name not in plain:
            known = ", ".join([m.path for m in run_schema(results, [])] + list(templates))
            raise ConfigError(f"report setting {setting}: no metric '{name}' in this run; give key, all or a list of metric paths ({known})")
        out.append(plain[name])
    flush()
    return out


def summary_table(
    results, devices: Iterable[str] | None = None, f1_budget_points: float | None = None, metrics: list[Metric] | None = None
) -> Table:
    """One row per pipeline (per dataset and model): a column per metric.

    ``metrics`` are the columns (:func:`select_metrics`); default every summary metric
    of the run's schema: accuracy, size, host latency and each device's figures, then
    plugin metrics. ``devices`` limits the default's device columns (default: every
    device of the run). With ``f1_budget_points``, pipelines whose mean ΔF1 is below
    minus that budget are marked "over budget", and the largest compression ratio
    and smallest storage bytes among the others (per dataset and model) are set in bold.
    """
    groups = pipeline_groups(results)
    several = len({(g.dataset, g.model) for g in groups}) > 1
    # A pipeline that returned another architecture (distill) shows it in the model column.
    students = {id(g): next((label for c in g.done if (label := architecture_label(c))), None) for g in groups}
    show_model = several or any(students.values())
    columns = select_metrics(results, "all", devices) if metrics is None else list(metrics)
    level = ci_level(results.cells[0]) if results.cells else DEFAULT_CI_LEVEL
    labels = (["dataset"] if several else []) + (["model"] if show_model else [])
    headers = labels + ["pipeline"] + [m.label.replace("{ci_level}", f"{level:.0%}") for m in columns]
    numeric = [False] * (len(labels) + 1) + [m.aggregate != "all_true" for m in columns]
    paths = [m.path for m in columns]
    best = budget_winners(groups, f1_budget_points) if f1_budget_points is not None else {}
    offset = len(headers) - len(columns)
    strong = set()
    rows = []
    sort_keys: list[list[float | str | None]] = []
    for i, g in enumerate(groups):
        winner = best.get((g.dataset, g.model), {})
        if winner.get("ratio") is g and "size.compression_ratio" in paths:
            strong.add((i, offset + paths.index("size.compression_ratio")))
        if winner.get("bytes") is g and STORAGE in paths:
            strong.add((i, offset + paths.index(STORAGE)))
        over = f1_budget_points is not None and g.stat("delta_f1_points") is not None and not within_budget(g, f1_budget_points)
        done = [c.metrics or {} for c in g.done]
        identity = ([g.dataset] if several else []) + ([students[id(g)] or g.model] if show_model else [])
        rows.append(identity + [g.pipeline + (" (over budget)" if over else "")] + [m.summarize(done, len(g.cells)) for m in columns])
        sort_keys.append(identity + [g.pipeline] + [sort_key(m, done) for m in columns])
    return Table(headers, rows, numeric, strong, labels + ["pipeline"] + paths, sort_keys)


def sort_key(metric: Metric, metrics: list[dict]) -> float | None:
    """The value a table sorts a metric's cell by: the mean across seeds, 1/0 for flags all true or not, None when missing."""
    value = aggregate(metric, metrics)
    if isinstance(value, bool):
        return float(value)
    return value.mean if value is not None else None


def _shown(results, metric: Metric) -> bool:
    """Whether a default table shows ``metric``: always, or for an optional one, when a cell of the run has a value
    (for a per-device one, on any device)."""
    if not metric.optional:
        return True
    cells = [c.metrics for c in results.cells if c.metrics]
    if metric.per_device:
        return any(lookup(m, metric.path.replace(DEVICE, d)) is not None for m in cells for d in device_names(results))
    return any(lookup(m, metric.path) is not None for m in cells)


class SummaryReporter(SingleFileReporter):
    """A one-file report around the summary table, ``report.<name>`` (``md``, ``html``): ``page(results, out_dir, fmt, settings)`` writes it."""

    Config = TableSettings
    page: ClassVar[Callable[..., str]]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.extension = "." + cls.name

    def render(self, results, out_dir: Path) -> str:
        return type(self).page(results, out_dir, self.name, self.config)


def column_definitions(results, metrics: Iterable[Metric] | None = None) -> list[tuple[str, str]]:
    """(term, definition) for a report's "Columns" section: of ``metrics``, default the built-in metrics and the run's plugin metrics."""
    from ecgbench.measure.builtin_metrics import BUILTIN_METRICS

    if metrics is None:
        metrics = [*BUILTIN_METRICS, *stored_declarations(c.metrics for c in results.cells)]
    return definitions(metrics)


def within_budget(group: PipelineGroup, f1_budget_points: float) -> bool:
    """Whether the pipeline's mean test ΔF1 across its done seeds is at most ``f1_budget_points`` below its dense
    baseline (the rule :data:`ecgbench.results.seeds.BUDGET_RULE` states)."""
    delta = group.stat("delta_f1_points")
    return delta is not None and delta.mean >= -f1_budget_points


def budget_winners(groups: list[PipelineGroup], f1_budget_points: float) -> dict[tuple[str, str], dict[str, PipelineGroup]]:
    """Per (dataset, model): the pipeline within budget with the largest compression ratio and the one with the fewest storage bytes."""
    winners: dict[tuple[str, str], dict[str, PipelineGroup]] = {}
    for g in groups:
        if not within_budget(g, f1_budget_points):
            continue
        best = winners.setdefault((g.dataset, g.model), {})
        ratio_ = g.stat("size.compression_ratio")
        size = g.stat(STORAGE)
        if ratio_ is not None and ("ratio" not in best or ratio_.mean > best["ratio"].stat("size.compression_ratio").mean):
            best["ratio"] = g
        if size is not None and ("bytes" not in best or size.mean < best["bytes"].stat(STORAGE).mean):
            best["bytes"] = g
    return winners


def budget_summary(results, f1_budget_points: float) -> list[str]:
    """One sentence per (dataset, model): which pipeline wins compression ratio and storage bytes within the budget."""
    lines = []
    for (dataset, model), best in budget_winners(pipeline_groups(results), f1_budget_points).items():
        parts = []
        if "ratio" in best:
            g = best["ratio"]
            parts.append(f"largest compression ratio: {g.pipeline} ({ratio(g.stat('size.compression_ratio').mean)})")
        if "bytes" in best:
            g = best["bytes"]
            parts.append(f"smallest stored model: {g.pipeline} ({human_bytes(g.stat(STORAGE).mean)})")
        lines.append(f"Within {f1_budget_points:g} point{'s' if f1_budget_points != 1 else ''} of test challenge F1 below dense ({dataset} / {model}): " + "; ".join(parts) + ".")
    return lines


def unfinished_cells(results) -> list[tuple[str, str]]:
    """(``dataset/model/pipeline/seedN``, reason) for every cell of the run that has no results."""
    out = []
    for cell in results.cells:
        reason = unfinished_reason(cell)
        if reason is not None:
            out.append((f"{cell.dataset}/{cell.model}/{cell.pipeline}/seed{cell.seed}", reason))
    return out


# --- report header ---------------------------------------------------------------------
def regenerate_command(results, fmt: str, out_dir: Path, settings: PluginConfig | None = None) -> str:
    """The command that writes this report again, with the reporter's non-default ``settings`` as ``--set``.

    Merged runs (:mod:`ecgbench.results.merge`) are named one by one: plain ids and one ``--db``
    when they share a store, else ``DB:RUN`` each.
    """
    runs = getattr(results, "runs", None) or [results.run]
    stores = getattr(results, "stores", None) or [getattr(results, "store_path", None)]  # set by stores that know their file
    shared = len(set(stores)) == 1
    refs = [r.run_id if shared or not s else f"{_relative_to_cwd(Path(s))}:{r.run_id}" for r, s in zip(runs, stores)]
    parts = ["ecgbench", "report", *refs, "--format", fmt, "--out", str(out_dir)]
    for key, value in (settings.model_dump(exclude_defaults=True) if settings is not None else {}).items():
        parts += ["--set", f"{fmt}.{key}={json.dumps(value)}"]  # JSON is YAML, as --set reads it
    if shared and stores[0]:
        parts += ["--db", _relative_to_cwd(Path(stores[0]))]
    if getattr(results, "allow_mixed", False):
        parts.append("--allow-mixed")
    return " ".join(shlex.quote(p) for p in parts)


def traceback_runs(results) -> list[str]:
    """The ids of the runs that hold the unfinished cells' tracebacks (``ecgbench runs ID`` shows them)."""
    cell_runs = getattr(results, "cell_runs", None)
    if not cell_runs:
        return [results.run.run_id]
    return list(dict.fromkeys(cell_runs[c.cell_id] for c in results.cells if unfinished_reason(c) is not None and c.cell_id in cell_runs))


def _relative_to_cwd(path: Path) -> str:
    """The path as the user would type it from here: relative when under the working directory."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp)) if timestamp else "-"


def report_facts(results, fmt: str, out_dir: Path, settings: PluginConfig | None = None) -> list[tuple[str, str]]:
    """Label/value lines at the top of a report: how to regenerate it, suite, run, date, version."""
    run = results.run
    groups = pipeline_groups(results)
    combos = list(dict.fromkeys((g.dataset, g.model) for g in groups))
    facts = [
        ("regenerate", regenerate_command(results, fmt, out_dir, settings)),
        ("suite", f"{run.suite_name} ({run.suite_path})"),
        *run_facts(results),
        ("ecgbench", run.ecgbench_version),
        ("cells", f"{sum(c.status == 'done' for c in results.cells)} done of {len(results.cells)}"),
    ]
    if len(combos) == 1:
        facts.append(("dataset / model", f"{combos[0][0]} / {combos[0][1]}"))
    deployment = deployment_fact(results)
    if deployment:
        facts.append(("deployment", deployment))
    return facts


def run_facts(results) -> list[tuple[str, str]]:
    """The run and its dates; for merged runs, one line per run: status, dates, store, the seeds and cells it gave."""
    runs = getattr(results, "runs", None)
    if not runs:
        run = results.run
        return [("run", f"{run.run_id} ({run.status})"), ("date", f"started {when(run.started_at)}, finished {when(run.finished_at)}")]
    cell_runs = getattr(results, "cell_runs", {}) or {}
    stores = getattr(results, "stores", None) or [None] * len(runs)
    facts = [("runs merged", f"{len(runs)}; a cell id in several runs: the done one finished last is used")]
    for run, store in zip(runs, stores):
        used = [c for c in results.cells if cell_runs.get(c.cell_id) == run.run_id]
        seeds = ", ".join(str(s) for s in sorted({c.seed for c in used})) or "none"
        where = f", store {_relative_to_cwd(Path(store))}" if store and len(set(stores)) > 1 else ""
        facts.append(
            ("run", f"{run.run_id} ({run.status}), started {when(run.started_at)}, finished {when(run.finished_at)}{where}; "
             f"{len(used)} cell(s) used, seeds {seeds}")
        )
    return facts


def deployment_fact(results) -> str | None:
    """How the run's cells were scored when they deploy windows (``metrics.windowing``), else None (whole records)."""
    seen = list(dict.fromkeys(json.dumps(w, sort_keys=True) for w in (lookup(c.metrics, "windowing") for c in results.cells if c.metrics) if w))
    if not seen:
        return None
    texts = []
    for entry in map(json.loads, seen):
        texts.append(
            f"{entry['window_s']:g}-s windows every {entry['hop_s']:g} s, record class by {entry['aggregate']}, "
            f"{entry['windows_per_record']} windows per {entry['record_s']:g}-s record"
        )
    return "; ".join(texts) + " (device ms, mJ and peak RAM per window; ms/record and mJ/record per record)"


def synthetic_warning(results) -> str | None:
    names = synthetic_datasets(results)
    if not names:
        return None
    return f"synthetic data: not clinical results (generated by the dataset plugin {', '.join(names)}; they test the harness only)."


# --- plot inputs ------------------------------------------------------------------------
def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (x minimised, y maximised), by increasing x.

    ``q`` dominates ``p`` when ``q.x <= p.x`` and ``q.y >= p.y`` with one of the
    two strict; equal points are all on the front. Points with a missing or
    non-finite coordinate are never on it.
    """
    valid = [i for i, (x, y) in enumerate(points) if number(x) is not None and number(y) is not None]
    front = []
    for i in valid:
        x, y = points[i]
        dominated = any(
            points[j][0] <= x and points[j][1] >= y and (points[j][0] < x or points[j][1] > y) for j in valid if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def tradeoff_points(results, x_path: str) -> list[dict[str, Any]]:
    """Per pipeline: mean ``x_path`` and mean test challenge F1, flagged when on its dataset/model's Pareto front."""
    points = []
    for g in pipeline_groups(results):
        x, f1 = g.stat(x_path), g.stat("test.challenge_f1")
        if x is None or f1 is None:
            continue
        points.append(
            {"dataset": g.dataset, "model": g.model, "pipeline": g.pipeline, "x": x.mean, "f1": f1.mean, "f1_std": f1.std, "seeds": f1.n}
        )
    for combo in dict.fromkeys((p["dataset"], p["model"]) for p in points):
        members = [p for p in points if (p["dataset"], p["model"]) == combo]
        on_front = set(pareto_front([(p["x"], p["f1"]) for p in members]))
        for i, p in enumerate(members):
            p["pareto"] = i in on_front
    return points


def lottery_trajectories(results, registry=None) -> list[dict[str, Any]]:
    """The rounds of every pipeline step whose compressor reads a trajectory from its record (``Compressor.trajectory``).

    Compressors are looked up by step name in ``registry`` (default: :func:`ecgbench.registry.process_registry`);
    a step of a compressor that is not installed is left out.
    """
    compressors = (registry or process_registry()).tables.get("compressors", {})
    out = []
    for cell in results.cells:
        steps = lookup(cell.metrics, "compression.steps") or []
        for index, step in enumerate(steps if isinstance(steps, list) else []):
            if not isinstance(step, dict) or not isinstance(step.get("record"), dict) or step.get("name") not in compressors:
                continue
            trajectory = compressors[step["name"]].trajectory(step["record"])
            if trajectory is None:
                continue
            label = f"{cell.pipeline} seed{cell.seed}" + (f" step {index + 1} {step.get('name')}" if len(steps) > 1 else "")
            out.append(
                {
                    "label": label,
                    "dataset": cell.dataset,
                    "model": cell.model,
                    "pipeline": cell.pipeline,
                    "seed": cell.seed,
                    "step": step.get("name"),
                    "rounds": [dataclasses.asdict(p) for p in trajectory.points],
                    "min_val_challenge_f1": trajectory.min_val_challenge_f1,
                    "dense_val_challenge_f1": number(lookup(cell.metrics, "baseline.val_challenge_f1")),
                }
            )
    return out
