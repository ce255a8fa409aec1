"""Pipeline labels people can read and shells can take: ``magnitude-s0.8-fe2``, ``lth_ecg+int8_static``.

A pipeline without a ``label`` is named after its steps: each step's plugin name,
then each non-default setting as an abbreviation of its name (the initials of
its words: ``finetune_epochs`` -> ``fe``) followed by its value, steps joined by
``+``. Labels use only ``A-Z a-z 0-9 . _ + -``, so they serve as file names
unquoted. They are only names: a cell's id is the hash of its settings, never
of its label, and every setting stays in the cell's JSON (``steps``).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def safe_name(text: str) -> str:
    """``text`` with every character outside ``A-Z a-z 0-9 . _ + -`` replaced by ``_``."""
    return UNSAFE.sub("_", text)


def abbreviations(keys: Sequence[str]) -> dict[str, str]:
    """A short, distinct name per setting: its words' initials, the first word longer where two collide."""
    out: dict[str, str] = {}
    for key in keys:
        words = [w for w in key.split("_") if w] or [key]
        for n in range(1, len(words[0]) + 1):
            short = words[0][:n] + "".join(w[0] for w in words[1:])
            if short not in out.values() and all(_abbreviate_at(other, n) != short for other in keys if other != key):
                break
        else:
            short = key.replace("_", "")
        out[key] = short
    return out


def _abbreviate_at(key: str, n: int) -> str:
    words = [w for w in key.split("_") if w] or [key]
    return words[0][:n] + "".join(w[0] for w in words[1:])


def value_text(value: Any) -> str:
    """A setting's value in a label: ``0.8``, ``2``, ``1e-05``, ``iteration``, ``0.5_40``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "_".join(value_text(v) for v in value)
    if isinstance(value, Mapping):
        return "_".join(f"{k}{value_text(v)}" for k, v in value.items())
    return str(value)


def step_label(name: str, params: Mapping[str, Any]) -> str:
    """``magnitude`` for defaults; ``magnitude-s0.8-fe2`` with settings (a text setting shows its value alone)."""
    short = abbreviations(list(params))
    parts = [name]
    for key, value in params.items():
        parts.append(value_text(value) if isinstance(value, str) else short[key] + value_text(value))
    return safe_name("-".join(parts))


def pipeline_label(steps: Iterable[tuple[str, Mapping[str, Any]]]) -> str:
    """The label of ``(name, non-default params)`` steps, joined by ``+``."""
    return "+".join(step_label(name, params) for name, params in steps)


def settings_text(steps: Iterable[tuple[str, Mapping[str, Any]]]) -> str:
    """Every setting spelt out, for messages: ``magnitude(sparsity=0.8,finetune_epochs=2)+int8_static``."""
    parts = []
    for name, params in steps:
        parts.append(name if not params else f"{name}({','.join(f'{k}={v}' for k, v in params.items())})")
    return "+".join(parts)


def unique(labels: Sequence[str], automatic: Sequence[bool]) -> list[str]:
    """``labels`` with every automatic one that repeats an earlier or a chosen label suffixed ``-2``, ``-3``, ...

    Chosen labels are kept as they are (their duplicates are an error the caller reports).
    """
    taken = {label for label, auto in zip(labels, automatic) if not auto}
    out = []
    for label, auto in zip(labels, automatic):
        if auto:
            candidate, n = label, 1
            while candidate in taken:
                n += 1
                candidate = f"{label}-{n}"
            label = candidate
            taken.add(label)
        out.append(label)
    return out
