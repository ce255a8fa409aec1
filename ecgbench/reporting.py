"""Report-writer plugins: turn the stored results of a run into files."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ecgbench.plugin import Plugin


class Reporter(Plugin):
    """Writes one report format for a run.

    ``results`` is a :class:`ecgbench.store.RunResults` (the run's row and its
    cells with config and metrics as stored). :meth:`write` returns the paths
    it wrote under ``out_dir``.
    """

    kind: ClassVar[str] = "reporter"
    extension: ClassVar[str] = ""

    def write(self, results, out_dir: Path) -> list[Path]:
        raise NotImplementedError
