"""``html``: an interactive page with every column of the run in one table and the trade-off plots.

The table holds every metric of the run; clicking a header sorts by it, the
checkboxes above show and hide columns (those outside the summary start hidden).
The plots (:mod:`ecgbench_plugins.reporters.plots`) are plotly figures with hover
tooltips, one device-latency plot with a device selector and the lottery rounds.
The page loads nothing from the network: ``plotly.min.js`` is written beside
``report.html``. The numbers behind every plot are embedded too, as a JSON block
(``<script type="application/json" id="plot-data">``), so they can be read back and checked.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ecgbench import atomic, hookimpl
from ecgbench.results import seeds as _seeds
from ecgbench.results import table as _table
from ecgbench.results.records import dropped_windows_html, skipped_records_html
from ecgbench_plugins.reporters import plots

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 84em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; }
th button { all: unset; cursor: pointer; }
th button::after { content: " \\2195"; color: #aaa; }
th[aria-sort="ascending"] button::after { content: " \\2191"; color: #222; }
th[aria-sort="descending"] button::after { content: " \\2193"; color: #222; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.c0 { position: sticky; left: 0; background: #fff; z-index: 1; }
th.c0 { background: #f3f3f3; z-index: 2; }
tbody tr:hover td { background: #eef5ff; }
.table-wrap { overflow: auto; max-width: 100%; max-height: 80vh; border: 1px solid #ddd; }
#column-chooser { margin: 0.8em 0; font-size: 0.9em; }
#column-chooser fieldset { border: 1px solid #ddd; margin: 0.3em 0; }
#column-chooser label { display: inline-block; margin: 0.1em 0.9em 0.1em 0; white-space: nowrap; }
.warning { background: #fff3cd; border: 1px solid #e0b000; padding: 0.6em 1em; font-weight: bold; }
code { background: #f3f3f3; padding: 0 0.2em; }
.plot { margin: 1.5em 0; min-height: 460px; }
"""

SCRIPT = """
(function () {
  const table = document.getElementById("results-table");
  if (!table) return;
  const body = table.tBodies[0];
  const key = (row, col) => { const v = row.cells[col].dataset.sort; return v === undefined || v === "" ? null : v; };
  table.querySelectorAll("thead th button").forEach(function (button) {
    button.addEventListener("click", function () {
      const th = button.parentElement, col = Number(th.dataset.col);
      const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
      table.querySelectorAll("thead th").forEach(h => h.setAttribute("aria-sort", "none"));
      th.setAttribute("aria-sort", dir);
      const rows = Array.from(body.rows);
      const numeric = rows.every(r => key(r, col) === null || !isNaN(Number(key(r, col))));
      rows.sort(function (a, b) {
        const x = key(a, col), y = key(b, col);
        if (x === null || y === null) return (x === null) - (y === null);  // missing values last either way
        const c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
        return dir === "ascending" ? c : -c;
      });
      rows.forEach(r => body.appendChild(r));
    });
  });
  const boxes = Array.from(document.querySelectorAll("#column-chooser input[type=checkbox]"));
  const apply = box => table.classList.toggle("hide-" + box.value, !box.checked);
  boxes.forEach(box => { box.addEventListener("change", () => apply(box)); apply(box); });
  document.querySelectorAll("#column-chooser button[data-show]").forEach(function (button) {
    button.addEventListener("click", function () {
      const which = button.dataset.show;
      boxes.forEach(box => { box.checked = which === "all" || (which === "key" && box.dataset.key === "1"); apply(box); });
    });
  });
  if (!window.Plotly) {
    document.querySelectorAll(".plot").forEach(p => { p.textContent = "The plots need plotly.min.js beside this page (written with it by ecgbench report)."; });
  }
})();
"""


