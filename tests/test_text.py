"""Text helpers (one way to write sizes and durations, tables that fit) and the ``runs`` tables built on them."""

from __future__ import annotations

import pytest

from ecgbench.run.store import CellRow, RunResults, RunRow
from ecgbench.text import duration, ellipsize, human_bytes, kb, render_table, shorten_unique


def test_sizes_are_decimal():
    assert [human_bytes(n) for n in (812, 45_200, 1_234_567, 8_589_934_592, None)] == ["812 B", "45.2 kB", "1.23 MB", "8.59 GB", "-"]
    assert [kb(n) for n in (45_200, 812, None)] == ["45.2", "0.8", "-"]


def test_durations():
    assert [duration(s) for s in (0.84, 42.4, 185, 7620, None)] == ["0.8 s", "42 s", "3 min 05 s", "2 h 07 min", "-"]


def test_cut_labels_stay_distinct():
    assert ellipsize("abcdef", 4) == "abc…" and ellipsize("abc", 4) == "abc"
    labels = ["magnitude-global-s0.95-fe12-lr1e-3", "magnitude-global-s0.95-fe12-lr1e-4", "lth_ecg+int8_static", "dense"]
    short = shorten_unique(labels, 16)
    assert all(len(s) <= 16 for s in short.values()) and len(set(short.values())) == 4
    assert short["dense"] == "dense" and short["lth_ecg+int8_static"] == "lth_ecg+int8_st…"
    middle = ["a" * 10 + "x" + "a" * 10, "a" * 10 + "y" + "a" * 10]
    assert set(shorten_unique(middle, 8).values()) == set(middle)  # no cut tells them apart: kept whole


def test_item_lists_wrap_between_items():
    from ecgbench.text import wrap_items

    items = [f"MysteryOp (node {i})" for i in range(12)]
    text = wrap_items(items, width=40, indent="    ")
    assert all(len(line) <= 40 and line.startswith("    ") for line in text.splitlines())
    assert text.replace("\n    ", " ").replace("    ", "", 1) == ", ".join(items)


def test_wide_tables_wrap_into_blocks_that_repeat_the_key_column():
    headers = ["cell", *(f"metric {i}" for i in range(12))]
    rows = [["dense", *("0.123456" for _ in range(12))], ["lth", *("1.5" for _ in range(12))]]
    text = render_table(headers, rows, max_width=60, right=range(1, 13))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 60
    blocks = text.split("\n\n")
    assert len(blocks) > 1 and all(block.startswith("cell") for block in blocks)
    assert sum(block.count("metric") for block in blocks) == 12
    assert "   1.5" in text  # right-aligned


def _results(cells: list[CellRow]) -> RunResults:
    run = RunRow("s-1", "s", "s.yaml", {}, 0.0, 1.0, "failed", {"done": 1, "failed": 1}, "0.1", planned=2)
    return RunResults(run, cells)


def test_runs_shows_a_table_then_tracebacks():
    from ecgbench.cli.runs import cells_text

    metrics = {"test": {"challenge_f1": 0.8771}, "size": {"compression_ratio": 4.74, "storage_bytes": 38_787}}
    done = CellRow("c1", "synthetic", "hannun34", "magnitude-s0.8-fe2", 0, {}, "done", metrics, started_at=10.0, finished_at=13.6, outcome="done")
    failed = CellRow("c2", "synthetic", "hannun34", "lth", 0, {}, "failed", error="Traceback\n  x\nValueError: boom", outcome="failed")
    text = cells_text(_results([done, failed]))
    lines = text.splitlines()
    assert lines[1].split() == ["pipeline", "seed", "status", "test", "F1", "compress", "kB", "time", "cell"]
    assert lines[3].split() == ["magnitude-s0.8-fe2", "0", "done", "0.877", "4.7x", "38.8", "3.6", "s", "c1"]
    assert lines[4].split()[:4] == ["lth", "0", "failed", "-"]
    assert "1 kB = 1000 bytes" in text
    tail = text.split("FAILED synthetic/hannun34/lth/seed0 (c2):", 1)[1]
    assert "    ValueError: boom" in tail
    assert "{" not in text  # no Python dict


@pytest.mark.parametrize("n_runs", [0, 2])
def test_runs_list_is_a_table(n_runs):
    from ecgbench.cli.runs import runs_table

    runs = [RunRow(f"quick-{i}", "quick", "q.yaml", {}, 0.0, 1.0, "done", {"done": 3}, "0.1", planned=3) for i in range(n_runs)]
    lines = runs_table(runs).splitlines()
    assert lines[0].split() == ["run", "started", "status", "cells"]
    assert [line.split()[0] for line in lines[2:]] == [f"quick-{i}" for i in range(n_runs)]
    assert all(line.endswith("done 3 of 3") for line in lines[2:])
