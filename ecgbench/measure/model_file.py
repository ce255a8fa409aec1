"""A model file exported by ecgbench, read back: its ONNX bytes, stored format and metadata.

The model carries its preprocessing in its ``ecgbench.preprocessing``
metadata (written at export), so the same sampling rate, band-pass and
normalisation are applied as in training. It may be stored in any format of
:mod:`ecgbench.measure.sizing` (plain, sparse, zlib, zstd).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecgbench import CLASSES
from ecgbench.errors import ConfigError, EcgbenchError

PREPROCESSING_KEY = "preprocessing"
PREPROCESSING_FIELDS = ("fs_hz", "normalize", "bandpass_hz", "window_s")
EXPORTED_KEYS = ("pipeline", "model", "dataset", "seed", "precision", "cell_id", "version")


@dataclass(frozen=True)
class ModelFile:
    """A stored model: ``onnx_bytes`` as measured, the file's ``fmt`` and size, and its metadata."""

    path: Path
    onnx_bytes: bytes
    fmt: str
    file_bytes: int
    metadata: dict[str, Any]

    def data_config(self):
        """The DataConfig the model was trained with (from its metadata)."""
        return data_config_from_metadata(self.metadata, self.path)

    def exported(self) -> dict[str, Any]:
        """What the export says about the model's origin: pipeline, model, dataset, seed, precision, cell id, version."""
        return {k: self.metadata[k] for k in EXPORTED_KEYS if k in self.metadata}


def read_model_file(path: str | Path) -> ModelFile:
    """The model stored at ``path``, or a ConfigError saying what is wrong (missing, not a model, other classes)."""
    from ecgbench.measure.sizing import detect_format, load_format
    from ecgbench.train.export import read_metadata

    path = Path(path)
    if not path.is_file():
        raise ConfigError(missing_model_message(path))
    stored = path.read_bytes()
    fmt = detect_format(stored)
    try:
        onnx_bytes = load_format(stored, fmt)
        metadata = read_metadata(onnx_bytes)
    except EcgbenchError:
        raise
    except Exception as exc:
        raise ConfigError(f"{path} is not an ONNX model nor one of ecgbench's stored formats ({exc.__class__.__name__}: {exc})") from None
    classes = tuple(metadata.get("classes", CLASSES))
    if classes != CLASSES:
        raise ConfigError(f"{path}: the model predicts classes {list(classes)}, but eval scores CinC 2017 classes {list(CLASSES)}")
    return ModelFile(path, onnx_bytes, fmt, len(stored), metadata)


def missing_model_message(model_path: Path) -> str:
    """Says the file is missing and, when the same model lies beside it in another stored format, names that file."""
    from ecgbench.measure.sizing import FORMAT_SUFFIXES

    stem = model_path.name[: -len(".onnx")] if model_path.name.endswith(".onnx") else model_path.name
    siblings = [model_path.with_name(stem + suffix) for suffix in FORMAT_SUFFIXES.values()]
    found = [p for p in siblings if p != model_path and p.is_file()]
    if found:
        return f"model file {model_path} does not exist; the same model is stored beside it as {found[0]}: pass that file"
    return f"model file {model_path} does not exist; pass the .onnx written by 'ecgbench run' (artifacts/<cell>/model.onnx) or a published model file"


def data_config_from_metadata(metadata: dict[str, Any], model_path: Path):
    """The DataConfig stored in a model's ``ecgbench.preprocessing`` metadata, or a ConfigError saying what is missing."""
    from ecgbench.data.config import DataConfig

    needed = ", ".join(PREPROCESSING_FIELDS)
    prep = metadata.get(PREPROCESSING_KEY)
    if not isinstance(prep, dict) or "fs_hz" not in prep:
        raise ConfigError(
            f"{model_path}: no 'ecgbench.{PREPROCESSING_KEY}' metadata with fs_hz: the model was not exported by ecgbench. "
            f"eval needs the preprocessing the model was trained with ({needed}); add it with "
            f"ecgbench.train.export.with_metadata(onnx_bytes, {{'{PREPROCESSING_KEY}': {{'fs_hz': 300, ...}}}})"
        )
    known = {k: v for k, v in prep.items() if k in DataConfig.model_fields and k != "split"}
    try:
        # Through JSON, so lists stored in the metadata validate as the config's tuples.
        return DataConfig.model_validate_json(json.dumps(known))
    except Exception as exc:
        raise ConfigError(f"{model_path}: 'ecgbench.{PREPROCESSING_KEY}' metadata is invalid ({exc}); it must hold {needed}") from None
