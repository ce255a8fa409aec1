"""``processes``: run cells in parallel on this machine, one cell per worker process.

Workers are started with the ``spawn`` method: forking a process that has
already imported torch can deadlock its OpenMP/MKL thread pools and breaks
CUDA (PyTorch docs, "Multiprocessing best practices"), and ``spawn`` is the
default on macOS and Windows anyway. Each worker rebuilds the plugin registry
from the built-ins and installed entry points (:func:`ecgbench.registry.process_registry`),
so plugins registered by hand in the driving process are not seen there, and
a script that calls :func:`ecgbench.run.runner.run_suite` with this executor needs
the usual ``if __name__ == "__main__":`` guard (``spawn`` re-imports it).

A worker that dies (killed for memory, a crash in native code) breaks the
whole pool: every cell it still owed comes back as a failed result saying
so, the next stage gets a fresh pool, and ``ecgbench run`` redoes the failed
cells next time while keeping the finished ones.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import traceback
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from pydantic import Field

from ecgbench import hookimpl
from ecgbench.run.cell import CellResult
from ecgbench.kinds.executor import Executor
from ecgbench.kinds.base import PluginConfig

# torch + fork is unsafe (see module docstring); spawn also behaves the same on every OS.
START_METHOD = "spawn"

# Thread pools sized by environment variables read when the native library loads.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

WORKER_DIED = (
    "the worker process running or queued to run this cell died before returning a result "
    "(killed for memory, or a crash in native code); the cells that finished are stored. "
    "Run `ecgbench run` again to redo the failed cells, with fewer --workers if memory ran out."
)


def limit_worker_threads(threads: int) -> None:
    """Worker initializer: cap OpenMP/MKL and torch intra-op threads so workers do not oversubscribe the CPUs."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)  # takes effect if torch is not imported yet
    import torch

    torch.set_num_threads(threads)


class ProcessPoolCellExecutor(Executor):
    """A local pool of spawned worker processes; results are yielded as cells finish."""

    name = "processes"
    description = "parallel on this machine: a pool of worker processes, one cell each"

    class Config(PluginConfig):
        workers: int = Field(2, ge=1, description="worker processes, i.e. cells run at once (`ecgbench run --workers N`)")
        threads_per_worker: int = Field(
            1,
            ge=1,
            description="torch/OpenMP threads of each worker outside training (training uses the suite's training.num_threads)",
        )

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self._pool: ProcessPoolExecutor | None = None
        self._abandoned = False  # a map() left with cells still running (driver interrupted)

    def map(self, fn, jobs):
        jobs = list(jobs)
        if not jobs:
            return
        pool = self._live_pool()
        futures: dict[Future, object] = {}
        try:
            for job in jobs:
                try:
                    futures[pool.submit(fn, _quiet(job))] = job
                except BrokenProcessPool:  # a worker died while cells were still being queued
                    yield job, _failed(job, WORKER_DIED)
            for future in as_completed(futures):
                yield futures[future], _outcome(futures[future], future)
        finally:
            unfinished = [f for f in futures if not f.done()]
            for future in unfinished:
                future.cancel()
            if any(not f.done() for f in unfinished):
                self._abandoned = True

    def close(self) -> None:
        """Shut the pool down; workers still running an abandoned cell are terminated."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if self._abandoned:
            # Python < 3.14 has no public way to stop a running worker; without this, an
            # interrupted run would wait for every cell in progress to finish.
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)

    def _live_pool(self) -> ProcessPoolExecutor:
        """The pool, started on first use and replaced when a dead worker broke it."""
        if self._pool is not None and getattr(self._pool, "_broken", False):
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.config.workers,
                mp_context=multiprocessing.get_context(START_METHOD),
                initializer=limit_worker_threads,
                initargs=(self.config.threads_per_worker,),
            )
        return self._pool


def _quiet(job):
    """The job without per-epoch progress bars: bars of parallel workers would garble the terminal."""
    if dataclasses.is_dataclass(job) and getattr(job, "progress", False):
        return dataclasses.replace(job, progress=False)
    return job


def _outcome(job, future: Future) -> CellResult:
    try:
        return future.result()
    except BrokenProcessPool:
        return _failed(job, WORKER_DIED)
    except Exception:  # fn raised or its result could not be sent back: still a result, never a lost run
        return _failed(job, "the cell's worker raised instead of returning a result:\n" + traceback.format_exc())


def _failed(job, error: str) -> CellResult:
    return CellResult(job.spec.cell_id, "failed", error=error)


@hookimpl
def ecgbench_register_executors(register):
    register(ProcessPoolCellExecutor)
