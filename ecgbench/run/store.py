"""The SQLite result store: one row per cell (keyed by content), runs that reference them.

WAL mode, one transaction per finished cell, so a kill loses at most the
cell in progress. A cell's id is the hash of everything that determines it,
so re-running a suite finds its finished cells whatever run produced them.

A run claims a cell before computing it: a lease row (run, host, pid,
expiry) that a heartbeat renews while the run lives. Another run on the same
store skips a cell under a live lease and waits for its result; a lease whose
process died (same host) or whose expiry passed (any host) is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ecgbench.errors import StoreError
from ecgbench.measure.schema import upgrade_metrics

SCHEMA_VERSION = 2  # 2: runs.planned, runs.heartbeat_at, leases (1 is migrated on open)

# A lease not renewed for this long is taken over by another run (cross-host
# case; on the same host a dead pid is noticed at once). Renewed every quarter.
LEASE_S = 120.0

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
    ecgbench_version TEXT NOT NULL,
    planned INTEGER,
    heartbeat_at REAL
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
CREATE TABLE IF NOT EXISTS leases (
    cell_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
"""

RUN_COLUMNS = "run_id, suite_name, suite_path, suite_json, started_at, finished_at, status, summary_json, ecgbench_version, planned, heartbeat_at"

# How a cell reads in a run (CellRow.outcome): finished ones as stored; the others
# from the run's liveness and the cell's lease.
FINISHED_OUTCOMES = ("done", "failed", "skipped")



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
    outcome: str | None = None  # in a run: done | failed | skipped | running | interrupted | pending | not run


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
    summary: dict  # counts by outcome; for a run that did not finish, counted from its cells
    ecgbench_version: str
    owner: dict = field(default_factory=dict)  # host and pid of a run still marked running
    planned: int | None = None  # cells the run set out to do (None: stored before schema 2)


@dataclass
class RunResults:
    """A run and its cells in suite order: what reporters receive."""

    run: RunRow
    cells: list[CellRow]
    store_path: Path | None = None  # so reports can print the command that regenerates them


class MissingStoreError(StoreError):
    """A read-only command was pointed at a store that does not exist (exit 2: a usage error)."""

    exit_code = 2


