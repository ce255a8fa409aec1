"""Compare two runs cell by cell, for a CI gate: accuracy drop, size growth, missing cells.

Cells are matched by (dataset, model, pipeline, seed). Each side is a run in
the result store (id, id prefix or suite name) or a JSON report written by
the ``json`` reporter (the file, or the folder holding ``results.json``).
Host latency is shown but never judged: it depends on the machine and its load.

Exit codes of ``ecgbench compare``:

- 0 (:data:`EXIT_OK`): every cell of BASE is done in CURRENT within the thresholds;
- 1 (:data:`EXIT_REGRESSION`): a cell's test challenge F1 dropped by more than
  ``max_f1_drop_points`` or its storage bytes grew by more than ``max_size_growth``;
- 2: BASE or CURRENT cannot be read (an unknown run, a file that is not a JSON report);
- 3 (:data:`EXIT_MISSING`): a cell done in BASE is missing, failed or unfinished in
  CURRENT (takes precedence over 1: the comparison is incomplete).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecgbench.errors import ConfigError, StoreError
from ecgbench.measure.schema import Metric, formatter, lookup, number, schema, upgrade_metrics
from ecgbench.run.store import CellRow, ResultStore, RunResults, RunRow
from ecgbench.text import KB_NOTE, WIDTH, render_table, shorten_unique, wrap

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_MISSING = 3

JSON_REPORT_NAME = "results.json"  # written by the json reporter (ecgbench_plugins.reporters.tabular)

CellKey = tuple[str, str, str, int]

# The built-in figures CellDiff names (base_f1, base_bytes, ...), by their schema path.
F1, BYTES, HOST_MS = "test.challenge_f1", "size.storage_bytes", "latency.host_median_ms"


# --- loading --------------------------------------------------------------------------
def load_json_report(path: Path) -> RunResults:
    """A run read back from a JSON report of the ``json`` reporter."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it as a JSON report ({exc}); pass a file written by `ecgbench report RUN --format json`") from None
    if not isinstance(document, dict) or not isinstance(document.get("run"), dict) or not isinstance(document.get("cells"), list):
        raise ConfigError(f"{path}: not an ecgbench JSON report (no 'run' and 'cells'); write one with `ecgbench report RUN --format json`")
    run_fields = {f.name for f in dataclasses.fields(RunRow)}
    cell_fields = {f.name for f in dataclasses.fields(CellRow)}
    try:
        run = RunRow(**{k: v for k, v in document["run"].items() if k in run_fields})
        cells = [CellRow(**{k: v for k, v in cell.items() if k in cell_fields}) for cell in document["cells"]]
        for cell in cells:
            cell.metrics = upgrade_metrics(cell.metrics)  # a report written by an older version
    except TypeError as exc:
        raise ConfigError(f"{path}: a run or cell entry lacks a field ({exc}); regenerate it with `ecgbench report RUN --format json`") from None
    return RunResults(run, cells)


def load_results(ref: str, db_path: str | Path) -> RunResults:
    """The run named by ``ref``: a JSON report file, a folder holding results.json, or a run in the store at ``db_path``."""
    path = Path(ref)
    if path.is_dir() and (path / JSON_REPORT_NAME).is_file():
        return load_json_report(path / JSON_REPORT_NAME)
    if path.is_file():
        return load_json_report(path)
    if ref.endswith(".json"):
        raise ConfigError(f"JSON report {ref} does not exist; write one with `ecgbench report RUN --format json --out DIR`")
    if not Path(db_path).is_file():
        raise ConfigError(f"'{ref}' is not a file and there is no result store at {db_path}; pass --db or a JSON report")
    store = ResultStore(db_path)
    try:
        return store.run_results(ref)
    except StoreError as exc:
        raise ConfigError(str(exc)) from None  # exit 2, not the 1 that means "regression"
    finally:
        store.close()


# --- comparing ------------------------------------------------------------------------
def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _direction(metric: Metric) -> tuple[str, str]:
    """The verb of a worsening and of its threshold: ("dropped", "drop") or ("grew", "growth") ..."""
    gate = metric.compare.gate
    if gate.change == "relative":
        return ("fell", "fall") if metric.higher_is_better else ("grew", "growth")
    return ("dropped", "drop") if metric.higher_is_better else ("rose", "rise")


