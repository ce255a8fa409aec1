"""The loggers a run enables, attached to the plugin manager's lifecycle hooks for that run only."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import pluggy

from ecgbench.config.suite import PluginRef
from ecgbench.hookspecs import hookimpl
from ecgbench.kinds.logger import Logger
from ecgbench.registry import Registry

log = logging.getLogger("ecgbench")


class LoggerHooks:
    """One logger as a lifecycle-hook plugin: forwards each event and turns an exception into a
    warning, so a tracker's failure never fails the run nor keeps the other hook implementations
    from being called. A logger that failed to start is off for the rest of the run."""

    def __init__(self, logger: Logger, home: Path) -> None:
        self.logger = logger
        self.home = home
        self.failed = False

    def _call(self, method: str, *args) -> None:
        if self.failed:
            return
        try:
            getattr(self.logger, method)(*args)
        except Exception as exc:  # noqa: BLE001 - a tracker's bug or an unreachable store
            self.failed = method == "suite_started"
            log.warning(
                "logger '%s' failed in %s (%s: %s)%s; the results are stored: run the suite again once it is fixed "
                "to log the cells it missed",
                self.logger.name, method, type(exc).__name__, exc, "; it is off for this run" if self.failed else "",
            )

    @hookimpl
    def ecgbench_suite_started(self, suite, run_id, cells):
        self._call("suite_started", suite, run_id, cells, self.home)

    @hookimpl
    def ecgbench_cell_started(self, cell, run_id):
        self._call("cell_started", cell, run_id)

    @hookimpl
    def ecgbench_cell_finished(self, cell, run_id, status, metrics, error, artifacts):
        self._call("cell_finished", cell, run_id, status, metrics, error, artifacts)

    @hookimpl
    def ecgbench_suite_finished(self, suite, run_id, summary):
        self._call("suite_finished", suite, run_id, summary)

    def close(self) -> None:
        try:
            self.logger.close()
        except Exception as exc:  # noqa: BLE001
            log.warning("logger '%s' failed to close (%s: %s)", self.logger.name, type(exc).__name__, exc)


def make_loggers(refs: tuple[PluginRef, ...], registry: Registry) -> list[Logger]:
    """The enabled loggers, each checked (a missing package is a ConfigError before anything runs)."""
    loggers = []
    for ref in refs:
        logger = registry.get("loggers", ref.name)(ref.config)
        logger.check()
        loggers.append(logger)
    return loggers


@contextlib.contextmanager
def attached(pm: pluggy.PluginManager, loggers: list[Logger], home: Path) -> Iterator[list[LoggerHooks]]:
    """Register the loggers' hooks on ``pm`` for the block; on leaving, close and unregister them."""
    hooks = []
    try:
        for logger in loggers:
            plugin = LoggerHooks(logger, home)
            pm.register(plugin, name=f"logger:{logger.name}:{id(plugin)}")
            hooks.append(plugin)
        yield hooks
    finally:
        for plugin in hooks:
            plugin.close()
            pm.unregister(plugin)
