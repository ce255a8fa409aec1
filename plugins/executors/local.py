"""``local``: run cells one after another in the driving process (the default)."""

from __future__ import annotations

from ecgbench import hookimpl
from ecgbench.kinds.executor import Executor


class LocalExecutor(Executor):
    """Sequential, in-process: the simplest and the reference every other executor must match."""

    name = "local"
    description = "sequential, in the driving process"
    in_process = True

    def map(self, fn, jobs):
        for job in jobs:
            yield job, fn(job)


@hookimpl
def ecgbench_register_executors(register):
    register(LocalExecutor)
