"""Identity (issue 17): every setting that changes a result renames the cell, its baseline and
its cached steps; settings that only change how a run is carried out do not."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from ecgbench.config import suite as suite_module
from ecgbench.config.suite import load_suite
from ecgbench.run.cell import CellJob, execute_job, expand_cells, step_key

LIBRARIES = {"torch": "2.0.0", "onnxruntime": "1.20.0", "numpy": "2.0.0"}

SUITE = """
name: ident
data: {{fs_hz: 100, window_s: 4}}
training: {{epochs: 1{training}}}
matrix:
  datasets: [synthetic: {{n_records: 40}}]
  models: [dscnn: {{width: 4}}]
  compressors: [[magnitude, int8_static]]
executor: {executor}
"""


@pytest.fixture
def identity(tmp_path, registry, monkeypatch):
    """``identity(training=..., cuda=..., executor=..., **library versions)`` -> (cell id, baseline key, step key)."""
    counter = iter(range(1000))

    def make(training: str = "", cuda: bool = False, executor: str = "local", suite=None, **versions):
        monkeypatch.setattr(suite_module, "numeric_libraries", lambda: {**LIBRARIES, **versions})
        monkeypatch.setattr("torch.cuda.is_available", lambda: cuda)
        if suite is None:
            path = tmp_path / f"s{next(counter)}.yaml"
            path.write_text(textwrap.dedent(SUITE.format(training=training, executor=executor)))
            suite = load_suite(path, registry)
        (cell,) = expand_cells(suite, registry)
        return cell.cell_id, cell.baseline_key, step_key(cell, 0)

    return make


def _all_differ(a, b):
    return all(x != y for x, y in zip(a, b))


@pytest.mark.parametrize(
    "changed",
    [
        {"training": ", num_threads: 1"},  # 2 is the default
        {"cuda": True},  # device: auto resolves to CUDA
        {"torch": "2.0.1"},
        {"onnxruntime": "1.20.1"},
        {"numpy": "2.1.0"},
    ],
    ids=["threads", "device", "torch", "onnxruntime", "numpy"],
)
def test_a_setting_that_changes_results_renames_cell_baseline_and_steps(identity, changed):
    assert _all_differ(identity(), identity(**changed))


def test_amp_renames_on_cuda_only(identity):
    assert _all_differ(identity(cuda=True), identity(training=", amp: false", cuda=True))
    assert identity() == identity(training=", amp: false")  # amp is off on the CPU anyway


def test_device_enters_as_resolved(identity):
    assert identity() == identity(training=", device: cpu")  # auto on a CPU-only machine is the CPU
    assert identity(cuda=True) == identity(training=", device: cuda", cuda=True)


def test_the_results_epoch_renames_everything(identity, monkeypatch):
    before = identity()
    monkeypatch.setattr(suite_module, "RESULTS_EPOCH", suite_module.RESULTS_EPOCH + 1)
    assert _all_differ(before, identity())


def test_execution_only_settings_and_the_package_version_keep_ids(identity, monkeypatch):
    import ecgbench

    before = identity()
    assert identity(executor="{processes: {workers: 3}}") == before  # what `--workers 3` builds
    monkeypatch.setattr(ecgbench, "__version__", "9.9.9")
    assert identity() == before


def test_smoke_runs_have_their_own_ids(identity, tmp_path, registry):
    from ecgbench.cli.main import _smoke

    path = tmp_path / "normal.yaml"
    path.write_text(textwrap.dedent(SUITE.format(training="", executor="local")))
    suite = load_suite(path, registry)
    assert _all_differ(identity(suite=suite), identity(suite=_smoke(suite)))


def test_a_worker_with_other_libraries_fails_the_cell_instead_of_mislabelling_it(tmp_path, registry, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SUITE.format(training="", executor="local")))
    (cell,) = expand_cells(load_suite(path, registry), registry)
    named_for = {**cell.runtime, "libraries": {**cell.runtime["libraries"], "torch": "0.0.1"}}
    result = execute_job(CellJob(dataclasses.replace(cell, runtime=named_for), "cell", str(tmp_path), str(tmp_path)), registry)
    assert result.status == "failed"
    assert "was named for" in result.error and "0.0.1" in result.error


WINDOW_SUITE = """
name: ident
data: {{fs_hz: 100, window_s: 4}}
training: {{epochs: 1}}
measure: {{input_s: 30{measure}}}
matrix:
  datasets: [synthetic: {{n_records: 40}}]
  models: [dscnn: {{width: 4}}]
  compressors: [[magnitude, int8_static]]
  devices: [nrf52840]
"""
# The ids of WINDOW_SUITE without window settings, computed by the code before windowed deployment existed
# (RESULTS_EPOCH 1; the epoch was bumped in the same change for other measurements, so the test pins it).
IDS_BEFORE_WINDOWS = ("9dc6d8d199670f95", "9715bd967aadc0ea", "e0e3743236ada769")


def test_window_settings_rename_the_cell_only_and_unset_keep_existing_ids(identity, tmp_path, registry, monkeypatch):
    monkeypatch.setattr(suite_module, "RESULTS_EPOCH", 1)

    def ids(measure: str):
        path = tmp_path / f"w{abs(hash(measure))}.yaml"
        path.write_text(textwrap.dedent(WINDOW_SUITE.format(measure=measure)))
        return identity(suite=load_suite(path, registry))

    assert ids("") == IDS_BEFORE_WINDOWS
    assert ids(", deploy_window_s: null") == IDS_BEFORE_WINDOWS
    windowed = ids(", deploy_window_s: 10")
    assert windowed[0] != IDS_BEFORE_WINDOWS[0] and windowed[1:] == IDS_BEFORE_WINDOWS[1:]  # same baseline and steps
    assert ids(", deploy_window_s: 10, deploy_hop_s: 10, aggregate: mean_prob") == windowed  # the defaults, spelt out
    assert len({windowed, ids(", deploy_window_s: 10, aggregate: vote"), ids(", deploy_window_s: 10, deploy_hop_s: 5")}) == 3
