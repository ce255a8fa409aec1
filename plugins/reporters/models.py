"""``models``: export each pipeline's final model next to the report, for ``ecgbench eval``.

Files are named after their pipeline (``dense.onnx``, ``magnitude-s0.8-fe2.onnx``, ``lth_ecg+int8_static.onnx``;
``index.json`` gives each file's pipeline steps with every setting)
and carry their preprocessing settings in ONNX metadata, so anyone can score
them on their own copy of the data. A model whose plain ONNX file is larger
than ``max_bytes`` is written in its smallest lossless format instead (a
pruned model's zeros cost nothing there), e.g. ``lth_ecg.onnx.sparse.zst``;
``ecgbench eval`` reads every format. Models that do not fit even then are
listed in ``index.json`` but not copied: repositories are no place for big binaries.
Each ``index.json`` entry names the pipeline, cell and seed (and, for merged runs, the ``run``
it comes from), and the cell's test ``test_challenge_f1`` and ``test_af_f1`` (what ``ecgbench eval --out`` compares
with the models' scores on another dataset).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from ecgbench import PluginConfig, atomic, hookimpl
from ecgbench.config.labels import safe_name
from ecgbench.kinds.reporter import Reporter


def model_stem(cell) -> str:
    """The pipeline label, any character outside ``A-Z a-z 0-9 . _ + -`` replaced (``<stem>.onnx`` is the file)."""
    return safe_name(cell.pipeline)


def smallest_fitting(onnx_bytes: bytes, max_bytes: int, storage_format: str | None = None) -> tuple[str, bytes] | None:
    """``(format, data)``: plain ONNX when it fits in ``max_bytes``, else the model's smallest format if that fits, else None.

    ``storage_format`` is the smallest format as the cell's measurement found it
    (``size.storage_format``); it is measured again only when a store lacks it.
    """
    from ecgbench.measure.sizing import canonical_zeros, save_format, size_report

    if len(onnx_bytes) <= max_bytes:
        return "onnx", onnx_bytes
    fmt = storage_format or size_report(onnx_bytes)["storage_format"]
    data = save_format(canonical_zeros(onnx_bytes), fmt)
    return (fmt, data) if len(data) <= max_bytes else None


class ModelsReporter(Reporter):
    """Writes the exported model of every finished cell into ``<out>/models/``, with an ``index.json``."""

    name = "models"
    description = "the final model of each pipeline (ONNX, or its sparse/zstd file when large), for ecgbench eval"
    extension = ".onnx"

    class Config(PluginConfig):
        max_bytes: int = Field(2_000_000, ge=1, description="bytes a model file may take; larger models are listed, not copied")

    def write(self, results, out_dir: Path) -> list[Path]:
        from ecgbench.measure.sizing import FORMAT_SUFFIXES

        folder = atomic.ensure_dir(Path(out_dir) / "models", "pass another --out")
        done = [c for c in results.cells if c.status == "done" and c.artifacts.get("onnx")]
        several = len({(c.dataset, c.model, c.seed) for c in done}) > 1
        written, index = [], []
        for cell in done:
            stem = model_stem(cell)
            if several:
                stem += f".{cell.dataset}.{cell.model}.seed{cell.seed}"
            source = Path(cell.artifacts["onnx"])
            entry = {
                "pipeline": cell.pipeline, "cell_id": cell.cell_id, "seed": cell.seed, "steps": (cell.config or {}).get("steps"), **_test_scores(cell),
            }
            cell_runs = getattr(results, "cell_runs", None)
            if cell_runs:  # merged runs: which run the model comes from
                entry["run"] = cell_runs.get(cell.cell_id)
            architecture = (cell.metrics or {}).get("architecture")
            if isinstance(architecture, dict) and architecture.get("name"):  # the file's own model (a distilled student's)
                entry["model"] = {"name": architecture["name"], "params": architecture.get("params") or {}}
            if not source.exists():
                entry["missing"] = str(source)
            else:
                onnx_bytes = source.read_bytes()
                fitting = smallest_fitting(onnx_bytes, self.config.max_bytes, (cell.metrics.get("size") or {}).get("storage_format"))
                if fitting is None:
                    entry["not_copied"] = f"{len(onnx_bytes)} bytes as ONNX, more than {self.config.max_bytes} in every format"
                else:
                    fmt, data = fitting
                    path = folder / (stem + FORMAT_SUFFIXES[fmt])
                    atomic.write_bytes(path, data, hint="pass another --out")
                    written.append(path)
                    entry.update(file=path.name, format=fmt, bytes=len(data))
            index.append(entry)
        atomic.write_text(folder / "index.json", json.dumps({"run": results.run.run_id, "models": index}, indent=1), hint="pass another --out")
        return written + [folder / "index.json"]


def _test_scores(cell) -> dict[str, float]:
    """The cell's in-distribution test scores, for cross-dataset reports of the published models."""
    test = cell.metrics.get("test") or {}
    return {f"test_{key}": test[key] for key in ("challenge_f1", "af_f1") if isinstance(test.get(key), (int, float))}


@hookimpl
def ecgbench_register_reporters(register):
    register(ModelsReporter)
