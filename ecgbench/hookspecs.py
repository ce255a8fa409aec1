"""The whole plugin API of ecgbench: the markers and every hook.

Built-in plugins (``ecgbench_plugins``) implement these hooks exactly as a
third-party package does. A plugin module marks its functions with
``@ecgbench.hookimpl``; registration hooks receive a ``register`` callback
that the plugin calls once per thing it provides (the shape of ``llm``)::

    from ecgbench import hookimpl

    @hookimpl
    def ecgbench_register_compressors(register):
        register(MyCompressor)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from ecgbench.measure.schema import Metric

PROJECT_NAME = "ecgbench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- registration -------------------------------------------------------------
# Called once when a plugin manager builds its registries (``ecgbench.registry``).
# ``register(thing)`` accepts a class with a unique ``name`` attribute (a device
# profile is registered as an instance). Two plugins registering the same name
# is an error that names both. The hooks return nothing.


@hookspec
def ecgbench_register_datasets(register: Callable[[type], None]) -> None:
    """Register dataset plugins: call ``register(cls)`` for each ``ecgbench.kinds.dataset.Dataset`` subclass.

    A dataset yields labelled single-lead records (``Record``); the core turns
    them into cached, preprocessed train/val/test splits.
    """


@hookspec
def ecgbench_register_models(register: Callable[[type], None]) -> None:
    """Register model families: call ``register(cls)`` for each ``ecgbench.kinds.model.ModelFamily`` subclass.

    A model family builds a ``torch.nn.Module`` mapping ``[batch, 1, samples]``
    to ``[batch, n_classes]`` logits for any input length.
    """


@hookspec
def ecgbench_register_compressors(register: Callable[[type], None]) -> None:
    """Register compression strategies: call ``register(cls)`` for each ``ecgbench.kinds.compressor.Compressor`` subclass.

    A compressor takes a ``ModelArtifact`` and a ``CompressionContext`` (the
    training API, the dense baseline's validation score) and returns a
    ``StepOutcome``: the compressed artifact plus a JSON record of what it did.
    """


@hookspec
def ecgbench_register_devices(register: Callable[[Any], None]) -> None:
    """Register device profiles: call ``register(profile)`` for each ``ecgbench.kinds.device.DeviceProfile`` instance.

    Profiles are data (clock, throughput, memory, power) with their sources;
    the simulator predicts latency, energy and memory fit on them.
    """


@hookspec
def ecgbench_register_reporters(register: Callable[[type], None]) -> None:
    """Register report writers: call ``register(cls)`` for each ``ecgbench.kinds.reporter.Reporter`` subclass.

    A reporter turns the stored results of one run into files (Markdown, CSV, ...).
    """


@hookspec
def ecgbench_register_executors(register: Callable[[type], None]) -> None:
    """Register executors: call ``register(cls)`` for each ``ecgbench.kinds.executor.Executor`` subclass.

    An executor runs cell jobs (sequentially, in processes, on a cluster) and
    hands each result back to the driving process, which owns the store.
    """


# --- metrics -------------------------------------------------------------
# Called once when a plugin manager builds its registries, like the
# registration hooks above; the metrics' names are their paths.


@hookspec
def ecgbench_register_metrics(register: Callable[["Metric"], None]) -> None:
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
        from ecgbench.measure.schema import Compared, Gate, Metric

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
def ecgbench_suite_started(suite: Any, run_id: str, cells: list) -> None:
    """Called once before the first cell of a run, with the validated suite, the run id and the planned cells."""


@hookspec
def ecgbench_cell_started(cell: Any, run_id: str) -> None:
    """Called before a cell is run (not for cells skipped as already done)."""


@hookspec
def ecgbench_cell_finished(cell: Any, run_id: str, status: str, metrics: dict, error: str | None) -> None:
    """Called after a cell is stored; ``status`` is ``done``, ``failed`` or ``skipped``; ``metrics`` is the stored JSON (empty if failed)."""


@hookspec
def ecgbench_suite_finished(suite: Any, run_id: str, summary: dict) -> None:
    """Called once after the last cell, with counts ``{"done": n, "failed": n, "skipped": n}``."""
