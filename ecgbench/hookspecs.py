"""The whole plugin API of ecgbench: the markers and every hook.

Built-in plugins (``ecgbench_plugins``) implement these hooks exactly as a
third-party package does. A plugin module marks its functions with
``@ecgbench.hookimpl``; registration hooks receive a ``register`` callback
that the plugin calls once per thing it provides (the shape of ``llm``)::

    from ecgbench import hookimpl

    @hookimpl
    def ecgbench_register_compressors(register):
        register(MyCompressor)

Every hook is a typed function whose docstring has, in order: a one-line
summary; ``When it runs: ...``; one ``:param NAME: ...`` line per parameter,
in signature order; ``:return: ...``; and an ``Example::`` block with an
``@hookimpl`` implementation. ``python -m ecgbench.hookdocs`` renders them,
grouped by the ``# --- SECTION ---`` comments below, into ``docs/plugins.md``;
``tests/test_hook_docs.py`` fails when a hook departs from the format or the
page from the code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from ecgbench.config.suite import Suite
    from ecgbench.kinds.compressor import Compressor
    from ecgbench.kinds.dataset import Dataset
    from ecgbench.kinds.device import DeviceProfile
    from ecgbench.kinds.executor import Executor
    from ecgbench.kinds.logger import Logger
    from ecgbench.kinds.model import ModelFamily
    from ecgbench.kinds.reporter import Reporter
    from ecgbench.measure.schema import Metric
    from ecgbench.run.cell import CellSpec

PROJECT_NAME = "ecgbench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- registration -------------------------------------------------------------
# Called once per ``build_registry(pm)`` (``ecgbench.registry``), in every process
# that builds a registry (each command, and each worker of an out-of-process
# executor); the last registered plugin is called first.
# ``register(thing)`` accepts a class with a unique ``name`` attribute (a device
# profile is registered as an instance). Two plugins registering the same name
# is an error that names both. The hooks return nothing.


@hookspec
def ecgbench_register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    """Register dataset plugins: call ``register(cls)`` for each ``ecgbench.kinds.dataset.Dataset`` subclass.

    When it runs: when a registry is built (see the registration section); the records are read later, when a cell first needs its splits.

    :param register: call it once per dataset class; a class yields labelled single-lead records (``Record``) that the core turns into cached, preprocessed train/val/test splits.
    :return: nothing; the return value is ignored.

    Example::

        from ecgbench import Dataset, Record, hookimpl

        class Tiny(Dataset):
            name = "tiny"

            def records(self, log=None):
                yield Record("r1", signal, 300.0, "N")

            def fingerprint(self):
                return "tiny-v1"

        @hookimpl
        def ecgbench_register_datasets(register):
            register(Tiny)
    """


@hookspec
def ecgbench_register_models(register: Callable[[type[ModelFamily]], None]) -> None:
    """Register model families: call ``register(cls)`` for each ``ecgbench.kinds.model.ModelFamily`` subclass.

    When it runs: when a registry is built (see the registration section); ``build`` is called later, once per cell, after seeding torch.

    :param register: call it once per model family class; its ``build(n_classes)`` returns a ``torch.nn.Module`` mapping ``[batch, 1, samples]`` to ``[batch, n_classes]`` logits for any input length.
    :return: nothing; the return value is ignored.

    Example::

        import torch
        from ecgbench import ModelFamily, hookimpl

        class Linear(ModelFamily):
            name = "linear"

            def build(self, n_classes):
                return torch.nn.Sequential(torch.nn.AdaptiveAvgPool1d(64), torch.nn.Flatten(), torch.nn.Linear(64, n_classes))

        @hookimpl
        def ecgbench_register_models(register):
            register(Linear)
    """


@hookspec
def ecgbench_register_compressors(register: Callable[[type[Compressor]], None]) -> None:
    """Register compression strategies: call ``register(cls)`` for each ``ecgbench.kinds.compressor.Compressor`` subclass.

    When it runs: when a registry is built (see the registration section); ``compress`` runs later, in the worker that runs the cell.

    :param register: call it once per compressor class; its ``compress(artifact, ctx)`` takes a ``ModelArtifact`` and a ``CompressionContext`` (the training API, with ``fit(..., loss_fn=, teacher=)`` for other objectives; ``model_spec`` and ``build_model(name, settings)`` for the incoming and any other registered architecture; the dense baseline's validation score) and returns a ``StepOutcome``: the compressed artifact (``ModelArtifact(model, spec=spec)`` when it is another architecture) plus a JSON record of what it did.
    :return: nothing; the return value is ignored.

    Example::

        from ecgbench import Compressor, StepOutcome, hookimpl

        class Identity(Compressor):
            name = "identity"

            def compress(self, artifact, ctx):
                return StepOutcome(artifact, {"changed": False})

        @hookimpl
        def ecgbench_register_compressors(register):
            register(Identity)
    """


@hookspec
def ecgbench_register_devices(register: Callable[[DeviceProfile], None]) -> None:
    """Register device profiles: call ``register(profile)`` for each ``ecgbench.kinds.device.DeviceProfile`` instance.

    When it runs: when a registry is built (see the registration section); suites look profiles up by name when they are validated.

    :param register: call it once per profile instance; a profile is data (clock, throughput, memory, power) with its sources, on which the simulator predicts latency, energy and memory fit.
    :return: nothing; the return value is ignored.

    Example::

        from pathlib import Path
        from ecgbench import hookimpl
        from ecgbench.kinds.device import load_profile

        @hookimpl
        def ecgbench_register_devices(register):
            register(load_profile(Path(__file__).parent / "my_board.yaml"))
    """


@hookspec
def ecgbench_register_reporters(register: Callable[[type[Reporter]], None]) -> None:
    """Register report writers: call ``register(cls)`` for each ``ecgbench.kinds.reporter.Reporter`` subclass.

    When it runs: when a registry is built (see the registration section); reporters write after a run, or on ``ecgbench report``.

    :param register: call it once per reporter class; its ``write(results, out_dir)`` turns the stored results of one run into files (Markdown, CSV, ...) and returns their paths.
    :return: nothing; the return value is ignored.

    Example::

        from ecgbench import SingleFileReporter, hookimpl

        class CellCount(SingleFileReporter):
            name = "count"
            extension = ".txt"

            def render(self, results, out_dir):
                return f"{len(results.cells)} cells"

        @hookimpl
        def ecgbench_register_reporters(register):
            register(CellCount)
    """


@hookspec
def ecgbench_register_executors(register: Callable[[type[Executor]], None]) -> None:
    """Register executors: call ``register(cls)`` for each ``ecgbench.kinds.executor.Executor`` subclass.

    When it runs: when a registry is built (see the registration section); the suite's (or ``--executor``'s) executor is made once per run.

    :param register: call it once per executor class; its ``map(fn, jobs)`` runs cell jobs (sequentially, in processes, on a cluster) and yields each ``(job, result)`` back to the driving process, which owns the store.
    :return: nothing; the return value is ignored.

    Example::

        from ecgbench import Executor, hookimpl

        class Reversed(Executor):
            name = "reversed"
            in_process = True

            def map(self, fn, jobs):
                for job in reversed(list(jobs)):
                    yield job, fn(job)

        @hookimpl
        def ecgbench_register_executors(register):
            register(Reversed)
    """


@hookspec
def ecgbench_register_loggers(register: Callable[[type[Logger]], None]) -> None:
    """Register experiment loggers: call ``register(cls)`` for each ``ecgbench.kinds.logger.Logger`` subclass.

    When it runs: when a registry is built (see the registration section); a logger is made once per run that enables it (a suite's ``loggers:`` or ``ecgbench run --log NAME``) and receives that run's lifecycle events.

    :param register: call it once per logger class; its ``suite_started``, ``cell_finished`` and ``suite_finished`` methods get the lifecycle hooks' arguments, and a failing logger is warned about and switched off, never failing the run.
    :return: nothing; the return value is ignored.

    Example::

        from ecgbench import Logger, hookimpl

        class Printer(Logger):
            name = "print"

            def cell_finished(self, cell, run_id, status, metrics, error, artifacts):
                print(cell.title(), status, artifacts.get("onnx"))

        @hookimpl
        def ecgbench_register_loggers(register):
            register(Printer)
    """


# --- metrics -------------------------------------------------------------
# Called once when a plugin manager builds its registries, like the
# registration hooks above; the metrics' names are their paths.


@hookspec
def ecgbench_register_metrics(register: Callable[[Metric], None]) -> None:
    """Declare metrics of a cell: call ``register(metric)`` for each ``ecgbench.measure.schema.Metric``.

    When it runs: once per process when its registry is built (in the driver and in
    each worker); every metric with a ``compute`` function is then computed by
    ``measure_artifact`` after each cell's final model is measured, its value
    stored at ``plugin_metrics.<name>`` and its declaration beside it, so the
    summary table, every report and ``ecgbench compare`` (with its gate) show it.

    :param register: call it with a ``Metric`` (its ``path`` unique across plugins);
        ``compute(measurement)`` gets a ``Measurement`` (validation and test labels and
        class probabilities, class names, size figures) and returns a float or None.
    :return: nothing; the return value is ignored.

    Example::

        from ecgbench import hookimpl
        from ecgbench import Compared, Gate, Metric

        def af_recall(m):
            af = m.classes.index("A")
            positives = m.test_labels == af
            return float((m.test_predictions[positives] == af).mean()) if positives.any() else None

        @hookimpl
        def ecgbench_register_metrics(register):
            register(Metric("plugin_metrics.af_recall", "AF recall", "share of AF records classified AF.",
                            compare=Compared("AF recall", ".3f", Gate(2.0)), compute=af_recall))
    """


# --- lifecycle -------------------------------------------------------------
# Called by the runner in the driving process, for loggers and trackers.
# Return values are ignored; an exception in a lifecycle hook is logged as a
# warning and never fails the run.


@hookspec
def ecgbench_suite_started(suite: Suite, run_id: str, cells: list[CellSpec]) -> None:
    """Called once before the first cell of a run, with the validated suite, the run id and the planned cells.

    When it runs: in the driving process, once per ``run_suite`` call, after the run is recorded in
    the store and before any cell is skipped or run.

    :param suite: the validated suite (``ecgbench.config.suite.Suite``) being run.
    :param run_id: the id of this run in the result store (``ecgbench runs RUN_ID`` shows it).
    :param cells: every cell selected for this run (after ``--only``), in suite order, including those that will be skipped as already done.
    :return: nothing; the return value is ignored.

    Example::

        from ecgbench import hookimpl

        @hookimpl
        def ecgbench_suite_started(suite, run_id, cells):
            print(f"{suite.name}: run {run_id}, {len(cells)} cells")
    """


@hookspec
def ecgbench_cell_started(cell: CellSpec, run_id: str) -> None:
    """Called before a cell is run (not for cells skipped as already done).

    When it runs: in the driving process, once per cell to run, when it is marked running in the
    store: just before it runs with an in-process executor, all at dispatch time with other executors.

    :param cell: the cell about to run (``ecgbench.run.cell.CellSpec``: ids, plugin names and params, seed).
    :param run_id: the id of this run in the result store.
    :return: nothing; the return value is ignored.

    Example::

        from ecgbench import hookimpl

        @hookimpl
        def ecgbench_cell_started(cell, run_id):
            print(f"started {cell.title()}")
    """


@hookspec
def ecgbench_cell_finished(
    cell: CellSpec, run_id: str, status: str, metrics: dict[str, Any], error: str | None, artifacts: dict[str, str]
) -> None:
    """Called after a cell is stored, or when it is skipped as already done.

    When it runs: in the driving process, once per selected cell: first for the skipped cells, then
    for each cell right after its result is stored, in the order results arrive.

    :param cell: the finished cell (``ecgbench.run.cell.CellSpec``).
    :param run_id: the id of this run in the result store.
    :param status: ``done``, ``failed`` or ``skipped``.
    :param metrics: the cell's stored metrics JSON; empty when the cell failed or was skipped.
    :param error: the traceback text of a failed cell; ``None`` otherwise.
    :param artifacts: the cell's stored files by kind (``onnx``: the exported model, ``split``: its records' split); empty when it failed. An implementation may leave this parameter out (pluggy passes only the ones it names).
    :return: nothing; the return value is ignored.

    Example::

        from ecgbench import hookimpl

        @hookimpl
        def ecgbench_cell_finished(cell, run_id, status, metrics, error):
            if status == "done":
                print(cell.title(), metrics["test"]["challenge_f1"])
    """


@hookspec
def ecgbench_suite_finished(suite: Suite, run_id: str, summary: dict[str, int]) -> None:
    """Called once after the last cell, with the counts of the run.

    When it runs: in the driving process, once per ``run_suite`` call, after the last result is stored
    and the run is closed in the store; not called when the run is interrupted.

    :param suite: the validated suite (``ecgbench.config.suite.Suite``) that was run.
    :param run_id: the id of this run in the result store.
    :param summary: the cell counts ``{"done": n, "failed": n, "skipped": n}``.
    :return: nothing; the return value is ignored.

    Example::

        from ecgbench import hookimpl

        @hookimpl
        def ecgbench_suite_finished(suite, run_id, summary):
            print(f"{suite.name}: {summary['done']} done, {summary['failed']} failed")
    """