def _unit(metric: Metric) -> str:
    return "pts" if metric.compare.gate.scale == 100 else metric.unit


def _change_text(metric: Metric, change: float | None) -> str:
    """A signed change as the diff table shows it: ``+3.00`` (points) or ``+5.0%`` (relative)."""
    if change is None:
        return "-"
    return f"{change:+.1%}" if metric.compare.gate.change == "relative" else f"{change:+.2f}"


def _limit_text(metric: Metric, threshold: float) -> str:
    """A threshold: ``0.5 pts`` or ``5.0%``."""
    if metric.compare.gate.change == "relative":
        return f"{threshold:.1%}"
    return f"{threshold:g} {_unit(metric)}".rstrip()


def _noun(metric: Metric) -> str:
    return metric.compare.gate.noun or metric.term or metric.label


@dataclass
class CellDiff:
    """One matched cell: base and current values of every compared metric (by path) and the verdict."""

    dataset: str
    model: str
    pipeline: str
    seed: int
    verdict: str  # ok | regression | missing | new | base-failed
    base: dict[str, float | None] = field(default_factory=dict)
    current: dict[str, float | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.dataset}/{self.model}/{self.pipeline}/seed{self.seed}"

    base_f1 = property(lambda self: self.base.get(F1))
    current_f1 = property(lambda self: self.current.get(F1))
    base_bytes = property(lambda self: self.base.get(BYTES))
    current_bytes = property(lambda self: self.current.get(BYTES))
    base_latency_ms = property(lambda self: self.base.get(HOST_MS))
    current_latency_ms = property(lambda self: self.current.get(HOST_MS))

    @property
    def delta_f1_points(self) -> float | None:
        if self.base_f1 is None or self.current_f1 is None:
            return None
        return (self.current_f1 - self.base_f1) * 100

    @property
    def size_growth(self) -> float | None:
        """Relative growth of storage bytes (0.05 = 5 % larger)."""
        if self.base_bytes is None or self.current_bytes is None or self.base_bytes <= 0:
            return None
        return self.current_bytes / self.base_bytes - 1

    def to_dict(self, metrics: list[Metric] = ()) -> dict[str, Any]:
        """The cell as JSON: the built-in figures by name (as before the schema), then every compared metric by path."""
        out: dict[str, Any] = {k: getattr(self, k) for k in ("dataset", "model", "pipeline", "seed", "verdict")}
        for name in ("base_f1", "current_f1", "base_bytes", "current_bytes", "base_latency_ms", "current_latency_ms"):
            out[name] = getattr(self, name)
        out.update(problems=self.problems, title=self.title, delta_f1_points=self.delta_f1_points, size_growth=self.size_growth)
        out["metrics"] = {
            m.path: {"base": self.base.get(m.path), "current": self.current.get(m.path), "change": m.change(self.base.get(m.path), self.current.get(m.path))}
            for m in metrics
        }
        return out


@dataclass
class Comparison:
    """The cell-by-cell diff of two runs, the compared metrics and the thresholds it was judged with (by path)."""

    base: str
    current: str
    max_f1_drop_points: float
    max_size_growth: float
    diffs: list[CellDiff]
    metrics: list[Metric] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)

    def count(self, verdict: str) -> int:
        return sum(d.verdict == verdict for d in self.diffs)

    @property
    def exit_code(self) -> int:
        if self.count("missing"):
            return EXIT_MISSING
        if self.count("regression"):
            return EXIT_REGRESSION
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "current": self.current,
            "max_f1_drop_points": self.max_f1_drop_points,
            "max_size_growth": self.max_size_growth,
            "exit_code": self.exit_code,
            "counts": {v: self.count(v) for v in ("ok", "regression", "missing", "new", "base-failed")},
            "cells": [d.to_dict(self.metrics) for d in self.diffs],
            "thresholds": self.thresholds,
        }


