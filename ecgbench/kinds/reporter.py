"""Report-writer plugins: turn the stored results of a run into files."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ecgbench import atomic
from ecgbench.kinds.base import Plugin


class Reporter(Plugin):
    """Writes one report format for a run.

    ``results`` is a :class:`ecgbench.run.store.RunResults` (the run's row and its
    cells with config and metrics as stored). :meth:`write` returns the paths
    it wrote under ``out_dir``. Write files with :mod:`ecgbench.atomic`
    (``atomic.write_text``/``write_bytes``): a failed report then leaves the
    previous one untouched.
    """

    kind: ClassVar[str] = "reporter"
    extension: ClassVar[str] = ""

    def write(self, results, out_dir: Path) -> list[Path]:
        raise NotImplementedError


class SingleFileReporter(Reporter):
    """A reporter that writes one text file, ``<basename><extension>``: implement :meth:`render`."""

    basename: ClassVar[str] = "report"

    def render(self, results, out_dir: Path) -> str:
        raise NotImplementedError

    def write(self, results, out_dir: Path) -> list[Path]:
        out_dir = atomic.ensure_dir(out_dir, "pass another --out")
        path = out_dir / f"{self.basename}{self.extension}"
        atomic.write_text(path, self.render(results, out_dir), hint="pass another --out")
        return [path]
