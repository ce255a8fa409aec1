"""The machine check at run start: one warning, with the fix, when the load exceeds the cores."""

from __future__ import annotations

import io
import os
import textwrap

import pytest

from ecgbench.run import machine


@pytest.fixture
def busy(monkeypatch):
    """``busy(load, cores)``: the OS reports that 1-minute load and core count."""

    def set_(load, cores):
        monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)

    return set_


def test_cores_and_load_come_from_the_os(busy):
    busy(3.5, 2)
    assert machine.cpu_count() == 2 and machine.load_average() == 3.5


def test_no_load_average_means_no_warning(monkeypatch):
    def unavailable():
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    assert machine.load_average() is None and machine.contention_warning(4) is None


@pytest.mark.parametrize(
    "load, cores, threads, warns",
    [(3.0, 2, 2, True), (2.0, 2, 2, False), (1.2, 2, 2, False), (9.0, 2, 1, False), (8.5, 8, 4, True)],
)
def test_warns_only_when_load_exceeds_cores_and_training_uses_threads(busy, load, cores, threads, warns):
    busy(load, cores)
    message = machine.contention_warning(threads)
    assert (message is not None) == warns
    if warns:
        assert "\n" not in message and "training.num_threads: 1" in message and f"{load:.1f}" in message


def test_run_warns_once_on_stderr(busy, tmp_path, registry, capsys, monkeypatch):
    from ecgbench.config.suite import load_suite
    from ecgbench.plugin_manager import make_plugin_manager
    from ecgbench.run import runner
    from ecgbench.run.store import ResultStore

    busy(5.0, 2)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    calls = []
    monkeypatch.setattr(runner._CellRunner, "execute", lambda self, cells: calls.append(len(cells)) or [])
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""
        name: busy
        data: {fs_hz: 100, window_s: 4}
        training: {epochs: 1, num_threads: 2}
        matrix:
          datasets: [synthetic: {n_records: 40}]
          models: [dscnn: {width: 4}]
          compressors: [dense, int8_static]
    """))
    suite = load_suite(path, registry)
    store = ResultStore(tmp_path / "r.sqlite")
    runner.run_suite(suite, registry, make_plugin_manager(), store, tmp_path, progress=False)
    err = capsys.readouterr().err
    assert calls == [2] and err.count("warning: load average 5.0 exceeds the 2 core(s)") == 1, err


def test_warn_if_contended_writes_the_line(busy):
    busy(3.0, 2)
    stream = io.StringIO()
    assert machine.warn_if_contended(2, stream) is True
    assert stream.getvalue().count("\n") == 1
    busy(1.0, 2)
    assert machine.warn_if_contended(2, io.StringIO()) is False
