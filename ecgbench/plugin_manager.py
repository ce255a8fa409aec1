"""Build the pluggy plugin manager: built-ins first, then the ``ecgbench`` entry points."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import pluggy

from ecgbench import hookspecs
from ecgbench.errors import PluginError

ENTRY_POINT_GROUP = "ecgbench"
DISABLE_AUTOLOAD_ENV = "ECGBENCH_DISABLE_PLUGIN_AUTOLOAD"

# Built-in plugins, registered by module name exactly as a third party's module
# is registered by its entry point (the shape of pytest's default_plugins and
# datasette's DEFAULT_PLUGINS).
BUILTIN_PLUGINS: tuple[str, ...] = (
    "ecgbench_plugins.datasets.synthetic",
    "ecgbench_plugins.datasets.cinc2017",
    "ecgbench_plugins.datasets.wfdb_folder",
    "ecgbench_plugins.models.hannun34",
    "ecgbench_plugins.models.dscnn",
    "ecgbench_plugins.compressors.dense",
    "ecgbench_plugins.compressors.magnitude",
    "ecgbench_plugins.compressors.structured",
    "ecgbench_plugins.compressors.quantization",
    "ecgbench_plugins.compressors.lottery",
    "ecgbench_plugins.devices.builtin_profiles",
    "ecgbench_plugins.reporters.markdown",
    "ecgbench_plugins.reporters.tabular",
    "ecgbench_plugins.reporters.html",
    "ecgbench_plugins.reporters.models",
    "ecgbench_plugins.executors.local",
    "ecgbench_plugins.executors.processes",
    "ecgbench_plugins.executors.ray_executor",
    "ecgbench_plugins.metrics.builtin",
)


@dataclass(frozen=True)
class PluginSource:
    """Where a registered plugin came from, for ``ecgbench plugins``."""

    name: str
    origin: str  # "builtin", "entry point <dist> <version>", or "registered"


def make_plugin_manager(load_entrypoints: bool | None = None) -> pluggy.PluginManager:
    """A fresh manager with the hook specs, the built-ins and (unless disabled) third-party plugins."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # a built-in not shipped in this build
            raise
        pm.register(module, name=module_name)
    if load_entrypoints is None:
        load_entrypoints = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if load_entrypoints:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken third-party plugin must say which
            raise PluginError(f"loading a plugin of the '{ENTRY_POINT_GROUP}' entry-point group failed: {exc!r}") from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc}: a hook implementation has no matching hook spec (misspelt name?)") from exc
    return pm


def plugin_sources(pm: pluggy.PluginManager) -> dict[str, PluginSource]:
    """Map each registered plugin's name to its origin."""
    dists = {}
    for plugin, dist in pm.list_plugin_distinfo():
        dists[pm.get_name(plugin)] = f"entry point {dist.metadata['name']} {dist.version}"
    out = {}
    for name, _plugin in pm.list_name_plugin():
        if name in BUILTIN_PLUGINS:
            origin = "builtin"
        else:
            origin = dists.get(name, "registered")
        out[name] = PluginSource(name, origin)
    return out
