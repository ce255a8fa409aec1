"""Every hook is documented and exercised (the datasette rule)."""

from __future__ import annotations

import inspect
from pathlib import Path

from ecgbench import hookspecs

TESTS = Path(__file__).parent


def _hooks():
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("ecgbench_")]


def test_every_hook_has_a_docstring():
    for name in _hooks():
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and len(doc) > 40, f"{name} needs a docstring saying when, what it receives, what it returns"


def test_every_hook_is_used_in_a_test():
    sources = "".join(p.read_text() for p in TESTS.glob("test_*.py") if p.name != Path(__file__).name)
    plugins = "".join(p.read_text() for p in (TESTS.parent / "plugins").rglob("*.py"))
    for name in _hooks():
        assert name in sources or name in plugins, f"hook {name} is neither implemented by a built-in nor tested"
    lifecycle = [n for n in _hooks() if not n.startswith("ecgbench_register_")]
    for name in lifecycle:
        assert name in sources, f"lifecycle hook {name} has no test"
