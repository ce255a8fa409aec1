"""Repository-only fixtures; the shared ones (``plugin_manager``, ``registry``, ``tiny_splits``,
``tiny_model``, ``compression_context``) come from the ``ecgbench.pytest_plugin`` pytest plugin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CINC_DIR = Path(os.environ.get("ECGBENCH_CINC2017_DIR", REPO.parent / "shared" / "data" / "cinc2017"))
CPSC_DIR = Path(os.environ.get("ECGBENCH_CPSC2021_DIR", REPO.parent / "shared" / "data" / "cpsc2021"))

torch.set_num_threads(1)


def pytest_configure(config: pytest.Config) -> None:
    """Load the fixtures plugin by hand when pytest did not: plugin autoload off
    (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``) or an install older than its ``pytest11`` entry point."""
    manager = config.pluginmanager
    if manager.get_plugin("ecgbench") is None and not manager.is_blocked("ecgbench"):
        import ecgbench.pytest_plugin

        manager.register(ecgbench.pytest_plugin, "ecgbench")


@pytest.fixture
def cinc_dir() -> Path:
    if not (CINC_DIR / "REFERENCE.csv").exists():
        pytest.skip(f"real CinC 2017 data not found at {CINC_DIR} (set ECGBENCH_CINC2017_DIR)")
    return CINC_DIR


@pytest.fixture
def cpsc_dir() -> Path:
    """The 18 shared CPSC 2021 records (6 patients, rhythm annotations), or a skip."""
    if not (CPSC_DIR / "RECORDS").exists():
        pytest.skip(f"real CPSC 2021 data not found at {CPSC_DIR} (set ECGBENCH_CPSC2021_DIR)")
    return CPSC_DIR


@pytest.fixture(autouse=True)
def _fresh_entry_points():
    """Entry points are imported once per process: scan them again around each test (some install fake packages)."""
    from ecgbench.plugin_manager import forget_entry_points

    forget_entry_points()
    yield
    forget_entry_points()
