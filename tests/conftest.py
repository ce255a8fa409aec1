"""Shared fixtures: a fresh plugin manager per test, tiny data and models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ecgbench.testing import TinyNet, make_random_splits

REPO = Path(__file__).resolve().parents[1]
CINC_DIR = Path(os.environ.get("ECGBENCH_CINC2017_DIR", REPO.parent / "shared" / "data" / "cinc2017"))

torch.set_num_threads(1)


@pytest.fixture
def plugin_manager():
    from ecgbench.plugin_manager import make_plugin_manager

    return make_plugin_manager(load_entrypoints=False)


@pytest.fixture
def registry(plugin_manager):
    from ecgbench.registry import build_registry

    return build_registry(plugin_manager)


@pytest.fixture
def tiny_splits():
    return make_random_splits()


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def cinc_dir() -> Path:
    if not (CINC_DIR / "REFERENCE.csv").exists():
        pytest.skip(f"real CinC 2017 data not found at {CINC_DIR} (set ECGBENCH_CINC2017_DIR)")
    return CINC_DIR


@pytest.fixture(autouse=True)
def _fresh_entry_points():
    """Entry points are imported once per process: scan them again around each test (some install fake packages)."""
    from ecgbench.plugin_manager import forget_entry_points

    forget_entry_points()
    yield
    forget_entry_points()
