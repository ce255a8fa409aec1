"""Fault injection on `ecgbench run`: concurrent runs on one store, kill -9 then resume, refused no-ops.

Each case asserts that no finished result is lost and that an error names its fix.
Runs happen in subprocesses driven by a small script that registers a counting
plugin: every cell start and every compress call appends a line to a file, so a
cell computed twice shows up as a line twice.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from ecgbench.cli.main import main
from ecgbench.run.store import ResultStore

COUNTING_PLUGIN = '''
import os, time
from ecgbench import hookimpl
from ecgbench.kinds.base import PluginConfig
from ecgbench.kinds.compressor import Compressor, StepOutcome


def note(line):
    with open(os.environ["COUNT_FILE"], "a") as f:
        f.write(line + "\\n")


class Counted(Compressor):
    """Changes nothing; notes each call and sleeps, so cells take a known while."""

    name = "counted"
    accepts_onnx = True

    class Config(PluginConfig):
        tag: int = 0
        sleep_s: float = 0.0

    def compress(self, artifact, ctx):
        note(f"compress {self.config.tag} {os.getpid()}")
        time.sleep(self.config.sleep_s)
        gate = os.path.join(os.path.dirname(os.environ["COUNT_FILE"]), f"hold-{self.config.tag}")
        while os.path.exists(gate):  # the test holds this cell until it removes the file
            time.sleep(0.05)
        return StepOutcome(artifact, {"changed": False})


@hookimpl
def ecgbench_register_compressors(register):
    register(Counted)


@hookimpl
def ecgbench_cell_started(cell, run_id):
    note(f"start {cell.pipeline} {os.getpid()}")
'''

DRIVER = """
import sys
import ecgbench.plugin_manager as plugin_manager
import counting_plugin

make = plugin_manager.make_plugin_manager


def with_counting(*args, **kwargs):
    pm = make(*args, **kwargs)
    pm.register(counting_plugin, name="counting")
    return pm


plugin_manager.make_plugin_manager = with_counting
from ecgbench.cli.main import main

sys.exit(main(sys.argv[1:]))
"""

N_CELLS = 4


def suite_text(sleep_s: float) -> str:
    pipelines = "\n".join(f"    - {{label: c{i}, steps: [counted: {{tag: {i}, sleep_s: {sleep_s}}}]}}" for i in range(N_CELLS))
    return f"""\
name: faults
data: {{fs_hz: 100, window_s: 5, split: {{val: 0.25, test: 0.25}}}}
training: {{epochs: 2, batch_size: 8, num_threads: 1, patience: 0}}
measure: {{bootstrap_resamples: 20, latency_repeats: 2, latency_warmup: 1, input_s: 10}}
matrix:
  datasets: [synthetic: {{n_records: 40, max_duration_s: 20}}]
  models: [dscnn: {{width: 4, blocks: 3}}]
  compressors:
{pipelines}
  devices: [nrf52840]
report: {{formats: [md, json]}}
"""


class Harness:
    """A temp folder with a suite, the counting plugin and a way to start runs on one store."""

    def __init__(self, root: Path, sleep_s: float) -> None:
        self.root = root
        (root / "counting_plugin.py").write_text(COUNTING_PLUGIN)
        (root / "driver.py").write_text(DRIVER)
        self.suite = root / "suite.yaml"
        self.suite.write_text(suite_text(sleep_s))
        self.counts = root / "counts.txt"
        self.db = root / "home" / "results.sqlite"
        self.env = {
            **os.environ,
            "ECGBENCH_HOME": str(root / "home"),
            "ECGBENCH_QUIET": "1",
            "COUNT_FILE": str(self.counts),
            "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1",
        }

    def start(self, *extra: str) -> subprocess.Popen:
        command = [sys.executable, str(self.root / "driver.py"), "run", str(self.suite), *extra]
        return subprocess.Popen(command, env=self.env, cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def run(self, *extra: str) -> subprocess.CompletedProcess:
        proc = self.start(*extra)
        out, _ = proc.communicate(timeout=300)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out)

    def lines(self, kind: str) -> Counter:
        if not self.counts.exists():
            return Counter()
        return Counter(line.split()[1] for line in self.counts.read_text().splitlines() if line.startswith(kind + " "))

    def pids(self, kind: str) -> set[str]:
        if not self.counts.exists():
            return set()
        return {line.split()[2] for line in self.counts.read_text().splitlines() if line.startswith(kind + " ")}

    def done(self) -> dict[str, tuple[float, dict]]:
        """Finished cells: pipeline -> (finished_at, metrics)."""
        try:
            db = sqlite3.connect(self.db)
            rows = db.execute("SELECT pipeline, finished_at, metrics_json FROM cells WHERE status='done'").fetchall()
            db.close()
        except sqlite3.OperationalError:  # not created yet, or busy
            return {}
        return {p: (at, m) for p, at, m in rows}

    def wait_until(self, proc: subprocess.Popen, condition, what: str, timeout_s: float = 120) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            assert proc.poll() is None, f"the run ended before {what}: {proc.stdout.read()}"
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting until {what}")


def deterministic(metrics: dict) -> dict:
    """Metrics without what depends on the host's speed (latency, seconds)."""
    out = {}
    for key, value in metrics.items():
        if key in ("latency", "host") or key.endswith("_s") or key == "seconds":
            continue
        out[key] = deterministic(value) if isinstance(value, dict) else value
    if "steps" in out:
        out["steps"] = [deterministic(s) for s in out["steps"]]
    return out


@pytest.fixture
def harness(tmp_path):
    return Harness(tmp_path, sleep_s=1.0)


