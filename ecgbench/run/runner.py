"""Run a suite: expand cells, skip finished ones, train baselines once, store each result as it arrives."""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

import ecgbench
from ecgbench.run.cell import CellJob, CellResult, CellSpec, execute_job, expand_cells
from ecgbench.config.suite import PluginRef, Suite
from ecgbench.errors import ConfigError
from ecgbench.registry import Registry
from ecgbench.run.loggers import attached, make_loggers
from ecgbench.run.machine import warn_if_contended
from ecgbench.run.store import ResultStore
from ecgbench.train.trainer import resolve_device

log = logging.getLogger("ecgbench")

HOME_ENV = "ECGBENCH_HOME"


def default_home() -> Path:
    """Where the store, caches and artifacts live: ``$ECGBENCH_HOME`` or ``./.ecgbench``."""
    return Path(os.environ.get(HOME_ENV, ".ecgbench"))


@dataclass
class RunSummary:
    """Counts and failures of one run."""

    run_id: str
    done: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (cell title, last error line)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def counts(self) -> dict[str, int]:
        return {"done": self.done, "failed": self.failed, "skipped": self.skipped}


def select_cells(cells: list[CellSpec], only: str | None) -> list[CellSpec]:
    """Cells whose ``dataset/model/pipeline/seedN`` title or id matches the glob ``only``."""
    if not only:
        return cells
    return [c for c in cells if matches_only(c.title(), c.pipeline, c.cell_id, only)]


def matches_only(title: str, pipeline: str, cell_id: str, only: str | None) -> bool:
    """``--only``: a glob on the ``dataset/model/pipeline/seedN`` title or the pipeline label, or a cell id prefix."""
    return not only or fnmatch.fnmatch(title, only) or fnmatch.fnmatch(pipeline, only) or cell_id.startswith(only)


def plan_cells(suite: Suite, registry: Registry, only: str | None = None) -> list[CellSpec]:
    """The cells a run will do; an empty plan is a ConfigError naming the fix, raised before anything is written."""
    cells = expand_cells(suite, registry)
    if not cells:
        raise ConfigError(f"{suite.path}: the matrix expands to no cells; list at least one dataset, model, pipeline and seed")
    selected = select_cells(cells, only)
    if not selected:
        labels = list(dict.fromkeys(c.pipeline for c in cells))
        raise ConfigError(
            f"--only {only!r} matches none of the {len(cells)} cells of {suite.path}; pipelines: {', '.join(labels)}; "
            f"a pattern is a glob on dataset/model/pipeline/seedN (e.g. '*/*/{labels[0]}/*'), a pipeline label, or a cell id prefix"
        )
    return selected


# Status of an in-process cell job not computed because it was done or held by another run meanwhile.
HELD = "held"


def run_suite(
    suite: Suite,
    registry: Registry,
    pm: pluggy.PluginManager,
    store: ResultStore,
    home: Path,
    only: str | None = None,
    force: bool = False,
    executor: PluginRef | None = None,
    progress: bool = True,
    poll_s: float = 1.0,
) -> RunSummary:
    """Run every selected cell not already done (all of them with ``force``).

    Each cell is leased before it runs; cells another live run holds are
    waited for at the end and counted from that run's results (``poll_s``:
    how often to look), so no cell is computed twice. The suite's loggers
    (``suite.loggers``) receive this run's lifecycle hooks.
    """
    cells = plan_cells(suite, registry, only)
    loggers = make_loggers(suite.loggers, registry)  # a missing package fails here, before the run is recorded
    with attached(pm, loggers, home):
        return _run_cells(suite, cells, registry, pm, store, home, force, executor, progress, poll_s)


