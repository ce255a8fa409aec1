"""Content-addressed artifact cache (dense baselines, preprocessed data) shared by runs and processes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator

DONE_MARKER = "done.json"


class ArtifactCache:
    """Folders ``<root>/<kind>/<key>/``; an entry counts once its ``done.json`` exists."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def entry(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def is_done(self, kind: str, key: str) -> bool:
        return (self.entry(kind, key) / DONE_MARKER).exists()

    def read_done(self, kind: str, key: str) -> dict[str, Any]:
        return json.loads((self.entry(kind, key) / DONE_MARKER).read_text())

    def mark_done(self, kind: str, key: str, info: dict[str, Any]) -> None:
        """Write the marker atomically, after everything else in the entry."""
        folder = self.entry(kind, key)
        tmp = folder / f".{DONE_MARKER}.{os.getpid()}"
        tmp.write_text(json.dumps(info, indent=1, default=str))
        os.replace(tmp, folder / DONE_MARKER)

    @contextlib.contextmanager
    def locked(self, kind: str, key: str) -> Iterator[Path]:
        """Hold an exclusive lock on an entry, so two processes never build it twice."""
        folder = self.entry(kind, key)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
