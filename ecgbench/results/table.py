"""What every reporter shares: a run's cells as flat rows, the summary table, plot inputs, the Pareto front.

A cell's metrics follow the schema of :func:`ecgbench.measure.artifact.measure_artifact`
plus the ``compression``, ``baseline`` and ``data`` sections added by
:func:`ecgbench.run.cell.run_cell`. Every lookup here tolerates a missing key: a
failed cell has empty metrics, and an older store may lack newer sections.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pydantic import Field

from ecgbench import PluginConfig
from ecgbench.errors import ConfigError

# The measurement default (ecgbench.measure.artifact.MeasureConfig.ci_level) when a cell's config does not say.
DEFAULT_CI_LEVEL = 0.95

# Left out of CSV rows: one dict per layer per cell would bury the other columns (kept in the JSON report).
CSV_SKIPPED_KEYS = ("compute.per_layer",)

IDENTITY_COLUMNS = ("cell_id", "dataset", "model", "pipeline", "seed", "status", "outcome", "error_line")

DEFINITIONS: tuple[tuple[str, str], ...] = (
    (
        "test challenge F1",
        "mean F1 of the classes N (normal), A (atrial fibrillation) and O (other rhythm) on the test split, "
        "the PhysioNet/CinC 2017 score; the noise class ~ is not averaged in. Brackets: percentile bootstrap "
        "interval over test records (one seed). With several seeds: mean ± sample standard deviation across "
        "seeds (per-seed intervals are in the CSV/JSON reports).",
    ),
    ("ΔF1 (pts)", "test challenge F1 of the cell minus that of its own dense baseline (same data, model and seed), in points (x100)."),
    ("compression ratio", "non-zero parameters of the dense baseline / non-zero parameters of the compressed model."),
    (
        "deployable",
        "bytes of the smallest encoding of the model that loads back to the same ONNX graph (plain ONNX, sparse, "
        "zlib or zstd of either), with that encoding in brackets; kB = 1000 bytes, MB = 10^6 bytes.",
    ),
    ("size reduction", "bytes of the dense baseline's ONNX file / deployable bytes of the compressed model."),
    ("measured host ms", "median wall-clock latency of one inference in onnxruntime on the machine that ran the suite."),
    (
        "host vs dense",
        "that median over the dense baseline's, both timed in alternation in one session: robust to the machine's "
        "drift, which moves absolute milliseconds of cells timed minutes apart by tens of percent.",
    ),
    (
        "device sim ms / mJ / fits",
        "simulated latency and energy of one inference on the device profile, and whether the model's flash "
        "and peak RAM fit the device (simulated figures, not measurements on a board).",
    ),
)


# --- lookups and formatting -----------------------------------------------------------
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


def error_line(error: str | None) -> str:
    """The last non-empty line of a traceback (the exception and its message)."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def human_bytes(n: float | None) -> str:
    """Bytes in decimal units: ``812 B``, ``45.2 kB``, ``1.23 MB``."""
    if n is None:
        return "-"
    if abs(n) < 1000:
        return f"{n:.0f} B"
    if abs(n) < 1_000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1_000_000:.2f} MB"


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


def signed_points(value: float) -> str:
    return f"{value:+.2f}"


def unsigned_points(value: float) -> str:
    return f"{value:.2f}"


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


def cell_row(cell, skip: Iterable[str] = ()) -> dict[str, Any]:
    """One flat row: the cell's labels and status, then its metrics and timings with dotted keys."""
    row: dict[str, Any] = {
        "cell_id": cell.cell_id,
        "dataset": cell.dataset,
        "model": cell.model,
        "pipeline": cell.pipeline,
        "seed": cell.seed,
        "status": cell.status,
        "outcome": cell.outcome,
        "error_line": error_line(cell.error),
    }
    skipped = tuple(skip)
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
    """A table as text cells, for Markdown and HTML alike; ``numeric`` marks right-aligned columns, ``strong`` (row, column) cells to set in bold."""

    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    strong: set[tuple[int, int]] = field(default_factory=set)


class TableSettings(PluginConfig):
    """Settings of the reporters that show the summary table."""

    devices: list[str] | None = Field(None, description="device columns to show, in this order (default: every device of the run)")
    f1_budget_points: float | None = Field(
        None, ge=0, description="mark pipelines more than this many test-F1 points below dense, bold the best of the others"
    )


