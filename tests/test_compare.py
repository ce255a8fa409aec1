"""``ecgbench compare``: matching cells of two runs, thresholds and exit codes."""

from __future__ import annotations

import argparse
import json

import pytest

from ecgbench.cli.compare import parse_percent, register
from ecgbench.results.compare import EXIT_MISSING, EXIT_OK, EXIT_REGRESSION, compare_runs, load_results
from ecgbench.errors import ConfigError
from ecgbench.run.store import ResultStore
from ecgbench_plugins.reporters.tabular import JsonReporter

VERSION = "0.1.0"


def metrics(f1: float, storage: int, host_ms: float = 2.0) -> dict:
    return {
        "test": {"challenge_f1": f1, "challenge_f1_ci": [f1 - 0.05, f1 + 0.05]},
        "size": {"storage_bytes": storage, "storage_format": "sparse_zstd"},
        "latency": {"host_median_ms": host_ms},
    }


BASE = {("dense", 0): metrics(0.800, 40000), ("magnitude", 0): metrics(0.790, 12000), ("magnitude", 1): metrics(0.810, 13000)}


def store_run(store: ResultStore, suite: str, cells: dict, failed: dict | None = None) -> str:
    """A finished run of ``cells`` ({(pipeline, seed): metrics}) and ``failed`` ({(pipeline, seed): error})."""
    run_id = store.start_run(suite, f"suites/{suite}.yaml", {"name": suite}, VERSION)
    entries = [(k, "done", m, None) for k, m in cells.items()] + [(k, "failed", {}, e) for k, e in (failed or {}).items()]
    for position, ((pipeline, seed), status, m, error) in enumerate(entries):
        cell_id = f"{suite}-{pipeline}-{seed}"  # distinct per run: cells are stored by content id
        store.mark_running(run_id, position, cell_id, {"dataset": "synthetic", "model": "hannun34", "pipeline": pipeline, "seed": seed}, {}, VERSION)
        store.finish_cell(run_id, cell_id, status, m, {}, {}, error)
    store.finish_run(run_id, "done", {})
    return run_id


def run_compare(argv: list[str], capsys) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["compare", *argv])
    code = args.func(args)
    return code, capsys.readouterr().out


@pytest.fixture
def store(tmp_path):
    return ResultStore(tmp_path / "r.sqlite")


def test_improvement_exits_0(store, capsys):
    base = store_run(store, "base", BASE)
    better = {**BASE, ("magnitude", 0): metrics(0.820, 11000), ("dense", 0): metrics(0.796, 42000)}  # -0.4 pts, +5.0 %: within
    current = store_run(store, "current", better)
    code, out = run_compare([base, current, "--db", str(store.path)], capsys)
    assert code == EXIT_OK == 0
    row = next(line for line in out.splitlines() if line.startswith("magnitude/seed0 "))
    assert "0.790 -> 0.820" in row and "+3.00" in row and row.endswith(" ok")
    dense = next(line for line in out.splitlines() if line.startswith("dense/seed0 "))
    assert "40.0 -> 42.0" in dense and "+5.0%" in dense  # storage kB
    assert "cells of synthetic/hannun34; each figure: base -> current" in out and "1 kB = 1000 bytes" in out
    assert out.strip().endswith("exit 0")


def test_f1_drop_over_the_threshold_exits_1(store, capsys):
    base = store_run(store, "base", BASE)
    current = store_run(store, "current", {**BASE, ("magnitude", 1): metrics(0.804, 13000)})  # -0.6 pts
    code, out = run_compare([base, current, "--db", str(store.path)], capsys)
    assert code == EXIT_REGRESSION == 1
    assert "regression: F1 dropped 0.60 pts > 0.5" in out
    # the same drop passes a looser threshold
    assert run_compare([base, current, "--db", str(store.path), "--max-f1-drop", "0.6"], capsys)[0] == EXIT_OK


def test_size_growth_over_the_threshold_exits_1(store, capsys):
    base = store_run(store, "base", BASE)
    current = store_run(store, "current", {**BASE, ("dense", 0): metrics(0.800, 42400)})  # +6 %
    code, out = run_compare([base, current, "--db", str(store.path), "--json"], capsys)
    assert code == EXIT_REGRESSION
    doc = json.loads(out)
    [dense] = [c for c in doc["cells"] if c["pipeline"] == "dense"]
    assert dense["verdict"] == "regression" and dense["size_growth"] == pytest.approx(0.06)
    assert doc["counts"] == {"ok": 2, "regression": 1, "missing": 0, "new": 0, "base-failed": 0}
    assert run_compare([base, current, "--db", str(store.path), "--max-size-growth", "10%"], capsys)[0] == EXIT_OK


def test_missing_or_failed_cells_exit_3(store, capsys):
    base = store_run(store, "base", BASE)
    partial = {k: v for k, v in BASE.items() if k != ("magnitude", 1)}
    failed = {("dense", 0): "Traceback...\nCompressionError: boom"}
    current = store_run(store, "current", {k: v for k, v in partial.items() if k != ("dense", 0)}, failed)
    code, out = run_compare([base, current, "--db", str(store.path)], capsys)
    assert code == EXIT_MISSING == 3
    assert "missing: failed in current: CompressionError: boom" in out
    assert "synthetic/hannun34/magnitude/seed1" in out and "missing in current" in out


LONG = "magnitude-global-unstructured-sparsity0.95-finetune_epochs12"


