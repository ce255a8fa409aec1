"""``ecgbench eval --run`` and folders of models: a tiny stored run scored again, and a cross-dataset report of its models."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

from ecgbench.cli.main import main

SUITE = """
name: rescore-test
data: {fs_hz: 100, window_s: 4, split: {val: 0.25, test: 0.25}}
training: {epochs: 2, batch_size: 8, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 50, latency_repeats: 1, latency_warmup: 0, input_s: 4}
matrix:
  datasets: [synthetic: {n_records: 32, fs_hz: 100, min_duration_s: 4, max_duration_s: 8}]
  models: [dscnn: {width: 4, blocks: 2}]
  compressors: [dense, int8_dynamic]
report: {formats: [json, models]}
"""
OTHER_DATASET = ["--dataset", "synthetic", "--set", "n_records=12", "--set", "seed=7", "--set", "fs_hz=100", "--set", "min_duration_s=4", "--set", "max_duration_s=8"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished two-cell run: its home (store, caches, artifacts) and its report folder."""
    root = tmp_path_factory.mktemp("rescore")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ECGBENCH_HOME", str(root / "home"))
        mp.setenv("ECGBENCH_QUIET", "1")
        mp.chdir(root)
        (root / "suite.yaml").write_text(textwrap.dedent(SUITE))
        assert main(["run", "suite.yaml", "--out", str(root / "report")]) == 0
    stored = json.loads((root / "report" / "results.json").read_text())
    return root, {c["pipeline"]: c for c in stored["cells"]}


@pytest.fixture
def home(run, monkeypatch):
    root, _cells = run
    monkeypatch.setenv("ECGBENCH_HOME", str(root / "home"))
    monkeypatch.chdir(root)
    return root


def _json(capsys, argv: list[str]):
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_run_test_split_reproduces_the_stored_scores_exactly(run, home, capsys):
    _root, cells = run
    rescored = _json(capsys, ["--run", "rescore-test", "--split", "test"])
    assert sorted(r["pipeline"] for r in rescored) == ["dense", "int8_dynamic"]
    for row in rescored:
        stored = cells[row["pipeline"]]["metrics"]["test"]
        assert row["challenge_f1"] == stored["challenge_f1"]  # exactly, not approximately
        assert row["confusion"] == stored["confusion"] and row["challenge_f1_ci"] == stored["challenge_f1_ci"]
        assert row["n_records"] == cells[row["pipeline"]]["metrics"]["data"]["n_test"]
        assert row["matches_stored"] is True
    assert main(["eval", "--run", "rescore-test", "--only", "int8*"]) == 0
    out = capsys.readouterr().out
    assert "1 cell(s) scored on their test split" in out and "/int8_dynamic/seed0" in out and "identical" in out


def test_run_other_splits(run, home, capsys):
    _root, cells = run
    val = _json(capsys, ["--run", "rescore-test", "--split", "val", "--only", "dense"])
    assert [r["challenge_f1"] for r in val] == [cells["dense"]["metrics"]["val"]["challenge_f1"]]
    everything = _json(capsys, ["--run", "rescore-test", "--split", "all", "--only", "dense"])
    data = cells["dense"]["metrics"]["data"]
    assert everything[0]["n_records"] == data["n_train"] + data["n_val"] + data["n_test"]
    assert everything[0]["stored_challenge_f1"] is None


def test_run_from_a_json_report_uses_the_published_models(run, home, capsys, tmp_path):
    root, cells = run
    report = tmp_path / "report"
    shutil.copytree(root / "report", report)
    artifacts = root / "home" / "artifacts"
    moved = tmp_path / "artifacts-away"
    shutil.move(artifacts, moved)  # as on another machine: only the report and its models exist
    try:
        rescored = _json(capsys, ["--run", str(report)])
    finally:
        shutil.move(moved, artifacts)
    assert {r["pipeline"]: r["challenge_f1"] for r in rescored} == {p: c["metrics"]["test"]["challenge_f1"] for p, c in cells.items()}
    assert all(r["model_file"].startswith(str(report / "models")) for r in rescored)


def test_run_refuses_model_options_and_unknown_pipelines(home):
    from ecgbench.errors import ConfigError

    with pytest.raises(ConfigError, match="--dataset, --set: not used here"):
        main_eval(["--run", "rescore-test", "--dataset", "wfdb", "--set", "window_s=30"])
    with pytest.raises(ConfigError, match="matches --only 'lth'; its finished pipelines: dense, int8_dynamic"):
        main_eval(["--run", "rescore-test", "--only", "lth"])


def main_eval(argv: list[str]) -> int:
    """``eval`` without main's error handling, so a test sees the exception."""
    from ecgbench.cli.main import build_parser

    args = build_parser().parse_args(["eval", *argv])
    return args.func(args)


