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


def _first_per_dataset(results, key: str) -> dict[str, dict]:
    """``{dataset: metrics["data"][key]}`` from the first cell of each dataset where it is not empty."""
    out: dict[str, dict] = {}
    for cell in results.cells:
        value = ((cell.metrics or {}).get("data") or {}).get(key) or {}
        if value and cell.dataset not in out:
            out[cell.dataset] = value
    return out


def _markdown_section(title: str, intro: str, groups: list[tuple[str, str, list[str]]]) -> list[str]:
    """A Markdown section: a heading, an intro, then per dataset its total and one sub-item per line."""
    if not groups:
        return []
    parts = [f"## {title}", "", intro, ""]
    for dataset, total, lines in groups:
        parts.append(f"- {dataset}: {total}")
        parts += [f"  - {line}" for line in lines]
    return parts + [""]


def _html_section(title: str, intro: str, groups: list[tuple[str, str, list[str]]]) -> list[str]:
    """The same section in HTML (``intro`` is HTML already; dataset names and lines are escaped)."""
    if not groups:
        return []
    parts = [f"<h2>{title}</h2>", f"<p>{intro}</p>", "<ul>"]
    for dataset, total, lines in groups:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        parts.append(f"<li>{html.escape(dataset)}: {total}<ul>{items}</ul></li>")
    return parts + ["</ul>"]


def skipped_records(results) -> dict[str, dict[str, dict[str, Any]]]:
    """``{dataset: {reason: {"count", "records"}}}`` over the run's cells (the first cell of a dataset that skipped any)."""
    return _first_per_dataset(results, "skipped")


def skipped_lines(skipped: dict[str, dict[str, Any]]) -> list[str]:
    """One plain line per reason: count, what the reason means, the first record names."""
    lines = []
    for reason, entry in skipped.items():
        ids = list(entry.get("records", []))
        shown = ", ".join(ids[:MAX_IDS_SHOWN]) + (f" and {len(ids) - MAX_IDS_SHOWN} more" if len(ids) > MAX_IDS_SHOWN else "")
        lines.append(f"{entry.get('count', len(ids))} {reason} ({REASONS.get(reason, reason)})" + (f": {shown}" if shown else ""))
    return lines


def _skipped_groups(results) -> list[tuple[str, str, list[str]]]:
    return [
        (dataset, f"{sum(int(e.get('count', 0)) for e in skipped.values())} record(s)", skipped_lines(skipped))
        for dataset, skipped in skipped_records(results).items()
    ]


def skipped_records_markdown(results) -> list[str]:
    """The Markdown section (a list of lines, empty when no record was skipped)."""
    return _markdown_section("Skipped records", "Left out because the suite sets `data.on_bad_record: skip`:", _skipped_groups(results))


def skipped_records_html(results) -> list[str]:
    """The HTML section (a list of lines, empty when no record was skipped)."""
    intro = "Left out because the suite sets <code>data.on_bad_record: skip</code>:"
    return _html_section("Skipped records", intro, _skipped_groups(results))


def dropped_windows(results) -> dict[str, dict[str, int]]:
    """``{dataset: {reason: count}}`` over the run's cells (the first cell of a dataset that dropped any)."""
    return {dataset: {reason: int(n) for reason, n in dropped.items()} for dataset, dropped in _first_per_dataset(results, "dropped").items()}


def dropped_lines(dropped: dict[str, int]) -> list[str]:
    """One plain line per reason: count and what the reason means."""
    return [f"{n} {reason} ({DROP_REASONS[reason]})" if reason in DROP_REASONS else f"{n} {reason}" for reason, n in dropped.items()]


DROPPED_INTRO = "Left out by the dataset's settings, not errors (per cell at data.dropped in CSV/JSON):"


def _dropped_groups(results) -> list[tuple[str, str, list[str]]]:
    return [(dataset, f"{sum(dropped.values())} window(s)", dropped_lines(dropped)) for dataset, dropped in dropped_windows(results).items()]


def dropped_windows_markdown(results) -> list[str]:
    """The Markdown section (a list of lines, empty when nothing was dropped)."""
    return _markdown_section("Dropped windows", DROPPED_INTRO.replace("data.dropped", "`data.dropped`"), _dropped_groups(results))


def dropped_windows_html(results) -> list[str]:
    """The HTML section (a list of lines, empty when nothing was dropped)."""
    intro = html.escape(DROPPED_INTRO).replace("data.dropped", "<code>data.dropped</code>")
    return _html_section("Dropped windows", intro, _dropped_groups(results))