def test_output_fits_100_columns_with_long_labels_told_apart(store, capsys):
    labels = [LONG + "-lr1e-3", LONG + "-lr1e-4", "lth_ecg-max_f1_drop_points3-initial_rate0.5+int8_static", "dense"]
    base = store_run(store, "base", {(label, 0): metrics(0.8, 40000) for label in labels})
    worse = {(label, 0): metrics(0.7, 90000) for label in labels}
    current = store_run(store, "current", worse)
    code, out = run_compare([base, current, "--db", str(store.path)], capsys)
    assert code == EXIT_REGRESSION  # the verdict does not depend on the layout
    assert max(len(line) for line in out.splitlines()) <= 100, out
    names = [line.split()[0] for line in out.splitlines() if line.endswith(" regression")]
    assert len(names) == 4 and len(set(names)) == 4  # cut, still distinct
    assert any("…" in name for name in names) and "dense" in names
    for label in labels:  # each problem names its cell in full
        assert f"synthetic/hannun34/{label}/seed0 regression: F1 dropped 10.00 pts > 0.5" in out.replace("\n    ", " ")


def test_missing_takes_precedence_over_regression(store):
    base = store_run(store, "base", BASE)
    current = store_run(store, "current", {("dense", 0): metrics(0.5, 40000)})
    comparison = compare_runs(store.run_results(base), store.run_results(current))
    assert comparison.count("regression") == 1 and comparison.count("missing") == 2
    assert comparison.exit_code == EXIT_MISSING


def test_new_cells_and_cells_failed_in_base_do_not_fail(store):
    base = store_run(store, "base", {("dense", 0): BASE[("dense", 0)]}, {("int8", 0): "ValueError: x"})
    current = store_run(store, "current", {**BASE})
    comparison = compare_runs(store.run_results(base), store.run_results(current))
    assert {d.pipeline: d.verdict for d in comparison.diffs if d.seed == 0} == {"dense": "ok", "int8": "base-failed", "magnitude": "new"}
    assert comparison.exit_code == EXIT_OK


def test_a_json_report_stands_in_for_a_run(store, tmp_path, capsys):
    base = store_run(store, "base", BASE)
    JsonReporter().write(store.run_results(base), tmp_path / "base-report")
    current = store_run(store, "current", {**BASE, ("dense", 0): metrics(0.780, 40000)})
    code, out = run_compare([str(tmp_path / "base-report" / "results.json"), current, "--db", str(store.path)], capsys)
    assert code == EXIT_REGRESSION and "F1 dropped 2.00 pts" in out
    assert load_results(str(tmp_path / "base-report"), store.path).run.run_id == base  # the folder works too


def test_an_older_json_report_with_deployable_bytes_is_gated_on_storage_bytes(store, tmp_path, capsys):
    base = store_run(store, "base", BASE)
    JsonReporter().write(store.run_results(base), tmp_path / "base-report")
    path = tmp_path / "base-report" / "results.json"
    doc = json.loads(path.read_text())
    for cell in doc["cells"]:  # as a version before the rename wrote it
        size = cell["metrics"]["size"]
        size["deployable_bytes"], size["deployable_format"] = size.pop("storage_bytes"), size.pop("storage_format")
    path.write_text(json.dumps(doc))
    current = store_run(store, "current", {**BASE, ("dense", 0): metrics(0.800, 42400)})  # +6 %
    code, out = run_compare([str(path), current, "--db", str(store.path)], capsys)
    assert code == EXIT_REGRESSION and "40.0 -> 42.4" in out


def test_unknown_refs_are_config_errors_exit_2(store, tmp_path):
    with pytest.raises(ConfigError, match="ecgbench runs"):
        load_results("no-such-run", store.path)
    with pytest.raises(ConfigError, match="no result store"):
        load_results("no-such-run", tmp_path / "absent.sqlite")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not an ecgbench JSON report"):
        load_results(str(tmp_path / "bad.json"), store.path)

    from ecgbench.cli.main import main

    assert main(["compare", "no-such-run", "other", "--db", str(store.path)]) == 2


def test_percentages_parse_with_or_without_sign():
    assert parse_percent("5%") == pytest.approx(0.05) and parse_percent("2.5") == pytest.approx(0.025)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_percent("five")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_percent("-1%")


def test_threshold_option_parses_points_or_percent_and_names_known_metrics(store):
    from ecgbench.cli.compare import parse_threshold

    assert parse_threshold("plugin_metrics.x=2") == ("plugin_metrics.x", 2.0)
    assert parse_threshold("size.storage_bytes=10%") == ("size.storage_bytes", pytest.approx(0.10))
    with pytest.raises(argparse.ArgumentTypeError, match="METRIC=VALUE"):
        parse_threshold("2")
    base = store_run(store, "base", BASE)
    with pytest.raises(ConfigError, match="latency.host_median_ms: not a gated metric"):
        compare_runs(store.run_results(base), store.run_results(base), thresholds={"latency.host_median_ms": 1.0})
    # a per-path threshold overrides the CLI default of a built-in gate
    current = store_run(store, "current", {**BASE, ("dense", 0): metrics(0.790, 40000)})
    comparison = compare_runs(store.run_results(base), store.run_results(current), thresholds={"test.challenge_f1": 1.5})
    assert comparison.exit_code == EXIT_OK and comparison.thresholds["test.challenge_f1"] == 1.5
