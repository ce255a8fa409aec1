"""A test plugin implementing every hook: a tiny dataset and model (so a suite runs in a second), a device
profile, a reporter, an executor, a metric, a logger, and the lifecycle hooks. Registered on a fresh plugin manager by the tests
that use it; the example package (tests/example_plugin) covers compressors."""

from __future__ import annotations

from pathlib import Path

from ecgbench import Executor, Logger, Metric, PluginConfig, SingleFileReporter, hookimpl
from ecgbench.kinds.device import load_profile
from ecgbench.testing import TinyDataset, TinyNetFamily
from ecgbench_plugins.devices.builtin_profiles import PROFILE_DIR

SLOW_BOARD = "slow_nrf52840"
TEST_RECORDS_METRIC = "plugin_metrics.test_records"


def count_test_records(measurement) -> float:
    """How many test records the model was scored on."""
    return float(len(measurement.test_labels))


def slow_board():
    """nrf52840 at half the clock and half the memory bandwidth: every simulated latency doubles."""
    base = load_profile(PROFILE_DIR / "nrf52840.yaml")
    return base.model_copy(
        update={
            "name": SLOW_BOARD,
            "description": "test profile: nrf52840 at half clock and bandwidth",
            "clock_hz": base.clock_hz / 2,
            "bandwidth_bytes_per_s": base.bandwidth_bytes_per_s / 2,
        }
    )


class TinyData(TinyDataset):
    """48 separable 4-s records at 100 Hz."""

    name = "tiny_records"


class TinyFamily(TinyNetFamily):
    """``ecgbench.testing.TinyNet`` at width 4."""

    name = "tiny_net"


class KindsPlugin:
    """Registers ``tiny_records``, ``tiny_net``, ``slow_nrf52840``, the ``cell_lines`` reporter, the
    ``reversed`` executor, the ``plugin_metrics.test_records`` metric and the ``event_log`` logger; records
    lifecycle events in ``events``, and what the logger of a run that enables it receives in ``logged``."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.logged: list[tuple] = []

    @hookimpl
    def ecgbench_register_datasets(self, register):
        register(TinyData)

    @hookimpl
    def ecgbench_register_models(self, register):
        register(TinyFamily)

    @hookimpl
    def ecgbench_register_devices(self, register):
        register(slow_board())

    @hookimpl
    def ecgbench_register_reporters(self, register):
        class CellLines(SingleFileReporter):
            """One line per cell: pipeline, outcome, simulated latency on the slow board."""

            name = "cell_lines"
            basename = "cells"
            extension = ".txt"

            def render(self, results, out_dir: Path) -> str:
                rows = []
                for cell in results.cells:
                    latency = cell.metrics.get("devices", {}).get(SLOW_BOARD, {}).get("latency_ms")
                    rows.append(f"{cell.pipeline} {cell.outcome} {latency}")
                return "\n".join(rows) + "\n"

        register(CellLines)

    @hookimpl
    def ecgbench_register_executors(self, register):
        events = self.events

        class ReversedExecutor(Executor):
            """In-process, last job first: results need not come back in suite order."""

            name = "reversed"
            in_process = True

            def map(self, fn, jobs):
                jobs = list(jobs)
                events.append(("map", [job.stage for job in jobs]))
                for job in reversed(jobs):
                    yield job, fn(job)

        register(ReversedExecutor)

    @hookimpl
    def ecgbench_register_metrics(self, register):
        register(Metric(TEST_RECORDS_METRIC, "test records", "records of the test split the model was scored on.", compute=count_test_records))

    @hookimpl
    def ecgbench_register_loggers(self, register):
        logged = self.logged

        class EventLog(Logger):
            """Appends what it receives, with its ``tag`` setting, to ``KindsPlugin.logged``."""

            name = "event_log"

            class Config(PluginConfig):
                tag: str = ""

            def suite_started(self, suite, run_id, cells, home):
                logged.append((self.config.tag, "suite_started", len(cells)))

            def cell_finished(self, cell, run_id, status, metrics, error, artifacts):
                logged.append((self.config.tag, "cell_finished", cell.pipeline, status, sorted(artifacts)))

            def suite_finished(self, suite, run_id, summary):
                logged.append((self.config.tag, "suite_finished", summary))

        register(EventLog)

    @hookimpl
    def ecgbench_suite_started(self, suite, run_id, cells):
        self.events.append(("suite_started", suite.name, [cell.pipeline for cell in cells]))

    @hookimpl
    def ecgbench_cell_started(self, cell, run_id):
        self.events.append(("cell_started", cell.pipeline))

    @hookimpl
    def ecgbench_cell_finished(self, cell, run_id, status, metrics, error):
        self.events.append(("cell_finished", cell.pipeline, status, sorted(metrics.get("devices", {}))))

    @hookimpl
    def ecgbench_suite_finished(self, suite, run_id, summary):
        self.events.append(("suite_finished", summary))
