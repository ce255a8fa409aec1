"""Plugin discovery, registration and duplicate detection."""

from __future__ import annotations

import sys
import textwrap

import pytest

from ecgbench import hookimpl
from ecgbench.kinds.compressor import Compressor
from ecgbench.errors import ConfigError, PluginError
from ecgbench.plugin_manager import BUILTIN_PLUGINS, make_plugin_manager, plugin_sources
from ecgbench.registry import KINDS, build_registry


def test_builtins_register_every_kind(registry):
    for kind in KINDS:
        assert registry.names(kind), f"no built-in {kind}"
    assert "dense" in registry.names("compressors")
    assert "local" in registry.names("executors")


def test_builtins_are_listed_with_their_origin(plugin_manager):
    sources = plugin_sources(plugin_manager)
    assert sources["ecgbench_plugins.compressors.dense"].origin == "builtin"
    assert set(sources) <= set(BUILTIN_PLUGINS)


class _Twin(Compressor):
    name = "dense"


class TwinPlugin:
    @hookimpl
    def ecgbench_register_compressors(self, register):
        register(_Twin)


def test_duplicate_name_names_both_plugins(plugin_manager):
    plugin_manager.register(TwinPlugin(), name="twin-plugin")
    with pytest.raises(PluginError) as info:
        build_registry(plugin_manager)
    message = str(info.value)
    assert "'dense'" in message and "twin-plugin" in message and "ecgbench_plugins.compressors.dense" in message


def test_unknown_name_suggests_close_match(registry):
    with pytest.raises(ConfigError, match="did you mean 'dense'"):
        registry.get("compressors", "dens", "x.yaml at matrix.compressors[0]")


class Misspelt:
    @hookimpl
    def ecgbench_register_compresors(self, register):  # typo on purpose
        pass


def test_misspelt_hook_fails_loudly(monkeypatch):
    import ecgbench.plugin_manager as pm_module

    loaded = pm_module.EntryPointPlugins(loaded=[pm_module.LoadedEntryPoint("misspelt", "misspelt-dist", "1.0", Misspelt())])
    monkeypatch.setattr(pm_module, "entry_point_plugins", lambda: loaded)
    with pytest.raises(PluginError, match="ecgbench_register_compresors"):
        make_plugin_manager(load_entrypoints=True)


def test_entry_point_plugin_is_discovered(tmp_path, monkeypatch):
    """A package exposing the 'ecgbench' entry-point group is loaded like a built-in."""
    dist = tmp_path / "fake_ecg_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-ecg-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ecgbench]\nfake = fake_ecg_plugin\n")
    (tmp_path / "fake_ecg_plugin.py").write_text(
        textwrap.dedent(
            """
            from ecgbench import hookimpl
            from ecgbench.kinds.compressor import Compressor

            class Fake(Compressor):
                name = "fake_strategy"

            @hookimpl
            def ecgbench_register_compressors(register):
                register(Fake)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("ECGBENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pm = make_plugin_manager()
    registry = build_registry(pm)
    assert registry.providers["compressors"]["fake_strategy"] == "fake"
    assert plugin_sources(pm)["fake"].origin == "entry point fake-ecg-plugin 1.0"
    monkeypatch.setenv("ECGBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "fake_strategy" not in build_registry(make_plugin_manager()).names("compressors")
    sys.modules.pop("fake_ecg_plugin", None)
