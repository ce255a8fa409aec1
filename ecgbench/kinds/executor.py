"""Executor plugins: where and how cell jobs run."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable, Iterator

from ecgbench.kinds.base import Plugin


class Executor(Plugin):
    """Runs jobs and yields ``(job, result)`` pairs as they finish.

    A job is a picklable :class:`ecgbench.run.runner.CellJob`; ``fn(job)`` returns
    a picklable :class:`ecgbench.run.runner.CellResult` and never raises (failures
    are results). The driving process stores each result as it arrives, so an
    executor may yield in any order. Executors must run jobs of one
    ``stage`` to completion before the runner hands them the next stage (the
    runner calls :meth:`map` once per stage: dense baselines first, then the
    compressed cells that reuse them).
    """

    kind: ClassVar[str] = "executor"

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers or cluster connections."""
