"""``csv`` and ``json``: every metric of every cell, one row per cell, keys like ``test.challenge_f1``.

The JSON report also keeps the run's metadata and each cell's nested
metrics, config and timings, so :mod:`ecgbench.results.compare` can read it back
in place of the result store, and the declaration of every metric of the run
(``metrics``: path, label, unit, definition, gate, ...; see :mod:`ecgbench.measure.schema`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from pydantic import Field

from ecgbench import PluginConfig, atomic, hookimpl
from ecgbench.kinds.reporter import Reporter, SingleFileReporter
from ecgbench.results import seeds as _seeds
from ecgbench.results import table as _table

JSON_FORMAT = "ecgbench-results"
JSON_FORMAT_VERSION = 1


def csv_value(value: Any) -> str:
    """Text of one CSV field: numbers as Python writes them (exact round trip), lists and booleans as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, list, tuple, dict)):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


class JsonSettings(PluginConfig):
    """Settings of ``json``."""

    f1_budget_points: float | None = Field(
        None, ge=0, description="also say for each pipeline whether it is within this many test-F1 points of dense (pipelines[].within_budget)"
    )


def results_document(results, f1_budget_points: float | None = None) -> dict[str, Any]:
    """The JSON report: run metadata, flat rows, the nested cells, the declarations of the run's metrics and, per
    pipeline, test F1 and ΔF1 across seeds (``pipelines``: mean, sd, n, per-seed values; see :mod:`ecgbench.results.seeds`).

    Merged runs add ``runs`` (each run's metadata; ``run`` then sums them up) and ``cell_runs`` (cell id: the run used).
    """
    document: dict[str, Any] = {
        "format": JSON_FORMAT,
        "format_version": JSON_FORMAT_VERSION,
        "run": dataclasses.asdict(results.run),
    }
    runs = getattr(results, "runs", None)
    if runs:
        document["runs"] = [dataclasses.asdict(run) for run in runs]
        document["cell_runs"] = dict(results.cell_runs)
    document.update(
        {
            "rows": [_table.cell_row(cell) for cell in results.cells],
            "cells": [dataclasses.asdict(cell) for cell in results.cells],
            "metrics": [m.to_dict() for m in _table.run_schema(results)],
            "pipelines": _seeds.seed_document(results, f1_budget_points),
        }
    )
    if f1_budget_points is not None:
        document["budget"] = {"f1_points": f1_budget_points, "rule": _seeds.budget_rule(f1_budget_points)}
    return document


class CsvReporter(Reporter):
    """Writes ``results.csv``: one row per cell, every metric a column (per-layer figures only in JSON)."""

    name = "csv"
    description = "CSV, one row per cell, every metric a column (test.challenge_f1, devices.<name>.latency_ms, ...)"
    extension = ".csv"

    def write(self, results, out_dir: Path) -> list[Path]:
        out_dir = atomic.ensure_dir(out_dir, "pass another --out")
        rows = [_table.cell_row(cell, skip=_table.CSV_SKIPPED_KEYS) for cell in results.cells]
        columns = _table.columns_of(rows)
        path = out_dir / f"results{self.extension}"
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([csv_value(row.get(c)) for c in columns])
        atomic.write_text(path, text.getvalue(), hint="pass another --out")
        return [path]


class JsonReporter(SingleFileReporter):
    """Writes ``results.json``: run metadata, flat rows and the nested metrics of every cell."""

    name = "json"
    description = "JSON with the run's metadata, one flat row per cell, the nested metrics and per pipeline its seeds' F1 and ΔF1 (input of ecgbench compare)"
    extension = ".json"

    basename = "results"
    Config = JsonSettings

    def render(self, results, out_dir: Path) -> str:
        return json.dumps(results_document(results, self.config.f1_budget_points), indent=1, default=str) + "\n"


@hookimpl
def ecgbench_register_reporters(register):
    register(CsvReporter)
    register(JsonReporter)