def f1_text(group: PipelineGroup) -> str:
    """Test challenge F1 with its interval (one seed) or mean ± std (several), noting failed seeds."""
    f1 = group.stat("test.challenge_f1")
    if f1 is None:
        return "failed" if group.cells and not group.done else "-"
    if f1.n == 1:
        ci = group.values("test.challenge_f1_ci")[0]
        lo, hi = (number(ci[0]), number(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
        text = f"{f1.mean:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")
    else:
        text = f"{f1.mean:.3f} ± {f1.std:.3f} ({f1.n} seeds)"
    if len(group.done) < len(group.cells):
        text += f" ({len(group.done)} of {len(group.cells)} seeds done)"
    return text


def deployable_text(group: PipelineGroup) -> str:
    size = group.stat("size.deployable_bytes")
    if size is None:
        return "-"
    formats = list(dict.fromkeys(str(f) for f in group.values("size.deployable_format") if f))
    return size.format(human_bytes) + (f" ({'/'.join(formats)})" if formats else "")


def fits_text(values: list[Any]) -> str:
    flags = [v for v in values if isinstance(v, bool)]
    if not flags:
        return "-"
    if all(flags):
        return "yes"
    if not any(flags):
        return "no"
    return f"{sum(flags)}/{len(flags)} seeds"


def _formatted(s: Stat | None, fmt, std_fmt=None) -> str:
    return s.format(fmt, std_fmt) if s is not None else "-"


def summary_table(results, devices: Iterable[str] | None = None, f1_budget_points: float | None = None) -> Table:
    """One row per pipeline (per dataset and model): accuracy, size, host latency and each device's figures.

    ``devices`` limits the device columns (default: every device of the run). With
    ``f1_budget_points``, pipelines whose mean ΔF1 is below minus that budget are
    marked "over budget", and the largest compression ratio and smallest deployable
    bytes among the others (per dataset and model) are set in bold.
    """
    groups = pipeline_groups(results)
    several = len({(g.dataset, g.model) for g in groups}) > 1
    known = device_names(results)
    devices = known if devices is None else list(devices)
    unknown = [d for d in devices if d not in known]
    if unknown:
        raise ConfigError(f"report setting devices: {', '.join(unknown)} not among the run's devices ({', '.join(known) or 'none'})")
    level = ci_level(results.cells[0]) if results.cells else DEFAULT_CI_LEVEL
    headers = (["dataset", "model"] if several else []) + [
        "pipeline",
        f"test challenge F1 [{level:.0%} CI]",
        "ΔF1 (pts)",
        "compression ratio",
        "deployable",
        "size reduction",
        "measured host ms",
        "host vs dense",
    ]
    numeric = [False] * (3 if several else 1) + [True] * 7
    for device in devices:
        headers += [f"{device} sim ms", f"{device} mJ", f"{device} fits"]
        numeric += [True, True, False]
    best = budget_winners(groups, f1_budget_points) if f1_budget_points is not None else {}
    ratio_column, bytes_column = headers.index("compression ratio"), headers.index("deployable")
    strong = set()
    rows = []
    for i, g in enumerate(groups):
        winner = best.get((g.dataset, g.model), {})
        if winner.get("ratio") is g:
            strong.add((i, ratio_column))
        if winner.get("bytes") is g:
            strong.add((i, bytes_column))
        over = f1_budget_points is not None and g.stat("delta_f1_points") is not None and not within_budget(g, f1_budget_points)
        row = ([g.dataset, g.model] if several else []) + [
            g.pipeline + (" (over budget)" if over else ""),
            f1_text(g),
            _formatted(g.stat("delta_f1_points"), signed_points, unsigned_points),
            _formatted(g.stat("size.compression_ratio"), ratio),
            deployable_text(g),
            _formatted(g.stat("size.size_reduction"), ratio),
            _formatted(g.stat("latency.host_median_ms"), human_number),
            _formatted(g.stat("latency.host_vs_dense"), lambda v: f"{v:.2f}x"),
        ]
        for device in devices:
            row += [
                _formatted(g.stat(f"devices.{device}.latency_ms"), human_number),
                _formatted(g.stat(f"devices.{device}.energy_mj"), human_number),
                fits_text(g.values(f"devices.{device}.fits")),
            ]
        rows.append(row)
    return Table(headers, rows, numeric, strong)


def within_budget(group: PipelineGroup, f1_budget_points: float) -> bool:
    """Whether the pipeline's mean test ΔF1 is at most ``f1_budget_points`` below its dense baseline."""
    delta = group.stat("delta_f1_points")
    return delta is not None and delta.mean >= -f1_budget_points


def budget_winners(groups: list[PipelineGroup], f1_budget_points: float) -> dict[tuple[str, str], dict[str, PipelineGroup]]:
    """Per (dataset, model): the pipeline within budget with the largest compression ratio and the one with the fewest deployable bytes."""
    winners: dict[tuple[str, str], dict[str, PipelineGroup]] = {}
    for g in groups:
        if not within_budget(g, f1_budget_points):
            continue
        best = winners.setdefault((g.dataset, g.model), {})
        ratio_ = g.stat("size.compression_ratio")
        size = g.stat("size.deployable_bytes")
        if ratio_ is not None and ("ratio" not in best or ratio_.mean > best["ratio"].stat("size.compression_ratio").mean):
            best["ratio"] = g
        if size is not None and ("bytes" not in best or size.mean < best["bytes"].stat("size.deployable_bytes").mean):
            best["bytes"] = g
    return winners


def budget_summary(results, f1_budget_points: float) -> list[str]:
    """One sentence per (dataset, model): which pipeline wins compression ratio and deployable bytes within the budget."""
    lines = []
    for (dataset, model), best in budget_winners(pipeline_groups(results), f1_budget_points).items():
        parts = []
        if "ratio" in best:
            g = best["ratio"]
            parts.append(f"largest compression ratio: {g.pipeline} ({ratio(g.stat('size.compression_ratio').mean)})")
        if "bytes" in best:
            g = best["bytes"]
            parts.append(f"smallest deployable model: {g.pipeline} ({human_bytes(g.stat('size.deployable_bytes').mean)})")
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
    """The command that writes this report again, with the reporter's non-default ``settings`` as ``--set``."""
    parts = ["ecgbench", "report", results.run.run_id, "--format", fmt, "--out", str(out_dir)]
    for key, value in (settings.model_dump(exclude_defaults=True) if settings is not None else {}).items():
        parts += ["--set", f"{fmt}.{key}={json.dumps(value)}"]  # JSON is YAML, as --set reads it
    store_path = getattr(results, "store_path", None)  # set by stores that know their file
    if store_path:
        parts += ["--db", _relative_to_cwd(Path(store_path))]
    return " ".join(shlex.quote(p) for p in parts)


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
        ("run", f"{run.run_id} ({run.status})"),
        ("date", f"started {when(run.started_at)}, finished {when(run.finished_at)}"),
        ("ecgbench", run.ecgbench_version),
        ("cells", f"{sum(c.status == 'done' for c in results.cells)} done of {len(results.cells)}"),
    ]
    if len(combos) == 1:
        facts.append(("dataset / model", f"{combos[0][0]} / {combos[0][1]}"))
    return facts


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


