"""The ``processes`` executor: parallel workers, results as they finish, crashes isolated, same results as ``local``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ecgbench.run.cell import CellJob, CellResult, CellSpec
from ecgbench.config.suite import build_suite
from ecgbench.kinds.base import parse_config
from ecgbench.run.runner import run_suite
from ecgbench.run.store import ResultStore
from ecgbench_plugins.executors.processes import WORKER_DIED, ProcessPoolCellExecutor

# A real suite on the built-ins, as small as the plugins allow: two seeds, so two
# tiny DS-CNN baselines (trained side by side in stage 1), each shared by three
# pipelines, the last of which cannot succeed (removing 95 % of the parameters
# while touching at most 10 % of the channels).
SUITE = {
    "name": "executors",
    "data": {"fs_hz": 100, "window_s": 4, "split": {"val": 0.25, "test": 0.25}},
    "training": {"epochs": 2, "batch_size": 8, "num_threads": 1, "patience": 0, "device": "cpu"},
    "measure": {"bootstrap_resamples": 50, "latency_repeats": 3, "latency_warmup": 1, "input_s": 4},
    "matrix": {
        "datasets": [{"synthetic": {"n_records": 48, "min_duration_s": 9, "max_duration_s": 12}}],
        "models": [{"dscnn": {"width": 4, "blocks": 3}}],
        "compressors": [
            "dense",
            {"label": "half", "steps": [{"magnitude": {"sparsity": 0.5, "finetune_epochs": 1}}]},
            {"label": "impossible", "steps": [{"structured": {"ratio": 0.95, "max_channel_ratio": 0.1, "finetune_epochs": 0}}]},
        ],
        "seeds": [0, 1],
    },
}


def fake_job(pipeline: str, home: Path, progress: bool = False) -> CellJob:
    spec = CellSpec(
        cell_id=f"id-{pipeline}",
        position=0,
        dataset={"name": "d"},
        model={"name": "m"},
        pipeline=pipeline,
        steps=(),
        seed=0,
        data={},
        training={},
        measure={},
        devices=(),
        baseline_key="b",
    )
    return CellJob(spec, "cell", str(home), str(home), progress)


def describe_worker(job: CellJob) -> CellResult:
    """Runs in a worker: acts out ``job.spec.pipeline`` and says where and how it ran."""
    import torch

    marker = Path(job.home) / "fast.done"
    action = job.spec.pipeline
    if action == "crash":
        os._exit(7)  # a worker killed outright, as by the OOM killer
    if action == "raise":
        raise RuntimeError("fn broke its promise to return a result")
    if action == "fast":
        marker.write_text("")
    if action == "after-fast":  # finishes only once 'fast' has, so both must run at the same time
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
    if action == "hang":
        time.sleep(120)
    facts = {
        "pid": os.getpid(),
        "torch_threads": torch.get_num_threads(),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "progress": job.progress,
        "saw_fast": marker.exists(),
    }
    return CellResult(job.spec.cell_id, "done", metrics=facts)


def test_cli_fields_and_registration(registry):
    cls = registry.get("executors", "processes")
    assert cls is ProcessPoolCellExecutor
    config = parse_config(cls.Config, {"workers": 3}, "--executor processes")  # what `--workers 3` builds
    assert (config.workers, config.threads_per_worker) == (3, 1)


@pytest.mark.slow
def test_jobs_run_in_parallel_workers_and_come_back_as_they_finish(tmp_path):
    executor = ProcessPoolCellExecutor(ProcessPoolCellExecutor.Config(workers=2))
    jobs = [fake_job("after-fast", tmp_path, progress=True), fake_job("fast", tmp_path, progress=True)]
    try:
        results = list(executor.map(describe_worker, jobs))
    finally:
        executor.close()
    assert [job.spec.pipeline for job, _ in results] == ["fast", "after-fast"]  # completion order, not submission order
    facts = {job.spec.pipeline: result.metrics for job, result in results}
    assert facts["after-fast"]["saw_fast"] is True
    assert facts["fast"]["pid"] != facts["after-fast"]["pid"]
    assert os.getpid() not in {facts["fast"]["pid"], facts["after-fast"]["pid"]}
    assert {f["torch_threads"] for f in facts.values()} == {1}
    assert {f["omp"] for f in facts.values()} == {"1"}
    assert {f["progress"] for f in facts.values()} == {False}  # parallel bars would garble the terminal
    assert results[0][0] is jobs[1]  # the driver gets its own job object back


@pytest.mark.slow
def test_a_dead_worker_fails_its_cells_and_the_next_stage_gets_a_fresh_pool(tmp_path):
    executor = ProcessPoolCellExecutor(ProcessPoolCellExecutor.Config(workers=1))
    try:
        jobs = [fake_job(p, tmp_path) for p in ("raise", "ok", "crash", "queued")]
        first = {job.spec.pipeline: result for job, result in executor.map(describe_worker, jobs)}
        second = [result for _, result in executor.map(describe_worker, [fake_job("later", tmp_path)])]
    finally:
        executor.close()
    assert first["raise"].status == "failed"
    assert "RuntimeError: fn broke its promise to return a result" in first["raise"].error
    assert first["ok"].status == "done"
    assert (first["crash"].status, first["crash"].error) == ("failed", WORKER_DIED)
    assert (first["queued"].status, first["queued"].error) == ("failed", WORKER_DIED)  # lost with the pool, redone next run
    assert second[0].status == "done"
    assert second[0].metrics["pid"] != first["ok"].metrics["pid"]


@pytest.mark.slow
def test_close_after_an_interrupted_map_stops_running_cells(tmp_path):
    executor = ProcessPoolCellExecutor(ProcessPoolCellExecutor.Config(workers=2))
    results = executor.map(describe_worker, [fake_job("fast", tmp_path), fake_job("hang", tmp_path)])
    job, _ = next(results)
    assert job.spec.pipeline == "fast"
    results.close()  # the driver stops iterating, as on Ctrl-C
    start = time.monotonic()
    executor.close()
    assert time.monotonic() - start < 10  # 'hang' sleeps 120 s: close() did not wait for it


def deterministic(metrics: dict) -> dict:
    """What two runs with the same seeds must agree on (latency and wall-clock times excluded)."""
    return {
        "test": metrics["test"],  # challenge F1, per-class F1, confusion matrix, bootstrap interval
        "val": metrics["val"],
        "size": metrics["size"],
        "effective_macs": metrics["compute"]["effective_macs"],
        "delta_f1_points": metrics["delta_f1_points"],
        "baseline": {k: v for k, v in metrics["baseline"].items() if k != "train_s"},
    }


def run(tmp_path: Path, registry, pm, executor: str | dict) -> tuple[dict, object, ResultStore]:
    suite = build_suite({**SUITE, "executor": executor}, Path("executors.yaml"), registry, {})
    store = ResultStore(tmp_path / "results.sqlite")
    summary = run_suite(suite, registry, pm, store, tmp_path, progress=False)
    cells = {(cell.pipeline, cell.seed): cell for cell in store.run_results(summary.run_id).cells}
    return cells, summary, store


@pytest.mark.slow
def test_process_pool_stores_the_same_results_as_local(tmp_path, plugin_manager, registry):
    local, local_summary, _ = run(tmp_path / "local", registry, plugin_manager, "local")
    pooled, pooled_summary, store = run(tmp_path / "pool", registry, plugin_manager, {"processes": {"workers": 2}})

    assert (local_summary.done, local_summary.failed) == (4, 2)
    assert (pooled_summary.done, pooled_summary.failed) == (4, 2)
    for key in [("dense", 0), ("half", 0), ("dense", 1), ("half", 1)]:
        assert pooled[key].status == "done"
        assert deterministic(pooled[key].metrics) == deterministic(local[key].metrics)
    assert pooled["dense", 0].metrics["test"] != pooled["dense", 1].metrics["test"]  # the seeds did differ
    for seed in (0, 1):
        dense, pruned = pooled["dense", seed].metrics, pooled["half", seed].metrics
        assert pruned["size"]["nonzero_params"] < dense["size"]["nonzero_params"]
        # Both cells read the baseline stage 1 trained: the same recorded training time.
        assert pruned["baseline"]["train_s"] == dense["baseline"]["train_s"]
        failed = pooled["impossible", seed]
        assert failed.status == "failed"
        assert "Traceback" in failed.error and "CompressionError: structured pruning cannot remove 95%" in failed.error
    assert len(list((tmp_path / "pool" / "baselines").iterdir())) == 2  # one cache entry per seed

    suite = build_suite({**SUITE, "executor": {"processes": {"workers": 2}}}, Path("executors.yaml"), registry, {})
    again = run_suite(suite, registry, plugin_manager, store, tmp_path / "pool", progress=False)
    assert (again.done, again.failed, again.skipped) == (0, 2, 4)  # resume: only the failed cells are redone
