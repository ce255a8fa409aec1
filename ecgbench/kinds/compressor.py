"""Compression strategies: the plugin base class and what flows between pipeline steps."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch

from ecgbench.errors import CompressionError
from ecgbench.kinds.base import Plugin

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ecgbench.train.trainer import Trainer

Masks = dict[str, torch.Tensor]
"""Pruning masks by parameter name (``model.named_parameters()``); 0 = pruned, kept at zero in training."""


@dataclass
class ModelArtifact:
    """The model as it flows through a pipeline.

    While every step so far worked in PyTorch, ``model`` is set (with ``masks``
    for pruned weights). A step that leaves PyTorch (quantization) sets
    ``onnx`` to the serialized ONNX model; later steps must accept ONNX input
    or fail with a clear ``CompressionError``.
    """

    model: torch.nn.Module | None
    masks: Masks | None = None
    onnx: bytes | None = None
    precision: str = "fp32"  # fp32 | fp16 | int8

    @property
    def is_onnx(self) -> bool:
        return self.onnx is not None


@dataclass
class StepOutcome:
    """What one compressor returns: the new artifact and a JSON-serialisable record of what it did."""

    artifact: ModelArtifact
    record: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # the step's wall time, set by Compressor.run


@dataclass
class CompressionContext:
    """Everything a compressor may use, so no strategy re-implements training.

    - ``trainer.fit(model, epochs=..., masks=...)`` fine-tunes with masked weights kept at zero;
    - ``trainer.evaluate(model, "val")`` / ``evaluate_onnx(bytes, "val")`` score on validation
      (the test split is never offered for decisions);
    - ``initial_state`` is the dense model's state before training (for rewinding);
    - ``dense_val_challenge_f1`` is the dense baseline's validation score (for budgets).
    """

    trainer: "Trainer"
    build_model: Callable[[], torch.nn.Module]
    initial_state: dict[str, torch.Tensor]
    dense_val_challenge_f1: float
    seed: int
    workdir: Path
    fs_hz: float
    log: Callable[[str], None] = print

    def calibration_batches(self, n_records: int = 64) -> list["np.ndarray"]:
        """Training-split inputs ``[1, 1, samples]`` float32 for static quantization calibration."""
        return self.trainer.calibration_inputs(n_records)


class Compressor(Plugin):
    """A compression strategy (pruning, quantization, ticket search, ...).

    Subclasses set ``name`` and ``Config`` and implement :meth:`compress`;
    pipelines call :meth:`run`, which does what every step needs first.
    ``accepts_onnx`` says whether the step can follow one that produced an
    ONNX-only model (``produces_onnx``, e.g. quantization); suites putting a
    PyTorch-only step after one are rejected before anything runs.
    """

    kind: ClassVar[str] = "compressor"
    accepts_onnx: ClassVar[bool] = False
    produces_onnx: ClassVar[bool] = False  # True for steps whose output leaves PyTorch (quantizers)

    def run(self, artifact: ModelArtifact, ctx: CompressionContext) -> StepOutcome:
        """Apply the step: reject ONNX input unless ``accepts_onnx``, hand :meth:`compress` a CPU copy
        of the model (the caller's stays untouched) and time the step (``StepOutcome.seconds``)."""
        if artifact.is_onnx and not self.accepts_onnx:
            raise CompressionError(
                f"'{self.name}' works on PyTorch models but got an ONNX-only {artifact.precision} model; "
                "put it before quantization in the pipeline"
            )
        start = time.perf_counter()
        if artifact.model is not None:
            artifact = ModelArtifact(copy.deepcopy(artifact.model).to("cpu"), artifact.masks, artifact.onnx, artifact.precision)
        outcome = self.compress(artifact, ctx)
        outcome.seconds = time.perf_counter() - start
        return outcome

    def compress(self, artifact: ModelArtifact, ctx: CompressionContext) -> StepOutcome:
        """Compress ``artifact`` (its model is this step's own copy, free to change in place) and say what was done."""
        raise NotImplementedError

    # --- trajectory (read by the reports) ---------------------------------------------
    @classmethod
    def trajectory(cls, record: dict[str, Any]) -> "Trajectory | None":
        """The rounds of an iterative search, read from a step's ``record`` (as :meth:`compress` wrote it), or None.

        The html reporter plots the rounds of every step whose compressor returns
        a :class:`Trajectory` here (sparsity against validation F1, accepted or
        rejected); the default is None (a one-shot step has no rounds).
        """
        return None


@dataclass(frozen=True)
class TrajectoryPoint:
    """One round of an iterative compression search."""

    round: int | None
    sparsity: float  # share of prunable weights at zero
    val_challenge_f1: float
    accepted: bool = True  # a rejected round leaves the search where it was


@dataclass(frozen=True)
class Trajectory:
    """The rounds of one search and the validation F1 it had to keep (None: no floor)."""

    points: tuple[TrajectoryPoint, ...]
    min_val_challenge_f1: float | None = None
