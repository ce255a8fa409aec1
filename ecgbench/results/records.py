"""The "Skipped records" and "Dropped windows" sections of the reports.

Each cell stores what its data loader skipped (bad records, with
``data.on_bad_record: skip``) under ``metrics["data"]["skipped"]``
(``{reason: {"count": n, "records": [ids]}}``), and what the dataset left out by
design (e.g. windows across a rhythm change) under ``metrics["data"]["dropped"]``
(``{reason: count}``); every cell of one dataset and preprocessing skips and drops
the same, so each section shows each dataset once.
"""

from __future__ import annotations

import html
from typing import Any

from ecgbench.data.problems import DROP_REASONS, REASONS

MAX_IDS_SHOWN = 5


def skipped_records(results) -> dict[str, dict[str, dict[str, Any]]]:
    """``{dataset: {reason: {"count", "records"}}}`` over the run's cells (the first cell of a dataset that skipped any)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for cell in results.cells:
        skipped = ((cell.metrics or {}).get("data") or {}).get("skipped") or {}
        if skipped and cell.dataset not in out:
            out[cell.dataset] = skipped
    return out


def skipped_lines(skipped: dict[str, dict[str, Any]]) -> list[str]:
    """One plain line per reason: count, what the reason means, the first record names."""
    lines = []
    for reason, entry in skipped.items():
        ids = list(entry.get("records", []))
        shown = ", ".join(ids[:MAX_IDS_SHOWN]) + (f" and {len(ids) - MAX_IDS_SHOWN} more" if len(ids) > MAX_IDS_SHOWN else "")
        lines.append(f"{entry.get('count', len(ids))} {reason} ({REASONS.get(reason, reason)})" + (f": {shown}" if shown else ""))
    return lines


def _total(skipped: dict[str, dict[str, Any]]) -> int:
    return sum(int(e.get("count", 0)) for e in skipped.values())


def skipped_records_markdown(results) -> list[str]:
    """The Markdown section (a list of lines, empty when no record was skipped)."""
    by_dataset = skipped_records(results)
    if not by_dataset:
        return []
    parts = ["## Skipped records", "", "Left out because the suite sets `data.on_bad_record: skip`:", ""]
    for dataset, skipped in by_dataset.items():
        parts.append(f"- {dataset}: {_total(skipped)} record(s)")
        parts += [f"  - {line}" for line in skipped_lines(skipped)]
    return parts + [""]


def skipped_records_html(results) -> list[str]:
    """The HTML section (a list of lines, empty when no record was skipped)."""
    by_dataset = skipped_records(results)
    if not by_dataset:
        return []
    parts = ["<h2>Skipped records</h2>", "<p>Left out because the suite sets <code>data.on_bad_record: skip</code>:</p>", "<ul>"]
    for dataset, skipped in by_dataset.items():
        items = "".join(f"<li>{html.escape(line)}</li>" for line in skipped_lines(skipped))
        parts.append(f"<li>{html.escape(dataset)}: {_total(skipped)} record(s)<ul>{items}</ul></li>")
    return parts + ["</ul>"]


def dropped_windows(results) -> dict[str, dict[str, int]]:
    """``{dataset: {reason: count}}`` over the run's cells (the first cell of a dataset that dropped any)."""
    out: dict[str, dict[str, int]] = {}
    for cell in results.cells:
        dropped = ((cell.metrics or {}).get("data") or {}).get("dropped") or {}
        if dropped and cell.dataset not in out:
            out[cell.dataset] = {reason: int(n) for reason, n in dropped.items()}
    return out


def dropped_lines(dropped: dict[str, int]) -> list[str]:
    """One plain line per reason: count and what the reason means."""
    return [f"{n} {reason} ({DROP_REASONS[reason]})" if reason in DROP_REASONS else f"{n} {reason}" for reason, n in dropped.items()]


DROPPED_INTRO = "Left out by the dataset's settings, not errors (per cell at data.dropped in CSV/JSON):"


def dropped_windows_markdown(results) -> list[str]:
    """The Markdown section (a list of lines, empty when nothing was dropped)."""
    by_dataset = dropped_windows(results)
    if not by_dataset:
        return []
    parts = ["## Dropped windows", "", DROPPED_INTRO.replace("data.dropped", "`data.dropped`"), ""]
    for dataset, dropped in by_dataset.items():
        parts.append(f"- {dataset}: {sum(dropped.values())} window(s)")
        parts += [f"  - {line}" for line in dropped_lines(dropped)]
    return parts + [""]


def dropped_windows_html(results) -> list[str]:
    """The HTML section (a list of lines, empty when nothing was dropped)."""
    by_dataset = dropped_windows(results)
    if not by_dataset:
        return []
    intro = html.escape(DROPPED_INTRO).replace("data.dropped", "<code>data.dropped</code>")
    parts = ["<h2>Dropped windows</h2>", f"<p>{intro}</p>", "<ul>"]
    for dataset, dropped in by_dataset.items():
        items = "".join(f"<li>{html.escape(line)}</li>" for line in dropped_lines(dropped))
        parts.append(f"<li>{html.escape(dataset)}: {sum(dropped.values())} window(s)<ul>{items}</ul></li>")
    return parts + ["</ul>"]