def _key(cell: CellRow) -> CellKey:
    return (cell.dataset, cell.model, cell.pipeline, int(cell.seed))


def _figures(cell: CellRow, metrics: list[Metric]) -> dict[str, float | None]:
    return {m.path: number(lookup(cell.metrics or {}, m.path)) for m in metrics}


# Tolerance for threshold tests: a drop of exactly the threshold (0.5 points) must pass despite float rounding.
_EPS = 1e-9


def compared_metrics(base: RunResults, current: RunResults) -> list[Metric]:
    """The metrics ``compare`` shows: built-in and plugin metrics (of either run) declared with ``compare``."""
    return [m for m in schema(c.metrics for c in [*base.cells, *current.cells]) if m.compare is not None]


def _problem(metric: Metric, worse: float, threshold: float) -> str:
    """``F1 dropped 0.60 pts > 0.5``, ``size grew +10.0% > 5.0%``."""
    verb = _direction(metric)[0]
    if metric.compare.gate.change == "relative":
        return f"{_noun(metric)} {verb} {worse:+.1%} > {threshold:.1%}"
    return f"{_noun(metric)} {verb} {worse:.2f} {_unit(metric)}".rstrip() + f" > {threshold:g}"


def _judge(diff: CellDiff, metrics: list[Metric], thresholds: dict[str, float]) -> None:
    """Add a problem for every gated metric that worsened beyond its threshold or is missing in current."""
    gated = [m for m in metrics if m.path in thresholds]
    for m in gated:
        worse = m.worsening(diff.base.get(m.path), diff.current.get(m.path))
        if worse is not None and worse > thresholds[m.path] + _EPS:
            diff.problems.append(_problem(m, worse, thresholds[m.path]))
    for m in gated:
        if diff.base.get(m.path) is not None and diff.current.get(m.path) is None:
            diff.problems.append(f"current has no {m.term or m.label}")


def compare_runs(
    base: RunResults,
    current: RunResults,
    max_f1_drop_points: float = 0.5,
    max_size_growth: float = 0.05,
    thresholds: dict[str, float] | None = None,
) -> Comparison:
    """Match cells by (dataset, model, pipeline, seed) and judge each against the thresholds.

    Every metric declared with a gate is judged: test F1 with ``max_f1_drop_points``,
    storage bytes with ``max_size_growth``, any other with its declared threshold
    unless ``thresholds`` (by path) says otherwise.
    """
    metrics = compared_metrics(base, current)
    limits = {m.path: m.compare.gate.threshold for m in metrics if m.compare.gate is not None}
    limits.update({F1: max_f1_drop_points, BYTES: max_size_growth})
    unknown = sorted(set(thresholds or {}) - set(limits))
    if unknown:
        raise ConfigError(f"threshold for {', '.join(unknown)}: not a gated metric of these runs ({', '.join(limits)})")
    limits.update(thresholds or {})
    current_by_key = {_key(c): c for c in current.cells}
    diffs = []
    base_keys = set()
    for b in base.cells:
        key = _key(b)
        base_keys.add(key)
        diff = CellDiff(*key, verdict="ok", base=_figures(b, metrics))
        if b.status != "done":
            diff.verdict = "base-failed"
            diff.problems.append(f"not done in base ({b.status}); nothing to compare")
            diffs.append(diff)
            continue
        c = current_by_key.get(key)
        if c is None:
            diff.verdict = "missing"
            diff.problems.append("missing in current")
        elif c.status != "done":
            diff.verdict = "missing"
            reason = _last_line(c.error) if c.status == "failed" else "interrupted"
            diff.problems.append(f"{c.status} in current" + (f": {reason}" if reason else ""))
        else:
            diff.current = _figures(c, metrics)
            _judge(diff, metrics, limits)
            if diff.problems:
                diff.verdict = "regression"
        diffs.append(diff)
    for c in current.cells:
        if _key(c) not in base_keys:
            diffs.append(CellDiff(*_key(c), verdict="new", current=_figures(c, metrics)))
    return Comparison(base.run.run_id, current.run.run_id, max_f1_drop_points, max_size_growth, diffs, metrics, limits)


