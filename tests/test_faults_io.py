"""Fault injection: full or read-only disks, files in the way, corrupt caches, crashing and broken plugins, closed stdout.

Each case checks that no finished result is lost (earlier report files stay
byte-identical, stored cells stay done) and that the message names the path
and the fix. A full disk is a real small tmpfs where this process may mount
one (root in a container), else an injected ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ecgbench import atomic, hookimpl
from ecgbench.cli.main import main
from ecgbench.config.suite import load_suite
from ecgbench.data import cache as data_cache
from ecgbench.kinds.compressor import Compressor
from ecgbench.registry import build_registry
from ecgbench.run.artifact_cache import ArtifactCache
from ecgbench.run.runner import run_suite
from ecgbench.run.store import ResultStore
from ecgbench.testing import TinyDataset, TinyNetFamily

REPORT_FILES = ("report.md", "results.csv", "results.json")


# --- a small stored run: a dense cell, a compressor that raises, one that calls sys.exit() ----
class TinyData(TinyDataset):
    name = "tiny_faults"

    class Config(TinyDataset.Config):
        n_records: int = 40
        seed: int = 5


class TinyFamily(TinyNetFamily):
    name = "tinynet_faults"


class Raises(Compressor):
    name = "raises"

    def compress(self, artifact, ctx):
        raise RuntimeError("plugin bug on purpose")


class Exits(Compressor):
    name = "exits"

    def compress(self, artifact, ctx):
        sys.exit("a plugin called sys.exit()")


class FaultPlugins:
    @hookimpl
    def ecgbench_register_datasets(self, register):
        register(TinyData)

    @hookimpl
    def ecgbench_register_models(self, register):
        register(TinyFamily)

    @hookimpl
    def ecgbench_register_compressors(self, register):
        register(Raises)
        register(Exits)


SUITE = """
name: faults
data: {fs_hz: 100, window_s: 4, split: {val: 0.25, test: 0.25}}
training: {epochs: 1, batch_size: 8, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 20, latency_repeats: 2, latency_warmup: 1, input_s: 4}
matrix:
  datasets: [tiny_faults]
  models: [tinynet_faults]
  compressors: [exits, raises, dense]
"""


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    """(db, run_id, home): a run whose exits/raises cells failed and whose dense cell finished."""
    from ecgbench.plugin_manager import make_plugin_manager

    tmp = tmp_path_factory.mktemp("faults")
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(FaultPlugins(), name="fault-plugins")
    registry = build_registry(pm)
    (tmp / "suite.yaml").write_text(textwrap.dedent(SUITE))
    store = ResultStore(tmp / "home" / "results.sqlite")
    summary = run_suite(load_suite(tmp / "suite.yaml", registry), registry, pm, store, tmp / "home", progress=False)
    return tmp / "home" / "results.sqlite", summary, tmp / "home"


def test_a_plugin_that_raises_or_exits_fails_only_its_cell(stored_run):
    db, summary, _home = stored_run
    assert (summary.done, summary.failed) == (1, 2)  # dense ran after the exits and raises cells
    cells = {c.pipeline: c for c in ResultStore(db).run_results(summary.run_id).cells}
    assert cells["dense"].status == "done"
    assert "SystemExit: a plugin called sys.exit()" in cells["exits"].error
    assert "RuntimeError: plugin bug on purpose" in cells["raises"].error


def _report(db, run_id, out, capsys) -> tuple[int, str]:
    code = main(["report", run_id, "--db", str(db), "--out", str(out), "--format", "md,csv,json"])
    return code, capsys.readouterr().err


def _snapshot(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in REPORT_FILES}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_report_shows_failed_cells_and_is_written(stored_run, tmp_path, capsys):
    db, summary, _home = stored_run
    code, err = _report(db, summary.run_id, tmp_path / "out", capsys)
    assert code == 0, err
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Failed cells" in text and "exits" in text and "raises" in text


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs, or None where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True).returncode == 0
    except OSError:  # no mount command
        mounted = False
    if not mounted:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def _fill(folder: Path) -> None:
    """Leave no free byte on ``folder``'s file system."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_full_disk_keeps_the_previous_report_whole(stored_run, small_disk, tmp_path, capsys, monkeypatch):
    db, summary, _home = stored_run
    out = (small_disk or tmp_path) / "report"
    assert _report(db, summary.run_id, out, capsys)[0] == 0
    before = _snapshot(out)
    if small_disk is not None:
        _fill(small_disk)
    else:  # no tmpfs here: the JSON file, written last, hits a full disk
        real = atomic.os.fsync

        def fsync(fd):
            if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and ".results.json." in os.readlink(f"/proc/self/fd/{fd}"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd)

        monkeypatch.setattr(atomic.os, "fsync", fsync)
    code, err = _report(db, summary.run_id, out, capsys)
    assert code == 1
    assert "no space left on the device" in err and str(out) in err and "pass another --out" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert _snapshot(out) == before  # md and csv were written first, yet none was replaced
    assert _leftovers(out) == []