def _run_cells(
    suite: Suite,
    cells: list[CellSpec],
    registry: Registry,
    pm: pluggy.PluginManager,
    store: ResultStore,
    home: Path,
    force: bool,
    executor: PluginRef | None,
    progress: bool,
    poll_s: float,
) -> RunSummary:
    run_id = store.start_run(suite.name, str(suite.path), suite.raw, ecgbench.__version__, planned=len(cells))
    store.plan(run_id, [(c.position, c.cell_id, c.labels(), c.config()) for c in cells], ecgbench.__version__)
    summary = RunSummary(run_id)
    _call_hook(pm.hook.ecgbench_suite_started, suite=suite, run_id=run_id, cells=cells)
    heartbeat = store.heartbeat(run_id)
    started_at = time.time()

    executor_ref = executor or suite.executor
    runner = registry.get("executors", executor_ref.name)(executor_ref.config)
    status = "interrupted"
    bar = _progress_bar(len(cells), progress, suite.name)
    run = _CellRunner(store, pm, registry, runner, home, run_id, summary, bar, force, progress)
    try:
        todo, held = [], []
        for cell in cells:
            if not force and store.cell_status(cell.cell_id) == "done":
                run.finish_elsewhere(cell, "skipped")
            elif store.holder(cell.cell_id, run_id):
                held.append(cell)
            else:
                todo.append(cell)
        if todo and resolve_device(suite.training.device).type == "cpu":
            warn_if_contended(suite.training.num_threads)
        held += run.execute(todo)
        while held:  # another run has these: wait, count its results, take over what it dropped
            held = run.execute(_await_holders(store, run, held, started_at, poll_s))
        status = "done" if summary.ok else "failed"
    finally:
        heartbeat.stop()
        store.release_run(run_id)
        bar.close()
        runner.close()
        store.finish_run(run_id, status, summary.counts())
        if status != "interrupted":
            _call_hook(pm.hook.ecgbench_suite_finished, suite=suite, run_id=run_id, summary=summary.counts())
    return summary