# --- text -----------------------------------------------------------------------------
def _pair(a: float | None, b: float | None, fmt) -> str:
    return f"{fmt(a) if a is not None else '-'} -> {fmt(b) if b is not None else '-'}"


def _change_head(metric: Metric) -> str:
    return "growth" if metric.compare.gate.change == "relative" else f"Δ {_unit(metric)}".strip()


LABEL_WIDTH = 24
"""Characters a pipeline label (or dataset, model) takes in the diff table; longer ones are cut, still distinct."""


def _shared(diffs: list[CellDiff]) -> dict[str, str]:
    """The title parts every cell has in common: ``{"dataset": "synthetic", "seed": "seed0"}``."""
    parts = {"dataset": {d.dataset for d in diffs}, "model": {d.model for d in diffs}, "seed": {f"seed{d.seed}" for d in diffs}}
    return {k: next(iter(v)) for k, v in parts.items() if len(v) == 1}


def _cell_names(diffs: list[CellDiff], shared: dict[str, str]) -> list[str]:
    """Each cell's title without the shared parts, every part cut to :data:`LABEL_WIDTH` but still distinct."""
    short = {
        key: shorten_unique((getattr(d, key) for d in diffs), LABEL_WIDTH) for key in ("dataset", "model", "pipeline")
    }
    names = []
    for d in diffs:
        parts = [short[k][getattr(d, k)] for k in ("dataset", "model") if k not in shared]
        parts.append(short["pipeline"][d.pipeline])
        if "seed" not in shared:
            parts.append(f"seed{d.seed}")
        names.append("/".join(parts))
    return names


def format_comparison(comparison: Comparison, width: int = WIDTH) -> str:
    """A diff table within ``width`` columns (a column per compared metric, and its change where gated),
    each problem in full below it, and a one-line verdict with the exit code."""
    diffs = comparison.diffs
    shared = _shared(diffs)
    headers = ["pipeline" if set(shared) == {"dataset", "model", "seed"} else "cell"]
    right = []
    for m in comparison.metrics:
        headers.append(m.compare.label)
        if m.compare.gate is not None:
            right.append(len(headers))
            headers.append(_change_head(m))
    headers.append("verdict")
    rows = []
    for d, name in zip(diffs, _cell_names(diffs, shared)):
        row = [name]
        for m in comparison.metrics:
            base, current = d.base.get(m.path), d.current.get(m.path)
            row.append(_pair(base, current, formatter(m.compare.format)))
            if m.compare.gate is not None:
                row.append(_change_text(m, m.change(base, current)))
        rows.append(row + [d.verdict])
    lines = [f"base {comparison.base}  ->  current {comparison.current}"]
    common = "/".join(shared[k] for k in ("dataset", "model", "seed") if k in shared)
    lines.append((f"cells of {common}; " if common else "") + "each figure: base -> current")
    lines.append(render_table(headers, rows, right=right, max_width=width, rule=False))
    problems = [d for d in diffs if d.problems]
    if problems:
        lines.append("")
        lines += [wrap(f"{d.title} {d.verdict}: {'; '.join(d.problems)}", width, indent="    ") for d in problems]
    code = comparison.exit_code
    counts = ", ".join(f"{comparison.count(v)} {v}" for v in ("ok", "regression", "missing", "new", "base-failed") if comparison.count(v))
    limits = [m for m in comparison.metrics if m.path in comparison.thresholds]
    thresholds = "thresholds: " + ", ".join(f"{_noun(m)} {_direction(m)[1]} <= {_limit_text(m, comparison.thresholds[m.path])}" for m in limits)
    verdict = {EXIT_OK: "ok", EXIT_REGRESSION: "REGRESSION", EXIT_MISSING: "MISSING CELLS (done in base, not in current)"}[code]
    if any(m.compare.format == "kb" for m in comparison.metrics):
        lines.append(KB_NOTE)
    lines.append(wrap(f"{verdict}: {counts or 'no cells'}; {thresholds}; exit {code}", width, indent="  "))
    return "\n".join(lines)
