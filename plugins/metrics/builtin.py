"""The built-in metrics (declared in :mod:`ecgbench.measure.builtin_metrics`), registered like a plugin's."""

from __future__ import annotations

from ecgbench import hookimpl
from ecgbench.measure.builtin_metrics import BUILTIN_METRICS


@hookimpl
def ecgbench_register_metrics(register):
    for metric in BUILTIN_METRICS:
        register(metric)
