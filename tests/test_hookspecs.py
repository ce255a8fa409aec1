"""Every hook has an implementation among the built-ins and the test plugins (the datasette rule),
checked through pluggy's hook implementations, not by names in source text.

The test plugins are the example package (tests/example_plugin, a compressor) and tests/kinds_plugin.py
(every hook, lifecycle included), each used by a test (test_example_plugin.py, test_kinds_plugin.py).
The docstrings are checked in test_hook_docs.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pluggy
from kinds_plugin import KindsPlugin

from ecgbench import hookspecs
from ecgbench.hookdocs import hook_functions

EXAMPLE_MODULE = Path(__file__).parent / "example_plugin" / "ecgbench_random_prune.py"


def _example_module():
    spec = importlib.util.spec_from_file_location("example_random_prune", EXAMPLE_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _register_test_plugins(pm: pluggy.PluginManager) -> None:
    pm.register(KindsPlugin(), name="kinds-plugin")
    pm.register(_example_module(), name="random_prune")


def _unimplemented(pm: pluggy.PluginManager, names) -> list[str]:
    """Hooks of ``names`` that no registered plugin implements."""
    return [name for name in names if not getattr(pm.hook, name).get_hookimpls()]


def test_the_manager_knows_exactly_the_hooks_of_hookspecs(plugin_manager):
    specs = {name for name in dir(plugin_manager.hook) if name.startswith("ecgbench_")}
    assert specs == set(hook_functions(hookspecs))
    assert len(specs) >= 10


def test_every_hook_is_implemented_by_a_builtin_or_a_test_plugin(plugin_manager):
    _register_test_plugins(plugin_manager)
    missing = _unimplemented(plugin_manager, hook_functions(hookspecs))
    assert missing == [], f"hooks nothing implements (add one to tests/kinds_plugin.py and a test using it): {missing}"


def test_an_unimplemented_hook_is_reported():
    class Extra:
        @hookspecs.hookspec
        def ecgbench_extra(self, thing: str) -> None:
            """A hook nobody implements."""

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.add_hookspecs(Extra)
    _register_test_plugins(pm)
    assert _unimplemented(pm, [*hook_functions(hookspecs), "ecgbench_extra"]) == ["ecgbench_extra"]
