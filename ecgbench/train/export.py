"""Export PyTorch models to ONNX and carry preprocessing settings in ONNX metadata.

An exported model holds everything ``ecgbench eval`` needs: sampling rate,
normalisation, band-pass, class order, and where it came from.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

OPSET = 17
INPUT_NAME = "ecg"
OUTPUT_NAME = "logits"
METADATA_PREFIX = "ecgbench."


def to_onnx(model: torch.nn.Module, samples: int = 3000) -> bytes:
    """Serialize ``model`` (``[batch, 1, samples]`` -> logits) with dynamic batch and length axes."""
    model = model.to("cpu").eval()
    example = torch.zeros(1, 1, samples)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but 20x faster than the dynamo one
        # for these small convnets and gives the same graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 2: "samples"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    return buffer.getvalue()


def with_metadata(onnx_model: bytes, metadata: dict[str, Any]) -> bytes:
    """Return ``onnx_model`` with ``metadata`` stored as JSON values under ``ecgbench.*`` keys."""
    proto = onnx.load_from_string(onnx_model)
    keep = [p for p in proto.metadata_props if not any(p.key == METADATA_PREFIX + k for k in metadata)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key = METADATA_PREFIX + key
        entry.value = json.dumps(value, sort_keys=True)
    return proto.SerializeToString()


def read_metadata(model: bytes | str | Path) -> dict[str, Any]:
    """The ``ecgbench.*`` metadata of an ONNX model, decoded from JSON."""
    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model), load_external_data=False)
    out = {}
    for prop in proto.metadata_props:
        if prop.key.startswith(METADATA_PREFIX):
            out[prop.key[len(METADATA_PREFIX) :]] = json.loads(prop.value)
    return out
