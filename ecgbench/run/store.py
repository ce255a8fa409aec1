"""The SQLite result store: one row per cell (keyed by content), runs that reference them.

WAL mode, one transaction per finished cell, so a kill loses at most the
cell in progress. A cell's id is the hash of everything that determines it,
so re-running a suite finds its finished cells whatever run produced them.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ecgbench.errors import StoreError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    suite_name TEXT NOT NULL,
    suite_path TEXT NOT NULL,
    suite_json TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL,
    summary_json TEXT,
    ecgbench_version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config_json TEXT NOT NULL,
    status TEXT NOT NULL,
    metrics_json TEXT,
    timings_json TEXT,
    artifacts_json TEXT,
    error TEXT,
    started_at REAL,
    finished_at REAL,
    ecgbench_version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_cells (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    cell_id TEXT NOT NULL REFERENCES cells(cell_id),
    position INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (run_id, cell_id)
);
"""


@dataclass
class CellRow:
    """A stored cell: its labels, config, status and results."""

    cell_id: str
    dataset: str
    model: str
    pipeline: str
    seed: int
    config: dict
    status: str  # running | done | failed
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    outcome: str | None = None  # in a run: done | failed | skipped | interrupted


@dataclass
class RunRow:
    """A stored run of a suite."""

    run_id: str
    suite_name: str
    suite_path: str
    suite: dict
    started_at: float
    finished_at: float | None
    status: str  # running | done | failed | interrupted
    summary: dict
    ecgbench_version: str
    owner: dict = field(default_factory=dict)  # host and pid of a run still marked running


@dataclass
class RunResults:
    """A run and its cells in suite order: what reporters receive."""

    run: RunRow
    cells: list[CellRow]
    store_path: Path | None = None  # so reports can print the command that regenerates them


