"""``ecgbench eval``: an exported model scored on a folder gives the in-process scores."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
import torch
import wfdb

from ecgbench import CLASSES
from ecgbench.cli.eval import register
from ecgbench.data.config import DataConfig
from ecgbench.data.loader import load_signalset
from ecgbench.data.arrays import DataSplits
from ecgbench.errors import ConfigError
from ecgbench.train.export import to_onnx, with_metadata
from ecgbench.measure.scores import bootstrap_challenge_ci
from ecgbench.measure.sizing import save_format, size_report
from ecgbench.testing import TinyNet, fast_recipe, make_random_splits
from ecgbench.train.trainer import Trainer

FS_FILE_HZ = 300.0  # as CinC 2017 records; the model runs at 100 Hz, so eval must resample
DATA_CONFIG = DataConfig(fs_hz=100.0, window_s=4.0, bandpass_hz=[0.5, 40.0])
N_RECORDS = 20


def write_folder(folder, n_records: int = N_RECORDS) -> list[str]:
    """WFDB records (format 16, 1000 adu/mV) of 3 or 4 s whose class sets a sine frequency, with REFERENCE files."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    labels = [CLASSES[i % 4] for i in range(n_records)]
    names = [f"T{i:04d}" for i in range(n_records)]
    for name, label in zip(names, labels):
        seconds = 3 if rng.random() < 0.5 else 4
        t = np.arange(int(seconds * FS_FILE_HZ)) / FS_FILE_HZ
        freq = {"N": 1.0, "A": 3.0, "O": 6.0, "~": 10.0}[label]
        signal = 0.5 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 0.2, size=t.size)
        wfdb.wrsamp(
            name, fs=FS_FILE_HZ, units=["mV"], sig_name=["ECG"], p_signal=signal[:, None], fmt=["16"], adc_gain=[1000.0],
            baseline=[0], write_dir=str(folder),
        )
    (folder / "RECORDS").write_text("".join(f"{n}\n" for n in names))
    (folder / "REFERENCE.csv").write_text("".join(f"{n},{lab}\n" for n, lab in zip(names, labels)))
    v1 = ["~"] * 4 + labels[4:]  # the first four records labelled noise in the first release
    (folder / "REFERENCE-v1.csv").write_text("".join(f"{n},{lab}\n" for n, lab in zip(names, v1)))
    return labels


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "records"
    write_folder(path)
    return path


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = TinyNet(width=8)
    Trainer(make_random_splits(n_train=48, n_eval=8), fast_recipe(epochs=3), seed=0).fit(net)
    return net.eval()


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    preprocessing = {k: v for k, v in DATA_CONFIG.model_dump(mode="json").items() if k != "split"}
    onnx_bytes = with_metadata(to_onnx(model, 400), {"preprocessing": preprocessing, "classes": list(CLASSES), "pipeline": "dense"})
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    path.write_bytes(onnx_bytes)
    return path


def in_process_scores(model, folder, tmp_path, labels: str = "final") -> tuple[dict, np.ndarray]:
    from ecgbench.plugin_manager import make_plugin_manager
    from ecgbench.registry import build_registry

    dataset = build_registry(make_plugin_manager(load_entrypoints=False)).get("datasets", "cinc2017").from_params({"path": str(folder), "labels": labels})
    records = load_signalset(dataset, DATA_CONFIG, tmp_path / "cache")
    trainer = Trainer(DataSplits(records, records, records, DATA_CONFIG.fs_hz, DATA_CONFIG.window_s), fast_recipe(), seed=0)
    return trainer.evaluate(model, "test"), trainer.predict(model, "test").argmax(axis=1)


