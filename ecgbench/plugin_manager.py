"""Build the pluggy plugin manager: built-ins first, then the ``ecgbench`` entry points."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import pluggy

from ecgbench import hookspecs
from ecgbench.errors import PluginError

ENTRY_POINT_GROUP = "ecgbench"
DISABLE_AUTOLOAD_ENV = "ECGBENCH_DISABLE_PLUGIN_AUTOLOAD"
# "<pid>:<name>,<name>": the entry points the driving process loaded. Worker processes
# it starts (they inherit the environment) load only these, so a plugin installed
# while a run is going joins the next run, never half of this one.
PINNED_ENV = "ECGBENCH_PLUGIN_ENTRY_POINTS"

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
    "ecgbench_plugins.compressors.distill",
    "ecgbench_plugins.devices.builtin_profiles",
    "ecgbench_plugins.reporters.markdown",
    "ecgbench_plugins.reporters.tabular",
    "ecgbench_plugins.reporters.html",
    "ecgbench_plugins.reporters.models",
    "ecgbench_plugins.executors.local",
    "ecgbench_plugins.executors.processes",
    "ecgbench_plugins.executors.ray_executor",
    "ecgbench_plugins.loggers.mlflow_logger",
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
        for loaded in entry_point_plugins().loaded:
            if pm.get_plugin(loaded.name) is None and not pm.is_blocked(loaded.name):
                pm.register(loaded.plugin, name=loaded.name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc}: a hook implementation has no matching hook spec (misspelt name?)") from exc
    return pm


@dataclass(frozen=True)
class LoadedEntryPoint:
    """An ``ecgbench`` entry point imported in this process: its name, distribution and plugin object."""

    name: str
    dist: str
    version: str
    plugin: Any = field(compare=False)


@dataclass(frozen=True)
class BrokenPlugin:
    """An ``ecgbench`` entry point whose import failed: shown by ``ecgbench plugins`` and in "unknown ..." errors."""

    name: str
    dist: str
    version: str
    error: str

    def message(self) -> str:
        return (
            f"plugin '{self.name}' of package {self.dist} {self.version} failed to import ({self.error}); it is skipped. "
            f"Fix or uninstall it (pip uninstall {self.dist}), or set {DISABLE_AUTOLOAD_ENV}=1 to load no third-party plugins"
        )


@dataclass
class EntryPointPlugins:
    """The ``ecgbench`` entry points of this process, imported once: the ones that loaded and the broken ones."""

    loaded: list[LoadedEntryPoint] = field(default_factory=list)
    broken: list[BrokenPlugin] = field(default_factory=list)


_ENTRY_POINTS: EntryPointPlugins | None = None


def entry_point_plugins() -> EntryPointPlugins:
    """Import every ``ecgbench`` entry point once per process; a failing one is warned about once and skipped."""
    global _ENTRY_POINTS
    if _ENTRY_POINTS is not None:
        return _ENTRY_POINTS
    result = EntryPointPlugins()
    pinned = _pinned_names()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pinned is not None and ep.name not in pinned:
            continue
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure of a third-party package
            broken = BrokenPlugin(ep.name, dist_name, version, f"{type(exc).__name__}: {exc}")
            result.broken.append(broken)
            print(f"ecgbench: warning: {broken.message()}", file=sys.stderr)
            continue
        result.loaded.append(LoadedEntryPoint(ep.name, dist_name, version, plugin))
    if pinned is None:
        os.environ[PINNED_ENV] = f"{os.getpid()}:" + ",".join(e.name for e in result.loaded)
    _ENTRY_POINTS = result
    return result


def _pinned_names() -> set[str] | None:
    """The entry points a parent process loaded (see ``PINNED_ENV``), or None in the driving process."""
    pid, sep, names = os.environ.get(PINNED_ENV, "").partition(":")
    if not sep or pid == str(os.getpid()):
        return None
    return {n for n in names.split(",") if n}


def forget_entry_points() -> None:
    """Scan the entry points again on the next :func:`make_plugin_manager` (tests that install a fake package)."""
    global _ENTRY_POINTS
    _ENTRY_POINTS = None
    if os.environ.get(PINNED_ENV, "").startswith(f"{os.getpid()}:"):
        del os.environ[PINNED_ENV]


def broken_plugins() -> list[BrokenPlugin]:
    """The entry points whose import failed in this process (empty before any were loaded)."""
    return list(_ENTRY_POINTS.broken) if _ENTRY_POINTS is not None else []


def plugin_sources(pm: pluggy.PluginManager) -> dict[str, PluginSource]:
    """Map each registered plugin's name to its origin."""
    dists = {}
    for plugin, dist in pm.list_plugin_distinfo():
        dists[pm.get_name(plugin)] = f"entry point {dist.metadata['name']} {dist.version}"
    if _ENTRY_POINTS is not None:
        for loaded in _ENTRY_POINTS.loaded:
            if pm.get_plugin(loaded.name) is loaded.plugin:
                dists[loaded.name] = f"entry point {loaded.dist} {loaded.version}"
    out = {}
    for name, _plugin in pm.list_name_plugin():
        if name in BUILTIN_PLUGINS:
            origin = "builtin"
        else:
            origin = dists.get(name, "registered")
        out[name] = PluginSource(name, origin)
    return out
