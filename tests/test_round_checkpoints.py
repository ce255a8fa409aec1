"""Round checkpoints: a ticket search killed between rounds resumes to the ticket an uninterrupted search finds."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ecgbench.kinds.compressor import CompressionContext, ModelArtifact, RoundCheckpoints
from ecgbench.run.cell import step_progress
from ecgbench.testing import fast_recipe, make_context
from ecgbench_plugins.compressors.lottery import GoalDrivenTicketSearch, LotteryTicket, LthEcg, SearchResult
from ecgbench_plugins.compressors.magnitude import MagnitudePruning


class Killed(Exception):
    """Stands for a kill -9 right after a round's checkpoint was written."""


class KillingCheckpoints(RoundCheckpoints):
    """Saves like the real store, then 'dies' after the ``after``-th save."""

    def __init__(self, folder: Path, after: int) -> None:
        super().__init__(folder)
        self.after, self.saves = after, 0

    def save(self, state: dict) -> None:
        super().save(state)
        self.saves += 1
        if self.saves == self.after:
            raise Killed


def fresh(tmp_path: Path, checkpoints: RoundCheckpoints) -> tuple[torch.nn.Module, CompressionContext]:
    """A trained TinyNet and a context as a new process would make them (step 1's random stream)."""
    torch.set_num_threads(1)
    torch.manual_seed(12345)  # a new process's global generator differs from the killed one's
    model, ctx = make_context(tmp_path, recipe=fast_recipe(epochs=3))
    ctx.trainer.reseed(1)
    return model, dataclasses.replace(ctx, checkpoints=checkpoints)


def run(compressor, tmp_path, checkpoints, fits: list | None = None):
    model, ctx = fresh(tmp_path, checkpoints)
    if fits is not None:
        real_fit = ctx.trainer.fit
        ctx.trainer.fit = lambda *a, **k: (fits.append(1), real_fit(*a, **k))[1]
    return compressor.run(ModelArtifact(model=model), ctx)


def without_seconds(record):
    if isinstance(record, dict):
        return {k: without_seconds(v) for k, v in record.items() if k != "seconds"}
    if isinstance(record, list):
        return [without_seconds(v) for v in record]
    return record


def assert_same_ticket(a, b):
    assert without_seconds(a.record) == without_seconds(b.record)
    sa, sb = a.artifact.model.state_dict(), b.artifact.model.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert list(a.artifact.masks) == list(b.artifact.masks)
    assert all(torch.equal(a.artifact.masks[k], b.artifact.masks[k]) for k in a.artifact.masks)


CASES = {
    # (compressor, kill after this many saved rounds, fits an uninterrupted run makes, fits left after the kill)
    "lth late rewind": (LotteryTicket(LotteryTicket.Config(rate=0.4, rounds=4, rewind="iteration", rewind_epochs=1, train_epochs=2)), 2, 5, 2),
    "lth init": (LotteryTicket(LotteryTicket.Config(rate=0.4, rounds=3, train_epochs=2)), 1, 3, 2),
    "lth_ecg": (
        LthEcg(LthEcg.Config(max_f1_drop_points=0.0, initial_rate=0.6, alpha=1.5, rewind="iteration", train_epochs=2, max_rounds=4)),
        2,
        5,
        2,
    ),
    # paper: the rate decays every round, so the resumed rate matters even when every round is accepted
    "lth_ecg paper": (
        LthEcg(LthEcg.Config(schedule="paper", max_f1_drop_points=0.0, train_epochs=1, max_rounds=4)),
        2,
        4,
        2,
    ),
    "lth_ecg paired bootstrap, lr rewinding": (
        LthEcg(
            LthEcg.Config(
                accept="paired_bootstrap", accept_resamples=200, max_f1_drop_points=0.0, rewind="lr", initial_rate=0.6, train_epochs=2, max_rounds=3
            )
        ),
        1,
        3,
        2,
    ),
    "magnitude steps 3": (MagnitudePruning(MagnitudePruning.Config(sparsity=0.9, steps=3, finetune_epochs=2)), 1, 3, 2),
}


@pytest.mark.parametrize("case", CASES)
def test_killed_between_rounds_resumes_to_the_uninterrupted_ticket(tmp_path, case):
    compressor, kill_after, n_fits, left = CASES[case]
    full_fits: list = []
    uninterrupted = run(compressor, tmp_path / "a", RoundCheckpoints(), full_fits)
    assert len(full_fits) == n_fits

    folder = tmp_path / "checkpoints"
    with pytest.raises(Killed):
        run(compressor, tmp_path / "b", KillingCheckpoints(folder, kill_after))
    saved = RoundCheckpoints(folder).load()
    assert saved["round"] == kill_after

    resumed_fits: list = []
    resumed = run(compressor, tmp_path / "c", RoundCheckpoints(folder), resumed_fits)
    assert len(resumed_fits) == left  # the saved rounds (and the late-rewinding fit) are not redone
    assert_same_ticket(resumed, uninterrupted)


