"""Name -> plugin tables, filled by the ``ecgbench_register_*`` hooks."""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from typing import Any

import pluggy

from ecgbench.errors import ConfigError, PluginError

KINDS: dict[str, str] = {
    "datasets": "ecgbench_register_datasets",
    "models": "ecgbench_register_models",
    "compressors": "ecgbench_register_compressors",
    "devices": "ecgbench_register_devices",
    "reporters": "ecgbench_register_reporters",
    "executors": "ecgbench_register_executors",
    "loggers": "ecgbench_register_loggers",
    "metrics": "ecgbench_register_metrics",
}

SINGULAR = {
    "datasets": "dataset",
    "models": "model",
    "compressors": "compressor",
    "devices": "device",
    "reporters": "reporter",
    "executors": "executor",
    "loggers": "logger",
    "metrics": "metric",
}


@dataclass
class Registry:
    """Everything the plugins registered, by kind and name, with the plugin that provided it."""

    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    providers: dict[str, dict[str, str]] = field(default_factory=dict)

    def get(self, kind: str, name: str, where: str = "") -> Any:
        """The registered thing, or a ConfigError with a close-match suggestion."""
        table = self.tables.get(kind, {})
        if name in table:
            return table[name]
        hint = difflib.get_close_matches(name, list(table), n=1)
        suffix = f"; did you mean '{hint[0]}'?" if hint else f"; known: {', '.join(sorted(table)) or 'none'}"
        loc = f" in {where}" if where else ""
        raise ConfigError(f"unknown {SINGULAR[kind]} '{name}'{loc}{suffix}{_broken_note()}")

    def names(self, kind: str) -> list[str]:
        return sorted(self.tables.get(kind, {}))


def _broken_note() -> str:
    """A reminder of the plugin packages that failed to import: the name may have been one of theirs."""
    from ecgbench.plugin_manager import broken_plugins

    broken = broken_plugins()
    if not broken:
        return ""
    names = ", ".join(f"{b.dist} ({b.name}: {b.error})" for b in broken)
    return f"; note: plugin package(s) failed to import and are skipped: {names}; see `ecgbench plugins`"


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every registration hook, one plugin at a time, so duplicates name both providers."""
    registry = Registry()
    for kind, hook_name in KINDS.items():
        table: dict[str, Any] = {}
        providers: dict[str, str] = {}
        hook = getattr(pm.hook, hook_name)
        # pluggy calls the last registered first; keep that order so a later
        # plugin is seen first, but any duplicate is an error either way.
        for impl in reversed(hook.get_hookimpls()):
            plugin_name = impl.plugin_name

            def register(thing: Any, _plugin: str = plugin_name, _kind: str = kind) -> None:
                name = getattr(thing, "name", None)
                if not isinstance(name, str) or not name:
                    raise PluginError(f"plugin '{_plugin}' registered a {SINGULAR[_kind]} without a 'name': {thing!r}")
                if name in table:
                    raise PluginError(
                        f"{SINGULAR[_kind]} '{name}' is registered by two plugins: '{providers[name]}' and '{_plugin}'; "
                        "uninstall or rename one of them"
                    )
                table[name] = thing
                providers[name] = _plugin

            impl.function(register=register)
        registry.tables[kind] = table
        registry.providers[kind] = providers
    return registry


@functools.lru_cache(maxsize=1)
def process_registry() -> Registry:
    """This process's registry (built-ins plus installed entry points), built once: for worker
    processes, and for readers of stored results that need the plugins' classes."""
    from ecgbench.plugin_manager import make_plugin_manager

    return build_registry(make_plugin_manager())