@pytest.mark.slow
def test_two_concurrent_runs_compute_every_cell_exactly_once(harness):
    first, second = harness.start(), harness.start()
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert harness.lines("start") == {f"c{i}": 1 for i in range(N_CELLS)}, harness.counts.read_text()
    assert harness.lines("compress") == {str(i): 1 for i in range(N_CELLS)}
    assert len(harness.done()) == N_CELLS
    done = [int(out.split(" done, ")[0].rsplit(" ", 1)[1]) for out in outputs]
    already = [int(out.split(" already done, ")[0].rsplit(" ", 1)[1]) for out in outputs]
    assert sum(done) == N_CELLS and all(d + a == N_CELLS for d, a in zip(done, already)), outputs
    store = ResultStore.open_existing(harness.db)
    assert all(run.status == "done" and run.planned == N_CELLS for run in store.list_runs())


@pytest.mark.slow
def test_a_killed_holder_is_taken_over_by_the_run_waiting_for_it(tmp_path):
    """Run A holds c0 (gated); run B does the rest and waits; A dies (kill -9); B takes c0 over at once."""
    harness = Harness(tmp_path, sleep_s=0)
    gate = tmp_path / "hold-0"
    gate.touch()
    first = harness.start()
    harness.wait_until(first, lambda: harness.lines("compress")["0"] == 1, "run A computes c0")
    second = harness.start()
    harness.wait_until(first, lambda: len(harness.done()) == N_CELLS - 1, "run B did every other cell")
    time.sleep(0.5)  # B now waits for c0
    first.send_signal(signal.SIGKILL)
    first.wait()
    gate.unlink()
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    assert "waiting for 1 cell(s) held by run faults-" in out
    assert f"{N_CELLS} done, 0 already done, 0 failed" in out
    assert harness.lines("start") == {"c0": 2, **{f"c{i}": 1 for i in range(1, N_CELLS)}}  # only the killed cell again
    assert len(harness.done()) == N_CELLS
    killed = [run for run in ResultStore.open_existing(harness.db).list_runs() if run.status == "interrupted"]
    assert len(killed) == 1 and killed[0].summary == {"interrupted": 1, "not run": N_CELLS - 1}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The metrics of an uninterrupted run."""
    ref = Harness(tmp_path_factory.mktemp("reference"), sleep_s=0.3)
    result = ref.run()
    assert result.returncode == 0, result.stdout
    return {p: deterministic(json.loads(m)) for p, (_at, m) in ref.done().items()}


@pytest.mark.slow
@pytest.mark.parametrize("point", ["training the baseline", "in the first cell", "after two cells"])
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, reference, point):
    harness = Harness(tmp_path, sleep_s=0.3)
    proc = harness.start()
    conditions = {
        "training the baseline": lambda: any((harness.root / "home").glob("**/baselines/*")),
        "in the first cell": lambda: harness.lines("compress"),
        "after two cells": lambda: len(harness.done()) >= 2,
    }
    harness.wait_until(proc, conditions[point], point)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = harness.done()

    store = ResultStore.open_existing(harness.db)
    killed = store.list_runs()[0]
    assert killed.status == "interrupted" and killed.planned == N_CELLS
    assert killed.summary.get("done", 0) == len(before) and sum(killed.summary.values()) == N_CELLS, killed.summary
    assert main(["runs", "--db", str(harness.db)]) == 0
    store.close()

    resumed = harness.run()
    assert resumed.returncode == 0, resumed.stdout
    assert f"{N_CELLS - len(before)} done, {len(before)} already done, 0 failed" in resumed.stdout
    after = harness.done()
    for pipeline, (finished_at, _metrics) in before.items():
        assert after[pipeline][0] == finished_at  # no finished result lost or redone
    assert {p: deterministic(json.loads(m)) for p, (_at, m) in after.items()} == reference
    killed_report = ResultStore.open_existing(harness.db).run_results(killed.run_id)
    assert len(killed_report.cells) == N_CELLS  # the killed run still counts against its plan


CLI_SUITE = """
name: cli-faults
training: {epochs: 1}
matrix:
  datasets: [synthetic: {n_records: 40}]
  models: [dscnn: {width: 4, blocks: 3}]
  compressors: [dense, int8_dynamic, fp16]
"""


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ECGBENCH_QUIET", "1")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(CLI_SUITE))
    return path


def nothing_written(root: Path) -> bool:
    return not (root / "home").exists() and not (root / "reports").exists()


def test_only_matching_nothing_names_the_pipelines_and_writes_nothing(cli, tmp_path, capsys):
    assert main(["run", str(cli), "--only", "lth-ecg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--only 'lth-ecg' matches none of the 3 cells" in err
    assert "pipelines: dense, int8_dynamic, fp16" in err and "a pattern is a glob on dataset/model/pipeline/seedN" in err
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_workers_below_one_is_refused_before_anything_is_written(cli, tmp_path, capsys, workers):
    assert main(["run", str(cli), "--workers", workers]) == 2
    err = capsys.readouterr().err
    assert f"--workers {workers}: must be 1 or more" in err and err.count("\n") == 1
    assert nothing_written(tmp_path)


def test_duplicate_yaml_key_names_file_line_and_key(cli, tmp_path, capsys):
    cli.write_text(cli.read_text().replace("training: {epochs: 1}", "training: {epochs: 1, epochs: 3}"))
    for command in (["validate", str(cli)], ["run", str(cli)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"{cli}: line 3, column 23: malformed YAML: duplicate key 'epochs' (first on line 3); keep one of them" in err
    assert nothing_written(tmp_path)