@pytest.mark.parametrize("case", ["lth_ecg", "lth_ecg paper", "lth_ecg paired bootstrap, lr rewinding"])
def test_the_lth_ecg_cases_reject_a_round_so_the_rate_is_resumed_too(tmp_path, case):
    compressor = CASES[case][0]
    record = run(compressor, tmp_path, RoundCheckpoints()).record
    assert record["rejected_rounds"] >= 1 and record["accepted_rounds"] >= 1, record["rounds"]
    if case == "lth_ecg paper":
        assert [r["rate"] for r in record["rounds"]] == pytest.approx([0.3 / 1.1**k for k in range(4)])


def test_progress_is_written_where_the_runner_reads_it(tmp_path):
    folder = tmp_path / "checkpoints"
    compressor = LotteryTicket(LotteryTicket.Config(rate=0.5, rounds=2, train_epochs=1))
    run(compressor, tmp_path, RoundCheckpoints(folder))
    text = (folder / RoundCheckpoints.PROGRESS_FILE).read_text()
    assert text.startswith("lth round 2: 4.0x, sparsity 0.7500, val F1 ")  # 1/(0.5*0.5) of the weights left


def test_search_resumed_from_any_round_repeats_the_rest():
    scores = iter([0.9, 0.5, 0.8, 0.4, 0.85, 0.3])

    def search(log):
        return GoalDrivenTicketSearch(
            lambda sparsity, rate: 1 - (1 - sparsity) * (1 - rate),
            lambda _candidate: next(scores),
            lambda sparsity: sparsity,
            min_val_f1=0.7,
            initial_rate=0.5,
            alpha=2.0,
            min_rate=0.1,
            max_rounds=10,
            after_round=lambda result, rate: log.append((copy.deepcopy(result), rate)),
        )

    snapshots: list = []
    full = search(snapshots).run(0.0)
    assert [r.accepted for r in full.rounds] == [True, False, True, False, True, False]
    scores = iter([0.4, 0.85, 0.3])  # what rounds 4.. score
    resumed = search([]).run(0.0, resume=snapshots[2])
    assert isinstance(resumed, SearchResult)
    assert [(r.round, r.rate, r.sparsity, r.accepted) for r in resumed.rounds] == [
        (r.round, r.rate, r.sparsity, r.accepted) for r in full.rounds
    ]
    assert (resumed.best, resumed.stop_reason) == (full.best, full.stop_reason)


def test_without_a_folder_nothing_is_kept_and_a_garbled_checkpoint_starts_over(tmp_path):
    none = RoundCheckpoints()
    none.save({"round": 1})
    none.progress("round 1")
    assert none.load() is None
    store = RoundCheckpoints(tmp_path)
    store.save({"round": 2, "x": torch.arange(3)})
    assert store.load()["round"] == 2 and torch.equal(store.load()["x"], torch.arange(3))
    (tmp_path / RoundCheckpoints.FILE).write_bytes(b"torn")
    assert store.load() is None
    store.clear()
    assert not (tmp_path / RoundCheckpoints.FILE).exists()


# --- end to end: kill -9 an `ecgbench run` during an lth cell's second round --------------------------

SUITE = """\
name: rounds
data: {fs_hz: 100, window_s: 5, split: {val: 0.25, test: 0.25}}
training: {epochs: 2, batch_size: 8, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 20, latency_repeats: 2, latency_warmup: 1, input_s: 10}
matrix:
  datasets: [synthetic: {n_records: 60, max_duration_s: 20}]
  models: [hannun34: {width: 4, blocks: 2}]
  compressors:
    - {label: lth, steps: [lth: {rate: 0.4, rounds: 4, rewind: iteration, rewind_epochs: 1, train_epochs: 6}]}
  devices: [host]
report: {formats: [json]}
"""


