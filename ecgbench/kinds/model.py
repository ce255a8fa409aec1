"""Model-family plugins: configurable 1-D CNNs that score single-lead ECG."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ecgbench.kinds.base import Plugin

if TYPE_CHECKING:  # pragma: no cover
    import torch


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


@dataclass(frozen=True)
class ModelSpec:
    """What builds an architecture: a registered model family's ``name`` and its non-default settings.

    The cell's model has the suite's spec; a compressor that returns another
    architecture (``distill``'s student) says so in ``ModelArtifact.spec``, and
    the runner rebuilds a cached step's model from it, writes it into the
    exported ONNX metadata (``ecgbench.model``) and the reports.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)  # JSON-ready, defaults left out (as suites write them)

    @classmethod
    def of(cls, family: ModelFamily) -> "ModelSpec":
        """The spec of a configured family plugin."""
        return cls(family.name, family.config.model_dump(mode="json", exclude_defaults=True))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        """Read back :meth:`to_dict` (as the ONNX metadata and the step cache store it)."""
        return cls(str(data["name"]), dict(data.get("params") or {}))

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``, the form of ``ecgbench.model`` in exported metadata."""
        return {"name": self.name, "params": dict(self.params)}

    def label(self) -> str:
        """``"dscnn"``, or with settings ``"hannun34 (width=4, blocks=8)"``, for reports."""
        return model_label(self.name, self.params)


def model_label(name: str, params: dict[str, Any] | None = None) -> str:
    """``"dscnn"``, or with settings ``"hannun34 (width=4, blocks=8)"``."""
    if not params:
        return name
    return f"{name} ({', '.join(f'{k}={v}' for k, v in params.items())})"


def build_family_model(family_type: type[ModelFamily], settings: dict[str, Any] | None, n_classes: int, seed: int) -> tuple[torch.nn.Module, ModelSpec]:
    """A fresh model of ``family_type`` with ``settings`` (validated; errors name the family and key),
    initialised from ``seed`` as the runner initialises a cell's model, and its :class:`ModelSpec`.

    Torch's global generator is left as it was.
    """
    import torch
    family = family_type.from_params(settings, where=f"model '{family_type.name}'")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = family.build(n_classes)
    return model, ModelSpec.of(family)