def test_folder_of_models_and_cross_dataset_report(run, home, capsys, tmp_path):
    root, cells = run
    out = tmp_path / "cross"
    results = _json(capsys, [str(root / "report" / "models"), *OTHER_DATASET, "--out", str(out)])
    assert [r["exported"]["pipeline"] for r in results] == ["dense", "int8_dynamic"]
    assert all(r["dataset_settings"] == results[0]["dataset_settings"] for r in results)
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["name"] == report["label"] == "synthetic" and report["dataset"]["settings"]["n_records"] == 12
    rows = {r["pipeline"]: r for r in report["models"]}
    for pipeline, row in rows.items():
        assert row["in_distribution"]["challenge_f1"] == cells[pipeline]["metrics"]["test"]["challenge_f1"]  # from index.json
    new = {r["exported"]["pipeline"]: r["challenge_f1"] for r in results}
    assert rows["dense"]["delta_points"] == {"in_distribution": 0.0, "cross": 0.0}
    assert rows["int8_dynamic"]["delta_points"]["cross"] == pytest.approx((new["int8_dynamic"] - new["dense"]) * 100)
    in_dist = {p: c["metrics"]["test"]["challenge_f1"] for p, c in cells.items()}
    assert rows["int8_dynamic"]["delta_points"]["in_distribution"] == pytest.approx((in_dist["int8_dynamic"] - in_dist["dense"]) * 100)
    markdown = (out / "report.md").read_text()
    assert "| dense | " in markdown and "| int8_dynamic | " in markdown and "synthetic challenge F1" in markdown


def test_in_distribution_scores_from_results_json_when_the_index_lacks_them(run, home, capsys, tmp_path):
    root, cells = run
    report = tmp_path / "report"
    shutil.copytree(root / "report", report)
    index_path = report / "models" / "index.json"
    index = json.loads(index_path.read_text())
    assert all("test_challenge_f1" in e and "test_af_f1" in e for e in index["models"])  # the models reporter writes them
    for entry in index["models"]:
        del entry["test_challenge_f1"], entry["test_af_f1"]
    index_path.write_text(json.dumps(index))
    _json(capsys, [str(report / "models" / "int8_dynamic.onnx"), str(report / "models" / "dense.onnx"), *OTHER_DATASET, "--out", str(tmp_path / "x")])
    rows = json.loads((tmp_path / "x" / "report.json").read_text())["models"]
    assert [r["pipeline"] for r in rows] == ["int8_dynamic", "dense"]
    for row in rows:
        assert row["in_distribution"]["af_f1"] == cells[row["pipeline"]]["metrics"]["test"]["af_f1"]  # from results.json beside


def test_absent_classes_make_af_f1_the_headline_and_are_not_scored(run, home, capsys, tmp_path):
    root, _cells = run
    dataset_file = tmp_path / "two-classes.yaml"
    dataset_file.write_text("synthetic: {n_records: 12, seed: 7, fs_hz: 100, min_duration_s: 4, max_duration_s: 8}\n")
    argv = [str(root / "report" / "models"), "--dataset-file", str(dataset_file), "--set", "proportions=[0.5, 0.5, 0, 0]", "--out", str(tmp_path / "af")]
    results = _json(capsys, argv)
    assert results[0]["class_counts"]["O"] == 0 and results[0]["class_counts"]["~"] == 0
    report = json.loads((tmp_path / "af" / "report.json").read_text())
    assert report["headline"] == "af_f1" and report["classes_absent"] == ["O", "~"] and report["label"] == "two-classes"
    for row in report["models"]:
        assert set(row["cross"]["f1"]) == {"N", "A"}  # O and ~ left out, not 0
    markdown = (tmp_path / "af" / "report.md").read_text()
    assert "| two-classes AF F1 |" in markdown and "Absent from two-classes: O, ~" in markdown
    assert main(["eval", str(root / "report" / "models" / "dense.onnx"), *argv[1:-2]]) == 0
    text = capsys.readouterr().out
    assert "O –  ~ –" in text and "absent from the data: O, ~" in text


def test_models_listed_without_a_file_are_named_not_scored(run, home, capsys, tmp_path):
    root, _cells = run
    models = tmp_path / "models"
    shutil.copytree(root / "report" / "models", models)
    index = json.loads((models / "index.json").read_text())
    big = next(e for e in index["models"] if e["pipeline"] == "int8_dynamic")
    (models / big.pop("file")).unlink()
    big["not_copied"] = "too large"
    (models / "index.json").write_text(json.dumps(index))
    with pytest.warns(UserWarning, match="lists 1 model\\(s\\) without a file, not scored: int8_dynamic"):
        results = _json(capsys, [str(models), *OTHER_DATASET])
    assert [r["exported"]["pipeline"] for r in results] == ["dense"]
