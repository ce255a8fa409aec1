"""The cinc2017 dataset: folder resolution, label versions, fingerprint, and the real data when present."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import wfdb
from conftest_data import write_cinc_folder

from ecgbench import CLASSES
from ecgbench.data.config import DataConfig
from ecgbench.data.loader import load_signalset
from ecgbench.errors import ConfigError, DatasetError
from ecgbench_plugins.datasets.cinc2017 import ENV_VAR, CinC2017

LABELS = {"A00001": "N", "A00002": "A", "A00003": "O", "A00004": "~", "A00005": "N"}


@pytest.fixture
def folder(tmp_path):
    return write_cinc_folder(tmp_path / "cinc", LABELS)


def test_reads_records_and_labels_in_records_order(folder):
    records = list(CinC2017.from_params({"path": str(folder)}).records())
    assert [(r.record_id, r.label) for r in records] == list(LABELS.items())
    first = records[0]
    assert first.fs_hz == 300.0 and first.signal.dtype == np.float32 and len(first.signal) == 600
    np.testing.assert_allclose(first.signal, wfdb.rdrecord(str(folder / "A00001")).p_signal[:, 0], atol=1e-6)
    assert first.source.endswith("A00001.dat")


def test_without_records_file_lists_headers(folder):
    (folder / "RECORDS").unlink()
    (folder / "REFERENCE.csv").write_text("A00005,N\nA00001,N\nA00002,A\nA00003,O\nA00004,~\n")
    records = list(CinC2017.from_params({"path": str(folder)}).records())
    assert [r.record_id for r in records] == sorted(LABELS)


def test_v1_labels_come_from_reference_v1(folder):
    (folder / "REFERENCE-v1.csv").write_text("".join(f"{r},{'O' if r == 'A00004' else l}\n" for r, l in LABELS.items()))
    final = {r.record_id: r.label for r in CinC2017.from_params({"path": str(folder)}).records()}
    v1 = {r.record_id: r.label for r in CinC2017.from_params({"path": str(folder), "labels": "v1"}).records()}
    assert final["A00004"] == "~" and v1["A00004"] == "O"
    assert CinC2017.from_params({"path": str(folder)}).fingerprint() != CinC2017.from_params({"path": str(folder), "labels": "v1"}).fingerprint()


def test_missing_v1_file_says_what_to_add(folder):
    with pytest.raises(DatasetError, match="REFERENCE-v1.csv does not exist; add it"):
        list(CinC2017.from_params({"path": str(folder), "labels": "v1"}).records())


def test_folder_from_env_var_or_a_clear_error(folder, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ConfigError) as info:
        CinC2017().fingerprint()
    message = str(info.value)
    for fix in ("--data-dir cinc2017=DIR", ENV_VAR, "ecgbench data fetch cinc2017 --to DIR"):
        assert fix in message
    monkeypatch.setenv(ENV_VAR, str(folder))
    assert len(list(CinC2017().records())) == 5
    with pytest.raises(DatasetError, match="folder .*nope does not exist; pass `--data-dir cinc2017=DIR`"):
        CinC2017.from_params({"path": str(folder / "nope")}).records().__next__()


def test_fingerprint_follows_content_not_place(folder, tmp_path):
    before = CinC2017.from_params({"path": str(folder)}).fingerprint()
    copy = tmp_path / "elsewhere"
    shutil.copytree(folder, copy)
    assert CinC2017.from_params({"path": str(copy)}).fingerprint() == before
    data = bytearray((copy / "A00003.dat").read_bytes())
    data[100] ^= 1
    (copy / "A00003.dat").write_bytes(bytes(data))
    assert CinC2017.from_params({"path": str(copy)}).fingerprint() != before
    (folder / "REFERENCE.csv").write_text((folder / "REFERENCE.csv").read_text().replace("A00005,N", "A00005,O"))
    assert CinC2017.from_params({"path": str(folder)}).fingerprint() != before


def test_registered(registry):
    assert registry.get("datasets", "cinc2017") is CinC2017
    assert CinC2017.synthetic is False


@pytest.mark.realdata
@pytest.mark.slow
def test_real_folder_gives_exactly_its_records_and_labels(cinc_dir, tmp_path):
    listed = cinc_dir.joinpath("RECORDS").read_text().split()
    reference = dict(line.split(",") for line in cinc_dir.joinpath("REFERENCE.csv").read_text().split())
    dataset = CinC2017.from_params({"path": str(cinc_dir)})
    config = DataConfig(fs_hz=300, normalize="none")  # native rate, raw millivolts

    signals = load_signalset(dataset, config, tmp_path)
    assert signals.record_ids == listed
    assert [CLASSES[i] for i in signals.labels] == [reference[r] for r in listed]
    for i in (0, len(listed) // 2, len(listed) - 1):  # samples as wfdb reads them
        expected = wfdb.rdrecord(str(cinc_dir / listed[i])).p_signal[:, 0]
        np.testing.assert_allclose(signals.signal(i), expected, atol=1e-6)

    start = time.perf_counter()
    again = load_signalset(CinC2017.from_params({"path": str(cinc_dir)}), config, tmp_path)
    warm_s = time.perf_counter() - start
    assert again.record_ids == listed and isinstance(again.signals, np.memmap)
    np.testing.assert_array_equal(again.offsets, signals.offsets)
    assert warm_s < 5.0, f"warm load took {warm_s:.1f} s: the cache was not used"
