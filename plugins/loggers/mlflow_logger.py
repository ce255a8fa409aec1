"""``mlflow``: log every cell of a run to a local MLflow store (``pip install 'ecgbench-harness[mlflow]'``).

One MLflow run per ecgbench run (named by its run id), and nested under it
one MLflow run per cell: the cell's settings as params (dataset, model,
pipeline steps and their settings, seed, cell id, data/training/measure
settings), its numeric metrics flattened to dotted names (``test.challenge_f1``,
``test.challenge_f1_ci.low``, ``size.storage_bytes``,
``devices.nrf52840.latency_ms``, ...) and its exported ONNX model as an
artifact (``model/model.onnx``). Every run is tagged ``ecgbench.run_id``,
cells also ``ecgbench.cell_id``. A cell already done is skipped by a resumed
run, and logged only when the experiment has no finished MLflow run of it,
so resuming never duplicates a cell and a later run with ``--log mlflow``
fills in the cells an earlier one did not log.

The store is a file: by default ``$ECGBENCH_HOME/mlflow.sqlite`` with the
artifacts beside it in ``mlflow-artifacts/``, or a folder (MLflow's file
store); no server runs. MLflow is
imported when a run starts, never by ``import ecgbench``.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import logging
import math
import os
import re
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

from pydantic import Field

import ecgbench
from ecgbench import hookimpl
from ecgbench.errors import ConfigError
from ecgbench.kinds.base import PluginConfig
from ecgbench.kinds.logger import Logger

log = logging.getLogger("ecgbench")

INSTALL_HINT = "pip install 'ecgbench-harness[mlflow]'"
RUN_TAG = "ecgbench.run_id"
CELL_TAG = "ecgbench.cell_id"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag for nested runs
DEFAULT_STORE = "mlflow.sqlite"
ARTIFACTS_DIR = "mlflow-artifacts"
ARTIFACT_FOLDERS = {"onnx": "model", "split": "data"}  # artifact kind -> folder in the MLflow run
# MLflow's limits (mlflow.utils.validation): names, param values, entities per log_batch call.
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000


class MlflowLogger(Logger):
    """Each cell's settings, metrics and exported model as a nested MLflow run, in a local store."""

    name = "mlflow"
    description = f"each cell as an MLflow run in a local store (extra: {INSTALL_HINT})"

    class Config(PluginConfig):
        tracking_uri: str | None = Field(
            None,
            description="MLflow store: 'sqlite:///path/mlflow.sqlite', a folder ('file:///path/mlruns', which this logger "
            "allows with MLFLOW_ALLOW_FILE_STORE) or a server URL; null: $MLFLOW_TRACKING_URI when set, else sqlite:///$ECGBENCH_HOME/mlflow.sqlite",
        )
        experiment: str | None = Field(None, description="MLflow experiment (created when missing); null: the suite's name")
        artifact_location: str | None = Field(
            None,
            description="where a newly created experiment stores artifacts; null: mlflow-artifacts/ beside a SQLite store, MLflow's default otherwise",
        )
        log_models: bool = Field(True, description="log each cell's exported ONNX model (model/) and its split file (data/) as artifacts")
        exclude: list[str] = Field(
            default_factory=lambda: ["compute.per_layer.*", "*.confusion.*", "metric_declarations.*"],
            description="glob patterns of dotted metric names not logged (default: the per-layer tables, confusion matrices, declarations)",
        )

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self._client: Any = None
        self._experiment_id: str | None = None
        self._parent: str | None = None  # the MLflow run of this ecgbench run, while open
        self._suite = ""

    def check(self) -> None:
        if not mlflow_installed():
            raise ConfigError(f"logger 'mlflow' needs MLflow, which is not installed: {INSTALL_HINT}")

    def suite_started(self, suite, run_id, cells, home) -> None:
        from mlflow import MlflowClient

        uri = tracking_uri(self.config.tracking_uri, Path(home))
        if urllib.parse.urlparse(uri).scheme in ("", "file"):
            # MLflow 3 refuses a folder store unless this is set; asking for one here is that choice.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._client = MlflowClient(tracking_uri=uri)
        self._suite = suite.name
        name = self.config.experiment or suite.name
        self._experiment_id = self._experiment(name, self.config.artifact_location or default_artifact_location(uri))
        tags = {RUN_TAG: run_id, "ecgbench.suite": suite.name, "ecgbench.version": ecgbench.__version__}
        parent = self._client.create_run(self._experiment_id, run_name=run_id, tags=tags)
        self._parent = parent.info.run_id
        params = {"suite": suite.name, "suite_path": str(suite.path), "planned_cells": len(cells)}
        self._log_params(self._parent, params)
        self._client.log_text(self._parent, json.dumps(suite.raw, indent=2, default=str), "suite.json")
        log.info("mlflow: logging run %s to %s, experiment '%s'", run_id, uri, name)

    def cell_finished(self, cell, run_id, status, metrics, error, artifacts) -> None:
        if self._parent is None:
            return
        if status == "skipped" and self._already_logged(cell.cell_id):
            return
        tags = {
            PARENT_TAG: self._parent,
            RUN_TAG: run_id,
            CELL_TAG: cell.cell_id,
            "ecgbench.suite": self._suite,
            "ecgbench.outcome": status,
        }
        if error:
            tags["ecgbench.error"] = (error.strip().splitlines() or ["?"])[-1][:MAX_PARAM_VALUE]
        run = self._client.create_run(self._experiment_id, run_name=cell.title(), tags=tags).info.run_id
        final = "FAILED" if status == "failed" else "FINISHED"
        try:
            self._log_params(run, dict(flatten_params(cell.config())))
            self._log_metrics(run, {k: v for k, v in flatten_metrics(metrics) if not _excluded(k, self.config.exclude)})
            if error:
                self._client.log_text(run, error, "error.txt")
            if self.config.log_models:
                self._log_artifacts(run, cell, artifacts)
        except BaseException:
            final = "FAILED"  # a half-logged cell never counts as logged (see _already_logged)
            raise
        finally:
            self._client.set_terminated(run, final)

    def suite_finished(self, suite, run_id, summary) -> None:
        if self._parent is None:
            return
        self._log_metrics(self._parent, {f"cells.{k}": float(v) for k, v in summary.items()})
        self._client.set_terminated(self._parent, "FAILED" if summary.get("failed") else "FINISHED")
        self._parent = None

    def close(self) -> None:
        if self._parent is not None:  # interrupted (or suite_finished failed): end the parent run
            self._client.set_terminated(self._parent, "KILLED")
            self._parent = None

    # --- helpers ------------------------------------------------------------------------
    def _experiment(self, name: str, artifact_location: str | None) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self._client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return self._client.create_experiment(name, artifact_location=artifact_location)
            except MlflowException:  # created by a concurrent run meanwhile
                experiment = self._client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            raise ConfigError(
                f"MLflow experiment '{name}' is deleted in {self._client.tracking_uri}; restore it "
                "(mlflow experiments restore) or set loggers.mlflow.experiment to another name"
            )
        return experiment.experiment_id

    def _already_logged(self, cell_id: str) -> bool:
        """Whether the experiment holds a finished MLflow run of this cell."""
        found = self._client.search_runs(
            [self._experiment_id], filter_string=f"tags.`{CELL_TAG}` = '{cell_id}' and attributes.status = 'FINISHED'", max_results=1
        )
        return len(found) > 0

    def _log_params(self, run: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(sanitize(k), _param_value(v)) for k, v in params.items()]
        for chunk in _chunks(items, PARAMS_PER_BATCH):
            self._client.log_batch(run, params=chunk)

    def _log_metrics(self, run: str, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(sanitize(k), v, now, 0) for k, v in metrics.items()]
        for chunk in _chunks(items, METRICS_PER_BATCH):
            self._client.log_batch(run, metrics=chunk)

    def _log_artifacts(self, run: str, cell, artifacts: dict[str, str]) -> None:
        for kind, path in sorted(artifacts.items()):
            if Path(path).is_file():
                self._client.log_artifact(run, path, ARTIFACT_FOLDERS.get(kind, sanitize(kind)))
            else:
                log.warning("mlflow: %s of %s is not at %s any more; not logged", kind, cell.title(), path)


