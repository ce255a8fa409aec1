"""``ecgbench report RUN1 RUN2 ...``: stored runs of one suite merged by cell id, and the seeds shown across them."""

from __future__ import annotations

import json
import math
import textwrap

import pytest

from ecgbench.cli.main import main
from ecgbench.errors import ConfigError
from ecgbench.results.merge import merge_runs, parse_run_ref
from ecgbench.results.seeds import seed_document, seed_table
from ecgbench.run.store import ResultStore

VERSION = "0.1.0"


def metrics(f1: float, delta: float, ci: tuple[float, float] | None = None) -> dict:
    out = {
        "test": {"challenge_f1": f1, "challenge_f1_ci": [f1 - 0.03, f1 + 0.03]},
        "delta_f1_points": delta,
        "size": {"compression_ratio": 1.0 if delta == 0 else 5.0, "storage_bytes": 40000 if delta == 0 else 9000},
        "baseline": {"test_challenge_f1": f1 - delta / 100},
    }
    if ci is not None:
        out["delta_f1_ci_points"] = list(ci)
    return out


def store_run(path, seed_cells, suite_name="quick", epochs=2, status="done"):
    """One finished run in the store at ``path`` of ``(pipeline, seed, metrics)`` cells; ids are ``pipeline/seedN``
    (the same experiment has the same id in every run, as content-hashed ids do); returns (store, run_id)."""
    store = ResultStore(path)
    run_id = store.start_run(suite_name, f"suites/{suite_name}.yaml", {"name": suite_name, "matrix": {"devices": []}}, VERSION)
    for position, (pipeline, seed, m) in enumerate(seed_cells):
        cell_id = f"{pipeline}/seed{seed}"
        labels = {"dataset": "synthetic", "model": "dscnn", "pipeline": pipeline, "seed": seed}
        config = {"cell_id": cell_id, "seed": seed, "baseline_key": f"b{seed}", "steps": [{"name": pipeline}], "training": {"epochs": epochs}}
        store.mark_running(run_id, position, cell_id, labels, config, VERSION)
        store.finish_cell(run_id, cell_id, status, m, {}, {}, None)
    store.finish_run(run_id, "done", {"done": len(seed_cells)})
    return store, run_id


SEED0 = [("dense", 0, metrics(0.80, 0.0)), ("magnitude", 0, metrics(0.790, -1.0, (-2.5, 0.4)))]
SEED1 = [("dense", 1, metrics(0.82, 0.0)), ("magnitude", 1, metrics(0.812, -0.5, (-1.9, 0.9)))]


