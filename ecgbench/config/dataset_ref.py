"""Dataset settings files: one dataset entry, as in a suite's ``matrix.datasets``, in a YAML file of its own.

``suites/datasets/cpsc2021.yaml`` holds, for example::

    wfdb: {annotation: atr, window_s: 30, lead: I, default_rhythm: '(N', group_pattern: 'data_(\\d+)_'}

so a suite and ``ecgbench eval --dataset-file`` read the same settings. The entry is
validated by the dataset plugin's ``Config``, with errors naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecgbench.config.suite import PluginRef, _split_entry, parse_yaml
from ecgbench.errors import ConfigError
from ecgbench.kinds.base import parse_config
from ecgbench.registry import Registry

EXAMPLE = "wfdb: {annotation: atr, window_s: 30}"


def load_dataset_file(path: str | Path, registry: Registry | None = None, overrides: dict[str, Any] | None = None) -> PluginRef:
    """The dataset entry of ``path`` (a plugin name, or ``{name: {settings}}``), validated; ``overrides`` replace settings.

    ``registry`` defaults to this process's plugins (:func:`ecgbench.registry.process_registry`).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read dataset file {path}: {exc.strerror}; pass the path of a YAML file like `{EXAMPLE}`") from None
    entry = parse_yaml(text, str(path))
    if entry is None or isinstance(entry, list):
        got = "nothing" if entry is None else "a list"
        raise ConfigError(f"{path}: holds {got}; a dataset file holds one entry, a plugin name or a mapping like `{EXAMPLE}`")
    if isinstance(entry, dict) and len(entry) != 1:
        raise ConfigError(
            f"{path}: holds {len(entry)} keys ({', '.join(map(str, entry))}); a dataset file holds one entry like `{EXAMPLE}`"
        )
    name, params = _split_entry(entry, str(path))
    if registry is None:
        from ecgbench.registry import process_registry

        registry = process_registry()
    cls = registry.get("datasets", name, str(path))
    if not isinstance(params, dict):
        raise ConfigError(f"{path} at {name}: expected a mapping of settings, got {params!r}; e.g. `{EXAMPLE}`")
    config = parse_config(cls.Config, {**params, **(overrides or {})}, f"{path} at {name}")
    return PluginRef("datasets", name, config)


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


def dataset_ref(name: str, params: dict[str, Any], where: str, registry: Registry | None = None) -> PluginRef:
    """The dataset plugin ``name`` with ``params``, validated (errors name ``where`` and the key)."""
    from ecgbench.registry import process_registry

    cls = (registry or process_registry()).get("datasets", name, where)
    return PluginRef("datasets", name, parse_config(cls.Config, params, where))
