"""``ecgbench runs [RUN]``: past runs as a table, or one run's cells as a table followed by its failures' tracebacks."""

from __future__ import annotations

import argparse
import time

from ecgbench.measure.schema import lookup, number, ratio
from ecgbench.text import KB_NOTE, duration, kb, render_table, shorten_unique, wrap

LABEL_WIDTH = 28
"""Characters a pipeline label takes in the cell table; longer ones are cut, still distinct."""


def register(subparsers) -> None:
    """Add the ``runs`` subcommand."""
    from ecgbench.cli.main import _store_args

    p = subparsers.add_parser("runs", help="list past runs, or the cells of one run with their errors")
    p.add_argument("run", nargs="?", help="run id, id prefix or suite name")
    _store_args(p)
    p.set_defaults(func=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    from ecgbench.cli.main import _open_store

    store = _open_store(args)
    if args.run:
        results = store.run_results(args.run)
        print(cells_text(results, lambda cell: _running_progress(args, cell.config)))
        return 0
    runs = store.list_runs()
    print(runs_table(runs) if runs else f"no runs in {store.path}")
    return 0


def runs_table(runs) -> str:
    """One row per run, newest first: id, start, status and its cells by outcome."""
    rows = [[run.run_id, time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started_at)), run.status, run_counts(run)] for run in runs]
    return render_table(["run", "started", "status", "cells"], rows)


def run_counts(run) -> str:
    """``done 4, skipped 2, not run 4 of 10``: a run's cells by outcome, against the cells it planned."""
    counts = ", ".join(f"{k} {v}" for k, v in run.summary.items()) or "-"
    return counts + (f" of {run.planned}" if run.planned is not None else "")


def cells_text(results, progress=lambda cell: None, now: float | None = None) -> str:
    """The run's header line, a table of its cells, then each failed cell's traceback.

    ``progress(cell)`` is what a running cell last reported (or None).
    """
    run, cells = results.run, results.cells
    lines = [f"{run.run_id}  suite {run.suite_name} ({run.suite_path})  {run.status}  {run_counts(run)}"]
    several = len({(c.dataset, c.model) for c in cells}) > 1
    names = shorten_unique((c.pipeline for c in cells), LABEL_WIDTH)
    running = {c.cell_id: progress(c) or "" for c in cells if c.outcome == "running"}
    headers = (["dataset", "model"] if several else []) + ["pipeline", "seed", "status", "test F1", "compress", "kB", "time", "cell"]
    if any(running.values()):
        headers.append("progress")
    rows = []
    for cell in cells:
        metrics = cell.metrics or {}
        f1 = number(lookup(metrics, "test.challenge_f1"))
        compression = number(lookup(metrics, "size.compression_ratio"))
        row = ([cell.dataset, cell.model] if several else []) + [
            names[cell.pipeline],
            cell.seed,
            cell.outcome or cell.status,
            "-" if f1 is None else f"{f1:.3f}",
            "-" if compression is None else ratio(compression),
            kb(number(lookup(metrics, "size.storage_bytes"))),
            _elapsed(cell, now),
            cell.cell_id,
        ]
        if "progress" in headers:
            row.append(running.get(cell.cell_id, ""))
        rows.append(row)
    first_number = headers.index("seed")
    lines.append(render_table(headers, rows, right=[first_number, first_number + 2, first_number + 3, first_number + 4, first_number + 5]))
    lines.append(wrap(f"compress: non-zero parameters of dense / of this model; kB: stored model size ({KB_NOTE})"))
    for cell in cells:
        if cell.status == "failed" and cell.error:
            lines.append(f"\nFAILED {cell.dataset}/{cell.model}/{cell.pipeline}/seed{cell.seed} ({cell.cell_id}):")
            lines.append("    " + cell.error.rstrip().replace("\n", "\n    "))
    return "\n".join(lines)


def _elapsed(cell, now: float | None) -> str:
    """How long the cell took, or has been running."""
    if cell.started_at is None:
        return "-"
    if cell.finished_at is not None and cell.status in ("done", "failed"):
        return duration(cell.finished_at - cell.started_at)
    if cell.outcome == "running":
        return duration((now or time.time()) - cell.started_at)
    return "-"


def _running_progress(args, config: dict) -> str:
    """A running cell's last reported progress (e.g. ``lth round 3: 4.2x, ...``), from the artifact cache ``run`` uses."""
    import os
    from pathlib import Path

    from ecgbench.run.cell import step_progress
    from ecgbench.run.runner import default_home

    home = Path(os.environ.get("ECGBENCH_HOME", args.db.parent if args.db else default_home()))
    return step_progress(home, config) or ""
