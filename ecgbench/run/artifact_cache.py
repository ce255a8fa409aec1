"""Content-addressed artifact cache (dense baselines, preprocessed data) shared by runs and processes."""

from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path
from typing import Any, Iterator

from ecgbench import atomic

DONE_MARKER = "done.json"
CACHE_HINT = "or point ECGBENCH_HOME at a disk with room"


class ArtifactCache:
    """Folders ``<root>/<kind>/<key>/``; an entry counts once its ``done.json`` exists."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def entry(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def is_done(self, kind: str, key: str) -> bool:
        """Whether the entry's marker exists and reads back (a truncated or garbled one means: build it again)."""
        return self._marker(kind, key) is not None

    def read_done(self, kind: str, key: str) -> dict[str, Any]:
        info = self._marker(kind, key)
        if info is None:
            raise FileNotFoundError(f"artifact cache entry {self.entry(kind, key)} is not done (no readable {DONE_MARKER})")
        return info

    def _marker(self, kind: str, key: str) -> dict[str, Any] | None:
        try:
            info = json.loads((self.entry(kind, key) / DONE_MARKER).read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def mark_done(self, kind: str, key: str, info: dict[str, Any]) -> None:
        """Write the marker atomically, after everything else in the entry."""
        atomic.write_text(self.entry(kind, key) / DONE_MARKER, json.dumps(info, indent=1, default=str), hint=CACHE_HINT)

    @contextlib.contextmanager
    def locked(self, kind: str, key: str) -> Iterator[Path]:
        """Hold an exclusive lock on an entry, so two processes never build it twice."""
        folder = atomic.ensure_dir(self.entry(kind, key), CACHE_HINT)
        with atomic.translated(folder / ".lock", CACHE_HINT):
            handle = open(folder / ".lock", "w")
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