class ResultStore:
    """Open (creating if needed) the SQLite store at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable ecgbench result store ({exc}); pass another --db or move it away") from None
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {row[0]}, this ecgbench reads {SCHEMA_VERSION}; use a new --db")

    def close(self) -> None:
        self.db.close()

    # --- runs ---------------------------------------------------------------------
    def start_run(self, suite_name: str, suite_path: str, suite: dict, version: str) -> str:
        run_id = f"{suite_name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        owner = {"host": socket.gethostname(), "pid": os.getpid()}  # replaced by the summary at the end
        self.db.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?)",
            (run_id, suite_name, suite_path, json.dumps(suite, default=str), time.time(), None, "running", json.dumps(owner), version),
        )
        return run_id

    def finish_run(self, run_id: str, status: str, summary: dict) -> None:
        self.db.execute(
            "UPDATE runs SET finished_at=?, status=?, summary_json=? WHERE run_id=?",
            (time.time(), status, json.dumps(summary), run_id),
        )

    def list_runs(self) -> list[RunRow]:
        rows = self.db.execute("SELECT * FROM runs ORDER BY started_at DESC").fetchall()
        return [self._run(r) for r in rows]

    def find_run(self, ref: str) -> RunRow:
        """A run by id, unique id prefix, or suite name (its latest run)."""
        row = self.db.execute("SELECT * FROM runs WHERE run_id=?", (ref,)).fetchone()
        if row is None:
            row = self.db.execute("SELECT * FROM runs WHERE suite_name=? ORDER BY started_at DESC LIMIT 1", (ref,)).fetchone()
        if row is None:
            rows = self.db.execute("SELECT * FROM runs WHERE run_id LIKE ?", (ref + "%",)).fetchall()
            if len(rows) == 1:
                row = rows[0]
        if row is None:
            raise StoreError(f"no run '{ref}' in {self.path}; `ecgbench runs --db {self.path}` lists them")
        return self._run(row)

    def run_results(self, ref: str) -> RunResults:
        run = self.find_run(ref)
        rows = self.db.execute(
            "SELECT c.*, rc.outcome FROM run_cells rc JOIN cells c USING (cell_id) WHERE rc.run_id=? ORDER BY rc.position",
            (run.run_id,),
        ).fetchall()
        return RunResults(run, [self._cell(r) for r in rows], self.path)

    # --- cells --------------------------------------------------------------------
    def cell_status(self, cell_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM cells WHERE cell_id=?", (cell_id,)).fetchone()
        return row[0] if row else None

    def get_cell(self, cell_id: str) -> CellRow | None:
        row = self.db.execute("SELECT *, NULL AS outcome FROM cells WHERE cell_id=?", (cell_id,)).fetchone()
        return self._cell(row) if row else None

    def link(self, run_id: str, cell_id: str, position: int, outcome: str) -> None:
        self.db.execute(
            "INSERT INTO run_cells VALUES (?,?,?,?) ON CONFLICT(run_id, cell_id) DO UPDATE SET outcome=excluded.outcome",
            (run_id, cell_id, position, outcome),
        )

    def mark_running(self, run_id: str, position: int, cell_id: str, labels: dict, config: dict, version: str) -> None:
        """Record that a cell started (a crash leaves it 'running', redone next time)."""
        with self._transaction():
            self.db.execute(
                """INSERT INTO cells (cell_id, dataset, model, pipeline, seed, config_json, status, started_at, ecgbench_version)
                   VALUES (?,?,?,?,?,?,'running',?,?)
                   ON CONFLICT(cell_id) DO UPDATE SET status='running', started_at=excluded.started_at,
                       error=NULL, ecgbench_version=excluded.ecgbench_version""",
                (cell_id, labels["dataset"], labels["model"], labels["pipeline"], labels["seed"], json.dumps(config), time.time(), version),
            )
            self.link(run_id, cell_id, position, "interrupted")

    def finish_cell(self, run_id: str, cell_id: str, status: str, metrics: dict, timings: dict, artifacts: dict, error: str | None) -> None:
        """Store a finished (done or failed) cell in one transaction."""
        with self._transaction():
            self.db.execute(
                """UPDATE cells SET status=?, metrics_json=?, timings_json=?, artifacts_json=?, error=?, finished_at=?
                   WHERE cell_id=?""",
                (status, json.dumps(metrics), json.dumps(timings), json.dumps(artifacts), error, time.time(), cell_id),
            )
            self.db.execute("UPDATE run_cells SET outcome=? WHERE run_id=? AND cell_id=?", (status, run_id, cell_id))

    def _transaction(self):
        db = self.db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, *_):
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()

    def iter_cells(self) -> Iterator[CellRow]:
        for row in self.db.execute("SELECT *, NULL AS outcome FROM cells ORDER BY started_at"):
            yield self._cell(row)

    # --- rows -> objects ------------------------------------------------------------
    @staticmethod
    def _run(row: Any) -> RunRow:
        summary = json.loads(row[7]) if row[7] else {}
        status, owner = row[6], {}
        if status == "running":
            owner, summary = summary, {}
            if _owner_is_gone(owner):
                status = "interrupted"  # killed without a chance to say so (SIGKILL, power loss)
        return RunRow(
            run_id=row[0],
            suite_name=row[1],
            suite_path=row[2],
            suite=json.loads(row[3]),
            started_at=row[4],
            finished_at=row[5],
            status=status,
            summary=summary,
            ecgbench_version=row[8],
            owner=owner,
        )

    @staticmethod
    def _cell(row: Any) -> CellRow:
        return CellRow(
            cell_id=row[0],
            dataset=row[1],
            model=row[2],
            pipeline=row[3],
            seed=row[4],
            config=json.loads(row[5]),
            status=row[6],
            metrics=json.loads(row[7]) if row[7] else {},
            timings=json.loads(row[8]) if row[8] else {},
            artifacts=json.loads(row[9]) if row[9] else {},
            error=row[10],
            started_at=row[11],
            finished_at=row[12],
            outcome=row[14] if len(row) > 14 else None,
        )


def _owner_is_gone(owner: dict) -> bool:
    """True when a 'running' run's process is known to have died on this host."""
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False  # another machine's run, or one stored before owners were recorded
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
