"""The example third-party package (tests/example_plugin) is found through its entry point and used in a run."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from ecgbench.config.suite import load_suite
from ecgbench.plugin_manager import make_plugin_manager, plugin_sources
from ecgbench.registry import build_registry
from ecgbench.run.runner import run_suite
from ecgbench.run.store import ResultStore

EXAMPLE = Path(__file__).parent / "example_plugin"


@pytest.fixture
def installed_example(tmp_path, monkeypatch):
    """Install the example the way pip would expose it: its module on the path plus dist-info metadata
    holding the entry point read from its own pyproject.toml."""
    import tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    entry_points = project["entry-points"]["ecgbench"]
    dist = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (dist / "entry_points.txt").write_text("[ecgbench]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delenv("ECGBENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    yield project
    sys.modules.pop("ecgbench_random_prune", None)


def test_example_plugin_is_discovered_and_used_in_a_run(installed_example, tmp_path):
    pm = make_plugin_manager()
    registry = build_registry(pm)
    assert plugin_sources(pm)["random_prune"].origin == "entry point ecgbench-random-prune 0.1.0"
    assert registry.providers["compressors"]["random_prune"] == "random_prune"

    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text(
        textwrap.dedent(
            """
            name: example
            data: {fs_hz: 100, window_s: 5}
            training: {epochs: 1, batch_size: 8, num_threads: 1}
            measure: {bootstrap_resamples: 20, latency_repeats: 2, input_s: 10}
            matrix:
              datasets: [synthetic: {n_records: 40, max_duration_s: 20}]
              models: [dscnn: {width: 4, blocks: 3}]
              compressors: [dense, random_prune: {sparsity: 0.6}]
            """
        )
    )
    suite = load_suite(suite_path, registry)
    store = ResultStore(tmp_path / "r.sqlite")
    summary = run_suite(suite, registry, pm, store, tmp_path, progress=False)
    assert (summary.done, summary.failed) == (2, 0)
    cells = {c.pipeline: c for c in store.run_results(summary.run_id).cells}
    pruned = cells["random_prune-s0.6"].metrics
    assert pruned["compression"]["steps"][0]["record"] == {"sparsity": 0.6}
    dense_nonzero = cells["dense"].metrics["size"]["nonzero_params"]
    assert pruned["size"]["nonzero_params"] < 0.7 * dense_nonzero
