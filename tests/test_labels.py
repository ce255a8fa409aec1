"""Automatic pipeline labels: readable, shell-safe, deterministic, distinct within a suite; never part of a cell's id."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from ecgbench.config import suite as suite_module
from ecgbench.config.labels import abbreviations, pipeline_label, safe_name, step_label, unique
from ecgbench.config.suite import load_suite
from ecgbench.run.cell import expand_cells

REPO = Path(__file__).resolve().parents[1]
SAFE = re.compile(r"[A-Za-z0-9._+-]+")


@pytest.mark.parametrize(
    "steps, label",
    [
        ([("dense", {})], "dense"),
        ([("magnitude", {"sparsity": 0.8, "finetune_epochs": 2})], "magnitude-s0.8-fe2"),
        ([("lth_ecg", {}), ("int8_static", {})], "lth_ecg+int8_static"),
        ([("lth", {"rate": 0.5, "rounds": 2, "rewind": "iteration", "rewind_epochs": 2})], "lth-ra0.5-ro2-iteration-ree2"),
        ([("x", {"lr": 1e-5, "bands": [0.5, 40], "flag": True, "name": "a b/c"})], "x-l1e-05-b0.5_40-fyes-a_b_c"),
    ],
)
def test_labels_are_readable_and_shell_safe(steps, label):
    assert pipeline_label(steps) == label
    assert SAFE.fullmatch(label)


def test_abbreviations_are_distinct():
    keys = ["rate", "rounds", "rewind", "rewind_epochs", "train_epochs", "r"]
    short = abbreviations(keys)
    assert len(set(short.values())) == len(keys)
    assert abbreviations(["sparsity", "finetune_epochs"]) == {"sparsity": "s", "finetune_epochs": "fe"}


def test_collisions_get_a_suffix_and_chosen_labels_win():
    assert unique(["a", "a", "b", "a"], [True, True, True, False]) == ["a-2", "a-3", "b", "a"]
    assert safe_name("magnitude(sparsity=0.8)") == "magnitude_sparsity_0.8_"
    assert step_label("m", {}) == "m"


SUITE = """
name: labels
data: {fs_hz: 100, window_s: 4}
training: {epochs: 1}
matrix:
  datasets: [synthetic: {n_records: 40}]
  models: [dscnn: {width: 4}]
  compressors:
    - magnitude: {sparsity: 0.8, finetune_epochs: 2}
    - {label: magnitude-s0.9, steps: [fp16]}
    - magnitude: {sparsity: 0.9}
    - [lth_ecg, int8_static]
"""


def test_a_suite_gets_distinct_labels_and_cells_keep_their_ids(tmp_path, registry, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SUITE))
    suite = load_suite(path, registry)
    assert [p.label for p in suite.pipelines] == ["magnitude-s0.8-fe2", "magnitude-s0.9", "magnitude-s0.9-2", "lth_ecg+int8_static"]
    ids = [c.cell_id for c in expand_cells(suite, registry)]
    # The same cells under the labels of before: ids are hashes of settings, never of labels.
    monkeypatch.setattr(suite_module, "auto_label", lambda steps: f"old-{len(steps)}-{id(steps)}")
    assert [c.cell_id for c in expand_cells(load_suite(path, registry), registry)] == ids
    config = expand_cells(suite, registry)[0].config()
    assert config["steps"] == [{"name": "magnitude", "params": {"sparsity": 0.8, "finetune_epochs": 2}}]  # every setting in the JSON


def test_the_quick_suite_still_makes_the_published_cell_ids(registry, monkeypatch):
    """New labels for suites/quick.yaml, the same cells as reports/quick/results.json (made with these libraries)."""
    published = json.loads((REPO / "reports" / "quick" / "results.json").read_text())["cells"]
    monkeypatch.setattr(suite_module, "numeric_libraries", lambda: {"torch": "2.13.0+cpu", "onnxruntime": "1.32.0", "numpy": "2.4.6"})
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cells = expand_cells(load_suite(REPO / "suites" / "quick.yaml", registry), registry)
    # Pipelines added to the suite since the report was published come last and leave the others' ids alone.
    assert [c.cell_id for c in cells][: len(published)] == [c["cell_id"] for c in published], (
        "reports/quick/results.json was made with other cells: after regenerating it with other library versions, "
        "put those versions in this test"
    )
    assert all(SAFE.fullmatch(c.pipeline) for c in cells)
    assert "magnitude-s0.8-fe2" in [c.pipeline for c in cells]