def plot_inputs(results) -> dict[str, Any]:
    """The numbers every plot draws: size/F1 and latency/F1 points with their Pareto flags, device fits, lottery rounds."""
    devices = _table.device_names(results)
    fits: dict[str, dict[str, str]] = {}
    for device in devices:
        flags = {}
        for g in _table.pipeline_groups(results):
            text = _table.fits_text(g.values(f"devices.{device}.fits"))
            if text != "-":
                flags[f"{g.dataset}/{g.model}/{g.pipeline}"] = text
        fits[device] = flags
    return {
        "size_f1": _table.tradeoff_points(results, _table.STORAGE),
        "latency_f1": {device: _table.tradeoff_points(results, f"devices.{device}.latency_ms") for device in devices},
        "fits": fits,
        "lottery": _table.lottery_trajectories(results),
    }


def figures(data: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(div id, caption, plotly figure or None) of each plot of the page."""
    names = [p["pipeline"] for p in data["size_f1"]] + [p["pipeline"] for pts in data["latency_f1"].values() for p in pts]
    style = plots.styles(names)
    fits = {
        device: {tuple(key.split("/", 2)): text for key, text in flags.items()} for device, flags in data["fits"].items()
    }
    return [
        ("size-plot", "Accuracy versus storage size", plots.size_figure(data["size_f1"], style)),
        ("latency-plot", "Accuracy versus simulated device latency (choose the device above the plot)", plots.latency_figure(data["latency_f1"], style, fits)),
        ("lottery-plot", "Lottery-ticket rounds", plots.lottery_figure(data["lottery"])),
    ]


# --- page ---------------------------------------------------------------------------------
def _sort_attr(value: float | str | None) -> str:
    if value is None:
        return ""
    return f' data-sort="{html.escape(repr(value) if isinstance(value, float) else str(value))}"'


def html_table(table: _table.Table, hidden: set[int] = frozenset(), table_id: str = "results-table") -> str:
    """The table with sortable headers; every cell has class ``c<column>`` so a column can be hidden (``hide-c<column>`` on the table)."""
    esc = html.escape
    head = "".join(
        f'<th class="c{j}" data-col="{j}" aria-sort="none" title="{esc(table.paths[j] if j < len(table.paths) else h)}"><button type="button">{esc(h)}</button></th>'
        for j, h in enumerate(table.headers)
    )
    body = []
    for i, row in enumerate(table.rows):
        keys = table.sort_keys[i] if i < len(table.sort_keys) else [None] * len(row)
        cells = []
        for j, (text, numeric, key) in enumerate(zip(row, table.numeric, keys)):
            shown = f"<strong>{esc(text)}</strong>" if (i, j) in table.strong else esc(text)
            cells.append(f'<td class="c{j}{" num" if numeric else ""}"{_sort_attr(key)}>{shown}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    rules = "\n".join(f"#{table_id}.hide-c{j} .c{j} {{ display: none; }}" for j in range(len(table.headers)))
    hide = " ".join(f"hide-c{j}" for j in sorted(hidden))
    return (
        f"<style>{rules}</style>\n"
        f'<div class="table-wrap"><table id="{table_id}" class="{hide}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody>\n</table></div>"
    )


def column_chooser(table: _table.Table, shown: set[int], key: set[int]) -> str:
    """Checkboxes showing/hiding each column but the first (the pipeline), with "key columns" and "all" buttons."""
    esc = html.escape
    boxes = "".join(
        f'<label><input type="checkbox" value="c{j}" data-key="{int(j in key)}"{" checked" if j in shown else ""}> {esc(h)}</label>'
        for j, h in enumerate(table.headers)
        if j > 0
    )
    return (
        '<details id="column-chooser" open><summary>Columns shown (click a header to sort)</summary>'
        f'<fieldset>{boxes}</fieldset>'
        '<button type="button" data-show="key">key columns</button> <button type="button" data-show="all">all columns</button> '
        '<button type="button" data-show="none">pipeline only</button></details>'
    )


def full_table(results, settings: _table.TableSettings) -> tuple[_table.Table, set[int], set[int]]:
    """Every metric of the run as a table, the columns shown at first (the summary ones) and the key ones."""
    from ecgbench.measure.builtin_metrics import KEY_COLUMNS

    devices = _table.checked_devices(results, settings.devices)
    metrics = _table.run_schema(results, devices)
    table = _table.summary_table(results, f1_budget_points=settings.f1_budget_points, metrics=metrics)
    offset = len(table.headers) - len(metrics)
    key_paths = {p.replace("{device}", d) for p in KEY_COLUMNS for d in devices} | {"test.challenge_f1"}
    shown = set(range(offset)) | {offset + k for k, m in enumerate(metrics) if m.summary}
    key = set(range(offset)) | {offset + k for k, m in enumerate(metrics) if m.path in key_paths}
    return table, shown, key


def html_report(results, out_dir: Path, fmt: str = "html", settings: _table.TableSettings | None = None) -> str:
    """The whole page as one string (it loads :data:`plots.PLOTLY_JS` from its folder)."""
    settings = settings or _table.TableSettings()
    run = results.run
    data = plot_inputs(results)
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>ecgbench report: {esc(run.suite_name)}</title>",
        f'<script src="{plots.PLOTLY_JS}" charset="utf-8"></script>',
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
        parts.append(f"<p>{esc(_seeds.budget_rule(settings.f1_budget_points))}</p>")
    table, shown, key = full_table(results, settings)
    parts.append("<h2>Results</h2>")
    parts.append(column_chooser(table, shown, key))
    parts.append(html_table(table, hidden=set(range(len(table.headers))) - shown))
    if _seeds.several_seeds(results):
        parts += ["<h2>Seeds</h2>", "<p>Each pipeline's seeds: mean ± sample sd across seeds, then every seed's value (in seed order).</p>"]
        parts.append(html_table(_seeds.seed_table(results, settings.f1_budget_points), table_id="seeds-table"))
        parts.append("<details><summary>One row per seed</summary>")
        parts.append(html_table(_seeds.per_seed_table(results), table_id="per-seed-table"))
        parts.append("</details>")
    unfinished = _table.unfinished_cells(results)
    if unfinished:
        parts += ["<h2>Failed cells</h2>", "<ul>"]
        parts += [f"<li><code>{esc(title)}</code>: {esc(reason)}</li>" for title, reason in unfinished]
        commands = ", ".join(f"<code>ecgbench runs {esc(run_id)}</code>" for run_id in _table.traceback_runs(results))
        parts += ["</ul>", f"<p>Full tracebacks: {commands}</p>"]
    parts += skipped_records_html(results)
    parts += dropped_windows_html(results)
    parts.append("<h2>Trade-offs</h2>")
    parts.append("<p>Hover a point for its pipeline and figures; click a legend entry to hide it, double-click to show it alone.</p>")
    for div_id, caption, fig in figures(data):
        if fig is None:
            parts.append(f'<p id="{div_id}-none">{esc(caption)}: nothing to plot in this run.</p>')
        else:
            parts.append(f'<figure class="plot" aria-label="{esc(caption)}">{plots.figure_html(fig, div_id)}</figure>')
    parts += ["<h2>Columns</h2>", "<dl>"]
    parts += [f"<dt>{esc(name)}</dt><dd>{esc(text)}</dd>" for name, text in _table.column_definitions(results)]
    parts.append("</dl>")
    payload = json.dumps(data, default=str).replace("</", "<\\/")  # a "</script>" inside a label cannot end the block
    parts.append(f'<script type="application/json" id="plot-data">{payload}</script>')
    parts.append(f"<script>{SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


class HtmlReporter(_table.SummaryReporter):
    """Writes ``report.html`` (sortable table of every column, interactive plots) and the ``plotly.min.js`` it loads."""

    name = "html"
    description = "interactive HTML page: every column in a sortable table, F1 vs size (Pareto front), F1 vs device latency (device selector), lottery rounds"
    page = staticmethod(html_report)

    def write(self, results, out_dir: Path) -> list[Path]:
        [page] = super().write(results, out_dir)
        script = Path(out_dir) / plots.PLOTLY_JS
        bundle = plots.plotly_js()
        if not script.exists() or script.read_text(encoding="utf-8") != bundle:
            atomic.write_text(script, bundle, hint="pass another --out")
        return [page, script]


@hookimpl
def ecgbench_register_reporters(register):
    register(HtmlReporter)
