"""The SQLite result store: runs, cells, resume state, bad files."""

from __future__ import annotations

import sqlite3

import pytest

from ecgbench.errors import StoreError
from ecgbench.run.store import ResultStore

LABELS = {"dataset": "d", "model": "m", "pipeline": "p", "seed": 0}


def test_cell_round_trip_and_run_listing(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    run = store.start_run("quick", "suites/quick.yaml", {"name": "quick"}, "0.1.0")
    store.mark_running(run, 0, "c1", LABELS, {"k": 1}, "0.1.0")
    assert store.cell_status("c1") == "running"
    store.finish_cell(run, "c1", "done", {"test": {"challenge_f1": 0.8}}, {"total_s": 1.5}, {"onnx": "x.onnx"}, None)
    store.mark_running(run, 1, "c2", {**LABELS, "pipeline": "q"}, {}, "0.1.0")
    store.finish_cell(run, "c2", "failed", {}, {}, {}, "Traceback...\nValueError: boom")
    store.finish_run(run, "failed", {"done": 1, "failed": 1, "skipped": 0})

    reopened = ResultStore(tmp_path / "r.sqlite")
    results = reopened.run_results("quick")  # suite name resolves to its latest run
    assert [c.cell_id for c in results.cells] == ["c1", "c2"]
    assert results.cells[0].metrics == {"test": {"challenge_f1": 0.8}}
    assert results.cells[0].artifacts == {"onnx": "x.onnx"} and results.cells[0].outcome == "done"
    assert results.cells[1].error.endswith("ValueError: boom") and results.cells[1].outcome == "failed"
    assert results.run.status == "failed" and results.run.summary["failed"] == 1
    assert reopened.find_run(run[:12]).run_id == run
    assert reopened.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unknown_run_says_how_to_list(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    with pytest.raises(StoreError, match="ecgbench runs"):
        store.run_results("nope")


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_text("this is not sqlite " * 100)
    with pytest.raises(StoreError, match="bad.sqlite is not a usable ecgbench result store"):
        ResultStore(bad)


def test_other_schema_version_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        ResultStore(path)


def test_a_killed_run_reads_as_interrupted(tmp_path):
    """A run whose process died without finishing is not shown as running forever."""
    import json
    import subprocess
    import sys

    store = ResultStore(tmp_path / "r.sqlite")
    live = store.start_run("live", "s.yaml", {}, "0.1.0")
    dead = store.start_run("dead", "s.yaml", {}, "0.1.0")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = {**store.find_run(dead).owner, "pid": int(gone.stdout)}
    store.db.execute("UPDATE runs SET summary_json=? WHERE run_id=?", (json.dumps(owner), dead))
    assert store.find_run(live).status == "running" and store.find_run(live).summary == {}
    assert store.find_run(dead).status == "interrupted"
    store.finish_run(live, "done", {"done": 1})
    assert store.find_run(live).status == "done" and store.find_run(live).owner == {}
