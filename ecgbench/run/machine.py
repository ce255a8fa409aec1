"""The machine a run starts on: its cores and load, and a warning when training threads would fight for them.

OpenMP threads that find their cores busy wait for each other at every
operation: on a shared 2-core machine, training with 2 threads ran 15 times
slower than with 1. The thread count cannot follow the load by itself, since
``training.num_threads`` changes the trained weights and so is part of every
cell's identity: a default read from the load would make results depend on
who else was busy. So ``run`` says so once, with the fix, and the suite decides.
"""

from __future__ import annotations

import os
import sys


def cpu_count() -> int:
    """Cores this process may run on (its affinity where the OS tells it), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def load_average() -> float | None:
    """The 1-minute load average, or None where the OS has none (Windows)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def contention_warning(num_threads: int, cores: int | None = None, load: float | None = None) -> str | None:
    """One line naming the fix when the load exceeds the cores and training uses more than one thread; else None."""
    cores = cpu_count() if cores is None else cores
    load = load_average() if load is None else load
    if load is None or load <= cores or num_threads <= 1:
        return None
    return (
        f"ecgbench: warning: load average {load:.1f} exceeds the {cores} core(s) of this machine, so training with "
        f"{num_threads} threads may run many times slower than with 1; set training.num_threads: 1 in the suite "
        "(it changes results, so those cells are computed anew)"
    )


def warn_if_contended(num_threads: int, stream=None) -> bool:
    """Print :func:`contention_warning` to stderr if there is one; True when it was printed."""
    message = contention_warning(num_threads)
    if message:
        print(message, file=stream or sys.stderr)
    return bool(message)