@pytest.mark.parametrize("code_errno, words", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied")])
def test_read_only_output_is_one_line(stored_run, tmp_path, capsys, monkeypatch, code_errno, words):
    # Tests run as root, where chmod does not stop a write: the error is injected where the file is created.
    db, summary, _home = stored_run
    out = tmp_path / "out"
    assert _report(db, summary.run_id, out, capsys)[0] == 0
    before = _snapshot(out)

    def refuse(*args, **kwargs):
        raise OSError(code_errno, os.strerror(code_errno), str(out))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    code, err = _report(db, summary.run_id, out, capsys)
    assert code == 1 and words in err and str(out) in err and "Traceback" not in err
    assert _snapshot(out) == before


def test_out_pointing_at_a_file_is_one_line(stored_run, tmp_path, capsys):
    db, summary, _home = stored_run
    target = tmp_path / "not-a-folder"
    target.write_text("keep me")
    code, err = _report(db, summary.run_id, target, capsys)
    assert code == 1
    assert f"{target}: it is a file, not a folder" in err and "pass another --out" in err
    assert target.read_text() == "keep me"
    code, err = _report(db, summary.run_id, target / "below", capsys)
    assert code == 1 and f"{target}: it is a file, not a folder" in err


def test_corrupt_artifact_cache_marker_is_rebuilt_not_a_crash(stored_run, tmp_path):
    _db, _summary, home = stored_run
    cache = ArtifactCache(tmp_path)
    cache.entry("baseline", "k").mkdir(parents=True)
    cache.mark_done("baseline", "k", {"trained_s": 1.5})
    assert cache.read_done("baseline", "k") == {"trained_s": 1.5}
    marker = cache.entry("baseline", "k") / "done.json"
    for garbage in ('{"trained_s": 1.', "", "[1, 2]"):  # truncated, empty, not an object
        marker.write_text(garbage)
        assert not cache.is_done("baseline", "k")
    cache.mark_done("baseline", "k", {"trained_s": 2.0})
    assert cache.read_done("baseline", "k") == {"trained_s": 2.0}
    assert not [p for p in cache.entry("baseline", "k").iterdir() if p.name.endswith(".tmp")]


def test_a_run_with_a_garbled_baseline_marker_trains_it_again(stored_run, tmp_path):
    from ecgbench.plugin_manager import make_plugin_manager

    db, summary, home = stored_run
    markers = list((home / "baselines").glob("*/done.json"))
    assert len(markers) == 1
    markers[0].write_text('{"trained_s": ')  # a crash half way through an old, non-atomic write
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(FaultPlugins(), name="fault-plugins")
    registry = build_registry(pm)
    store = ResultStore(db)
    suite = load_suite(home.parent / "suite.yaml", registry)
    again = run_suite(suite, registry, pm, store, home, only="dense", force=True, progress=False)
    assert (again.done, again.failed) == (1, 0)
    assert json.loads(markers[0].read_text())["trained_s"] > 0
    first = {c.pipeline: c.status for c in store.run_results(summary.run_id).cells}
    assert first["dense"] == "done"  # the earlier run's finished cell is still stored


def _entry(tmp_path: Path, n: int = 6) -> tuple[Path, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal(50 + 10 * i).astype(np.float32) for i in range(n)]
    meta = {"record_ids": [f"r{i}" for i in range(n)]}
    folder = tmp_path / "cache" / "tiny-records-abc"
    data_cache.write_entry(folder, iter(parts), np.array([len(p) for p in parts]), np.arange(n) % 4, meta)
    return folder, parts


@pytest.mark.parametrize("damage", ["meta_garbled", "meta_no_ids", "signals_truncated", "offsets_garbled"])
def test_corrupt_data_cache_entry_reads_as_absent_and_is_rebuilt(tmp_path, damage):
    folder, parts = _entry(tmp_path)
    if damage == "meta_garbled":
        (folder / "meta.json").write_text('{"record_ids": ["r0", ')
    elif damage == "meta_no_ids":
        (folder / "meta.json").write_text("{}")
    elif damage == "signals_truncated":
        data = (folder / "signals.npy").read_bytes()
        (folder / "signals.npy").write_bytes(data[: len(data) // 2])
    else:
        (folder / "offsets.npy").write_bytes(b"\x93NUMPY garbage")
    assert data_cache.read_entry(folder) is None
    folder, _ = _entry(tmp_path)  # written again over the broken entry
    entry = data_cache.read_entry(folder)
    assert entry is not None and np.array_equal(entry.signals.signal(3), parts[3])


def test_data_cache_on_a_full_disk_is_one_line_and_leaves_no_temp_folder(tmp_path, small_disk, monkeypatch):
    if small_disk is None:
        monkeypatch.setattr(data_cache.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
        root = tmp_path
    else:
        root = small_disk
    n = 40
    parts = [np.ones(5000, dtype=np.float32) * i for i in range(n)]  # 800 kB, more than the 512 KiB disk
    folder = root / "cache" / "big-records-abc"
    with pytest.raises(atomic.WriteError, match=r"cannot write cache entry .*big-records-abc: it needs .* MB free; free some space or point ECGBENCH_HOME"):
        data_cache.write_entry(folder, iter(parts), np.full(n, 5000), np.zeros(n), {"record_ids": [str(i) for i in range(n)]})
    assert list((root / "cache").iterdir()) == []


def test_data_cache_write_failing_mid_way_raises_enospc_not_sigbus(tmp_path, small_disk, monkeypatch):
    """The free-space check passes (another writer fills the disk meanwhile): ordinary writes fail with ENOSPC."""
    root = small_disk or tmp_path
    monkeypatch.setattr(data_cache.shutil, "disk_usage", lambda p: type("U", (), {"free": 1 << 40})())
    if small_disk is None:
        real_write = data_cache._write_signals

        def failing(path, parts, total):
            real_write(path, iter([np.zeros(10, np.float32)]), 10)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        monkeypatch.setattr(data_cache, "_write_signals", failing)
    n = 40
    parts = [np.ones(5000, dtype=np.float32) for _ in range(n)]
    folder = root / "cache" / "big-records-abc"
    with pytest.raises(atomic.WriteError, match="no space left on the device.*ECGBENCH_HOME"):
        data_cache.write_entry(folder, iter(parts), np.full(n, 5000), np.zeros(n), {"record_ids": [str(i) for i in range(n)]})
    assert list((root / "cache").iterdir()) == []  # the temporary folder is gone


def _fake_distribution(tmp_path: Path, module: str) -> None:
    dist = tmp_path / "broken_ecg_plugin-2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-ecg-plugin\nVersion: 2.3\n")
    (dist / "entry_points.txt").write_text(f"[ecgbench]\nbroken = {module}\n")


def test_a_plugin_whose_import_fails_is_skipped_named_and_listed(tmp_path, monkeypatch, capsys):
    from ecgbench.plugin_manager import broken_plugins, make_plugin_manager

    _fake_distribution(tmp_path, "no_such_module_for_ecgbench")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("ECGBENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    registry = build_registry(make_plugin_manager())
    build_registry(make_plugin_manager())  # a second manager in the same process: no second import, no second warning
    err = capsys.readouterr().err
    assert err.count("warning") == 1
    assert "plugin 'broken' of package broken-ecg-plugin 2.3 failed to import (ModuleNotFoundError" in err
    assert "pip uninstall broken-ecg-plugin" in err and "ECGBENCH_DISABLE_PLUGIN_AUTOLOAD=1" in err
    assert "dense" in registry.names("compressors")  # built-ins still work
    assert [b.name for b in broken_plugins()] == ["broken"]
    with pytest.raises(Exception, match=r"unknown compressor 'random_prune'.*broken-ecg-plugin \(broken: ModuleNotFoundError"):
        registry.get("compressors", "random_prune")

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "broken  [BROKEN: entry point broken-ecg-plugin 2.3]" in out and "ecgbench_plugins.compressors.dense  [builtin]" in out


def test_entry_points_are_scanned_once_per_process_and_workers_follow_the_driver(tmp_path, monkeypatch):
    import importlib.metadata

    import ecgbench.plugin_manager as pm_module

    calls = []
    real = importlib.metadata.entry_points

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(pm_module.importlib.metadata, "entry_points", counting)
    monkeypatch.delenv("ECGBENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    for _ in range(3):
        pm_module.make_plugin_manager()
    assert calls == [{"group": "ecgbench"}]
    assert os.environ[pm_module.PINNED_ENV].startswith(f"{os.getpid()}:")

    # A worker process started by that driver (another pid) loads only the driver's entry points:
    # a package installed meanwhile is not half-loaded into the running suite.
    pm_module.forget_entry_points()
    _fake_distribution(tmp_path, "no_such_module_for_ecgbench")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(pm_module.PINNED_ENV, "1:")
    pm_module.make_plugin_manager()
    assert pm_module.broken_plugins() == []  # 'broken' was never imported


def test_closed_stdout_ends_quietly(tmp_path):
    env = {**os.environ, "ECGBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ecgbench.cli.main", "plugins"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # like `ecgbench plugins | head -0`: the reader is gone before anything is written
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 1


def test_disk_errors_outside_the_report_writers_are_one_line_too(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nmatrix: {datasets: [synthetic: {n_records: 12}], models: [dscnn], compressors: [dense]}\n")
    assert main(["run", str(suite), "--db", str(blocker / "results.sqlite")]) == 1  # the store cannot be created
    err = capsys.readouterr().err
    assert err == f"ecgbench: error: cannot write {blocker}: a file is in the way where a folder should be: remove it or choose another folder\n"
    assert blocker.read_text() == "keep me"
