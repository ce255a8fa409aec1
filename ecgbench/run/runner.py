"""Run a suite: expand cells, skip finished ones, train baselines once, store each result as it arrives."""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

import ecgbench
from ecgbench.run.cell import CellJob, CellResult, CellSpec, execute_job, expand_cells
from ecgbench.config.suite import PluginRef, Suite
from ecgbench.registry import Registry
from ecgbench.run.store import ResultStore

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
    return [c for c in cells if fnmatch.fnmatch(c.title(), only) or fnmatch.fnmatch(c.pipeline, only) or c.cell_id.startswith(only)]


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
) -> RunSummary:
    """Run every selected cell not already done (all of them with ``force``)."""
    cells = select_cells(expand_cells(suite, registry), only)
    run_id = store.start_run(suite.name, str(suite.path), suite.raw, ecgbench.__version__)
    summary = RunSummary(run_id)
    _call_hook(pm.hook.ecgbench_suite_started, suite=suite, run_id=run_id, cells=cells)

    todo = []
    for cell in cells:
        if not force and store.cell_status(cell.cell_id) == "done":
            store.link(run_id, cell.cell_id, cell.position, "skipped")
            summary.skipped += 1
            _call_hook(pm.hook.ecgbench_cell_finished, cell=cell, run_id=run_id, status="skipped", metrics={}, error=None)
        else:
            todo.append(cell)

    executor_ref = executor or suite.executor
    runner = registry.get("executors", executor_ref.name)(executor_ref.config)
    in_process = bool(getattr(runner, "in_process", False))
    # In-process executors share the driver's registry (plugins registered by hand
    # included); others rebuild it from entry points in each worker.
    fn = functools.partial(execute_job, registry=registry) if in_process else execute_job
    artifacts_dir = str(home / "artifacts")
    status = "interrupted"
    bar = _progress_bar(len(todo), progress, suite.name)

    def start(spec: CellSpec) -> None:
        store.mark_running(run_id, spec.position, spec.cell_id, spec.labels(), spec.config(), ecgbench.__version__)
        _call_hook(pm.hook.ecgbench_cell_started, cell=spec, run_id=run_id)

    def run_in_process(job: CellJob) -> CellResult:
        start(job.spec)
        return fn(job)

    try:
        # Stage 1: each distinct dense baseline is trained once, before the cells that share it.
        baseline_jobs: dict[str, CellJob] = {}
        for cell in todo:
            baseline_jobs.setdefault(cell.baseline_key, CellJob(cell, "baseline", str(home), artifacts_dir, progress))
        baseline_errors = {
            job.spec.baseline_key: result.error or "baseline failed"
            for job, result in runner.map(fn, list(baseline_jobs.values()))
            if result.status != "done"
        }
        # Stage 2: the cells, each stored as soon as its result arrives.
        jobs = []
        for cell in todo:
            if cell.baseline_key in baseline_errors:
                start(cell)
                failed = CellResult(cell.cell_id, "failed", error="dense baseline failed:\n" + baseline_errors[cell.baseline_key])
                _store_result(store, pm, run_id, cell, failed, summary)
                bar.update(1)
            else:
                jobs.append(CellJob(cell, "cell", str(home), artifacts_dir, progress))
        if not in_process:
            for job in jobs:  # dispatched at once; a kill leaves them 'running', redone next time
                start(job.spec)
        by_id = {job.spec.cell_id: job.spec for job in jobs}
        for _job, result in runner.map(run_in_process if in_process else fn, jobs):
            _store_result(store, pm, run_id, by_id[result.cell_id], result, summary)
            bar.update(1)
        status = "done" if summary.ok else "failed"
    finally:
        bar.close()
        runner.close()
        store.finish_run(run_id, status, summary.counts())
        if status != "interrupted":
            _call_hook(pm.hook.ecgbench_suite_finished, suite=suite, run_id=run_id, summary=summary.counts())
    return summary


def _store_result(store: ResultStore, pm, run_id: str, cell: CellSpec, result: CellResult, summary: RunSummary) -> None:
    store.finish_cell(run_id, cell.cell_id, result.status, result.metrics, result.timings, result.artifacts, result.error)
    if result.status == "done":
        summary.done += 1
    else:
        summary.failed += 1
        last = (result.error or "").strip().splitlines()[-1:] or ["unknown error"]
        summary.failures.append((cell.title(), last[0]))
    _call_hook(pm.hook.ecgbench_cell_finished, cell=cell, run_id=run_id, status=result.status, metrics=result.metrics, error=result.error)


def _call_hook(hook, **kwargs) -> None:
    """Lifecycle hooks never fail a run: an exception is logged as a warning."""
    try:
        hook(**kwargs)
    except Exception as exc:  # a logger plugin's bug must not lose results
        log.warning("lifecycle hook %s raised %r", hook.name, exc)


def _progress_bar(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{desc} cells", unit="cell", disable=not enabled or bool(os.environ.get("ECGBENCH_QUIET")))
