"""The one content hash behind every identity in ecgbench: cell ids, baselines, cached steps and data."""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_LENGTH = 16
"""Hex digits kept: 64 bits, ample for the thousands of entries one store or cache holds."""


def stable_hash(obj: Any, length: int = KEY_LENGTH) -> str:
    """SHA-256 of the canonical JSON of ``obj`` (sorted keys, no spaces), shortened to ``length`` hex digits."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
