"""The ``ray`` executor: errors that say what to do, Ray's API used as documented, same results as ``local``.

The first tests stand a small fake in for the ``ray`` module, so they run
without Ray; the last one needs it (``pip install 'ecgbench-harness[ray]'``)
and skips, saying so, when it is absent.
"""

from __future__ import annotations

import socket
import sys

import pytest
from test_executors import deterministic, fake_job, run

from ecgbench.run.cell import CellResult
from ecgbench.errors import ConfigError, PluginError
from ecgbench.kinds.base import parse_config
from ecgbench_plugins.executors.ray_executor import RayExecutor


class FakeRef:
    def __init__(self, fn, job):
        self.fn, self.job = fn, job


class FakeRay:
    """The part of Ray's API the executor uses; tasks run when their result is fetched."""

    def __init__(self, initialized: bool = False):
        self.initialized = initialized
        self.calls: list = []

    def is_initialized(self):
        return self.initialized

    def init(self, **options):
        self.calls.append(("init", options))
        self.initialized = True

    def shutdown(self):
        self.calls.append(("shutdown",))
        self.initialized = False

    def remote(self, **resources):
        self.calls.append(("remote", resources))
        return lambda fn: type("Task", (), {"remote": staticmethod(lambda job: FakeRef(fn, job))})

    def wait(self, pending, num_returns):
        return pending[-num_returns:], pending[:-num_returns]  # the last submitted finishes first

    def get(self, ref):
        return ref.fn(ref.job)

    def cancel(self, ref, force=False):
        self.calls.append(("cancel", ref.job.spec.pipeline))


def echo(job):
    if job.spec.pipeline == "broken":
        raise RuntimeError("node lost")
    return CellResult(job.spec.cell_id, "done", metrics={"progress": job.progress})


@pytest.fixture
def fake_ray(monkeypatch):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    return fake


def test_cli_fields_and_registration(registry):
    cls = registry.get("executors", "ray")
    assert cls is RayExecutor
    config = parse_config(cls.Config, {"address": "auto"}, "--executor ray")  # what `--address auto` builds
    assert (config.address, config.num_cpus_per_cell, config.num_gpus_per_cell, config.local_num_cpus) == ("auto", 1.0, 0.0, None)


def test_missing_ray_names_the_extra_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, installed or not
    executor = RayExecutor()
    with pytest.raises(PluginError, match=r"pip install 'ecgbench-harness\[ray\]'"):
        list(executor.map(echo, [fake_job("dense", tmp_path)]))


def test_unreachable_cluster_names_the_address(fake_ray, tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executor = RayExecutor(RayExecutor.Config(address=f"127.0.0.1:{port}"))
    with pytest.raises(ConfigError, match=f"cannot reach the Ray cluster at address '127.0.0.1:{port}'.*ray start --head"):
        list(executor.map(echo, [fake_job("dense", tmp_path)]))
    assert fake_ray.calls == []  # refused in seconds, before Ray's minutes of retries


def test_local_instance_is_started_sized_and_stopped(fake_ray, tmp_path):
    executor = RayExecutor(RayExecutor.Config(num_cpus_per_cell=2, num_gpus_per_cell=0.5, local_num_cpus=4))
    jobs = [fake_job("dense", tmp_path, progress=True), fake_job("broken", tmp_path), fake_job("half", tmp_path)]
    results = [(job.spec.pipeline, result) for job, result in executor.map(echo, jobs)]
    executor.close()
    assert [pipeline for pipeline, _ in results] == ["half", "broken", "dense"]  # in the order Ray reports them finished
    outcome = dict(results)
    assert (outcome["broken"].status, outcome["broken"].error) == ("failed", "Ray task of this cell failed: RuntimeError: node lost")
    assert outcome["dense"].metrics == {"progress": False}
    assert fake_ray.calls[0] == ("init", {"num_cpus": 4, "include_dashboard": False, "logging_level": 30})
    assert fake_ray.calls[1] == ("remote", {"num_cpus": 2.0, "num_gpus": 0.5})
    assert fake_ray.calls[-1] == ("shutdown",)


def test_a_session_the_caller_started_is_left_running(fake_ray, tmp_path):
    fake_ray.initialized = True
    executor = RayExecutor(RayExecutor.Config(address="auto"))
    assert [r.status for _, r in executor.map(echo, [fake_job("dense", tmp_path)])] == ["done"]
    executor.close()
    assert [call[0] for call in fake_ray.calls] == ["remote"]
    assert fake_ray.initialized


def test_an_interrupted_map_cancels_the_cells_still_pending(fake_ray, tmp_path):
    executor = RayExecutor()
    results = executor.map(echo, [fake_job(p, tmp_path) for p in ("a", "b", "c")])
    next(results)
    results.close()
    executor.close()
    assert ("cancel", "a") in fake_ray.calls and ("cancel", "b") in fake_ray.calls


def test_local_ray_stores_the_same_results_as_local(tmp_path, plugin_manager, registry):
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'ecgbench-harness[ray]' to run the Ray executor test")
    local, _, _ = run(tmp_path / "local", registry, plugin_manager, "local")
    on_ray, summary, _ = run(tmp_path / "ray", registry, plugin_manager, {"ray": {"local_num_cpus": 2}})

    assert (summary.done, summary.failed) == (4, 2)
    for key in [("dense", 0), ("half", 0), ("dense", 1), ("half", 1)]:
        assert on_ray[key].status == "done"
        assert deterministic(on_ray[key].metrics) == deterministic(local[key].metrics)
    assert on_ray["half", 0].metrics["baseline"]["train_s"] == on_ray["dense", 0].metrics["baseline"]["train_s"]  # one baseline
    assert "CompressionError: structured pruning cannot remove 95%" in on_ray["impossible", 0].error
    assert not ray.is_initialized()  # the executor stopped the instance it started
