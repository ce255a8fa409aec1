"""Across seeds: each pipeline's test F1 and ΔF1 as mean ± sd over its seeds, and every seed's value.

The figures and how seeds combine come from the metrics' declarations
(:mod:`ecgbench.measure.builtin_metrics`, ``aggregate="mean_std"``: mean and
sample standard deviation). The budget verdict follows :data:`BUDGET_RULE`
(:func:`ecgbench.results.table.within_budget`). The Markdown and HTML reports show
:func:`seed_table` / :func:`per_seed_table`, the JSON report :func:`seed_document`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecgbench.measure.schema import Metric, Stat, aggregate, lookup, number
from ecgbench.results import table as _table

SEED_METRICS = ("test.challenge_f1", "delta_f1_points")
"""The figures shown seed by seed (paths of built-in metrics)."""

DELTA_CI = "delta_f1_ci_points"

BUDGET_RULE = (
    "a pipeline is within a budget of B points when the mean of its seeds' test ΔF1 (each paired with the seed's own "
    "dense model) is at least -B points; with one seed, that seed's ΔF1. The seeds' sd and each seed's paired "
    "bootstrap interval are shown beside it, so a verdict resting on seeds that disagree, or on intervals wider than "
    "the budget, can be seen."
)


def budget_rule(points: float) -> str:
    """:data:`BUDGET_RULE` with B filled in, as a report states it."""
    return "Within budget: " + BUDGET_RULE.replace("B points", f"{points:g} point{'' if points == 1 else 's'}").replace("-B", f"-{points:g}")


def _declared(path: str) -> Metric:
    from ecgbench.measure.builtin_metrics import BUILTIN_METRICS

    return next(m for m in BUILTIN_METRICS if m.path == path)


@dataclass
class SeedSummary:
    """One pipeline on one dataset and model: its done seeds and their figures."""

    group: _table.PipelineGroup
    seeds: list[dict[str, Any]]  # {"seed", "run"?, path: value, "delta_f1_ci_points": [lo, hi] | None}
    stats: dict[str, Stat | None]
    within_budget: bool | None  # None without a budget or without a ΔF1


def seed_summaries(results, f1_budget_points: float | None = None) -> list[SeedSummary]:
    """Per pipeline group, in table order: each done seed's figures and their aggregate across seeds."""
    cell_runs = getattr(results, "cell_runs", None) or {}
    metrics = [_declared(p) for p in SEED_METRICS]
    out = []
    for g in _table.pipeline_groups(results):
        done = sorted(g.done, key=lambda c: c.seed)
        seeds = []
        for cell in done:
            entry: dict[str, Any] = {"seed": cell.seed}
            if cell.cell_id in cell_runs:
                entry["run"] = cell_runs[cell.cell_id]
            for m in metrics:
                entry[m.path] = number(lookup(cell.metrics, m.path))
            ci = lookup(cell.metrics, DELTA_CI)
            entry[DELTA_CI] = [number(ci[0]), number(ci[1])] if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
            seeds.append(entry)
        stats = {m.path: aggregate(m, [c.metrics or {} for c in done]) for m in metrics}
        verdict = None
        if f1_budget_points is not None and stats["delta_f1_points"] is not None:
            verdict = _table.within_budget(g, f1_budget_points)
        out.append(SeedSummary(g, seeds, stats, verdict))
    return out


def several_seeds(results) -> bool:
    """Whether any pipeline of the run has more than one done seed (the reports then show their seeds section)."""
    return any(len({c.seed for c in g.done}) > 1 for g in _table.pipeline_groups(results))


def _mean_sd(s: Stat | None, fmt: str, sd_fmt: str = ".3f") -> str:
    """``mean ± sd (n seeds)``; one seed: its value and ``(1 seed)``."""
    if s is None:
        return "-"
    if s.n == 1:
        return f"{s.mean:{fmt}} (1 seed)"
    return f"{s.mean:{fmt}} ± {s.std:{sd_fmt}} ({s.n} seeds)"


def _f1(v: float | None) -> str:
    return f"{v:.3f}" if v is not None else "-"


def _pts(v: float | None) -> str:
    return f"{v:+.2f}" if v is not None else "-"


