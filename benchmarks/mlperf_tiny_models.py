"""The four MLPerf Tiny v0.5-v1.0 reference models as int8 QDQ ONNX, for costing on device profiles.

Architectures follow ``mlcommons/tiny`` (``benchmark/training``):

- ``kws``: DS-CNN small (keyword_spotting/keras_model.py): 49x10 MFCC input; Conv 64 (10x4, stride 2),
  four depthwise-separable blocks (depthwise 3x3 + pointwise 64), average pool, Dense 12. ~2.7 M MACs.
- ``ic``: ResNet-8 (image_classification/keras_model.py): 32x32x3; Conv 16, three residual stacks of
  16/32/64 filters (stride 2 with a 1x1 projection for 32 and 64), average pool, Dense 10. ~12.5 M MACs.
- ``ad``: FC autoencoder (anomaly_detection/keras_model.py): 640 inputs, Dense 128 x4, Dense 8,
  Dense 128 x4, Dense 640. ~0.26 M MACs.
- ``vww``: MobileNetV1 alpha 0.25 (visual_wake_words/vww_model.py): 96x96x3, 13 depthwise-separable
  blocks, average pool, Dense 2. ~7.5 M MACs.

Batch normalisation is left out: deployment folds it into the preceding convolution or dense layer, so
it changes no shape and no MAC. Weights are random and the static QDQ quantisation is calibrated on
random inputs: latency depends on shapes, not on values.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

MODELS = ("kws", "ic", "ad", "vww")
INPUT_SHAPES = {"kws": (1, 1, 49, 10), "ic": (1, 3, 32, 32), "ad": (1, 640), "vww": (1, 3, 96, 96)}


def _conv(c_in: int, c_out: int, k, stride=1, groups: int = 1, padding=None) -> nn.Conv2d:
    k = (k, k) if isinstance(k, int) else k
    # Keras "same" padding (odd kernels); the KWS 10x4 stride-2 stem passes (5, 1) to give Keras' 25x5 output.
    padding = padding if padding is not None else tuple((size - 1) // 2 for size in k)
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, groups=groups)


class DSCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(1, 64, (10, 4), stride=2, padding=(5, 1)), nn.ReLU()]
        for _ in range(4):
            layers += [_conv(64, 64, 3, groups=64), nn.ReLU(), _conv(64, 64, 1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 12)

    def forward(self, x):
        h = self.features(x).mean(dim=(2, 3))
        return torch.softmax(self.fc(h), dim=1)


class _Stack(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.a = _conv(c_in, c_out, 3, stride=stride)
        self.b = _conv(c_out, c_out, 3)
        self.shortcut = _conv(c_in, c_out, 1, stride=stride) if stride != 1 or c_in != c_out else None

    def forward(self, x):
        h = self.b(torch.relu(self.a(x)))
        return torch.relu(h + (x if self.shortcut is None else self.shortcut(x)))


class ResNet8(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv(3, 16, 3)
        self.stacks = nn.Sequential(_Stack(16, 16, 1), _Stack(16, 32, 2), _Stack(32, 64, 2))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        h = self.stacks(torch.relu(self.stem(x))).mean(dim=(2, 3))
        return torch.softmax(self.fc(h), dim=1)


class AutoEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        sizes = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128]
        layers: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(128, 640))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class MobileNetV1(nn.Module):
    """alpha 0.25: channels 8, 16, 32, 32, 64, 64, 128 x6, 256, 256."""

    PLAN = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2)] + [(128, 1)] * 5 + [(256, 2), (256, 1)]

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(3, 8, 3, stride=2), nn.ReLU()]
        c = 8
        for c_out, stride in self.PLAN:
            layers += [_conv(c, c, 3, stride=stride, groups=c), nn.ReLU(), _conv(c, c_out, 1), nn.ReLU()]
            c = c_out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(256, 2)

    def forward(self, x):
        return torch.softmax(self.fc(self.features(x).mean(dim=(2, 3))), dim=1)


BUILDERS = {"kws": DSCNN, "ic": ResNet8, "ad": AutoEncoder, "vww": MobileNetV1}


def fp32_onnx(name: str) -> bytes:
    """The float ONNX export of reference model ``name`` (random weights, fixed seed)."""
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    buffer = io.BytesIO()
    torch.onnx.export(model, torch.zeros(INPUT_SHAPES[name]), buffer, input_names=["input"], output_names=["output"],
                      opset_version=17, dynamo=False)
    return buffer.getvalue()


class _RandomReader:
    def __init__(self, shape: tuple[int, ...], count: int = 4) -> None:
        rng = np.random.default_rng(0)
        self._feeds = iter([{"input": rng.standard_normal(shape).astype(np.float32)} for _ in range(count)])

    def get_next(self):
        return next(self._feeds, None)


def int8_onnx(name: str, folder: str | Path, quant_format: str = "qdq") -> Path:
    """Write reference model ``name`` statically quantized to int8 (per-channel weights) in ``folder``; returns the path.

    ``quant_format`` is ``qdq`` (QuantizeLinear/DequantizeLinear around float operators, what TFLite
    converters read) or ``qoperator`` (onnxruntime's QLinearConv / QGemm form). Cached by file name.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}_int8_{quant_format}.onnx"
    if out.exists():
        return out
    src = folder / f"{name}_fp32.onnx"
    src.write_bytes(fp32_onnx(name))
    fmt = QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator
    quantize_static(str(src), str(out), _RandomReader(INPUT_SHAPES[name]), quant_format=fmt, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QInt8)
    return out
