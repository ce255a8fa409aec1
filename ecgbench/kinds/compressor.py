"""Compression strategies: the plugin base class and what flows between pipeline steps."""

from __future__ import annotations

import copy
import dataclasses
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch

from ecgbench import CLASSES
from ecgbench.errors import CompressionError
from ecgbench.kinds.base import Plugin
from ecgbench.kinds.model import ModelSpec

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

    ``spec`` names the architecture of ``model`` (a :class:`ModelSpec`). A step
    that returns another architecture (a distilled student) sets it; left None,
    :meth:`Compressor.run` fills in the incoming artifact's, so a step that
    keeps the architecture need not mention it.
    """

    model: torch.nn.Module | None
    masks: Masks | None = None
    onnx: bytes | None = None
    precision: str = "fp32"  # fp32 | fp16 | int8
    spec: ModelSpec | None = None

    @property
    def is_onnx(self) -> bool:
        return self.onnx is not None


@dataclass
class StepOutcome:
    """What one compressor returns: the new artifact and a JSON-serialisable record of what it did."""

    artifact: ModelArtifact
    record: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # the step's wall time, set by Compressor.run


class RoundCheckpoints:
    """Where an iterative compressor keeps its progress between rounds, so a killed run resumes mid-search.

    ``load()`` returns the last saved state (None: start from round 1);
    ``save(state)`` replaces it atomically (a kill mid-write leaves the previous
    one). A state is a dict of tensors, numbers, strings, lists and dicts
    (``torch.load(weights_only=True)`` reads it back). ``progress(text)`` says
    how far the search is (``ecgbench runs`` shows it). With no folder
    (``RoundCheckpoints()``) nothing is kept: ``load()`` is None, ``save`` does nothing.
    """

    FILE = "rounds.pt"
    PROGRESS_FILE = "progress.txt"

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None

    def load(self) -> dict[str, Any] | None:
        """The last saved state, or None when there is none (or it cannot be read: the search starts over)."""
        if self.folder is None or not (self.folder / self.FILE).exists():
            return None
        try:
            state = torch.load(self.folder / self.FILE, map_location="cpu", weights_only=True)
        except Exception:  # a checkpoint from an incompatible version: start over rather than fail
            return None
        return state if isinstance(state, dict) else None

    def save(self, state: dict[str, Any]) -> None:
        """Keep ``state`` (written to a temporary file, then renamed over the previous one)."""
        if self.folder is None:
            return
        from ecgbench import atomic

        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic.write_bytes(self.folder / self.FILE, buffer.getvalue(), hint="or point ECGBENCH_HOME at a disk with room")

    def progress(self, text: str) -> None:
        """Say how far the search is, e.g. ``"round 3, 4.2x, val F1 0.801"``."""
        if self.folder is None:
            return
        from ecgbench import atomic

        atomic.write_text(self.folder / self.PROGRESS_FILE, text)

    def clear(self) -> None:
        """Forget the saved state and progress (the step is done: its cache entry holds the result)."""
        if self.folder is not None:
            for name in (self.FILE, self.PROGRESS_FILE):
                (self.folder / name).unlink(missing_ok=True)


class ModelBuilder:
    """``ctx.build_model``: the current model at its initial weights, or a fresh model of any registered family.

    - ``ctx.build_model()``: the incoming model's architecture (``ctx.model_spec``) at its
      initial weights, a new copy each call (rewinding; load ``ctx.initial_state`` into it);
    - ``ctx.build_model("dscnn", {"width": 8})`` -> ``(module, ModelSpec)``: a new model of that
      registered family, its settings validated as a suite's would be, initialised from the
      cell's seed as the runner initialises the cell's model. Return the spec with the model
      (``ModelArtifact(model, spec=spec)``) so the runner exports, reports and caches it as what it is.

    ``families(name)`` returns the registered :class:`ModelFamily` class of ``name`` (the run's
    registry; no plugin rebuilds it); without it only the no-argument form works.
    """

    def __init__(
        self,
        initial: Callable[[], torch.nn.Module],
        families: Callable[[str], type] | None = None,
        n_classes: int = len(CLASSES),
        seed: int = 0,
    ) -> None:
        self.initial, self.families, self.n_classes, self.seed = initial, families, n_classes, seed

    def __call__(self, name: str | None = None, settings: dict[str, Any] | None = None):
        if name is None:
            if settings is not None:
                raise CompressionError("build_model(settings=...) needs the model's name: build_model('dscnn', {...})")
            return self.initial()
        if self.families is None:
            raise CompressionError(f"this context cannot build other models (asked for '{name}'); it was made without a model registry")
        from ecgbench.kinds.model import build_family_model

        return build_family_model(self.families(name), settings, self.n_classes, self.seed)


@dataclass
class CompressionContext:
    """Everything a compressor may use, so no strategy re-implements training.

    - ``trainer.fit(model, epochs=..., masks=...)`` fine-tunes with masked weights kept at zero;
    - ``trainer.evaluate(model, "val")`` / ``evaluate_onnx(bytes, "val")`` score on validation
      (the test split is never offered for decisions);
    - ``model_spec`` (:class:`ModelSpec`) names the incoming model's architecture (the teacher's,
      for a distillation) and its settings;
    - ``build_model()`` is that architecture at its initial weights; ``build_model(name, settings)``
      returns ``(module, spec)``, a fresh model of any registered family (:class:`ModelBuilder`);
    - ``trainer.fit(model, loss_fn=..., teacher=...)`` trains with a custom loss, e.g. against a
      frozen teacher's logits, keeping the recipe's schedule, mixed precision, early stopping and
      batch cap (:class:`ecgbench.train.trainer.LossInputs`);
    - ``initial_state`` is the incoming model's state before training (for rewinding);
    - ``dense_val_challenge_f1`` is the dense baseline's validation score (for budgets), and
      ``dense_model`` the trained dense baseline itself (for per-record comparisons such as a paired
      bootstrap; read-only: copy it before changing it; None where a caller has none);
    - ``checkpoints`` (:class:`RoundCheckpoints`) lets an iterative strategy resume a killed search:
      after each round, ``ctx.checkpoints.save(state)`` with everything needed to continue (round
      index, ``model.state_dict()``, masks, the record so far, the current rate and
      ``trainer.rng_state()``); at the start, ``state = ctx.checkpoints.load()`` and, when not None,
      continue from it (``trainer.set_rng_state(...)``) so the result is bit-identical to an
      uninterrupted search. Saving consumes no randomness; the runner keeps the state in the step's
      artifact-cache entry and drops it once the step is done;
    - ``progress(text)`` reports how far the search is (shown by ``ecgbench runs``).
    """

    trainer: "Trainer"
    build_model: Callable[..., Any]  # a ModelBuilder; a plain no-argument callable is wrapped in one
    initial_state: dict[str, torch.Tensor]
    dense_val_challenge_f1: float
    seed: int
    workdir: Path
    fs_hz: float
    log: Callable[[str], None] = print
    checkpoints: RoundCheckpoints = field(default_factory=RoundCheckpoints)
    dense_model: torch.nn.Module | None = None
    model_spec: ModelSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.build_model, ModelBuilder):
            self.build_model = ModelBuilder(self.build_model, seed=self.seed)

    def progress(self, text: str) -> None:
        """Report a running search's progress, e.g. ``"round 3, 4.2x, val F1 0.801"`` (logged too)."""
        self.checkpoints.progress(text)
        self.log(text)

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

    A step may return another architecture (a distilled student): build it with
    ``ctx.build_model(name, settings)``, train it with ``ctx.trainer.fit`` (a
    custom ``loss_fn`` and a ``teacher`` if needed) and return it with its spec,
    ``ModelArtifact(model=student, spec=spec)``. The runner then caches,
    exports (``ecgbench.model`` metadata), measures and reports the returned model's
    own architecture.
    """

    kind: ClassVar[str] = "compressor"
    accepts_onnx: ClassVar[bool] = False
    produces_onnx: ClassVar[bool] = False  # True for steps whose output leaves PyTorch (quantizers)

    def run(self, artifact: ModelArtifact, ctx: CompressionContext) -> StepOutcome:
        """Apply the step: reject ONNX input unless ``accepts_onnx``, hand :meth:`compress` a CPU copy
        of the model (the caller's stays untouched), carry the architecture's ``spec`` over when the
        step returned none, and time the step (``StepOutcome.seconds``)."""
        if artifact.is_onnx and not self.accepts_onnx:
            raise CompressionError(
                f"'{self.name}' works on PyTorch models but got an ONNX-only {artifact.precision} model; "
                "put it before quantization in the pipeline"
            )
        start = time.perf_counter()
        if artifact.model is not None:
            artifact = dataclasses.replace(artifact, model=copy.deepcopy(artifact.model).to("cpu"))
        outcome = self.compress(artifact, ctx)
        if outcome.artifact.spec is None:  # the architecture did not change
            outcome.artifact.spec = artifact.spec
        outcome.seconds = time.perf_counter() - start
        return outcome

    def compress(self, artifact: ModelArtifact, ctx: CompressionContext) -> StepOutcome:
        """Compress ``artifact`` (its model is this step's own copy, free to change in place) and say what was done."""
        raise NotImplementedError

    @classmethod
    def check_config(cls, config: Any, registry: Any, where: str) -> None:
        """Check settings that need the run's registry (e.g. a model named in them) when the suite is
        loaded, before anything runs; raise ``ConfigError`` naming ``where``. The default checks nothing."""

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
