"""Kill -9 at random moments of a suite, resume each time, and check nothing is lost or changed.

    python benchmarks/bench_kill_resume.py                      # suites/quick.yaml, 20 kills
    python benchmarks/bench_kill_resume.py --kills 5 --smoke    # shorter: 1 epoch of 2 batches per training

First an uninterrupted reference run (its own ECGBENCH_HOME in a temp folder)
gives the results and the wall time T, and ``ecgbench validate`` the start-up
time S (imports, suite validation). Then, in a fresh home, each attempt runs
``ecgbench run`` (which resumes) and is sent SIGKILL after S plus a delay
drawn uniformly from the work still to do, [0, T x (cells not done / cells)],
so kills land anywhere in the suite: in the dense baseline's training, inside
cells, between them; a last attempt runs to the end. The results must equal
the reference in every metric except what depends on the host's speed (host
latency, seconds). It prints how much work was redone: cells started and lost
to a kill, and the wall seconds spent beyond the reference (start-up of each
attempt included).
Reports go to the temp folder, never to reports/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(suite: Path, home: Path, extra: list[str], kill_after_s: float | None) -> tuple[float, bool]:
    """One ``ecgbench run``; returns (wall seconds, killed)."""
    env = {**os.environ, "ECGBENCH_HOME": str(home), "ECGBENCH_QUIET": "1"}
    command = [sys.executable, "-m", "ecgbench.cli.main", "run", str(suite), "--out", str(home / "reports"), *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=kill_after_s)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"ecgbench run failed ({proc.returncode}):\n{out}")
        return time.perf_counter() - started, False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return time.perf_counter() - started, True
    finally:
        if proc.poll() is None:  # the benchmark itself was stopped: leave no run behind
            proc.kill()


def results(home: Path) -> dict[str, dict]:
    """Finished cells: pipeline/seed -> metrics without host-speed values."""
    db = sqlite3.connect(home / "results.sqlite")
    rows = db.execute("SELECT pipeline, seed, status, metrics_json FROM cells WHERE status IN ('done', 'failed')").fetchall()
    db.close()
    return {f"{p}/seed{s}": {"status": st, **deterministic(json.loads(m or "{}"))} for p, s, st, m in rows}


def deterministic(metrics: dict) -> dict:
    """Metrics without what depends on the host's speed: the latency section, the host device, seconds."""
    out = {}
    for key, value in metrics.items():
        if key in ("latency", "host") or key.endswith("_s") or key == "seconds":
            continue
        if isinstance(value, dict):
            value = deterministic(value)
        elif isinstance(value, list):
            value = [deterministic(v) if isinstance(v, dict) else v for v in value]
        out[key] = value
    return out


def startup_seconds(suite: Path, home: Path) -> float:
    """Wall seconds of ``ecgbench validate``: a run's imports and suite validation, before any work."""
    env = {**os.environ, "ECGBENCH_HOME": str(home), "ECGBENCH_QUIET": "1"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ecgbench.cli.main", "validate", str(suite)], env=env, cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - started


def lost_cells(home: Path) -> int:
    """Cells a killed attempt had started and not finished (each is redone by a later attempt)."""
    db = sqlite3.connect(home / "results.sqlite")
    n = db.execute("SELECT COUNT(*) FROM run_cells WHERE outcome IN ('running', 'interrupted')").fetchone()[0]
    db.close()
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=ROOT / "suites" / "quick.yaml")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="pass --smoke to every run (1 epoch of 2 batches per training)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    args = parser.parse_args()
    extra = ["--smoke"] if args.smoke else []
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="ecgbench-kill-") as tmp:
        reference_home, killed_home = Path(tmp) / "reference", Path(tmp) / "killed"
        reference_s, _ = run_once(args.suite, reference_home, extra, None)
        reference = results(reference_home)
        print(f"reference: {len(reference)} cells in {reference_s:.1f} s")

        startup_s = startup_seconds(args.suite, killed_home)
        print(f"start-up (ecgbench validate): {startup_s:.1f} s")

        total_s, landed, attempts, done = 0.0, 0, 0, 0
        for _ in range(args.kills):
            delay = startup_s + rng.uniform(0, reference_s * (1 - done / len(reference)))
            wall, killed = run_once(args.suite, killed_home, extra, delay)
            total_s, landed, attempts = total_s + wall, landed + killed, attempts + 1
            done = sum(r["status"] == "done" for r in results(killed_home).values()) if (killed_home / "results.sqlite").exists() else 0
            print(f"  attempt {attempts}: {'killed' if killed else 'finished'} after {wall:.1f} s, {done} cells done")
            if not killed:
                break
        wall, _ = run_once(args.suite, killed_home, extra, None)
        total_s, attempts = total_s + wall, attempts + 1
        final = results(killed_home)

        same = final == reference
        differing = sorted(k for k in set(final) | set(reference) if final.get(k) != reference.get(k))
        print(f"kills landed: {landed} of {args.kills}; attempts: {attempts}")
        print(f"cells started and lost to a kill (redone): {lost_cells(killed_home)}")
        print(f"wall time: {total_s:.1f} s over all attempts vs {reference_s:.1f} s uninterrupted: {total_s - reference_s:+.1f} s redone or restarting "
              f"({(total_s - reference_s) / max(attempts - 1, 1):.1f} s per kill, ratio {total_s / reference_s:.2f})")
        print("results: identical to the uninterrupted run (all metrics except host latency and seconds)" if same else f"results DIFFER in: {differing}")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