def lottery_trajectories(results) -> list[dict[str, Any]]:
    """The rounds of every lottery-ticket step (``lth``, ``lth_ecg``): sparsity, validation F1, accepted or not."""
    out = []
    for cell in results.cells:
        steps = lookup(cell.metrics, "compression.steps") or []
        for index, step in enumerate(steps if isinstance(steps, list) else []):
            record = step.get("record") if isinstance(step, dict) else None
            rounds = record.get("rounds") if isinstance(record, dict) else None
            if not isinstance(rounds, list) or not rounds:
                continue
            points = []
            for r in rounds:
                sparsity, f1 = number(lookup(r, "sparsity")), number(lookup(r, "val_challenge_f1"))
                if sparsity is None or f1 is None:
                    continue
                # lth keeps every round (no "accepted" field); lth_ecg marks the rounds it rejected.
                points.append({"round": r.get("round"), "sparsity": sparsity, "val_challenge_f1": f1, "accepted": r.get("accepted", True) is not False})
            label = f"{cell.pipeline} seed{cell.seed}" + (f" step {index + 1} {step.get('name')}" if len(steps) > 1 else "")
            out.append(
                {
                    "label": label,
                    "dataset": cell.dataset,
                    "model": cell.model,
                    "pipeline": cell.pipeline,
                    "seed": cell.seed,
                    "step": step.get("name"),
                    "rounds": points,
                    "min_val_challenge_f1": number(record.get("min_val_challenge_f1")),
                    "dense_val_challenge_f1": number(lookup(cell.metrics, "baseline.val_challenge_f1")),
                }
            )
    return out