@dataclass
class _CellRunner:
    """One run's stages on its executor: claims cells, runs baselines then cells, stores results."""

    store: ResultStore
    pm: pluggy.PluginManager
    registry: Registry
    executor: object
    home: Path
    run_id: str
    summary: RunSummary
    bar: object
    force: bool
    progress: bool

    def execute(self, todo: list[CellSpec]) -> list[CellSpec]:
        """Run the cells this run can claim; return those another live run holds."""
        if not todo:
            return []
        in_process = bool(getattr(self.executor, "in_process", False))
        # In-process executors share the driver's registry (plugins registered by hand
        # included); others rebuild it from entry points in each worker.
        fn = functools.partial(execute_job, registry=self.registry) if in_process else execute_job
        artifacts_dir = str(self.home / "artifacts")
        held: list[CellSpec] = []
        # Stage 1: each distinct dense baseline is trained once, before the cells that share it
        # (a file lock in the artifact cache makes concurrent runs share one training too).
        baseline_jobs: dict[str, CellJob] = {}
        for cell in todo:
            baseline_jobs.setdefault(cell.baseline_key, CellJob(cell, "baseline", str(self.home), artifacts_dir, self.progress))
        baseline_errors = {
            job.spec.baseline_key: result.error or "baseline failed"
            for job, result in self.executor.map(fn, list(baseline_jobs.values()))
            if result.status != "done"
        }
        # Stage 2: the cells, each claimed as it starts and stored as soon as its result arrives.
        jobs = []
        for cell in todo:
            if cell.baseline_key in baseline_errors:
                if self.claim(cell, held):
                    failed = CellResult(cell.cell_id, "failed", error="dense baseline failed:\n" + baseline_errors[cell.baseline_key])
                    self.store_result(cell, failed)
            elif in_process or self.claim(cell, held):  # out of process: claimed at dispatch
                jobs.append(CellJob(cell, "cell", str(self.home), artifacts_dir, self.progress))
        by_id = {job.spec.cell_id: job.spec for job in jobs}

        def run_in_process(job: CellJob) -> CellResult:
            if not self.claim(job.spec, held):
                return CellResult(job.spec.cell_id, HELD)
            return fn(job)

        for _job, result in self.executor.map(run_in_process if in_process else fn, jobs):
            if result.status != HELD:
                self.store_result(by_id[result.cell_id], result)
        return held

    def claim(self, cell: CellSpec, held: list[CellSpec]) -> bool:
        """Lease the cell and mark it started; False (noting why) when it is done or another run holds it."""
        state = self.store.claim(self.run_id, cell.cell_id, redo_done=self.force)
        if state == "held":
            held.append(cell)
            return False
        if state == "done":  # finished by another run since this one looked
            self.finish_elsewhere(cell, "skipped")
            return False
        self.store.mark_running(self.run_id, cell.position, cell.cell_id, cell.labels(), cell.config(), ecgbench.__version__)
        _call_hook(self.pm.hook.ecgbench_cell_started, cell=cell, run_id=self.run_id)
        return True

    def store_result(self, cell: CellSpec, result: CellResult) -> None:
        self.store.finish_cell(self.run_id, cell.cell_id, result.status, result.metrics, result.timings, result.artifacts, result.error)
        self._count(cell, result.status, result.metrics, result.error, result.artifacts)

    def finish_elsewhere(self, cell: CellSpec, outcome: str) -> None:
        """Count a cell this run did not compute: ``skipped`` (done) or ``failed`` (by another run, during this one)."""
        self.store.link(self.run_id, cell.cell_id, cell.position, outcome)
        row = self.store.get_cell(cell.cell_id)
        self._count(cell, outcome, row.metrics if row else {}, row.error if row else None, row.artifacts if row else {})

    def _count(self, cell: CellSpec, outcome: str, metrics: dict, error: str | None, artifacts: dict) -> None:
        if outcome == "done":
            self.summary.done += 1
        elif outcome == "skipped":
            self.summary.skipped += 1
        else:
            self.summary.failed += 1
            last = (error or "").strip().splitlines()[-1:] or ["unknown error"]
            self.summary.failures.append((cell.title(), last[0]))
        self.bar.update(1)
        _call_hook(
            self.pm.hook.ecgbench_cell_finished, cell=cell, run_id=self.run_id, status=outcome, metrics=metrics, error=error, artifacts=artifacts
        )


def _await_holders(store: ResultStore, run: _CellRunner, held: list[CellSpec], since: float, poll_s: float) -> list[CellSpec]:
    """Wait until no other run holds these cells; count what they finished, return what they left undone."""
    holders = sorted({h for c in held if (h := store.holder(c.cell_id, run.run_id))})
    if holders:
        log.warning("waiting for %d cell(s) held by run %s", len(held), ", ".join(holders))
    left: list[CellSpec] = []
    waiting = list(held)
    while waiting:
        still = []
        for cell in waiting:
            if store.holder(cell.cell_id, run.run_id):
                still.append(cell)
                continue
            row = store.get_cell(cell.cell_id)
            finished_here = row is not None and row.finished_at is not None and row.finished_at >= since
            if row is not None and row.status == "done" and (finished_here or not run.force):
                run.finish_elsewhere(cell, "skipped")
            elif row is not None and row.status == "failed" and finished_here:
                run.finish_elsewhere(cell, "failed")
            else:  # the holder stopped without a result (killed, interrupted): this run does it
                left.append(cell)
        waiting = still
        if waiting:
            time.sleep(poll_s)
    return left


def _call_hook(hook, **kwargs) -> None:
    """Lifecycle hooks never fail a run: an exception is logged as a warning."""
    try:
        hook(**kwargs)
    except Exception as exc:  # a logger plugin's bug must not lose results
        log.warning("lifecycle hook %s raised %r", hook.name, exc)


def _progress_bar(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{desc} cells", unit="cell", disable=not enabled or bool(os.environ.get("ECGBENCH_QUIET")))
