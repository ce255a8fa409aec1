"""Compare two runs cell by cell, for a CI gate: accuracy drop, size growth, missing cells.

Cells are matched by (dataset, model, pipeline, seed). Each side is a run in
the result store (id, id prefix or suite name) or a JSON report written by
the ``json`` reporter (the file, or the folder holding ``results.json``).
Host latency is shown but never judged: it depends on the machine and its load.

Exit codes of ``ecgbench compare``:

- 0 (:data:`EXIT_OK`): every cell of BASE is done in CURRENT within the thresholds;
- 1 (:data:`EXIT_REGRESSION`): a cell's test challenge F1 dropped by more than
  ``max_f1_drop_points`` or its deployable bytes grew by more than ``max_size_growth``;
- 2: BASE or CURRENT cannot be read (an unknown run, a file that is not a JSON report);
- 3 (:data:`EXIT_MISSING`): a cell done in BASE is missing, failed or unfinished in
  CURRENT (takes precedence over 1: the comparison is incomplete).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecgbench.errors import ConfigError, StoreError
from ecgbench.run.store import CellRow, ResultStore, RunResults, RunRow

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_MISSING = 3

JSON_REPORT_NAME = "results.json"  # written by the json reporter (ecgbench_plugins.reporters.tabular)

CellKey = tuple[str, str, str, int]


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
def _number(metrics: dict, *path: str) -> float | None:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass
class CellDiff:
    """One matched cell: base and current figures and the verdict."""

    dataset: str
    model: str
    pipeline: str
    seed: int
    verdict: str  # ok | regression | missing | new | base-failed
    base_f1: float | None = None
    current_f1: float | None = None
    base_bytes: float | None = None
    current_bytes: float | None = None
    base_latency_ms: float | None = None
    current_latency_ms: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.dataset}/{self.model}/{self.pipeline}/seed{self.seed}"

    @property
    def delta_f1_points(self) -> float | None:
        if self.base_f1 is None or self.current_f1 is None:
            return None
        return (self.current_f1 - self.base_f1) * 100

    @property
    def size_growth(self) -> float | None:
        """Relative growth of deployable bytes (0.05 = 5 % larger)."""
        if self.base_bytes is None or self.current_bytes is None or self.base_bytes <= 0:
            return None
        return self.current_bytes / self.base_bytes - 1

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "title": self.title, "delta_f1_points": self.delta_f1_points, "size_growth": self.size_growth}


@dataclass
class Comparison:
    """The cell-by-cell diff of two runs and the thresholds it was judged with."""

    base: str
    current: str
    max_f1_drop_points: float
    max_size_growth: float
    diffs: list[CellDiff]

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
            "cells": [d.to_dict() for d in self.diffs],
        }


def _key(cell: CellRow) -> CellKey:
    return (cell.dataset, cell.model, cell.pipeline, int(cell.seed))


def _figures(cell: CellRow) -> tuple[float | None, float | None, float | None]:
    m = cell.metrics or {}
    return _number(m, "test", "challenge_f1"), _number(m, "size", "deployable_bytes"), _number(m, "latency", "host_median_ms")


# Tolerance for threshold tests: a drop of exactly the threshold (0.5 points) must pass despite float rounding.
_EPS = 1e-9


def compare_runs(base: RunResults, current: RunResults, max_f1_drop_points: float = 0.5, max_size_growth: float = 0.05) -> Comparison:
    """Match cells by (dataset, model, pipeline, seed) and judge each against the thresholds."""
    current_by_key = {_key(c): c for c in current.cells}
    diffs = []
    base_keys = set()
    for b in base.cells:
        key = _key(b)
        base_keys.add(key)
        diff = CellDiff(*key, verdict="ok")
        diff.base_f1, diff.base_bytes, diff.base_latency_ms = _figures(b)
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
            diff.current_f1, diff.current_bytes, diff.current_latency_ms = _figures(c)
            delta, growth = diff.delta_f1_points, diff.size_growth
            if delta is not None and -delta > max_f1_drop_points + _EPS:
                diff.problems.append(f"F1 dropped {-delta:.2f} pts > {max_f1_drop_points:g}")
            if growth is not None and growth > max_size_growth + _EPS:
                diff.problems.append(f"size grew {growth:+.1%} > {max_size_growth:.1%}")
            if diff.base_f1 is not None and diff.current_f1 is None:
                diff.problems.append("current has no test challenge F1")
            if diff.problems:
                diff.verdict = "regression"
        diffs.append(diff)
    for c in current.cells:
        if _key(c) not in base_keys:
            diff = CellDiff(*_key(c), verdict="new")
            diff.current_f1, diff.current_bytes, diff.current_latency_ms = _figures(c)
            diffs.append(diff)
    return Comparison(base.run.run_id, current.run.run_id, max_f1_drop_points, max_size_growth, diffs)


# --- text -----------------------------------------------------------------------------
def _pair(a: float | None, b: float | None, fmt) -> str:
    return f"{fmt(a) if a is not None else '-'} -> {fmt(b) if b is not None else '-'}"


def format_comparison(comparison: Comparison) -> str:
    """A diff table and a one-line verdict with the exit code."""
    headers = ["cell", "test F1 base -> current", "Δ pts", "deployable bytes base -> current", "growth", "host ms base -> current", "verdict"]
    rows = []
    for d in comparison.diffs:
        rows.append(
            [
                d.title,
                _pair(d.base_f1, d.current_f1, lambda v: f"{v:.3f}"),
                f"{d.delta_f1_points:+.2f}" if d.delta_f1_points is not None else "-",
                _pair(d.base_bytes, d.current_bytes, lambda v: f"{v:,.0f}"),
                f"{d.size_growth:+.1%}" if d.size_growth is not None else "-",
                _pair(d.base_latency_ms, d.current_latency_ms, lambda v: f"{v:.2f}"),
                d.verdict + (": " + "; ".join(d.problems) if d.problems else ""),
            ]
        )
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers) - 1)]
    lines = [f"base {comparison.base}  ->  current {comparison.current}"]
    for r in [headers, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths)) + "  " + r[-1])
    code = comparison.exit_code
    counts = ", ".join(f"{comparison.count(v)} {v}" for v in ("ok", "regression", "missing", "new", "base-failed") if comparison.count(v))
    thresholds = f"thresholds: F1 drop <= {comparison.max_f1_drop_points:g} pts, size growth <= {comparison.max_size_growth:.1%}"
    verdict = {EXIT_OK: "ok", EXIT_REGRESSION: "REGRESSION", EXIT_MISSING: "MISSING CELLS (done in base, not in current)"}[code]
    lines.append(f"{verdict}: {counts or 'no cells'}; {thresholds}; exit {code}")
    return "\n".join(lines)
