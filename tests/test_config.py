"""Suite validation: every bad input is one clear line naming file and key, and nothing runs."""

from __future__ import annotations

import textwrap

import pytest

from ecgbench.cli.main import main
from ecgbench.config.suite import load_suite
from ecgbench.errors import ConfigError

GOOD = """
name: t
data: {fs_hz: 100, window_s: 4}
training: {epochs: 1, lr: 1e-3}
matrix:
  datasets: [synthetic: {n_records: 40}]
  models: [dscnn: {width: 4}]
  compressors:
    - dense
    - magnitude: {sparsity: 0.5}
    - [magnitude, int8_static]
    - {label: mag9, steps: [magnitude: {sparsity: 0.9}]}
  devices: [nrf52840]
  seeds: [0, 1]
"""


def write(tmp_path, text, name="suite.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_good_suite_is_typed(tmp_path, registry):
    suite = load_suite(write(tmp_path, GOOD), registry)
    assert suite.training.lr == 1e-3  # YAML 1.1 would read 1e-3 as a string
    assert [p.label for p in suite.pipelines] == ["dense", "magnitude-s0.5", "magnitude+int8_static", "mag9"]
    assert suite.pipelines[1].steps[0].config.sparsity == 0.5
    assert suite.seeds == (0, 1) and suite.devices == ("nrf52840",)


@pytest.mark.parametrize(
    "change, expected",
    [
        (("compressors:\n    - dense", "compressors:\n    - dense\n    - magnitud"), "unknown compressor 'magnitud' in {path} at matrix.compressors[1]; did you mean 'magnitude'?"),
        (("training: {epochs: 1, lr: 1e-3}", "training: {epochs: 1, lr: 1e-3, epoch: 3}"), "{path} at training.epoch: unknown key 'epoch'; did you mean 'epochs'?"),
        (("training: {epochs: 1, lr: 1e-3}", "training: {epochs: one}"), "{path} at training.epochs"),
        (("  seeds: [0, 1]", "  seeds: [0, 1]\n  seed: 3"), "{path} at matrix.seed: unknown key 'seed'; did you mean 'seeds'?"),
        (("  devices: [nrf52840]", "  devices: [nrf5284]"), "unknown device 'nrf5284' in {path} at matrix.devices[0]"),
        (("magnitude: {sparsity: 0.5}", "magnitude: {sparsity: high}"), "{path} at matrix.compressors[1].magnitude.sparsity"),
        (("models: [dscnn: {width: 4}]", "models: []"), "{path} at matrix.models: List should have at least 1 item"),
        (("[magnitude, int8_static]", "[int8_static, magnitude]"), "'magnitude' works on PyTorch models but follows 'int8_static'"),
        (("{label: mag9, steps: [magnitude: {sparsity: 0.9}]}", "{label: dense, steps: [dense]}"), "pipeline 'dense' appears twice"),
        (("{label: mag9, steps: [magnitude: {sparsity: 0.9}]}", "{label: mag9, steps: [fp16]}\n    - {label: mag9, steps: [int8_static]}"), "pipeline label 'mag9' appears twice"),
        (("  seeds: [0, 1]", "  seeds: [0, 1]\nreport: {formats: [md], settings: {models: {max_bytes: 9}}}"), "{path} at report.settings.models: 'models' is not in report.formats"),
        (("  seeds: [0, 1]", "  seeds: [0, 1]\nreport: {formats: [models], settings: {models: {max_byte: 9}}}"), "{path} at report.settings.models.max_byte: unknown key 'max_byte'; did you mean 'max_bytes'?"),
    ],
)
def test_bad_suites_give_one_clear_line(tmp_path, registry, change, expected):
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_suite(path, registry)
    message = str(info.value)
    assert expected.format(path=path) in message
    assert "\n" not in message


def test_malformed_yaml_names_file_and_line(tmp_path, registry):
    path = write(tmp_path, "name: t\nmatrix: [unclosed\n")
    with pytest.raises(ConfigError, match=r"suite.yaml: line 3, column 1: malformed YAML"):
        load_suite(path, registry)


def test_not_a_mapping(tmp_path, registry):
    with pytest.raises(ConfigError, match="a suite must be a mapping"):
        load_suite(write(tmp_path, "- a\n- b\n"), registry)


def test_validate_command_exits_2_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECGBENCH_HOME", str(tmp_path / "home"))
    path = write(tmp_path, GOOD.replace("- dense\n", "- dense\n    - magnitud\n", 1))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'magnitude'" in err
    assert main(["run", str(path)]) == 2
    assert not (tmp_path / "home").exists()


def test_validate_command_counts_cells(tmp_path, capsys):
    assert main(["validate", str(write(tmp_path, GOOD))]) == 0
    assert "8 cells = 1 dataset x 1 model x 4 pipelines x 2 seeds" in capsys.readouterr().out


def test_cell_ids_are_stable(tmp_path, registry):
    """Adding a defaulted field must never rename old results: pin a few ids."""
    from ecgbench.run.cell import expand_cells

    suite = load_suite(write(tmp_path, GOOD), registry)
    cells = expand_cells(suite, registry)
    assert len({c.cell_id for c in cells}) == len(cells)
    again = expand_cells(load_suite(write(tmp_path, GOOD, "copy.yaml"), registry), registry)
    assert [c.cell_id for c in cells] == [c.cell_id for c in again]
    # The same baseline serves every pipeline of a (dataset, model, seed).
    assert len({c.baseline_key for c in cells}) == 2


def test_known_cell_ids_are_pinned(tmp_path, registry, monkeypatch):
    """Adding a defaulted field anywhere must not rename stored results. These ids change only
    with RESULTS_EPOCH, the numeric libraries' versions, the device or a changed suite (issue 17)."""
    from ecgbench.config import suite as suite_module
    from ecgbench.run.cell import expand_cells

    if suite_module.RESULTS_EPOCH != 2:
        pytest.fail("RESULTS_EPOCH changed: re-pin these ids on purpose")
    monkeypatch.setattr(suite_module, "numeric_libraries", lambda: {"torch": "2.0.0", "onnxruntime": "1.20.0", "numpy": "2.0.0"})
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cells = expand_cells(load_suite(write(tmp_path, GOOD), registry), registry)
    assert [(c.pipeline, c.cell_id) for c in cells[:3]] == [
        ("dense", "833a274930381b3b"),
        ("magnitude-s0.5", "07ed989ea380d5b1"),  # was labelled magnitude(sparsity=0.5): labels are not identity
        ("magnitude+int8_static", "d6abab9f14e8559b"),
    ]
    assert cells[0].baseline_key == "d3b0b558cd8cbe51"


def test_cells_carry_typed_settings_pickle_and_store_plain_json(tmp_path, registry):
    import json
    import pickle

    from ecgbench.run.cell import expand_cells

    cell = expand_cells(load_suite(write(tmp_path, GOOD), registry), registry)[2]  # seed 0, [magnitude, int8_static]
    assert cell.steps[1].name == "int8_static" and cell.training.lr == 1e-3 and cell.data.window_s == 4
    assert pickle.loads(pickle.dumps(cell)) == cell  # the processes and ray executors pickle it
    config = json.loads(json.dumps(cell.config()))
    assert list(config) == [
        "cell_id", "dataset", "model", "pipeline", "steps", "seed", "data", "training", "measure", "devices", "baseline_key", "synthetic",
    ]
    assert config["dataset"] == {"name": "synthetic", "params": {"n_records": 40}, "fingerprint": cell.fingerprint}
    assert config["model"] == {"name": "dscnn", "params": {"width": 4}}
    assert config["steps"] == [{"name": "magnitude", "params": {}}, {"name": "int8_static", "params": {}}]
    assert (config["pipeline"], config["seed"], config["devices"], config["synthetic"]) == ("magnitude+int8_static", 0, ["nrf52840"], True)
    assert config["training"]["epochs"] == 1 and config["measure"]["ci_level"] == 0.95 and config["data"]["fs_hz"] == 100
