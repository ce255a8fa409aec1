"""Model-family plugins: configurable 1-D CNNs that score single-lead ECG."""

from __future__ import annotations

from typing import ClassVar

import torch

from ecgbench.kinds.base import Plugin


class ModelFamily(Plugin):
    """A family of models built from a typed config.

    :meth:`build` returns a ``torch.nn.Module`` mapping ``[batch, 1, samples]``
    float32 input to ``[batch, n_classes]`` logits, for any input length at
    least ``min_samples`` (global pooling over time), so whole records can be
    scored.
    """

    kind: ClassVar[str] = "model"
    min_samples: ClassVar[int] = 256

    def build(self, n_classes: int) -> torch.nn.Module:
        raise NotImplementedError
