"""``ray``: run cells as Ray tasks, on a local Ray instance or a cluster (``pip install 'ecgbench-harness[ray]'``).

Each cell is one task reserving ``num_cpus_per_cell`` CPUs and
``num_gpus_per_cell`` GPUs; results come back to the driving process, which
alone writes the result store. Workers rebuild the plugin registry from the
built-ins and installed entry points, so every node needs ecgbench (and any
third-party plugin) installed, or a ``runtime_env`` that installs it.

On a multi-node cluster, ``ECGBENCH_HOME`` (the baseline cache, its lock and
the exported models) and the datasets must sit on a filesystem every node
mounts at the same path; otherwise each node retrains the baselines it needs
and the exported models stay on the node that wrote them.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from typing import Any

from pydantic import Field

from ecgbench import hookimpl
from ecgbench.run.cell import CellResult
from ecgbench.errors import ConfigError, PluginError
from ecgbench.kinds.executor import Executor
from ecgbench.kinds.base import PluginConfig

INSTALL_HINT = "pip install 'ecgbench-harness[ray]'"

# Ray retries an unreachable head for minutes; a plain TCP connect answers in seconds.
REACHABLE_TIMEOUT_S = 5.0


class RayExecutor(Executor):
    """Cells as Ray tasks, yielded as they finish (``ray.wait``)."""

    name = "ray"
    description = "parallel on a Ray cluster or a local Ray instance (extra: ecgbench-harness[ray])"

    class Config(PluginConfig):
        address: str | None = Field(
            None,
            description="Ray cluster to join: 'auto' (a cluster started on this machine or $RAY_ADDRESS), "
            "'ray://host:10001' (Ray Client), or null to start a local Ray instance (Ray joins $RAY_ADDRESS instead when set)",
        )
        num_cpus_per_cell: float = Field(
            1.0, gt=0, description="CPUs Ray reserves for each cell (training uses the suite's training.num_threads: keep them equal)"
        )
        num_gpus_per_cell: float = Field(0.0, ge=0, description="GPUs Ray reserves for each cell (fractions share a GPU)")
        local_num_cpus: int | None = Field(None, ge=1, description="CPUs of the local instance (null: all); ignored with an address")
        runtime_env: dict[str, Any] | None = Field(
            None, description="Ray runtime_env for the workers, e.g. {pip: [ecgbench-harness]} on a cluster without ecgbench"
        )

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self._ray = None
        self._connected_here = False  # ray.init was called by this executor, not by the caller
        self._remote_fns: dict[Any, Any] = {}

    def map(self, fn, jobs):
        jobs = list(jobs)
        if not jobs:
            return
        ray = self._connect()
        task = self._remote(fn)
        owner = {task.remote(_quiet(job)): job for job in jobs}
        pending = list(owner)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield owner[ref], _outcome(ray, owner[ref], ref)
        finally:
            for ref in pending:  # the driver stopped early: do not leave cells running on the cluster
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished, or the cluster is gone
                    pass

    def close(self) -> None:
        """Disconnect from (or stop) the Ray instance this executor started; a caller's own session is left alone."""
        if self._ray is not None and self._connected_here:
            self._ray.shutdown()
        self._ray = None
        self._connected_here = False
        self._remote_fns.clear()

    def _connect(self):
        if self._ray is not None:
            return self._ray
        try:
            import ray
        except ImportError:
            raise PluginError(f"executor 'ray' needs Ray, which is not installed: {INSTALL_HINT}") from None
        if not ray.is_initialized():
            cfg = self.config
            options: dict[str, Any] = {"logging_level": logging.WARNING}
            if cfg.runtime_env is not None:
                options["runtime_env"] = cfg.runtime_env
            if cfg.address is None:
                ray.init(num_cpus=cfg.local_num_cpus, include_dashboard=False, **options)
            else:
                try:
                    check_reachable(cfg.address)
                    ray.init(address=cfg.address, **options)
                except Exception as exc:  # ConnectionError, or a Ray Client gRPC error for ray://
                    raise ConfigError(
                        f"executor 'ray': cannot reach the Ray cluster at address {cfg.address!r} ({exc}); "
                        "start one with `ray start --head` (then use --address auto), fix --address / executor.address, "
                        "or leave the address out to start a local Ray instance"
                    ) from None
            self._connected_here = True
        self._ray = ray
        return ray

    def _remote(self, fn):
        if fn not in self._remote_fns:
            cfg = self.config
            self._remote_fns[fn] = self._ray.remote(num_cpus=cfg.num_cpus_per_cell, num_gpus=cfg.num_gpus_per_cell)(fn)
        return self._remote_fns[fn]


def check_reachable(address: str) -> None:
    """Raise OSError when a ``host:port`` or ``ray://host:port`` address refuses a TCP connection; ``auto`` is Ray's to resolve."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    with socket.create_connection((host.strip("[]"), int(port)), timeout=REACHABLE_TIMEOUT_S):
        pass


def _quiet(job):
    """The job without per-epoch progress bars: bars of parallel workers would garble the terminal."""
    if dataclasses.is_dataclass(job) and getattr(job, "progress", False):
        return dataclasses.replace(job, progress=False)
    return job


def _outcome(ray, job, ref) -> CellResult:
    try:
        return ray.get(ref)
    except Exception as exc:  # the task raised, its worker or node died, or it was cancelled
        return CellResult(job.spec.cell_id, "failed", error=f"Ray task of this cell failed: {type(exc).__name__}: {exc}")


@hookimpl
def ecgbench_register_executors(register):
    register(RayExecutor)
