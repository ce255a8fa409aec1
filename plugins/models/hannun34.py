"""``hannun34``: the 34-layer residual CNN of Hannun et al. used by LTH-ECG.

Hannun et al. 2019, "Cardiologist-level arrhythmia detection and
classification in ambulatory electrocardiograms using a deep neural network"
(Nature Medicine; code at github.com/awni/ecg), as pruned by LTH-ECG (EMBC
2022): a convolution, 16 residual blocks of two convolutions (33 convolutions)
and a classifier. At the defaults with 4 classes it has 10,466,148 parameters
and runs 2.45 G multiply-accumulates on a 30-s record at 300 Hz.

Choices that differ from the original, or that the original leaves open:

- **Global pooling.** The original emits one softmax per 256 samples (a
  sequence of rhythm labels). We average the final feature map over time and
  apply one ``Linear``, so a whole record of any length gets one set of
  logits, as every ecgbench model family does.
- **'same' padding for the even kernel** matches Keras' (left ``(k-1)//2``,
  right the rest), so a strided block outputs ``ceil(L / 2)`` samples, equal
  to its max-pooled shortcut (``ceil_mode``) for odd lengths too. The padding
  is a ``ConstantPad1d`` on the time axis before every convolution, never a
  slice of a convolution's output: torch-pruning's dependency graph (and the
  ``structured`` compressor) reads a slice as a cut across channels.
- **Shortcut** ``"pad"`` (the original): when a block doubles the channels,
  its max-pooled shortcut gets zero channels appended with ``F.pad``.
  torch-pruning maps that padding one-to-one and would prune it wrongly, so
  ``structured`` leaves those layers whole. ``"conv"`` replaces it with a
  1x1 convolution (``blocks.<i>.project``, He et al. 2016 option B) for
  structured-pruning experiments; it adds parameters and is not the paper's
  network.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ecgbench import hookimpl
from ecgbench.kinds.model import ModelFamily
from ecgbench.kinds.base import PluginConfig


class Hannun34Config(PluginConfig):
    """Settings of ``hannun34``; the defaults are the paper's network (awni/ecg ``config.json``)."""

    width: int = Field(32, ge=1, description="filters of the stem and the first stage (paper: 32)")
    blocks: int = Field(16, ge=1, description="residual blocks of two convolutions each (paper: 16)")
    kernel_size: int = Field(16, ge=1, description="convolution width in samples (paper: 16)")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout before each block's second convolution (paper: 0.2)")
    subsample_every: int = Field(2, ge=1, description="every this many blocks, one halves the time axis (paper: 2)")
    double_every: int = Field(4, ge=1, description="the filter count doubles every this many blocks (paper: 4)")
    shortcut: Literal["pad", "conv"] = Field(
        "pad",
        description="when the channels grow: 'pad' appends zero channels (paper); 'conv' projects with a 1x1 convolution (prunable)",
    )


def same_padding(kernel_size: int) -> tuple[int, int]:
    """(left, right) zero padding of Keras' 'same' mode: ``ceil(L / stride)`` outputs for any stride."""
    left = (kernel_size - 1) // 2
    return left, kernel_size - 1 - left


class ResidualBlock(nn.Module):
    """Pre-activation block: [BN, ReLU], conv (stride), BN, ReLU, dropout, conv; plus a max-pooled shortcut."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, dropout: float, first: bool, shortcut: str) -> None:
        super().__init__()
        # The first block follows the stem's BN + ReLU directly (awni/ecg network.py: no second activation).
        self.bn1 = None if first else nn.BatchNorm1d(c_in)
        self.pad1 = nn.ConstantPad1d(same_padding(kernel_size), 0.0)
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size, stride=stride)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.dropout = nn.Dropout(dropout)
        self.pad2 = nn.ConstantPad1d(same_padding(kernel_size), 0.0)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size)
        self.pool = nn.MaxPool1d(stride, ceil_mode=True) if stride > 1 else None
        self.extra_channels = c_out - c_in
        self.project = nn.Conv1d(c_in, c_out, 1, bias=False) if shortcut == "conv" and c_out != c_in else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.pool is None else self.pool(x)
        if self.project is not None:
            shortcut = self.project(shortcut)
        elif self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, self.extra_channels))  # zero channels appended (awni/ecg zeropad)
        if self.bn1 is not None:
            x = F.relu(self.bn1(x))
        x = self.conv1(self.pad1(x))
        x = self.dropout(F.relu(self.bn2(x)))
        x = self.conv2(self.pad2(x))
        return x + shortcut


class Hannun34Net(nn.Module):
    """Stem conv + BN + ReLU, residual blocks, final BN + ReLU, global average pooling, Linear."""

    def __init__(self, cfg: Hannun34Config, n_classes: int) -> None:
        super().__init__()
        k = cfg.kernel_size
        self.stem_pad = nn.ConstantPad1d(same_padding(k), 0.0)
        self.stem = nn.Conv1d(1, cfg.width, k)
        self.stem_bn = nn.BatchNorm1d(cfg.width)
        blocks, c_in = [], cfg.width
        for index in range(cfg.blocks):
            c_out = cfg.width * 2 ** (index // cfg.double_every)
            stride = 2 if index % cfg.subsample_every == cfg.subsample_every - 1 else 1  # awni/ecg: [1, 2, 1, 2, ...]
            blocks.append(ResidualBlock(c_in, c_out, k, stride, cfg.dropout, index == 0, cfg.shortcut))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head_bn = nn.BatchNorm1d(c_in)
        self.fc = nn.Linear(c_in, n_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # awni/ecg config.json: "conv_init": "he_normal", Keras zero biases; Keras Dense: Glorot uniform.
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(self.stem_pad(x))))
        x = F.relu(self.head_bn(self.blocks(x)))
        return self.fc(x.mean(dim=2))


class Hannun34(ModelFamily):
    """Hannun et al.'s residual CNN (10.47 M parameters at the defaults), scoring whole records by global pooling."""

    name = "hannun34"
    description = "Hannun et al. 2019 residual CNN (33 convs, kernel 16, 32->256 filters, 10.5 M params), global average pooling"
    Config = Hannun34Config
    # 8 strided blocks at the defaults: one final time step per 2**8 input samples.
    min_samples = 256

    @property
    def subsampling(self) -> int:
        """Input samples per time step of the final feature map (2 ** strided blocks)."""
        return 2 ** (self.config.blocks // self.config.subsample_every)

    def build(self, n_classes: int) -> torch.nn.Module:
        """A freshly initialised network with ``n_classes`` logits (seed torch first for a fixed init)."""
        return Hannun34Net(self.config, n_classes)


@hookimpl
def ecgbench_register_models(register):
    register(Hannun34)
