"""``md``: a comparison table of a run, ready to paste into a README or a pull request."""

from __future__ import annotations

from pathlib import Path

from ecgbench import hookimpl
from ecgbench.results import table as _table
from ecgbench.results.records import dropped_windows_markdown, skipped_records_markdown


def markdown_table(table: _table.Table) -> str:
    """A GitHub-flavoured Markdown table (numeric columns right-aligned)."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    def shown(i: int, row: list[str]) -> list[str]:
        return [f"**{c}**" if (i, j) in table.strong else c for j, c in enumerate(row)]

    rule = "|" + "|".join("---:" if n else "---" for n in table.numeric) + "|"
    return "\n".join([line(table.headers), rule, *(line(shown(i, row)) for i, row in enumerate(table.rows))])


def markdown_report(results, out_dir: Path, fmt: str = "md", settings: _table.TableSettings | None = None) -> str:
    """The whole report: facts, synthetic-data warning, budget verdict, table, unfinished cells, skipped records, dropped windows, column definitions."""
    settings = settings or _table.TableSettings()
    run = results.run
    parts = [f"# ecgbench report: {run.suite_name}", ""]
    warning = _table.synthetic_warning(results)
    if warning:
        parts += [f"> **Warning: {warning}**", ""]
    for label, value in _table.report_facts(results, fmt, out_dir, settings):
        parts.append(f"- {label}: `{value}`" if label == "regenerate" else f"- {label}: {value}")
    parts.append("")
    if settings.f1_budget_points is not None:
        parts += [*_table.budget_summary(results, settings.f1_budget_points), ""]
    parts += [markdown_table(_table.summary_table(results, settings.devices, settings.f1_budget_points)), ""]
    unfinished = _table.unfinished_cells(results)
    if unfinished:
        parts += ["## Failed cells", ""]
        parts += [f"- `{title}`: {reason}" for title, reason in unfinished]
        parts += ["", f"Full tracebacks: `ecgbench runs {run.run_id}`", ""]
    parts += skipped_records_markdown(results)
    parts += dropped_windows_markdown(results)
    parts += ["## Columns", ""]
    parts += [f"- **{name}**: {text}" for name, text in _table.column_definitions(results)]
    return "\n".join(parts) + "\n"


class MarkdownReporter(_table.SummaryReporter):
    """Writes ``report.md``: one row per pipeline, seeds as mean ± std."""

    name = "md"
    description = "Markdown comparison table (one row per pipeline, seeds as mean ± std)"
    page = staticmethod(markdown_report)


@hookimpl
def ecgbench_register_reporters(register):
    register(MarkdownReporter)
