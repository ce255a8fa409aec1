"""Logger plugins: experiment trackers that receive a run's lifecycle events when a suite enables them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ecgbench.kinds.base import Plugin

if TYPE_CHECKING:  # pragma: no cover
    from ecgbench.config.suite import Suite
    from ecgbench.run.cell import CellSpec


class Logger(Plugin):
    """Sends a run's cells to an experiment tracker (MLflow, ...).

    Unlike a plugin that implements the lifecycle hooks for every run, a
    logger is off until a suite lists it (``loggers: {NAME: {settings}}``) or
    ``ecgbench run --log NAME`` asks for it. For that run it is registered on
    the plugin manager and receives the lifecycle hooks
    (``ecgbench_suite_started``, ``ecgbench_cell_started``, ``ecgbench_cell_finished``,
    ``ecgbench_suite_finished``) as these methods, in the driving process.
    An exception in any of them is logged as a warning and switches the logger
    off for the rest of the run: the run and its stored results go on.
    """

    kind: ClassVar[str] = "logger"

    def check(self) -> None:
        """Raise ``ConfigError`` when the logger cannot work here (a missing package): called before the run starts."""

    def suite_started(self, suite: Suite, run_id: str, cells: list[CellSpec], home: Path) -> None:
        """The run started; ``home`` is its ``ECGBENCH_HOME`` (the store, caches and exported models)."""

    def cell_started(self, cell: CellSpec, run_id: str) -> None:
        """A cell is about to run (see ``ecgbench_cell_started``)."""

    def cell_finished(
        self, cell: CellSpec, run_id: str, status: str, metrics: dict[str, Any], error: str | None, artifacts: dict[str, str]
    ) -> None:
        """A cell was stored (``done``, ``failed``) or found already done (``skipped``); see ``ecgbench_cell_finished``."""

    def suite_finished(self, suite: Suite, run_id: str, summary: dict[str, int]) -> None:
        """The run ended with these counts (not called when it was interrupted)."""

    def close(self) -> None:
        """Always called last, also after an interrupted run or a failure: end what is still open."""
