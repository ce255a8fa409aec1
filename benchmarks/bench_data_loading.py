"""Cold vs warm loading of the CinC 2017 folder through the data cache (prints figures; never fails on timing).

    python benchmarks/bench_data_loading.py [FOLDER]

FOLDER defaults to $ECGBENCH_CINC2017_DIR, else ../shared/data/cinc2017
beside the repository. Each measurement runs in a fresh process on one
temporary cache folder:

- cold: empty cache, every record read with wfdb, resampled, written;
- warm: the same call again (dataset fingerprint + memory-mapping the cache);
- memory: the warm load's peak Python allocations (tracemalloc) and the growth
  of the process's peak resident memory after reading every sample once,
  both against the size of the split arrays.

Targets: warm >= 20x faster than cold; warm memory <= 1.5x the arrays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = REPO.parent / "shared" / "data" / "cinc2017"


def child(folder: str, cache: str, trace: bool) -> dict:
    """One load in this process; returns timings and memory figures."""
    import resource
    import tracemalloc

    import numpy as np

    from ecgbench.data.config import DataConfig
    from ecgbench.data.loader import load_splits
    from ecgbench_plugins.datasets.cinc2017 import CinC2017

    dataset = CinC2017.from_params({"path": folder})
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    splits = load_splits(dataset, DataConfig(fs_hz=100), Path(cache))
    seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1] if trace else None
    if trace:
        tracemalloc.stop()
    parts = (splits.train, splits.val, splits.test)
    array_bytes = sum(p.signals.nbytes + p.offsets.nbytes + p.labels.nbytes for p in parts)
    checksum = sum(float(p.signals.sum(dtype=np.float64)) for p in parts)  # touch every sample, no copy
    rss_after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": seconds,
        "records": sum(len(p) for p in parts),
        "array_bytes": array_bytes,
        "traced_peak_bytes": traced_peak,
        "rss_growth_bytes": (rss_after_kb - rss_before_kb) * 1024,
        "checksum": checksum,
    }


def run_child(folder: Path, cache: Path, trace: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", str(folder), str(cache)] + (["--trace"] if trace else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "ECGBENCH_QUIET": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        print(json.dumps(child(argv[1], argv[2], trace="--trace" in argv)))
        return 0
    folder = Path(argv[0] if argv else os.environ.get("ECGBENCH_CINC2017_DIR", DEFAULT_FOLDER))
    if not (folder / "REFERENCE.csv").is_file():
        print(f"no CinC 2017 data at {folder} (pass a folder or set ECGBENCH_CINC2017_DIR); nothing measured")
        return 0
    with tempfile.TemporaryDirectory(prefix="ecgbench-bench-") as tmp:
        cold = run_child(folder, Path(tmp))
        warm = run_child(folder, Path(tmp))
        traced = run_child(folder, Path(tmp), trace=True)
    assert cold["checksum"] == warm["checksum"], "warm load returned different data"
    mb = 1 / 2**20
    size = warm["array_bytes"]
    print(f"CinC 2017 at {folder}: {warm['records']} records, split arrays {size * mb:.1f} MB (100 Hz, float32)")
    print(f"cold load (empty cache):  {cold['seconds']:8.2f} s")
    print(f"warm load (cache):        {warm['seconds']:8.3f} s")
    print(f"warm speed-up:            {cold['seconds'] / warm['seconds']:8.1f}x   (target >= 20x)")
    print(
        f"warm load peak Python allocations (tracemalloc): {traced['traced_peak_bytes'] * mb:.1f} MB "
        f"= {traced['traced_peak_bytes'] / size:.2f}x the arrays   (target <= 1.5x)"
    )
    print(
        f"warm peak RSS growth after reading every sample once: {warm['rss_growth_bytes'] * mb:.1f} MB "
        f"= {warm['rss_growth_bytes'] / size:.2f}x the arrays   (target <= 1.5x)"
    )
    print(f"cold peak RSS growth (building the cache): {cold['rss_growth_bytes'] * mb:.1f} MB = {cold['rss_growth_bytes'] / size:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
