"""A dataset chosen outside a suite: a dataset YAML file, ``--dataset NAME --set KEY=VALUE``, or both.

A dataset file holds one entry shaped like an item of a suite's ``matrix.datasets``::

    wfdb: {annotation: atr, window_s: 30}

It is validated by the plugin's own ``Config``, exactly as in a suite, with
errors naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecgbench.config.suite import PluginRef, _split_entry, parse_yaml
from ecgbench.errors import ConfigError
from ecgbench.kinds.base import parse_config
from ecgbench.registry import Registry


def load_dataset_file(path: str | Path, registry: Registry | None = None) -> PluginRef:
    """The dataset entry of a YAML file (``NAME`` or ``{NAME: {settings}}``), validated by its plugin."""
    from ecgbench.registry import process_registry

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read dataset file {path}: {exc.strerror}; pass a YAML file such as suites/datasets/cpsc2021.yaml") from None
    raw = parse_yaml(text, str(path))
    where = str(path)
    if isinstance(raw, list) and len(raw) == 1:  # a one-item matrix.datasets list pasted as it is
        raw = raw[0]
    if raw is None:
        raise ConfigError(f"{where}: the file is empty; write one dataset entry, e.g. 'wfdb: {{annotation: atr, window_s: 30}}'")
    name, params = _split_entry(raw, where)
    registry = registry or process_registry()
    cls = registry.get("datasets", name, f"{where} at {name}")
    return PluginRef("datasets", name, parse_config(cls.Config, params, f"{where} at {name}"))


def parse_assignments(items: list[str], flag: str = "--set") -> dict[str, Any]:
    """``["annotation=atr", "window_s=30"]`` -> ``{"annotation": "atr", "window_s": 30}``: values read as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} window_s=30 (values are read as YAML)")
        if key in out:
            raise ConfigError(f"{flag} {key}=...: given twice; keep one")
        out[key] = parse_yaml(value, f"{flag} {item}") if value.strip() else None
    return out


def with_settings(ref: PluginRef, updates: dict[str, Any], where: str, registry: Registry | None = None) -> PluginRef:
    """``ref`` with ``updates`` over its settings, validated again (errors name ``where`` and the key)."""
    from ecgbench.registry import process_registry

    if not updates:
        return ref
    cls = (registry or process_registry()).get("datasets", ref.name, where)
    return PluginRef("datasets", ref.name, parse_config(cls.Config, {**ref.params(), **updates}, where))


def dataset_ref(name: str, params: dict[str, Any], where: str, registry: Registry | None = None) -> PluginRef:
    """The dataset plugin ``name`` with ``params``, validated (errors name ``where`` and the key)."""
    from ecgbench.registry import process_registry

    cls = (registry or process_registry()).get("datasets", name, where)
    return PluginRef("datasets", name, parse_config(cls.Config, params, where))
