"""Pytest fixtures for ecgbench and for plugin authors, installed as the ``pytest11`` plugin ``ecgbench``.

Every fixture builds in milliseconds; torch and the plugins are imported on
first use, so the plugin costs nothing in test sessions that use none of them.
Disable it with ``pytest -p no:ecgbench``.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def plugin_manager():
    """A fresh plugin manager with the built-ins only (entry-point autoload off): register test plugins on it."""
    from ecgbench.plugin_manager import make_plugin_manager

    return make_plugin_manager(load_entrypoints=False)


@pytest.fixture
def registry(plugin_manager):
    """The registry built from ``plugin_manager`` as it is when the fixture is first requested."""
    from ecgbench.registry import build_registry

    return build_registry(plugin_manager)


@pytest.fixture
def tiny_splits():
    """Tiny separable train/val/test splits at 100 Hz (``ecgbench.testing.make_random_splits``)."""
    from ecgbench.testing import make_random_splits

    return make_random_splits()


@pytest.fixture
def tiny_model():
    """A seeded, untrained ``TinyNet``."""
    import torch

    from ecgbench.testing import TinyNet

    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def compression_context(tmp_path: Path, tiny_splits):
    """``(model, ctx)``: a TinyNet trained on ``tiny_splits`` and the ``CompressionContext`` a compressor receives for it."""
    from ecgbench.testing import make_context

    return make_context(tmp_path, tiny_splits)
