"""``dscnn``: a compact depthwise-separable 1-D CNN for microcontrollers.

The shape of MLPerf Tiny's keyword-spotting DS-CNN (Banbury et al. 2021,
"MLPerf Tiny Benchmark"; Zhang et al. 2017, "Hello Edge"), itself built from
MobileNet's separable blocks (Howard et al. 2017), in one dimension:

    stem conv (stride 2) -> BN -> ReLU -> dropout
    N x [depthwise conv (stride 2) -> BN -> ReLU -> pointwise 1x1 conv -> BN -> ReLU]
    global average pooling over time -> dropout -> Linear

Every block halves the time axis; the channels double every second block
(32, 32, 64, 64, 128, 128 at the defaults). At the defaults with 4 classes it
has 38,404 parameters and runs 10.8 M multiply-accumulates on a 30-s record
at 300 Hz, three orders of magnitude below ``hannun34``. Kernel sizes are odd
so that every convolution pads symmetrically by itself: no padding or slicing
op sits between layers, which torch-pruning's dependency graph (and the
``structured`` compressor) needs to prune the pointwise channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from ecgbench import hookimpl
from ecgbench.kinds.model import ModelFamily
from ecgbench.kinds.base import PluginConfig

# MLPerf Tiny's DS-CNN doubles no channels (64 throughout, 2-D spectrogram input);
# on raw 1-D ECG a growing width lets later blocks, which see long stretches, hold more patterns.
DOUBLE_EVERY = 2


class DSCNNConfig(PluginConfig):
    """Settings of ``dscnn``."""

    width: int = Field(32, ge=1, description="channels of the stem and the first two blocks; doubles every second block")
    blocks: int = Field(6, ge=1, description="depthwise-separable blocks, each halving the time axis")
    kernel_size: int = Field(9, ge=1, description="width in samples of the stem and depthwise convolutions (odd)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout after the stem and before the classifier")

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"kernel_size must be odd so convolutions pad symmetrically; use {value + 1} or {value - 1}")
        return value


class SeparableBlock(nn.Module):
    """Depthwise conv (stride 2) + BN + ReLU, then pointwise 1x1 conv + BN + ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(c_in, c_in, kernel_size, stride=2, padding=kernel_size // 2, groups=c_in, bias=False)
        self.depthwise_bn = nn.BatchNorm1d(c_in)
        self.pointwise = nn.Conv1d(c_in, c_out, 1, bias=False)
        self.pointwise_bn = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.depthwise_bn(self.depthwise(x)))
        return F.relu(self.pointwise_bn(self.pointwise(x)))


class DSCNNNet(nn.Module):
    """Stem, depthwise-separable blocks, global average pooling, Linear."""

    def __init__(self, cfg: DSCNNConfig, n_classes: int) -> None:
        super().__init__()
        k = cfg.kernel_size
        self.stem = nn.Conv1d(1, cfg.width, k, stride=2, padding=k // 2, bias=False)
        self.stem_bn = nn.BatchNorm1d(cfg.width)
        self.stem_dropout = nn.Dropout(cfg.dropout)
        blocks, c_in = [], cfg.width
        for index in range(cfg.blocks):
            c_out = cfg.width * 2 ** (index // DOUBLE_EVERY)
            blocks.append(SeparableBlock(c_in, c_out, k))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head_dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_dropout(F.relu(self.stem_bn(self.stem(x))))
        x = self.blocks(x)
        return self.fc(self.head_dropout(x.mean(dim=2)))


class DSCNN(ModelFamily):
    """MLPerf-Tiny-style depthwise-separable CNN (38 k parameters at the defaults) for microcontroller budgets."""

    name = "dscnn"
    description = "depthwise-separable 1-D CNN (MLPerf Tiny DS-CNN shape): stem + 6 separable blocks, 38 k params"
    Config = DSCNNConfig
    # The stem and the 6 default blocks each halve the time axis: one final time step per 2**7 samples.
    min_samples = 128

    @property
    def subsampling(self) -> int:
        """Input samples per time step of the final feature map (2 ** (1 + blocks))."""
        return 2 ** (1 + self.config.blocks)

    def build(self, n_classes: int) -> torch.nn.Module:
        """A freshly initialised network with ``n_classes`` logits (seed torch first for a fixed init)."""
        return DSCNNNet(self.config, n_classes)


@hookimpl
def ecgbench_register_models(register):
    register(DSCNN)