def _delta_with_ci(entry: dict[str, Any]) -> str:
    ci = entry.get(DELTA_CI)
    text = _pts(entry.get("delta_f1_points"))
    if ci and ci[0] is not None and ci[1] is not None:
        text += f" [{ci[0]:+.2f}, {ci[1]:+.2f}]"
    return text


def _several_combos(results) -> bool:
    """Whether the run has several (dataset, model): the tables then show both, as the summary table does."""
    return len({(g.dataset, g.model) for g in _table.pipeline_groups(results)}) > 1


def seed_table(results, f1_budget_points: float | None = None) -> _table.Table:
    """One row per pipeline: seeds, test F1 and ΔF1 as mean ± sd (n seeds) and every seed's value."""
    several = _several_combos(results)
    labels = ["dataset", "model"] if several else []
    level = _table.ci_level(results.cells[0]) if results.cells else _table.DEFAULT_CI_LEVEL
    headers = labels + ["pipeline", "seeds", "test F1 mean ± sd", "test F1 per seed", "ΔF1 pts mean ± sd", f"ΔF1 pts per seed [{level:.0%} paired CI]"]
    if f1_budget_points is not None:
        headers.append(f"within {f1_budget_points:g} pt")
    rows = []
    for s in seed_summaries(results, f1_budget_points):
        identity = [s.group.dataset, s.group.model] if several else []
        row = identity + [
            s.group.pipeline,
            ", ".join(str(e["seed"]) for e in s.seeds) or "-",
            _mean_sd(s.stats["test.challenge_f1"], ".3f"),
            ", ".join(_f1(e["test.challenge_f1"]) for e in s.seeds) or "-",
            _mean_sd(s.stats["delta_f1_points"], "+.2f", ".2f"),
            ", ".join(_delta_with_ci(e) for e in s.seeds) or "-",
        ]
        if f1_budget_points is not None:
            row.append("-" if s.within_budget is None else ("yes" if s.within_budget else "no"))
        rows.append(row)
    numeric = [False] * (len(labels) + 2) + [True] * (len(headers) - len(labels) - 2)
    return _table.Table(headers, rows, numeric, paths=list(headers))


def per_seed_table(results) -> _table.Table:
    """One row per done seed of every pipeline: its run, test F1 and ΔF1 with its paired interval."""
    several = _several_combos(results)
    labels = ["dataset", "model"] if several else []
    merged = bool(getattr(results, "cell_runs", None))
    headers = labels + ["pipeline", "seed"] + (["run"] if merged else []) + ["test F1", "ΔF1 pts [paired CI]"]
    rows, keys = [], []
    for s in seed_summaries(results):
        identity = [s.group.dataset, s.group.model] if several else []
        for e in s.seeds:
            run = [e.get("run", "-")] if merged else []
            rows.append(identity + [s.group.pipeline, str(e["seed"])] + run + [_f1(e["test.challenge_f1"]), _delta_with_ci(e)])
            keys.append(identity + [s.group.pipeline, float(e["seed"])] + run + [e["test.challenge_f1"], e["delta_f1_points"]])
    numeric = [False] * len(labels) + [False, True] + ([False] if merged else []) + [True, True]
    return _table.Table(headers, rows, numeric, paths=list(headers), sort_keys=keys)


def seed_document(results, f1_budget_points: float | None = None) -> list[dict[str, Any]]:
    """The JSON report's ``pipelines``: per pipeline, each figure's mean, sd, n and per-seed list (seed order)."""
    out = []
    for s in seed_summaries(results, f1_budget_points):
        entry: dict[str, Any] = {
            "dataset": s.group.dataset,
            "model": s.group.model,
            "pipeline": s.group.pipeline,
            "seeds": [e["seed"] for e in s.seeds],
        }
        if any("run" in e for e in s.seeds):
            entry["runs"] = [e.get("run") for e in s.seeds]
        for path in SEED_METRICS:
            st = s.stats[path]
            entry[path] = {
                "mean": st.mean if st else None,
                "sd": st.std if st and st.n > 1 else None,
                "n": st.n if st else 0,
                "per_seed": [e[path] for e in s.seeds],
            }
        entry["delta_f1_points"]["per_seed_ci"] = [e[DELTA_CI] for e in s.seeds]
        if f1_budget_points is not None:
            entry["within_budget"] = s.within_budget
        out.append(entry)
    return out
