"""The command line end to end on small synthetic suites: run, resume after a kill, runs, report, plugins."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import ecgbench
from ecgbench.cli.main import main

SUITE = """
name: cli-test
data: {fs_hz: 100, window_s: 5, split: {val: 0.25, test: 0.25}}
training: {epochs: 2, batch_size: 8, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 50, latency_repeats: 2, latency_warmup: 1, input_s: 10}
matrix:
  datasets: [synthetic: {n_records: 40, max_duration_s: 20}]
  models: [dscnn: {width: 4, blocks: 3}]
  compressors:
    - dense
    - magnitude: {sparsity: 0.5, finetune_epochs: 1}
    - magnitude: {sparsity: 0.7, finetune_epochs: 1}
    - int8_dynamic
  devices: [nrf52840]
  seeds: [0]
report: {formats: [md, json, models]}
"""


@pytest.fixture
def suite(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ECGBENCH_QUIET", "1")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE))
    return path


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert ecgbench.__version__ in capsys.readouterr().out


@pytest.mark.slow
def test_run_twice_then_runs_and_report(suite, tmp_path, capsys):
    assert main(["run", str(suite)]) == 0
    out = capsys.readouterr().out
    assert "4 done, 0 already done, 0 failed" in out
    report = (tmp_path / "reports" / "cli-test" / "report.md").read_text()
    assert "| magnitude-s0.5-fe1 |" in report
    models = tmp_path / "reports" / "cli-test" / "models"
    assert (models / "dense.onnx").exists() and (models / "int8_dynamic.onnx").exists()
    from ecgbench.train.export import read_metadata

    meta = read_metadata(models / "int8_dynamic.onnx")
    assert meta["pipeline"] == "int8_dynamic" and meta["preprocessing"]["fs_hz"] == 100

    started = time.perf_counter()
    assert main(["run", str(suite)]) == 0
    assert "0 done, 4 already done, 0 failed" in capsys.readouterr().out
    assert time.perf_counter() - started < 10  # nothing retrained

    assert main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("cli-test-") == 2 and "done 0, failed 0, skipped 4 of 4" in listing, listing
    assert main(["runs", "cli-test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["pipeline", "seed", "status", "test", "F1", "compress", "kB", "time", "cell"]
    cells = lines[3:7]
    assert [line.split()[:3] for line in cells] == [[p, "0", "skipped"] for p in ("dense", "magnitude-s0.5-fe1", "magnitude-s0.7-fe1", "int8_dynamic")]
    assert all(float(line.split()[3]) > 0 for line in cells) and max(len(line) for line in lines[1:]) <= 100
    assert main(["report", "cli-test", "--format", "csv", "--out", str(tmp_path / "r2")]) == 0
    assert (tmp_path / "r2" / "results.csv").exists()
    assert main(["report", "cli-test", "--format", "pdf"]) == 2
    assert "unknown reporter 'pdf'" in capsys.readouterr().err


def test_models_too_big_as_onnx_are_written_in_their_smallest_format(suite, tmp_path, capsys):
    from ecgbench.measure.sizing import FORMAT_SUFFIXES, canonical_zeros, load_any

    assert main(["run", str(suite)]) == 0
    models = tmp_path / "reports" / "cli-test" / "models"
    pruned_onnx = models / "magnitude-s0.7-fe1.onnx"
    limit = pruned_onnx.stat().st_size - 1
    out = tmp_path / "small"
    assert main(["report", "cli-test", "--format", "models", "--set", f"models.max_bytes={limit}", "--out", str(out)]) == 0
    index = {e["pipeline"]: e for e in json.loads((out / "models" / "index.json").read_text())["models"]}
    pruned = index["magnitude-s0.7-fe1"]
    assert pruned["steps"] == [{"name": "magnitude", "params": {"sparsity": 0.7, "finetune_epochs": 1}}]  # every setting
    assert pruned["format"].startswith("sparse") and pruned["bytes"] <= limit
    assert pruned["file"] == "magnitude-s0.7-fe1" + FORMAT_SUFFIXES[pruned["format"]]
    assert load_any((out / "models" / pruned["file"]).read_bytes()) == canonical_zeros(pruned_onnx.read_bytes())
    for entry in index.values():  # plain ONNX whenever it fits
        original = models / (entry["pipeline"] + ".onnx")
        assert (entry["format"] == "onnx") == (original.stat().st_size <= limit), entry

    capsys.readouterr()
    assert main(["report", "cli-test", "--format", "models", "--set", "models.max_bytes=1", "--out", str(out)]) == 0
    assert all("not_copied" in e for e in json.loads((out / "models" / "index.json").read_text())["models"])
    assert main(["report", "cli-test", "--format", "models", "--set", "models.maxbytes=1"]) == 2
    assert "unknown key 'maxbytes'; did you mean 'max_bytes'?" in capsys.readouterr().err
    assert main(["report", "cli-test", "--format", "md", "--set", "models.max_bytes=1"]) == 2
    assert "'models' is not among --format md" in capsys.readouterr().err


def test_plugins_lists_builtins_and_what_they_register(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "ecgbench_plugins.compressors.lottery  [builtin]" in out
    assert "compressor lth, compressor lth_ecg" in out


@pytest.mark.slow
def test_killed_run_resumes_with_only_the_missing_cells(suite, tmp_path):
    """SIGKILL mid-way loses at most the cell in progress; the rerun does only what is missing."""
    env = {**os.environ, "ECGBENCH_HOME": str(tmp_path / "home"), "ECGBENCH_QUIET": "1"}
    command = [sys.executable, "-m", "ecgbench.cli.main", "run", str(suite)]
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    db = tmp_path / "home" / "results.sqlite"
    deadline = time.time() + 120
    done_before = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                done_before = sqlite3.connect(db).execute("SELECT COUNT(*) FROM cells WHERE status='done'").fetchone()[0]
            except sqlite3.OperationalError:
                pass
            if done_before >= 1:
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sqlite3.connect(db).execute("SELECT COUNT(*) FROM cells WHERE status='done'").fetchone()[0]
    assert 1 <= done_before < 4

    rerun = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{4 - done_before} done, {done_before} already done, 0 failed" in rerun.stdout


def test_smoke_trains_one_epoch_of_two_batches(suite, tmp_path, capsys, monkeypatch):
    import ecgbench.cli.main

    monkeypatch.setattr(ecgbench.cli.main, "SMOKE_EVAL_RECORDS", 3)  # fewer than the suite's test records
    assert main(["run", str(suite), "--smoke", "--only", "dense"]) == 0
    assert "1 done" in capsys.readouterr().out
    from ecgbench.run.store import ResultStore

    results = ResultStore(tmp_path / "home" / "results.sqlite").run_results("cli-test-smoke")
    (cell,) = results.cells
    assert cell.config["training"]["epochs"] == 1 and cell.config["training"]["max_batches_per_epoch"] == 2
    assert cell.config["training"]["max_eval_records"] == 3
    assert cell.metrics["baseline"]["epochs"] == 1
    assert cell.metrics["test"]["n_records"] == np.sum(cell.metrics["test"]["confusion"]) == 3 and cell.metrics["data"]["n_test"] > 3
    assert (tmp_path / "home" / "reports" / "cli-test-smoke" / "report.md").exists()


@pytest.mark.parametrize("command", [["runs"], ["runs", "cli-test"], ["report", "cli-test"]])
def test_read_only_commands_on_a_missing_store_create_nothing(suite, tmp_path, capsys, command):
    typo = tmp_path / "typo.sqlite"
    assert main([*command, "--db", str(typo)]) == 2
    err = capsys.readouterr().err
    assert f"no result store at {typo}; pass the --db that `ecgbench run` wrote" in err and err.count("\n") == 1
    assert not typo.exists() and not (tmp_path / "home").exists()
    assert main(command) == 2  # the default store, under $ECGBENCH_HOME, is not created either
    assert not (tmp_path / "home").exists()


def test_plugins_verbose_says_what_each_thing_does(capsys):
    assert main(["plugins", "-v"]) == 0
    out = capsys.readouterr().out
    assert "compressor dense: no compression: the trained dense baseline" in out  # its description
    assert "compressor lth_ecg: LTH-ECG goal-driven winning-ticket search" in out  # its docstring's first line
