"""``models``: export each pipeline's final model as ONNX next to the report, for ``ecgbench eval``.

Files are named after their pipeline (``dense.onnx``, ``lth_ecg+int8_static.onnx``)
and carry their preprocessing settings in ONNX metadata, so anyone can score
them on their own copy of the data. Models larger than ``max_bytes`` are
listed but not copied (repositories are no place for big binaries).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from pydantic import Field

from ecgbench import PluginConfig, hookimpl
from ecgbench.reporting import Reporter


def model_filename(cell) -> str:
    """``<pipeline>.onnx``, with a seed and model suffix only when the run has several."""
    return re.sub(r"[^A-Za-z0-9_.+=,()-]", "_", cell.pipeline) + ".onnx"


class ModelsReporter(Reporter):
    """Copies the exported ONNX model of every finished cell into ``<out>/models/``."""

    name = "models"
    description = "the final ONNX model of each pipeline, for ecgbench eval"
    extension = ".onnx"

    class Config(PluginConfig):
        max_bytes: int = Field(2_000_000, ge=1, description="models larger than this are listed, not copied")

    def write(self, results, out_dir: Path) -> list[Path]:
        folder = Path(out_dir) / "models"
        folder.mkdir(parents=True, exist_ok=True)
        done = [c for c in results.cells if c.status == "done" and c.artifacts.get("onnx")]
        several = len({(c.dataset, c.model, c.seed) for c in done}) > 1
        written, index = [], []
        for cell in done:
            name = model_filename(cell)
            if several:
                name = name[: -len(".onnx")] + f".{cell.dataset}.{cell.model}.seed{cell.seed}.onnx"
            source = Path(cell.artifacts["onnx"])
            entry = {"file": name, "pipeline": cell.pipeline, "cell_id": cell.cell_id, "seed": cell.seed}
            if not source.exists():
                entry["missing"] = str(source)
            elif source.stat().st_size > self.config.max_bytes:
                entry["not_copied"] = f"{source.stat().st_size} bytes > {self.config.max_bytes}"
            else:
                shutil.copyfile(source, folder / name)
                written.append(folder / name)
            index.append(entry)
        (folder / "index.json").write_text(json.dumps({"run": results.run.run_id, "models": index}, indent=1))
        return written + [folder / "index.json"]


@hookimpl
def ecgbench_register_reporters(register):
    register(ModelsReporter)
