"""Repository-only fixtures; the shared ones (``plugin_manager``, ``registry``, ``tiny_splits``,
``tiny_model``, ``compression_context``) come from the ``ecgbench.pytest_plugin`` pytest plugin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CINC_DIR = Path(os.environ.get("ECGBENCH_CINC2017_DIR", REPO.parent / "shared" / "data" / "cinc2017"))

torch.set_num_threads(1)


@pytest.fixture
def cinc_dir() -> Path:
    if not (CINC_DIR / "REFERENCE.csv").exists():
        pytest.skip(f"real CinC 2017 data not found at {CINC_DIR} (set ECGBENCH_CINC2017_DIR)")
    return CINC_DIR
