"""The fixtures plugin authors reuse come from the installed pytest plugin ``ecgbench.pytest_plugin``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

import ecgbench.pytest_plugin
from ecgbench.kinds.compressor import CompressionContext
from ecgbench.plugin_manager import BUILTIN_PLUGINS

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_MODULE = REPO / "tests" / "example_plugin" / "ecgbench_random_prune.py"
FIXTURES = ("plugin_manager", "registry", "tiny_splits", "tiny_model", "compression_context")


def test_fixtures_are_served_by_the_pytest11_plugin(request):
    entry_points = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    assert entry_points == {"ecgbench": "ecgbench.pytest_plugin"}
    assert request.config.pluginmanager.get_plugin("ecgbench") is ecgbench.pytest_plugin
    conftest = (REPO / "tests" / "conftest.py").read_text()
    for name in FIXTURES:
        assert callable(getattr(ecgbench.pytest_plugin, name))
        assert f"def {name}(" not in conftest  # one definition, so the two never disagree


def test_plugin_manager_has_the_builtins_only(plugin_manager, registry):
    assert {name for name, _ in plugin_manager.list_name_plugin()} <= set(BUILTIN_PLUGINS)
    assert "dense" in registry.names("compressors")


def test_tiny_data_and_model(tiny_splits, tiny_model):
    assert (len(tiny_splits.train), len(tiny_splits.val), len(tiny_splits.test)) == (64, 32, 32)
    assert tiny_model(torch.zeros(2, 1, 400)).shape == (2, 4)


def test_the_docs_example_test_passes(plugin_manager, compression_context, monkeypatch):
    page = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    code = page.split("```python\n# test_random_prune.py", 1)[1].split("```", 1)[0]
    code = code.split("\n", 1)[1]  # after the comment line
    monkeypatch.syspath_prepend(str(EXAMPLE_MODULE.parent))
    namespace: dict = {}
    try:
        exec(code, namespace)
        namespace["test_random_prune_masks_half_the_weights"](plugin_manager, compression_context)
    finally:
        sys.modules.pop("ecgbench_random_prune", None)
    model, ctx = compression_context
    assert isinstance(ctx, CompressionContext) and ctx.fs_hz == 100.0


@pytest.mark.slow  # a fresh interpreter importing torch
def test_the_helpers_import_without_pytest():
    code = "import sys; sys.modules['pytest'] = None; import ecgbench.testing; print(ecgbench.testing.TinyNet.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "TinyNet"