def mlflow_installed() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def tracking_uri(setting: str | None, home: Path) -> str:
    """The store to log to: the setting, else ``$MLFLOW_TRACKING_URI``, else a SQLite file in ``home``."""
    if setting:
        return setting
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    home.mkdir(parents=True, exist_ok=True)
    return "sqlite:///" + str((home / DEFAULT_STORE).resolve())


def default_artifact_location(uri: str) -> str | None:
    """``mlflow-artifacts/`` beside a SQLite store (MLflow's default would be ``./mlruns`` of the
    current directory); None, MLflow's default, for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).resolve().parent / ARTIFACTS_DIR).as_uri()


_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-. ]")


def sanitize(name: str) -> str:
    """A name MLflow accepts as a metric or param key: other characters (``~``, ``/``, ...) become ``_``."""
    return _BAD_CHARS.sub("_", name)[:MAX_KEY]


def flatten_metrics(value: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """``(dotted name, number)`` of every finite number and boolean (as 1/0) in nested dicts and lists;
    a two-number ``*_ci`` list yields ``.low`` and ``.high``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten_metrics(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        names = ("low", "high") if prefix.endswith("_ci") and len(value) == 2 else range(len(value))
        for name, item in zip(names, value):
            yield from flatten_metrics(item, f"{prefix}.{name}")
    elif isinstance(value, bool):
        yield prefix, 1.0 if value else 0.0
    elif isinstance(value, (int, float)) and math.isfinite(value):
        yield prefix, float(value)


def flatten_params(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted name, value)`` of a cell's settings: dicts and lists of dicts are walked, other lists kept whole."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten_params(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)) and any(isinstance(item, dict) for item in value):
        for index, item in enumerate(value):
            yield from flatten_params(item, f"{prefix}.{index}")
    else:
        yield prefix, value


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 3] + "..."


def _excluded(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@hookimpl
def ecgbench_register_loggers(register):
    register(MlflowLogger)
