"""The SQLite result store: runs, cells, resume state, bad files."""

from __future__ import annotations

import socket
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


def dead_pid() -> int:
    import subprocess
    import sys

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def test_a_cell_is_leased_to_one_run_until_it_finishes(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    a = store.start_run("s", "s.yaml", {}, "0.1.0", planned=1)
    b = store.start_run("s", "s.yaml", {}, "0.1.0", planned=1)
    assert store.claim(a, "c1") == "claimed"
    assert store.claim(a, "c1") == "claimed"  # a run may renew its own claim
    assert store.claim(b, "c1") == "held" and store.holder("c1", b) == a and store.holder("c1", a) is None
    store.mark_running(a, 0, "c1", LABELS, {}, "0.1.0")
    store.finish_cell(a, "c1", "done", {}, {}, {}, None)
    assert store.holder("c1", b) is None
    assert store.claim(b, "c1") == "done" and store.claim(b, "c1", redo_done=True) == "claimed"


def test_a_lease_is_taken_over_when_its_process_died_or_it_expired(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    a = store.start_run("s", "s.yaml", {}, "0.1.0")
    b = store.start_run("s", "s.yaml", {}, "0.1.0")
    far = 1e12
    store.db.execute("INSERT INTO leases VALUES ('killed', ?, ?, ?, ?)", (a, socket.gethostname(), dead_pid(), far))
    store.db.execute("INSERT INTO leases VALUES ('remote', ?, 'other-host', 1, ?)", (a, far))
    store.db.execute("INSERT INTO leases VALUES ('stale', ?, 'other-host', 1, 1.0)", (a,))
    assert store.claim(b, "killed") == "claimed"  # same host, dead pid: at once
    assert store.claim(b, "remote") == "held"  # another machine's live lease
    assert store.claim(b, "stale") == "claimed"  # another machine's lease, not renewed in time
    assert store.db.execute("SELECT run_id FROM leases WHERE cell_id='stale'").fetchone()[0] == b


def test_the_heartbeat_keeps_leases_alive_and_stops(tmp_path):
    import time

    store = ResultStore(tmp_path / "r.sqlite", lease_s=0.4)
    a = store.start_run("s", "s.yaml", {}, "0.1.0")
    b = store.start_run("s", "s.yaml", {}, "0.1.0")
    store.claim(a, "c1")
    beat = store.heartbeat(a)
    time.sleep(1.0)  # two and a half leases
    assert store.claim(b, "c1") == "held"
    beat.stop()
    time.sleep(0.5)
    assert store.claim(b, "c1") == "claimed"


def test_runs_tell_running_cells_from_interrupted_ones_and_count_the_plan(tmp_path):
    import json

    store = ResultStore(tmp_path / "r.sqlite")
    run = store.start_run("s", "s.yaml", {}, "0.1.0", planned=3)
    store.plan(run, [(i, f"c{i}", {**LABELS, "pipeline": f"p{i}"}, {}) for i in range(3)], "0.1.0")
    for cell in ("c0", "c1"):
        store.claim(run, cell)
        store.mark_running(run, int(cell[1]), cell, {**LABELS, "pipeline": "p" + cell[1]}, {}, "0.1.0")
    store.finish_cell(run, "c0", "done", {}, {}, {}, None)
    live = store.run_results(run)
    assert live.run.status == "running" and live.run.planned == 3
    assert [c.outcome for c in live.cells] == ["done", "running", "pending"]
    assert live.run.summary == {"done": 1, "running": 1, "pending": 1}

    owner = {**store.find_run(run).owner, "pid": dead_pid()}  # the run is killed (-9): no finish_run
    store.db.execute("UPDATE runs SET summary_json=? WHERE run_id=?", (json.dumps(owner), run))
    killed = store.run_results(run)
    assert killed.run.status == "interrupted"
    assert [c.outcome for c in killed.cells] == ["done", "interrupted", "not run"]
    assert killed.run.summary == {"done": 1, "interrupted": 1, "not run": 1}


def test_schema_1_is_migrated_and_its_runs_still_read(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, suite_name TEXT NOT NULL, suite_path TEXT NOT NULL, suite_json TEXT NOT NULL,
            started_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL, summary_json TEXT, ecgbench_version TEXT NOT NULL);
        INSERT INTO runs VALUES ('old-1', 'old', 'old.yaml', '{}', 1.0, 2.0, 'done', '{"done": 2}', '0.0.9');"""
    )
    db.commit()
    db.close()
    store = ResultStore(path)
    assert store.db.execute("SELECT value FROM meta").fetchone()[0] == "2"
    (run,) = store.list_runs()
    assert (run.run_id, run.status, run.summary, run.planned) == ("old-1", "done", {"done": 2}, None)
    new = store.start_run("s", "s.yaml", {}, "0.1.0", planned=4)
    assert store.find_run(new).planned == 4
    ResultStore(path).close()  # opening a migrated store again is a no-op


def test_a_read_only_open_never_creates_a_store(tmp_path):
    from ecgbench.run.store import MissingStoreError

    with pytest.raises(MissingStoreError, match=r"no result store at .*typo.sqlite; pass the --db") as caught:
        ResultStore.open_existing(tmp_path / "typo.sqlite")
    assert caught.value.exit_code == 2 and list(tmp_path.iterdir()) == []


def test_a_stored_cell_takes_the_label_of_the_run_that_plans_it_again(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    first = store.start_run("s", "s.yaml", {}, "0.1.0", planned=1)
    store.plan(first, [(0, "c1", {**LABELS, "pipeline": "magnitude(sparsity=0.8)"}, {})], "0.1.0")
    store.mark_running(first, 0, "c1", {**LABELS, "pipeline": "magnitude(sparsity=0.8)"}, {}, "0.1.0")
    store.finish_cell(first, "c1", "done", {"test": {"challenge_f1": 0.8}}, {}, {}, None)
    second = store.start_run("s", "s.yaml", {}, "0.1.0", planned=1)
    store.plan(second, [(0, "c1", {**LABELS, "pipeline": "magnitude-s0.8"}, {})], "0.1.0")
    cell = store.run_results(second).cells[0]
    assert cell.pipeline == "magnitude-s0.8" and cell.status == "done" and cell.metrics == {"test": {"challenge_f1": 0.8}}