class ResultStore:
    """Open (creating if needed) the SQLite store at ``path``; ``lease_s``: how long a claim lives unrenewed."""

    def __init__(self, path: str | Path, lease_s: float = LEASE_S) -> None:
        self.path = Path(path)
        self.lease_s = lease_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = _connect(self.path)
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable ecgbench result store ({exc}); pass another --db or move it away") from None
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif row[0] == "1":
            self._migrate_from_1()
        elif row[0] != str(SCHEMA_VERSION):
            raise StoreError(f"{self.path} has schema version {row[0]}, this ecgbench reads {SCHEMA_VERSION}; use a new --db")

    @classmethod
    def open_existing(cls, path: str | Path) -> "ResultStore":
        """The store at ``path`` for a read-only command: a missing file is an error, never created."""
        if not Path(path).is_file():
            raise MissingStoreError(f"no result store at {path}; pass the --db that `ecgbench run` wrote, or run a suite first")
        return cls(path)

    def _migrate_from_1(self) -> None:
        """Schema 1 -> 2: runs gain planned and heartbeat_at (NULL for old runs); leases is created by SCHEMA."""
        with self._transaction():
            columns = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
            for column, kind in (("planned", "INTEGER"), ("heartbeat_at", "REAL")):
                if column not in columns:  # another process may have migrated meanwhile
                    self.db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
            self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.db.close()

    # --- runs ---------------------------------------------------------------------
    def start_run(self, suite_name: str, suite_path: str, suite: dict, version: str, planned: int | None = None) -> str:
        run_id = f"{suite_name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        owner = {"host": socket.gethostname(), "pid": os.getpid()}  # replaced by the summary at the end
        now = time.time()
        self.db.execute(
            f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, suite_name, suite_path, json.dumps(suite, default=str), now, None, "running", json.dumps(owner), version, planned, now),
        )
        return run_id

    def plan(self, run_id: str, cells: list[tuple[int, str, dict, dict]], version: str) -> None:
        """Link every cell the run will do, as ``pending``, so counts are against the plan: ``(position, cell_id, labels, config)``.

        A cell stored before keeps its results and takes this run's pipeline label (labels are names, not identity).
        """
        with self._transaction():
            for position, cell_id, labels, config in cells:
                self.db.execute(
                    """INSERT INTO cells (cell_id, dataset, model, pipeline, seed, config_json, status, ecgbench_version)
                       VALUES (?,?,?,?,?,?,'pending',?) ON CONFLICT(cell_id) DO UPDATE SET pipeline=excluded.pipeline""",
                    (cell_id, labels["dataset"], labels["model"], labels["pipeline"], labels["seed"], json.dumps(config), version),
                )
                self.db.execute("INSERT OR IGNORE INTO run_cells VALUES (?,?,?,'pending')", (run_id, cell_id, position))

    def finish_run(self, run_id: str, status: str, summary: dict) -> None:
        self.db.execute(
            "UPDATE runs SET finished_at=?, status=?, summary_json=? WHERE run_id=?",
            (time.time(), status, json.dumps(summary), run_id),
        )

    def list_runs(self) -> list[RunRow]:
        rows = self.db.execute(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC").fetchall()
        return [self._run(r) for r in rows]

    def find_run(self, ref: str) -> RunRow:
        """A run by id, unique id prefix, or suite name (its latest run)."""
        select = f"SELECT {RUN_COLUMNS} FROM runs"
        row = self.db.execute(f"{select} WHERE run_id=?", (ref,)).fetchone()
        if row is None:
            row = self.db.execute(f"{select} WHERE suite_name=? ORDER BY started_at DESC LIMIT 1", (ref,)).fetchone()
        if row is None:
            rows = self.db.execute(f"{select} WHERE run_id LIKE ?", (ref + "%",)).fetchall()
            if len(rows) == 1:
                row = rows[0]
        if row is None:
            raise StoreError(f"no run '{ref}' in {self.path}; `ecgbench runs --db {self.path}` lists them")
        return self._run(row)

    def run_results(self, ref: str) -> RunResults:
        run = self.find_run(ref)
        return RunResults(run, self._run_cells(run.run_id, run.status == "running"), self.path)

    def _run_cells(self, run_id: str, run_live: bool) -> list[CellRow]:
        rows = self.db.execute(
            """SELECT c.*, rc.outcome, l.host, l.pid, l.expires_at FROM run_cells rc JOIN cells c USING (cell_id)
               LEFT JOIN leases l ON l.cell_id = rc.cell_id AND l.run_id = rc.run_id
               WHERE rc.run_id=? ORDER BY rc.position""",
            (run_id,),
        ).fetchall()
        cells = []
        for row in rows:
            cell = self._cell(row[:15])
            cell.outcome = _cell_state(cell.outcome, run_live, row[15:])
            cells.append(cell)
        return cells

    def heartbeat(self, run_id: str) -> "Heartbeat":
        """A started thread that keeps the run and its leases alive until ``stop()``."""
        beat = Heartbeat(self.path, run_id, self.lease_s)
        beat.start()
        return beat

    # --- cells --------------------------------------------------------------------
    def cell_status(self, cell_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM cells WHERE cell_id=?", (cell_id,)).fetchone()
        return row[0] if row else None

    def get_cell(self, cell_id: str) -> CellRow | None:
        row = self.db.execute("SELECT *, NULL AS outcome FROM cells WHERE cell_id=?", (cell_id,)).fetchone()
        return self._cell(row) if row else None

    def holder(self, cell_id: str, run_id: str) -> str | None:
        """The id of another run holding a live lease on the cell, or None."""
        row = self.db.execute("SELECT run_id, host, pid, expires_at FROM leases WHERE cell_id=?", (cell_id,)).fetchone()
        if row is None or row[0] == run_id or not _lease_alive(*row[1:]):
            return None
        return row[0]

    def claim(self, run_id: str, cell_id: str, redo_done: bool = False) -> str:
        """Atomically lease a cell to this run: ``claimed``, ``done`` (finished, kept) or ``held`` (another live run has it)."""
        with self._transaction():
            status = self.db.execute("SELECT status FROM cells WHERE cell_id=?", (cell_id,)).fetchone()
            if status and status[0] == "done" and not redo_done:
                return "done"
            if self.holder(cell_id, run_id):
                return "held"
            self.db.execute(
                "INSERT OR REPLACE INTO leases VALUES (?,?,?,?,?)",
                (cell_id, run_id, socket.gethostname(), os.getpid(), time.time() + self.lease_s),
            )
            return "claimed"

    def release_run(self, run_id: str) -> None:
        """Drop every lease the run still holds (it stops; its cells in progress become interrupted)."""
        self.db.execute("DELETE FROM leases WHERE run_id=?", (run_id,))

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
                   ON CONFLICT(cell_id) DO UPDATE SET status='running', started_at=excluded.started_at, pipeline=excluded.pipeline,
                       error=NULL, ecgbench_version=excluded.ecgbench_version""",
                (cell_id, labels["dataset"], labels["model"], labels["pipeline"], labels["seed"], json.dumps(config), time.time(), version),
            )
            self.link(run_id, cell_id, position, "running")

    def finish_cell(self, run_id: str, cell_id: str, status: str, metrics: dict, timings: dict, artifacts: dict, error: str | None) -> None:
        """Store a finished (done or failed) cell and release its lease, in one transaction."""
        with self._transaction():
            self.db.execute(
                """UPDATE cells SET status=?, metrics_json=?, timings_json=?, artifacts_json=?, error=?, finished_at=?
                   WHERE cell_id=?""",
                (status, json.dumps(metrics), json.dumps(timings), json.dumps(artifacts), error, time.time(), cell_id),
            )
            self.db.execute("UPDATE run_cells SET outcome=? WHERE run_id=? AND cell_id=?", (status, run_id, cell_id))
            self.db.execute("DELETE FROM leases WHERE cell_id=? AND run_id=?", (cell_id, run_id))

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
    def _run(self, row: Any) -> RunRow:
        summary = json.loads(row[7]) if row[7] else {}
        status, owner = row[6], {}
        if status == "running":
            owner, summary = summary, {}
            if not _run_alive(owner, row[10], self.lease_s):
                status = "interrupted"  # killed without a chance to say so (SIGKILL, power loss)
        if status in ("running", "interrupted"):  # the stored counts (if any) miss cells in progress and never started
            summary = _counts(self._run_cells(row[0], status == "running"))
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
            planned=row[9],
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
            metrics=upgrade_metrics(json.loads(row[7])) if row[7] else {},  # rows of older versions in today's keys
            timings=json.loads(row[8]) if row[8] else {},
            artifacts=json.loads(row[9]) if row[9] else {},
            error=row[10],
            started_at=row[11],
            finished_at=row[12],
            outcome=row[14] if len(row) > 14 else None,
        )


class Heartbeat(threading.Thread):
    """Renews a run's heartbeat and its cells' leases every quarter lease, on its own connection."""

    def __init__(self, path: Path, run_id: str, lease_s: float) -> None:
        super().__init__(name=f"ecgbench-heartbeat-{run_id}", daemon=True)
        self.path, self.run_id, self.lease_s = path, run_id, lease_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        db = _connect(self.path)
        try:
            while not self._stop_event.wait(self.lease_s / 4):
                now = time.time()
                try:
                    db.execute("UPDATE leases SET expires_at=? WHERE run_id=?", (now + self.lease_s, self.run_id))
                    db.execute("UPDATE runs SET heartbeat_at=? WHERE run_id=?", (now, self.run_id))
                except sqlite3.OperationalError:  # store busy past the timeout: try again next beat
                    continue
        finally:
            db.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _counts(cells: list[CellRow]) -> dict[str, int]:
    """Cells of a run by outcome, in a fixed order (what `ecgbench runs` prints for a run that did not finish)."""
    order = ("done", "failed", "skipped", "running", "interrupted", "pending", "not run")
    found = [c.outcome for c in cells]
    return {name: found.count(name) for name in order if name in found}


def _cell_state(outcome: str | None, run_live: bool, lease: tuple) -> str | None:
    """A cell's state in a run: finished as stored; started: running while its lease lives, else interrupted;
    never started: pending while the run lives, else not run."""
    if outcome in FINISHED_OUTCOMES or outcome is None:
        return outcome
    if outcome in ("running", "interrupted"):  # schema 1 stored a started cell as 'interrupted'
        return "running" if run_live and lease[0] is not None and _lease_alive(*lease) else "interrupted"
    return "pending" if run_live else "not run"


def _lease_alive(host: str, pid: int, expires_at: float) -> bool:
    """A lease counts while unexpired and, on this host, while its process exists."""
    if expires_at <= time.time():
        return False
    return not (host == socket.gethostname() and _pid_gone(pid))


def _run_alive(owner: dict, heartbeat_at: float | None, lease_s: float) -> bool:
    """A run marked running is alive: on this host while its process exists, elsewhere while its heartbeat is fresh."""
    if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        return not _pid_gone(owner["pid"])
    if heartbeat_at is None:
        return True  # another machine's run stored before heartbeats: cannot tell
    return time.time() - heartbeat_at < lease_s


def _pid_gone(pid: int) -> bool:
    """True when no process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