def run_eval(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ecgbench")
    register(parser.add_subparsers())
    args = parser.parse_args(["eval", *argv])
    return args.func(args)


def eval_json(capsys, model_path, folder, *extra: str) -> dict:
    assert run_eval([str(model_path), "--data", str(folder), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_gives_the_in_process_scores(capsys, model, model_file, folder, tmp_path):
    expected, y_pred = in_process_scores(model, folder, tmp_path)
    assert len(set(y_pred.tolist())) > 1, "the test model should not predict a single class"
    result = eval_json(capsys, model_file, folder)
    for key in ("challenge_f1", "f1", "af_f1", "macro_f1", "accuracy", "confusion", "n_records"):
        assert result[key] == expected[key], key
    assert result["n_records"] == N_RECORDS
    labels = np.arange(N_RECORDS) % 4
    assert result["challenge_f1_ci"] == list(bootstrap_challenge_ci(labels, y_pred, 1000, 0, 0.95))
    size = size_report(model_file.read_bytes())
    for key in ("storage_bytes", "storage_format", "nonzero_params", "total_params"):
        assert result[key] == size[key], key
    # Deprecated aliases, kept for one release and marked as such.
    assert (result["deployable_bytes"], result["deployable_format"]) == (size["storage_bytes"], size["storage_format"])
    assert set(result["deprecated"]) == {"deployable_bytes", "deployable_format"}
    assert "use storage_bytes" in result["deprecated"]["deployable_bytes"]
    assert result["file_format"] == "onnx"
    assert result["preprocessing"]["fs_hz"] == 100.0 and result["preprocessing"]["bandpass_hz"] == [0.5, 40.0]
    assert result["exported"] == {"pipeline": "dense"}


def test_eval_reads_a_compressed_sparse_model(capsys, model_file, folder, tmp_path):
    stored = tmp_path / "model.sparse.zst"
    stored.write_bytes(save_format(model_file.read_bytes(), "sparse_zstd"))
    plain = eval_json(capsys, model_file, folder)
    packed = eval_json(capsys, stored, folder, "--cache-dir", str(tmp_path / "cache"))
    assert packed["file_format"] == "sparse_zstd"
    assert packed["file_bytes"] == stored.stat().st_size
    for key in ("challenge_f1", "confusion", "challenge_f1_ci", "storage_bytes"):
        assert packed[key] == plain[key]
    assert any((tmp_path / "cache").iterdir())  # --cache-dir keeps the preprocessed records


def test_eval_with_first_release_labels(capsys, model, model_file, folder, tmp_path):
    result = eval_json(capsys, model_file, folder, "--labels", "v1")
    expected, _ = in_process_scores(model, folder, tmp_path, labels="v1")
    assert result["confusion"] == expected["confusion"]
    # Rows are true labels: 4 records moved to noise (one N, A, O, ~ each) -> 4, 4, 4, 8.
    assert [sum(row) for row in result["confusion"]] == [4, 4, 4, 8]
    assert result["labels"] == "v1"


def test_human_summary(capsys, model_file, folder):
    assert run_eval([str(model_file), "--data", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"{N_RECORDS} records" in out
    assert "challenge F1 (mean of N, A, O)" in out and "95% CI" in out
    assert " kB stored (onnx_zstd, the smallest lossless file; 1 kB = 1000 bytes)" in out and "deployable" not in out
    assert "note: this model was trained on" not in out  # its metadata names no dataset


def test_a_model_scored_on_the_dataset_it_was_trained_on_says_so(capsys, model, folder, tmp_path):
    preprocessing = {k: v for k, v in DATA_CONFIG.model_dump(mode="json").items() if k != "split"}
    path = tmp_path / "trained.onnx"
    path.write_bytes(with_metadata(to_onnx(model, 400), {"preprocessing": preprocessing, "classes": list(CLASSES), "dataset": "cinc2017"}))
    assert run_eval([str(path), "--data", str(folder)]) == 0
    assert "note: this model was trained on cinc2017 records" in capsys.readouterr().out
    path.write_bytes(with_metadata(to_onnx(model, 400), {"preprocessing": preprocessing, "classes": list(CLASSES), "dataset": "synthetic"}))
    assert run_eval([str(path), "--data", str(folder)]) == 0
    assert "note: this model was trained on" not in capsys.readouterr().out


def test_model_without_ecgbench_metadata_is_a_clear_error(tmp_path, folder, capsys):
    from ecgbench.cli.main import main

    bare = tmp_path / "bare.onnx"
    bare.write_bytes(to_onnx(TinyNet(width=2), 100))
    assert main(["eval", str(bare), "--data", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "not exported by ecgbench" in err
    for field in ("fs_hz", "normalize", "bandpass_hz", "window_s"):
        assert field in err


def test_missing_model_file_and_wrong_labels_option(tmp_path, folder, model_file):
    with pytest.raises(ConfigError, match="does not exist"):
        run_eval([str(tmp_path / "nope.onnx"), "--data", str(folder)])
    stored = tmp_path / "pruned.onnx.sparse.zst"
    stored.write_bytes(b"")
    with pytest.raises(ConfigError, match=re.escape(f"pruned.onnx does not exist; the same model is stored beside it as {stored}: pass that file")):
        run_eval([str(tmp_path / "pruned.onnx"), "--data", str(folder)])
    with pytest.raises(ConfigError, match="--labels applies to datasets"):
        run_eval([str(model_file), "--data", str(folder), "--dataset", "wfdb", "--labels", "v1"])


def test_not_a_model_is_a_clear_error(tmp_path, folder):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(ConfigError, match="is not an ONNX model"):
        run_eval([str(junk), "--data", str(folder)])


def _with_input_dims(onnx_bytes: bytes, dims: dict[int, int]) -> bytes:
    """The model with some input axes fixed, e.g. {0: 1} for an export with a batch of 1."""
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    for axis, size in dims.items():
        proto.graph.input[0].type.tensor_type.shape.dim[axis].dim_value = size
    return proto.SerializeToString()


def test_a_fixed_batch_of_one_is_scored_record_by_record(capsys, model_file, folder, tmp_path):
    single = tmp_path / "batch1.onnx"
    single.write_bytes(_with_input_dims(model_file.read_bytes(), {0: 1}))
    plain = eval_json(capsys, model_file, folder)
    one_by_one = eval_json(capsys, single, folder)
    assert one_by_one["confusion"] == plain["confusion"] and one_by_one["n_records"] == N_RECORDS


def test_an_input_eval_cannot_feed_is_one_line_naming_its_shape(model, model_file, folder, tmp_path):
    fixed = tmp_path / "fixed.onnx"
    fixed.write_bytes(_with_input_dims(model_file.read_bytes(), {0: 1, 2: 400}))  # records hold 300 or 400 samples
    with pytest.raises(ConfigError, match=re.escape("input 'ecg' has shape [1, 1, 400]; eval feeds whole records as [batch, 1, samples]")):
        run_eval([str(fixed), "--data", str(folder)])

    class Flat(torch.nn.Module):  # takes [batch, samples]: another rank
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net(x[:, None, :])

    import io

    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(Flat().eval(), (torch.zeros(1, 400),), buffer, dynamo=False, input_names=["flat"], dynamic_axes={"flat": {0: "b", 1: "n"}})
    preprocessing = {k: v for k, v in DATA_CONFIG.model_dump(mode="json").items() if k != "split"}
    rank2 = tmp_path / "rank2.onnx"
    rank2.write_bytes(with_metadata(buffer.getvalue(), {"preprocessing": preprocessing, "classes": list(CLASSES)}))
    with pytest.raises(ConfigError, match=re.escape("input 'flat' has shape ['b', 'n']")):
        run_eval([str(rank2), "--data", str(folder)])


def test_bad_records_stop_eval_unless_skipped_and_are_then_reported(capsys, model_file, folder, tmp_path):
    import shutil

    broken = tmp_path / "records"
    shutil.copytree(folder, broken)
    wfdb.wrsamp(  # T0003 becomes a flat line (lead off)
        "T0003", fs=FS_FILE_HZ, units=["mV"], sig_name=["ECG"], p_signal=np.zeros((900, 1)), fmt=["16"], adc_gain=[1000.0],
        baseline=[0], write_dir=str(broken),
    )
    from ecgbench.errors import DatasetError

    with pytest.raises(DatasetError) as info:
        run_eval([str(model_file), "--data", str(broken)])
    assert "record 'T0003'" in str(info.value) and "--on-bad-record skip" in str(info.value)
    assert "data.on_bad_record" not in str(info.value)  # a suite key eval cannot set

    with pytest.warns(UserWarning, match="skipped 1 record") as caught:
        result = eval_json(capsys, model_file, broken, "--on-bad-record", "skip")
    assert not any("skip to leave" in str(w.message) for w in caught)  # skip is already set: no advice to set it
    assert result["n_records"] == N_RECORDS - 1
    assert result["skipped"] == {"flat": {"count": 1, "records": ["T0003"]}}
    with pytest.warns(UserWarning):
        assert run_eval([str(model_file), "--data", str(broken), "--on-bad-record", "skip"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 record(s) (--on-bad-record skip):" in out and "1 flat (signal is constant (lead off or empty)): T0003" in out
    assert eval_json(capsys, model_file, folder)["skipped"] == {}


# --- dataset settings: --dataset NAME --set KEY=VALUE, --dataset-file -----------------------
SECONDS = 12  # each annotated record: N for 6 s, then AF; cut into 4-s windows, the middle one spans the change


@pytest.fixture(scope="module")
def rhythm_folder(tmp_path_factory):
    """Unlabelled WFDB records with rhythm annotations (``atr``): N then AF, changing at 6 s."""
    folder = tmp_path_factory.mktemp("rhythm")
    rng = np.random.default_rng(1)
    names = [f"R{i}" for i in range(4)]
    t = np.arange(int(SECONDS * FS_FILE_HZ)) / FS_FILE_HZ
    for name in names:
        signal = 0.5 * np.sin(2 * np.pi * np.where(t < 6, 1.0, 3.0) * t) + rng.normal(0, 0.2, size=t.size)
        wfdb.wrsamp(name, fs=FS_FILE_HZ, units=["mV"], sig_name=["II"], p_signal=signal[:, None], fmt=["16"], adc_gain=[1000.0], baseline=[0], write_dir=str(folder))
        wfdb.wrann(name, "atr", np.array([0, int(6 * FS_FILE_HZ)]), symbol=["+", "+"], aux_note=["(N", "(AFIB"], write_dir=str(folder))
    (folder / "RECORDS").write_text("".join(f"{n}\n" for n in names))
    return folder


def test_set_configures_the_dataset_and_json_names_the_settings(capsys, model_file, rhythm_folder):
    argv = ["--dataset", "wfdb", "--set", "annotation=atr", "--set", "window_s=4", "--set", "lead=II"]
    result = eval_json(capsys, model_file, rhythm_folder, *argv)
    settings = result["dataset_settings"]
    assert settings["name"] == "wfdb" and result["dataset"] == "wfdb"
    assert settings["settings"]["annotation"] == "atr" and settings["settings"]["window_s"] == 4.0 and settings["settings"]["lead"] == "II"
    assert settings["settings"]["path"] == str(rhythm_folder.resolve())
    assert result["n_records"] == 4 * 2  # first and last window of each record
    assert result["class_counts"] == {"N": 4, "A": 4, "O": 0, "~": 0}
    assert result["dropped"] == {"rhythm_change": 4}  # the middle window of each record
    assert run_eval([str(model_file), "--data", str(rhythm_folder), *argv]) == 0
    out = capsys.readouterr().out
    assert 'dataset wfdb: lead="II"' in out and '"annotation": ' not in out and 'annotation="atr"' in out
    assert "dropped by the dataset's settings: 4 (4 rhythm_change)" in out
    assert "O –  ~ –" in out and "absent from the data: O, ~" in out


def test_set_errors_name_the_flag_and_the_key(model_file, rhythm_folder):
    base = [str(model_file), "--data", str(rhythm_folder), "--dataset", "wfdb"]
    with pytest.raises(ConfigError, match=re.escape("--set anotation=...: dataset 'wfdb' has no setting 'anotation'; did you mean 'annotation'?")):
        run_eval([*base, "--set", "anotation=atr"])
    with pytest.raises(ConfigError, match=re.escape("--set 'window_s': expected KEY=VALUE")):
        run_eval([*base, "--set", "window_s"])
    with pytest.raises(ConfigError, match=r"--dataset wfdb\.window_s: .*greater than 0"):
        run_eval([*base, "--set", "annotation=atr", "--set", "window_s=-4"])
    with pytest.raises(ConfigError, match="set exactly one of labels_csv"):
        run_eval(base)  # wfdb needs a label source
    with pytest.raises(ConfigError, match="unknown dataset 'wfbd' in --dataset; did you mean 'wfdb'"):
        run_eval([str(model_file), "--data", str(rhythm_folder), "--dataset", "wfbd"])


def test_dataset_file(capsys, model_file, rhythm_folder, tmp_path):
    from ecgbench.config.dataset_ref import load_dataset_file

    path = tmp_path / "rhythms.yaml"
    path.write_text("wfdb: {annotation: atr, window_s: 4}\n")
    assert load_dataset_file(path).params() == {"annotation": "atr", "window_s": 4.0}
    result = eval_json(capsys, model_file, rhythm_folder, "--dataset-file", str(path))
    assert result["dataset_settings"]["settings"]["window_s"] == 4.0 and result["dropped"] == {"rhythm_change": 4}
    # --set overrides the file's settings: 6-s windows, of which only the first and last 6 s are whole rhythms
    wider = eval_json(capsys, model_file, rhythm_folder, "--dataset-file", str(path), "--set", "window_s=6")
    assert wider["dataset_settings"]["settings"]["window_s"] == 6.0 and wider["n_records"] == 8 and wider["dropped"] == {}

    path.write_text("wfdb: {anotation: atr, window_s: 4}\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path} at wfdb.anotation: unknown key 'anotation'; did you mean 'annotation'?")):
        run_eval([str(model_file), "--data", str(rhythm_folder), "--dataset-file", str(path)])
    path.write_text("wfdb: {annotation: atr}\n")
    with pytest.raises(ConfigError, match="--dataset cinc2017 disagrees with"):
        run_eval([str(model_file), "--data", str(rhythm_folder), "--dataset-file", str(path), "--dataset", "cinc2017"])


def test_set_values_are_read_as_yaml():
    from ecgbench.config.dataset_ref import parse_assignments

    parsed = parse_assignments(["window_s=30", "lead=II", "rhythm_map={(AFIB: A, (N: N}", "fs_hz=2.5e2", "labels_csv=", "x=[1, 2]"])
    assert parsed == {"window_s": 30, "lead": "II", "rhythm_map": {"(AFIB": "A", "(N": "N"}, "fs_hz": 250.0, "labels_csv": None, "x": [1, 2]}
    with pytest.raises(ConfigError, match="given twice"):
        parse_assignments(["a=1", "a=2"])
