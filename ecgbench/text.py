"""Text for people: aligned tables that fit a width, and one way to write sizes and durations.

Every size ecgbench prints is decimal (:data:`KB_NOTE`): ``812 B``, ``45.2 kB``,
``1.23 MB``, or a bare number in a column headed ``kB``. Commands and reports
call these helpers instead of formatting bytes themselves.
"""

from __future__ import annotations

from typing import Iterable, Sequence

KB = 1000
KB_NOTE = "1 kB = 1000 bytes"
"""Said once under any output that shows sizes."""

ELLIPSIS = "…"
WIDTH = 100
"""Columns a command's table output fits in."""


# --- numbers --------------------------------------------------------------------------
def human_bytes(n: float | None) -> str:
    """Bytes in decimal units: ``812 B``, ``45.2 kB``, ``1.23 MB``, ``8.59 GB`` (``-`` for None)."""
    if n is None:
        return "-"
    if abs(n) < KB:
        return f"{n:.0f} B"
    if abs(n) < KB**2:
        return f"{n / KB:.1f} kB"
    if abs(n) < KB**3:
        return f"{n / KB**2:.2f} MB"
    return f"{n / KB**3:.2f} GB"


def kb(n: float | None) -> str:
    """Bytes as a bare number of kB for a column headed ``kB``: ``45.2``, ``0.8``, ``1234.6`` (``-`` for None)."""
    return "-" if n is None else f"{n / KB:.1f}"


def duration(seconds: float | None) -> str:
    """``0.8 s``, ``42 s``, ``3 min 05 s``, ``2 h 07 min`` (``-`` for None)."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


# --- strings --------------------------------------------------------------------------
def ellipsize(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in an ellipsis when cut."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + ELLIPSIS if width > 0 else ""


def shorten_unique(texts: Iterable[str], width: int) -> dict[str, str]:
    """Each distinct text cut to ``width`` with an ellipsis, and still told apart.

    A text that fits is kept. Texts whose cut would collide keep a head and a tail
    around the ellipsis (``/blocks/blo…2/conv1/Conv``), split where the group's
    members differ; texts no split tells apart are kept in full.
    """
    texts = list(dict.fromkeys(texts))
    short = {t: ellipsize(t, width) for t in texts}
    groups: dict[str, list[str]] = {}
    for t, s in short.items():
        groups.setdefault(s, []).append(t)
    for group in (g for g in groups.values() if len(g) > 1):
        for head in sorted(range(width), key=lambda h: abs(h - width // 2)):
            cut = {t: _cut(t, width, head) for t in group}
            if len(set(cut.values())) == len(group) and not set(cut.values()) & (set(short.values()) - set(group)):
                short.update(cut)
                break
        else:
            short.update({t: t for t in group})
    return short


def _cut(text: str, width: int, head: int) -> str:
    """``text`` in ``width`` characters: its first ``head``, an ellipsis, then its end."""
    if len(text) <= width:
        return text
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail > 0 else "")


# --- tables ---------------------------------------------------------------------------
def render_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    right: Iterable[int] = (),
    max_width: int | None = None,
    keep: int = 1,
    rule: bool = True,
) -> str:
    """Rows under headers in aligned columns, two spaces apart (``right``: indexes of right-aligned columns).

    With ``max_width``, a table that is too wide is printed as several narrower
    ones, one after another, each repeating the first ``keep`` columns (as pandas
    wraps a wide frame); a single column wider than that is left as it is.
    """
    headers = [str(h) for h in headers]
    body = [["" if x is None else str(x) for x in row] for row in rows]
    right = set(right)
    widths = [max([len(headers[i]), *(len(r[i]) for r in body)]) for i in range(len(headers))]
    groups = _column_groups(widths, max_width, keep) if max_width else [list(range(len(headers)))]
    blocks = []
    for columns in groups:
        def line(cells: Sequence[str]) -> str:
            return "  ".join(cells[i].rjust(widths[i]) if i in right else cells[i].ljust(widths[i]) for i in columns).rstrip()

        lines = [line(headers)]
        if rule:
            lines.append("  ".join("-" * widths[i] for i in columns))
        lines += [line(r) for r in body]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _column_groups(widths: list[int], max_width: int, keep: int) -> list[list[int]]:
    """Column indexes per printed block: the first ``keep`` in every block, the rest filled up to ``max_width``."""
    fixed = list(range(min(keep, len(widths))))
    base = sum(widths[i] for i in fixed) + 2 * len(fixed)
    groups: list[list[int]] = []
    current: list[int] = []
    used = base
    for i in range(len(fixed), len(widths)):
        if current and used + widths[i] > max_width:
            groups.append(fixed + current)
            current, used = [], base
        current.append(i)
        used += widths[i] + 2
    groups.append(fixed + current)
    return groups


def wrap(text: str, width: int = WIDTH, indent: str = "") -> str:
    """``text`` wrapped to ``width`` columns, continuation lines indented by ``indent``."""
    import textwrap

    return textwrap.fill(text, width=width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)


def wrap_items(items: Iterable[str], width: int = WIDTH, indent: str = "") -> str:
    """Items joined by ``, `` in lines of at most ``width`` columns, never breaking inside an item."""
    lines, line = [], indent
    for item in items:
        piece = item if line == indent else ", " + item
        if line != indent and len(line) + len(piece) + 1 > width:
            lines.append(line + ",")
            line, piece = indent, item
        line += piece
    lines.append(line)
    return "\n".join(lines)