@pytest.fixture
def two_stores(tmp_path, monkeypatch):
    """Seed 0 in the default store (ECGBENCH_HOME), seed 1 in another store file: (seed-0 run id, seed-1 run id)."""
    monkeypatch.setenv("ECGBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    _, run0 = store_run(tmp_path / "home" / "results.sqlite", SEED0)
    _, run1 = store_run(tmp_path / "other.sqlite", SEED1)
    return run0, run1


def test_parse_run_ref():
    assert parse_run_ref("quick").db is None and parse_run_ref("quick").ref == "quick"
    with pytest.raises(ConfigError, match="no result store at missing/results.sqlite"):
        parse_run_ref("missing/results.sqlite:quick")


def test_two_seeds_from_two_stores_make_one_report(two_stores, tmp_path, capsys):
    run0, run1 = two_stores
    out = tmp_path / "merged"
    argv = ["report", "quick", "other.sqlite:quick", "--format", "md,json,html", "--out", str(out)]
    assert main([*argv, "--set", "md.f1_budget_points=1", "--set", "json.f1_budget_points=0.7"]) == 0
    assert "warning" not in capsys.readouterr().err
    document = json.loads((out / "results.json").read_text())
    assert [r["run_id"] for r in document["runs"]] == [run0, run1]
    assert document["cell_runs"] == {"dense/seed0": run0, "magnitude/seed0": run0, "dense/seed1": run1, "magnitude/seed1": run1}
    mag = next(p for p in document["pipelines"] if p["pipeline"] == "magnitude")
    assert mag["seeds"] == [0, 1] and mag["runs"] == [run0, run1]
    # By hand: F1 0.790, 0.812 -> mean 0.801, sample sd |0.812 - 0.790| / sqrt(2) = 0.015556; ΔF1 -1.0, -0.5 -> -0.75, 0.353553
    assert mag["test.challenge_f1"]["per_seed"] == [0.790, 0.812]
    assert mag["test.challenge_f1"]["mean"] == pytest.approx(0.801) and mag["test.challenge_f1"]["sd"] == pytest.approx(0.022 / math.sqrt(2))
    assert mag["delta_f1_points"]["per_seed"] == [-1.0, -0.5] and mag["delta_f1_points"]["per_seed_ci"] == [[-2.5, 0.4], [-1.9, 0.9]]
    assert mag["delta_f1_points"]["mean"] == pytest.approx(-0.75) and mag["delta_f1_points"]["sd"] == pytest.approx(0.5 / math.sqrt(2))
    assert mag["within_budget"] is False and document["budget"]["f1_points"] == 0.7  # mean -0.75 < -0.7
    assert "mean of its seeds' test ΔF1" in document["budget"]["rule"]

    md = (out / "report.md").read_text()
    assert f"- run: {run0} (done)" in md and f"- run: {run1} (done)" in md and "- runs merged: 2" in md
    assert "seeds 0" in md and "seeds 1" in md
    assert "| magnitude | 0, 1 | 0.801 ± 0.016 (2 seeds) | 0.790, 0.812 | -0.75 ± 0.35 (2 seeds) | -1.00 [-2.50, +0.40], -0.50 [-1.90, +0.90] | yes |" in md
    assert "| magnitude | -0.75 ± 0.35 (2 seeds) |" in md  # the summary table: mean ± sd, n seeds
    assert "Within budget: a pipeline is within a budget of 1 point when the mean" in md
    regenerate = next(line for line in md.splitlines() if line.startswith("- regenerate"))
    assert f"home/results.sqlite:{run0} other.sqlite:{run1}" in regenerate

    html = (out / "report.html").read_text()
    assert 'id="seeds-table"' in html and 'id="per-seed-table"' in html and "0.790, 0.812" in html
    per_seed = html[html.index('id="per-seed-table"'):]
    assert per_seed.count("<tr>") == 1 + 4  # header + one row per seed of each pipeline


def test_the_regenerate_command_rewrites_the_merged_report(two_stores, tmp_path, capsys):
    import shlex

    out = tmp_path / "merged"
    assert main(["report", "quick", "other.sqlite:quick", "--format", "md", "--out", str(out)]) == 0
    first = (out / "report.md").read_text()
    command = next(line for line in first.splitlines() if line.startswith("- regenerate")).split("`")[1]
    assert main(shlex.split(command)[1:]) == 0
    assert (out / "report.md").read_text() == first


def test_a_duplicate_cell_takes_the_later_finished_with_a_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "old.sqlite"  # the earliest result, in a store of its own
    store_run(other, [("magnitude", 0, metrics(0.79, -1.0))])
    db = tmp_path / "r.sqlite"
    _, first = store_run(db, [("dense", 0, metrics(0.80, 0.0)), ("magnitude", 0, metrics(0.79, -1.0))])
    _, second = store_run(db, [("magnitude", 0, metrics(0.70, -10.0)), ("magnitude", 1, metrics(0.81, -0.5))])
    assert main(["report", first, second, "--db", str(db), "--format", "json", "--out", "a"]) == 0
    err = capsys.readouterr().err
    assert "ecgbench: warning: cell synthetic/dscnn/magnitude/seed0" in err and f"in runs {first} and {second}" in err
    assert "with the same result" in err  # one store holds one row per cell id: both runs read it
    later = ResultStore(other).find_run("quick").run_id
    assert main(["report", f"old.sqlite:{later}", f"{db}:{second}", "--format", "json", "--out", "b"]) == 0
    err = capsys.readouterr().err
    assert f"using {second}'s" in err and "with the same result" not in err
    document = json.loads((tmp_path / "b" / "results.json").read_text())
    mag = next(p for p in document["pipelines"] if p["pipeline"] == "magnitude")
    assert mag["test.challenge_f1"]["per_seed"] == [0.70, 0.81]  # seed 0 from the later run
    assert document["cell_runs"]["magnitude/seed0"] == second


def test_a_done_cell_beats_a_later_failed_one(tmp_path):
    a = ResultStore(tmp_path / "a.sqlite")
    store_run(tmp_path / "a.sqlite", [("magnitude", 0, metrics(0.79, -1.0))])
    store_run(tmp_path / "b.sqlite", [("magnitude", 0, {})], status="failed")
    parts = [a.run_results("quick"), ResultStore(tmp_path / "b.sqlite").run_results("quick")]
    merged = merge_runs(parts)
    assert [c.status for c in merged.cells] == ["done"] and merged.cell_runs["magnitude/seed0"] == parts[0].run.run_id
    assert "using" in merged.warnings[0] and parts[0].run.run_id + "'s" in merged.warnings[0]


def test_runs_of_different_suites_are_refused_naming_both(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _, quick = store_run(tmp_path / "a.sqlite", SEED0)
    _, other = store_run(tmp_path / "b.sqlite", SEED1, suite_name="other")
    argv = ["report", f"a.sqlite:{quick}", f"b.sqlite:{other}", "--format", "json", "--out", "out"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"runs {quick} (suite quick) and {other} (suite other) are of different suites" in err and "--allow-mixed" in err
    assert main([*argv, "--allow-mixed"]) == 0
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["run"]["suite_name"] == "quick+other"


def test_a_label_that_means_other_settings_is_an_incompatible_matrix(tmp_path):
    store_run(tmp_path / "a.sqlite", SEED0, epochs=2)
    store_run(tmp_path / "b.sqlite", SEED1, epochs=5)
    parts = [ResultStore(tmp_path / name).run_results("quick") for name in ("a.sqlite", "b.sqlite")]
    with pytest.raises(ConfigError, match=r"incompatible matrices: synthetic/dscnn/dense differs at training.epochs \(2 vs 5\)") as info:
        merge_runs(parts)
    assert parts[0].run.run_id in str(info.value) and parts[1].run.run_id in str(info.value)
    assert len(merge_runs(parts, allow_mixed=True).cells) == 4


def test_one_seed_shows_no_sd(tmp_path):
    store, run_id = store_run(tmp_path / "a.sqlite", SEED0)
    results = store.run_results(run_id)
    mag = next(p for p in seed_document(results) if p["pipeline"] == "magnitude")
    assert mag["test.challenge_f1"] == {"mean": 0.79, "sd": None, "n": 1, "per_seed": [0.79]} and "runs" not in mag
    row = dict(zip(seed_table(results).headers, seed_table(results).rows[1]))
    assert row["test F1 mean ± sd"] == "0.790 (1 seed)"


TINY_SUITE = """
name: merge-test
data: {fs_hz: 100, window_s: 4, split: {val: 0.25, test: 0.25}}
training: {epochs: 1, batch_size: 8, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 20, latency_repeats: 1, latency_warmup: 0, input_s: 4}
matrix:
  datasets: [synthetic: {n_records: 24, fs_hz: 100, min_duration_s: 4, max_duration_s: 8}]
  models: [dscnn: {width: 4, blocks: 1}]
  compressors: [dense, magnitude: {sparsity: 0.5, finetune_epochs: 1}]
  seeds: [SEED]
report: {formats: [json]}
"""


def test_two_tiny_runs_of_one_suite_on_two_stores_merge(tmp_path, monkeypatch):
    """Real runs: seed 0 and seed 1 of one suite run apart (two stores) are one suite; the report holds both seeds."""
    monkeypatch.setenv("ECGBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ECGBENCH_QUIET", "1")
    monkeypatch.chdir(tmp_path)
    stored = {}
    for seed, db in ((0, "a/results.sqlite"), (1, "b/results.sqlite")):
        (tmp_path / f"s{seed}.yaml").write_text(textwrap.dedent(TINY_SUITE).replace("SEED", str(seed)))
        assert main(["run", f"s{seed}.yaml", "--db", db, "--out", f"r{seed}"]) == 0
        stored[seed] = {c["pipeline"]: c["metrics"]["test"]["challenge_f1"] for c in json.loads((tmp_path / f"r{seed}" / "results.json").read_text())["cells"]}
    assert main(["report", "a/results.sqlite:merge-test", "b/results.sqlite:merge-test", "--format", "json,models", "--out", "merged"]) == 0
    document = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert len(document["cells"]) == 4
    runs = [r["run_id"] for r in document["runs"]]
    models = json.loads((tmp_path / "merged" / "models" / "index.json").read_text())["models"]
    assert sorted((m["seed"], m["run"]) for m in models) == [(0, runs[0]), (0, runs[0]), (1, runs[1]), (1, runs[1])]
    assert all((tmp_path / "merged" / "models" / m["file"]).is_file() for m in models)
    for entry in document["pipelines"]:
        f1 = entry["test.challenge_f1"]
        assert entry["seeds"] == [0, 1] and f1["per_seed"] == [stored[0][entry["pipeline"]], stored[1][entry["pipeline"]]]
        assert f1["mean"] == pytest.approx(sum(f1["per_seed"]) / 2) and f1["n"] == 2
