"""``html``: one self-contained page with the comparison table and the trade-off plots.

Plots are drawn with matplotlib's Agg canvas (no display, no pyplot state)
and embedded as base64 PNG ``data:`` URIs; the page loads nothing from the
network. The numbers behind every plot are embedded too, as a JSON block
(``<script type="application/json" id="plot-data">``), so they can be read
back and checked.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from ecgbench import hookimpl
from ecgbench.results import table as _table
from ecgbench.results.records import dropped_windows_html, skipped_records_html

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.warning { background: #fff3cd; border: 1px solid #e0b000; padding: 0.6em 1em; font-weight: bold; }
code { background: #f3f3f3; padding: 0 0.2em; }
figure { margin: 1.5em 0; }
"""


def plot_inputs(results) -> dict[str, Any]:
    """The numbers every plot draws: size/F1 and latency/F1 points with their Pareto flags, lottery rounds."""
    return {
        "size_f1": _table.tradeoff_points(results, _table.STORAGE),
        "latency_f1": {device: _table.tradeoff_points(results, f"devices.{device}.latency_ms") for device in _table.device_names(results)},
        "lottery": _table.lottery_trajectories(results),
    }


# --- plots --------------------------------------------------------------------------------
def _figure(width_in: float = 7.0, height_in: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_data_uri(fig) -> str:
    """The figure as a ``data:image/png;base64,...`` URI (no software/URL metadata in the PNG)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _tradeoff_axes(ax, points: list[dict[str, Any]], xlabel: str) -> None:
    """Scatter F1 against x (log scale) per dataset/model, the Pareto front joined and ringed."""
    colours = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    combos = list(dict.fromkeys((p["dataset"], p["model"]) for p in points))
    for k, combo in enumerate(combos):
        colour = colours[k % len(colours)]
        members = [p for p in points if (p["dataset"], p["model"]) == combo]
        ax.errorbar(
            [p["x"] for p in members], [p["f1"] for p in members], yerr=[p["f1_std"] for p in members],
            fmt="o", color=colour, alpha=0.8, label=f"{combo[0]} / {combo[1]}" if len(combos) > 1 else None,
        )
        front = sorted((p for p in members if p.get("pareto")), key=lambda p: p["x"])
        ax.plot([p["x"] for p in front], [p["f1"] for p in front], "-", color=colour, linewidth=1.2, drawstyle="steps-post")
        ax.scatter([p["x"] for p in front], [p["f1"] for p in front], s=140, facecolors="none", edgecolors=colour, linewidths=1.5)
        for p in members:
            ax.annotate(p["pipeline"], (p["x"], p["f1"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    log = all(p["x"] > 0 for p in points)  # a zero (e.g. an unsimulated figure) has no place on a log axis
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel + (" (log)" if log else ""))
    ax.set_ylabel("test challenge F1")
    ax.grid(True, which="both", alpha=0.3)
    if len(combos) > 1:
        ax.legend(fontsize=7)


def size_plot(points: list[dict[str, Any]]):
    """F1 versus storage bytes, Pareto front ringed; None without points."""
    if not points:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    _tradeoff_axes(ax, points, "storage bytes (smallest lossless file)")
    ax.set_title("accuracy vs size (ringed: Pareto front)")
    return fig


def latency_plot(per_device: dict[str, list[dict[str, Any]]]):
    """F1 versus simulated latency, one panel per device; None without points."""
    devices = [d for d, points in per_device.items() if points]
    if not devices:
        return None
    fig = _figure(7.0, 3.6 * len(devices))
    for i, device in enumerate(devices):
        ax = fig.add_subplot(len(devices), 1, i + 1)
        _tradeoff_axes(ax, per_device[device], f"simulated latency on {device}, ms")
        ax.set_title(f"accuracy vs latency: {device}")
    return fig


def lottery_plot(trajectories: list[dict[str, Any]]):
    """Validation F1 against sparsity for each lottery-ticket search, accepted (o) and rejected (x) rounds; None without rounds."""
    trajectories = [t for t in trajectories if t["rounds"]]
    if not trajectories:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for k, t in enumerate(trajectories):
        colour = f"C{k % 10}"
        rounds = t["rounds"]
        accepted = [r for r in rounds if r["accepted"]]
        rejected = [r for r in rounds if not r["accepted"]]
        ax.plot([r["sparsity"] for r in accepted], [r["val_challenge_f1"] for r in accepted], "o-", color=colour, label=t["label"])
        if rejected:
            ax.plot([r["sparsity"] for r in rejected], [r["val_challenge_f1"] for r in rejected], "x", color=colour, markersize=8)
        if t["min_val_challenge_f1"] is not None:
            ax.axhline(t["min_val_challenge_f1"], color=colour, linestyle="--", linewidth=0.8)
    ax.set_xlabel("sparsity (share of prunable weights at zero)")
    ax.set_ylabel("validation challenge F1")
    ax.set_title("lottery-ticket rounds (o accepted, x rejected, dashed: F1 budget)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return fig


# --- page ---------------------------------------------------------------------------------
def html_table(table: _table.Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = []
    for i, row in enumerate(table.rows):
        texts = [f"<strong>{html.escape(c)}</strong>" if (i, j) in table.strong else html.escape(c) for j, c in enumerate(row)]
        cells = "".join(f'<td class="num">{t}</td>' if n else f"<td>{t}</td>" for t, n in zip(texts, table.numeric))
        body.append(f"<tr>{cells}</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _figure_html(fig, alt: str, caption: str) -> str:
    if fig is None:
        return f"<p>{html.escape(caption)}: nothing to plot in this run.</p>"
    return f'<figure><img src="{png_data_uri(fig)}" alt="{html.escape(alt)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def html_report(results, out_dir: Path, fmt: str = "html", settings: _table.TableSettings | None = None) -> str:
    """The whole page as one string."""
    settings = settings or _table.TableSettings()
    run = results.run
    data = plot_inputs(results)
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>ecgbench report: {esc(run.suite_name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>ecgbench report: {esc(run.suite_name)}</h1>",
    ]
    warning = _table.synthetic_warning(results)
    if warning:
        parts.append(f'<p class="warning">Warning: {esc(warning)}</p>')
    parts.append("<ul>")
    for label, value in _table.report_facts(results, fmt, out_dir, settings):
        shown = f"<code>{esc(value)}</code>" if label == "regenerate" else esc(value)
        parts.append(f"<li>{esc(label)}: {shown}</li>")
    parts.append("</ul>")
    if settings.f1_budget_points is not None:
        parts += [f"<p>{esc(line)}</p>" for line in _table.budget_summary(results, settings.f1_budget_points)]
    parts.append(html_table(_table.summary_table(results, settings.devices, settings.f1_budget_points)))
    unfinished = _table.unfinished_cells(results)
    if unfinished:
        parts += ["<h2>Failed cells</h2>", "<ul>"]
        parts += [f"<li><code>{esc(title)}</code>: {esc(reason)}</li>" for title, reason in unfinished]
        parts += ["</ul>", f"<p>Full tracebacks: <code>ecgbench runs {esc(run.run_id)}</code></p>"]
    parts += skipped_records_html(results)
    parts += dropped_windows_html(results)
    parts.append("<h2>Trade-offs</h2>")
    parts.append(_figure_html(size_plot(data["size_f1"]), "test challenge F1 versus storage bytes", "Accuracy versus storage size"))
    parts.append(_figure_html(latency_plot(data["latency_f1"]), "test challenge F1 versus simulated latency", "Accuracy versus simulated device latency"))
    parts.append(_figure_html(lottery_plot(data["lottery"]), "validation F1 versus sparsity per round", "Lottery-ticket rounds"))
    parts += ["<h2>Columns</h2>", "<dl>"]
    parts += [f"<dt>{esc(name)}</dt><dd>{esc(text)}</dd>" for name, text in _table.column_definitions(results)]
    parts.append("</dl>")
    payload = json.dumps(data, default=str).replace("</", "<\\/")  # a "</script>" inside a label cannot end the block
    parts.append(f'<script type="application/json" id="plot-data">{payload}</script>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


class HtmlReporter(_table.SummaryReporter):
    """Writes ``report.html``: table, trade-off plots and lottery rounds on one offline page."""

    name = "html"
    description = "self-contained HTML page: comparison table, F1 vs size (Pareto front), F1 vs device latency, lottery rounds"
    page = staticmethod(html_report)


@hookimpl
def ecgbench_register_reporters(register):
    register(HtmlReporter)