def start(root: Path) -> subprocess.Popen:
    (root / "suite.yaml").write_text(SUITE)
    env = {**os.environ, "ECGBENCH_HOME": str(root / "home"), "ECGBENCH_QUIET": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", "import sys; from ecgbench.cli.main import main; sys.exit(main(sys.argv[1:]))", "run", "suite.yaml"]
    return subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(root: Path) -> dict:
    proc = start(root)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    db = sqlite3.connect(root / "home" / "results.sqlite")
    (metrics,) = db.execute("SELECT metrics_json FROM cells WHERE status='done'").fetchone()
    db.close()
    return deterministic(json.loads(metrics))


def deterministic(metrics):
    """Metrics without what depends on the host's speed (latency, seconds)."""
    if isinstance(metrics, dict):
        return {k: deterministic(v) for k, v in metrics.items() if k not in ("latency", "host", "seconds") and not k.endswith("_s")}
    if isinstance(metrics, list):
        return [deterministic(v) for v in metrics]
    return metrics


@pytest.mark.slow
def test_kill_9_in_round_two_then_resume_matches_an_uninterrupted_run(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "cut").mkdir()
    reference = finish(tmp_path / "ref")

    proc = start(tmp_path / "cut")
    deadline = time.time() + 300
    home = tmp_path / "cut" / "home"
    while not list(home.glob(f"steps/*/{RoundCheckpoints.PROGRESS_FILE}")):  # written after round 1's checkpoint
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "round 1 was never saved"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # round 1 saved: the search is in round 2 (or later)
    db = sqlite3.connect(home / "results.sqlite")
    (config,) = db.execute("SELECT config_json FROM cells WHERE status='running'").fetchone()
    db.close()
    assert step_progress(home, json.loads(config)).startswith("lth round ")  # what `ecgbench runs RUN` shows
    proc.wait()
    (checkpoint,) = home.glob(f"steps/*/{RoundCheckpoints.FILE}")
    saved_round = torch.load(checkpoint, weights_only=True)["round"]
    assert 1 <= saved_round < 4

    assert finish(tmp_path / "cut") == reference
    assert not checkpoint.exists()  # the finished step's cache entry holds the ticket; the checkpoint is gone


def test_runs_shows_the_progress_a_running_cell_reported(tmp_path, monkeypatch, capsys):
    from ecgbench.cli.main import main
    from ecgbench.run.cell import STEP_KIND, _prefix_key
    from ecgbench.run.store import ResultStore

    steps = [{"name": "lth", "params": {"rounds": 4}}, {"name": "int8_static", "params": {}}]
    config = {"baseline_key": "b1", "steps": steps}
    labels = {"dataset": "d", "model": "m", "pipeline": "lth+int8", "seed": 0}
    store = ResultStore(tmp_path / "results.sqlite")
    run_id = store.start_run("s", "s.yaml", {}, "0.1.0", planned=1)
    store.plan(run_id, [(0, "c0", labels, config)], "0.1.0")
    store.claim(run_id, "c0")
    store.mark_running(run_id, 0, "c0", labels, config, "0.1.0")
    store.close()
    monkeypatch.setenv("ECGBENCH_HOME", str(tmp_path))
    # The search (step 1 of the pipeline) saved its progress in its own cache entry.
    RoundCheckpoints(tmp_path / STEP_KIND / _prefix_key("b1", steps[:1])).progress("lth round 3: 8.0x, val F1 0.801")
    assert main(["runs", run_id]) == 0
    out = capsys.readouterr().out
    line = [row for row in out.splitlines() if " c0 " in row]
    assert out.splitlines()[1].split()[-1] == "progress"
    assert len(line) == 1 and line[0].split()[:3] == ["lth+int8", "0", "running"] and line[0].endswith("lth round 3: 8.0x, val F1 0.801")


def test_lth_ecg_paired_bootstrap_progress_shows_the_bound(tmp_path):
    folder = tmp_path / "checkpoints"
    settings = dict(accept="paired_bootstrap", accept_resamples=100, initial_rate=0.5, train_epochs=0, max_rounds=1)
    record = run(LthEcg(LthEcg.Config(**settings)), tmp_path, RoundCheckpoints(folder)).record
    text = (folder / RoundCheckpoints.PROGRESS_FILE).read_text()
    verdict = "accepted" if record["rounds"][0]["accepted"] else "rejected"
    assert text.startswith("lth_ecg round 1: 2.0x, rate 0.5000, sparsity 0.5000, val F1 ")
    assert text.endswith(f", delta F1 upper bound {record['rounds'][0]['delta_f1_upper']:+.4f} {verdict}")


def test_lth_ecg_reports_each_round_with_its_reduction(tmp_path):
    folder = tmp_path / "checkpoints"
    compressor = LthEcg(LthEcg.Config(max_f1_drop_points=100.0, initial_rate=0.5, train_epochs=1, max_rounds=2))
    run(compressor, tmp_path, RoundCheckpoints(folder))  # a 100-point budget accepts every round: 0.5, then 0.75 sparse
    text = (folder / RoundCheckpoints.PROGRESS_FILE).read_text()
    assert text.startswith("lth_ecg round 2: 4.0x, rate 0.5000, sparsity 0.7500, val F1 ") and text.endswith(" accepted")
