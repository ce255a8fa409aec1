"""``md``: a comparison table of a run, ready to paste into a README or a pull request.

By default the table shows the columns that decide (``md.columns: key``, the
metrics of :data:`ecgbench.measure.builtin_metrics.KEY_COLUMNS`, devices' ones for
one device); ``all`` shows every summary column and a list of metric paths picks
them. Every other figure is in ``report.html``, ``results.csv`` and ``results.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ecgbench import hookimpl
from ecgbench.results import seeds as _seeds
from ecgbench.results import table as _table
from ecgbench.results.records import dropped_windows_markdown, skipped_records_markdown


class MarkdownSettings(_table.TableSettings):
    """Settings of ``md``: the summary table's settings and which columns to show."""

    columns: Literal["key", "all"] | list[str] = Field(
        "key",
        description="key: the columns that decide (ΔF1 with its interval, compression, bytes, one device's latency and fit; "
        "devices: the device, default the run's first); all: every summary column (devices: default every device); "
        "or a list of metric paths, e.g. [test.challenge_f1, delta_f1_points, 'devices.{device}.latency_ms']",
    )


def markdown_table(table: _table.Table) -> str:
    """A GitHub-flavoured Markdown table (numeric columns right-aligned)."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    def shown(i: int, row: list[str]) -> list[str]:
        return [f"**{c}**" if (i, j) in table.strong else c for j, c in enumerate(row)]

    rule = "|" + "|".join("---:" if n else "---" for n in table.numeric) + "|"
    return "\n".join([line(table.headers), rule, *(line(shown(i, row)) for i, row in enumerate(table.rows))])


def dense_f1_facts(results) -> list[tuple[str, str]]:
    """("dense test challenge F1", value) per dataset and model: what every ΔF1 is measured from."""
    facts = []
    groups = _table.pipeline_groups(results)
    several = len({(g.dataset, g.model) for g in groups}) > 1
    for dataset, model in dict.fromkeys((g.dataset, g.model) for g in groups):
        cells = [c for g in groups if (g.dataset, g.model) == (dataset, model) for c in g.done]
        by_seed = {c.seed: _table.lookup(c.metrics, "baseline.test_challenge_f1") for c in cells}
        f1 = _table.stat(by_seed.values())
        if f1 is not None:
            label = "dense test challenge F1" + (f" ({dataset} / {model})" if several else "")
            facts.append((label, f1.format(lambda v: f"{v:.3f}") + (f" ({f1.n} seeds)" if f1.n > 1 else "")))
    return facts


def markdown_report(results, out_dir: Path, fmt: str = "md", settings: MarkdownSettings | None = None) -> str:
    """The whole report: facts, synthetic-data warning, budget verdict and rule, table, seeds (when a pipeline has
    several), unfinished cells, skipped records, dropped windows, column definitions."""
    settings = settings or MarkdownSettings()
    run = results.run
    columns = getattr(settings, "columns", "all")  # a plain TableSettings shows every column
    metrics = _table.select_metrics(results, columns, settings.devices, setting=f"{fmt}.columns")
    parts = [f"# ecgbench report: {run.suite_name}", ""]
    warning = _table.synthetic_warning(results)
    if warning:
        parts += [f"> **Warning: {warning}**", ""]
    for label, value in [*_table.report_facts(results, fmt, out_dir, settings), *dense_f1_facts(results)]:
        parts.append(f"- {label}: `{value}`" if label == "regenerate" else f"- {label}: {value}")
    parts.append("")
    if settings.f1_budget_points is not None:
        parts += [*_table.budget_summary(results, settings.f1_budget_points), "", _seeds.budget_rule(settings.f1_budget_points), ""]
    parts += [markdown_table(_table.summary_table(results, f1_budget_points=settings.f1_budget_points, metrics=metrics)), ""]
    if columns == "key":
        parts += [
            "Every other figure (absolute F1, host latency, energy, each device) is in `report.html` (sortable, columns "
            f"can be shown and hidden), `results.csv` and `results.json`; `--set {fmt}.columns=all` puts every column here.",
            "",
        ]
    if _seeds.several_seeds(results):
        parts += ["## Seeds", "", "Each pipeline's seeds: mean ± sample sd across seeds, then every seed's value (in seed order).", ""]
        parts += [markdown_table(_seeds.seed_table(results, settings.f1_budget_points)), ""]
    unfinished = _table.unfinished_cells(results)
    if unfinished:
        parts += ["## Failed cells", ""]
        parts += [f"- `{title}`: {reason}" for title, reason in unfinished]
        parts += ["", "Full tracebacks: " + ", ".join(f"`ecgbench runs {run_id}`" for run_id in _table.traceback_runs(results)), ""]
    parts += skipped_records_markdown(results)
    parts += dropped_windows_markdown(results)
    parts += ["## Columns", ""]
    parts += [f"- **{name}**: {text}" for name, text in _table.column_definitions(results, metrics)]
    return "\n".join(parts) + "\n"


class MarkdownReporter(_table.SummaryReporter):
    """Writes ``report.md``: one row per pipeline, seeds as mean ± std, the key columns by default."""

    name = "md"
    description = "Markdown comparison table (one row per pipeline, seeds as mean ± std; key columns by default, md.columns: all for every one)"
    Config = MarkdownSettings
    page = staticmethod(markdown_report)


@hookimpl
def ecgbench_register_reporters(register):
    register(MarkdownReporter)
