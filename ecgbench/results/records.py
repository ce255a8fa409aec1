"""The "Skipped records" section of the reports: records left out with ``data.on_bad_record: skip``.

Each cell stores what its data loader skipped under ``metrics["data"]["skipped"]``
(``{reason: {"count": n, "records": [ids]}}``); every cell of one dataset and
preprocessing skips the same records, so the section shows each dataset once.
"""

from __future__ import annotations

import html
from typing import Any

from ecgbench.data.problems import REASONS

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
