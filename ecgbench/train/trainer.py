"""The one train/evaluate API every strategy uses: no compressor writes its own loop.

``Trainer.fit`` trains a model on random crops of the training records with
Adam, keeps pruned weights at zero when given masks, early-stops on the
validation challenge score and restores the best epoch's weights. A strategy
that needs another objective (distillation) passes ``loss_fn`` and, if it
learns from another model, ``teacher``: the loop, schedule, mixed precision,
early stopping and batch cap stay the same.
``Trainer.evaluate`` scores whole records (grouped by length, so no padding
touches the global pooling). The test split is only ever scored by the
runner, never offered to a decision.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from ecgbench.data.arrays import DataSplits, SignalSet
from ecgbench.errors import EcgbenchError
from ecgbench.measure.scores import classification_scores
from ecgbench.train.conv_grad import convolution_backward
from ecgbench.kinds.base import PluginConfig

Split = Literal["train", "val", "test"]


class TrainRecipe(PluginConfig):
    """Training settings shared by the dense baseline and every fine-tuning."""

    epochs: int = Field(20, ge=0, description="maximum epochs of the dense baseline")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate (Hannun et al. 2019 use 1e-3)")
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["plateau", "cosine", "constant"] = Field(
        "plateau", description="plateau: x0.1 after 2 epochs without validation gain (Hannun et al.)"
    )
    class_weighting: bool = Field(True, description="weight the loss by inverse class frequency of the training split")
    patience: int = Field(6, ge=0, description="early stopping: epochs without validation gain (0 = never stop early)")
    grad_clip: float | None = Field(1.0, description="max gradient norm; null disables")
    num_threads: int = Field(
        2, ge=1, description="torch.set_num_threads for CPU training; part of the cell id (it changes the weights); 1 on a shared machine"
    )
    max_batches_per_epoch: int | None = Field(None, description="cap batches per epoch (smoke runs)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present")
    amp: bool = Field(True, description="automatic mixed precision on CUDA")
    eval_batch_size: int = Field(64, ge=1)
    max_eval_records: int | None = Field(None, ge=1, description="score only the first N records of val/test (smoke runs)")
    conv_backward: Literal["torch", "convolution"] = Field(
        "torch",
        description="CPU gradients of plain Conv1d layers: torch = PyTorch's oneDNN backward; convolution = computed as "
        "forward convolutions (ecgbench.train.conv_grad), 1.2-1.3x faster training steps for narrow 1-D CNNs, equal "
        "up to float rounding (a numerically different run, so part of the cell id)",
    )


@dataclass(frozen=True)
class LossInputs:
    """What a custom ``loss_fn`` of :meth:`Trainer.fit` receives for each training batch."""

    logits: torch.Tensor  # the trained model's output, [batch, n_classes]
    targets: torch.Tensor  # class indices, [batch]
    inputs: torch.Tensor  # the batch's crops, [batch, 1, window]
    teacher_logits: torch.Tensor | None = None  # the frozen teacher's output on the same inputs (fit(teacher=...))
    class_weights: torch.Tensor | None = None  # the recipe's class weights (None without class_weighting)

    def cross_entropy(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        """The recipe's own loss: cross-entropy, weighted by inverse class frequency when the recipe says so."""
        return F.cross_entropy(self.logits if logits is None else logits, self.targets, weight=self.class_weights)


LossFn = Callable[[LossInputs], torch.Tensor]
"""A training objective: the batch's :class:`LossInputs` -> a scalar loss to minimise."""


@dataclass
class FitResult:
    """What one call of :meth:`Trainer.fit` achieved."""

    best_val_challenge_f1: float
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, loss, val_challenge_f1, lr


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def uses_amp(recipe: "TrainRecipe", device: torch.device) -> bool:
    """Mixed precision runs on CUDA only; elsewhere ``amp`` changes nothing."""
    return recipe.amp and device.type == "cuda"


class Trainer:
    """Trains and evaluates models on one set of :class:`DataSplits`."""

    def __init__(self, splits: DataSplits, recipe: TrainRecipe, seed: int, progress: bool = False, label: str = "") -> None:
        self.splits = splits
        self.recipe = recipe
        self.seed = seed
        self.progress = progress
        self.label = label
        self.device = resolve_device(recipe.device)
        self.window = max(1, int(round(splits.window_s * splits.fs_hz)))
        torch.set_num_threads(recipe.num_threads)
        counts = np.bincount(splits.train.labels, minlength=len(splits.classes)).astype(np.float64)
        weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / len(counts), 0.0)
        self.class_weights = torch.tensor(weights, dtype=torch.float32) if recipe.class_weighting else None
        self._stream = 0
        self._fits = 0
        self._eval_subsets: dict[tuple[str, int], SignalSet] = {}

    def reseed(self, stream: int) -> None:
        """Start an independent random stream (one per pipeline step), so a step's result never
        depends on how many trainings ran before it in this process."""
        self._stream = stream
        self._fits = 0

    def rng_state(self) -> dict:
        """What decides the next fit's randomness: the stream, the fits made in it and torch's global generator.

        Reading it consumes nothing; :meth:`set_rng_state` in a fresh trainer makes the following fits
        identical to this one's (round checkpoints of iterative compressors keep it).
        """
        return {"stream": self._stream, "fits": self._fits, "torch": torch.get_rng_state()}

    def set_rng_state(self, state: dict) -> None:
        """Continue from a :meth:`rng_state` snapshot."""
        self._stream, self._fits = int(state["stream"]), int(state["fits"])
        torch.set_rng_state(state["torch"])

    # --- training -------------------------------------------------------------
    def fit(
        self,
        model: torch.nn.Module,
        *,
        epochs: int | None = None,
        masks: dict[str, torch.Tensor] | None = None,
        lr: float | None = None,
        on_epoch: Callable[[dict], None] | None = None,
        loss_fn: LossFn | None = None,
        teacher: torch.nn.Module | None = None,
        patience: int | None = None,
    ) -> FitResult:
        """Train ``model`` in place; masked weights stay exactly zero; best validation epoch restored.

        ``loss_fn`` replaces the recipe's cross-entropy: it gets each batch's :class:`LossInputs`
        and returns the loss. With ``teacher`` (which needs a ``loss_fn``), the teacher runs in
        eval mode without gradients on every batch and its logits reach the loss as
        ``teacher_logits``; it is left on the CPU in eval mode. Early stopping and the learning-rate
        schedule still follow ``model``'s validation challenge F1. Each epoch's ``history`` row
        holds its mean loss, validation F1 and learning rate. ``patience`` replaces the recipe's
        early-stopping patience for this call (0 = never stop early).
        """
        if teacher is not None and loss_fn is None:
            raise EcgbenchError("Trainer.fit(teacher=...) needs a loss_fn that uses LossInputs.teacher_logits")
        recipe = self.recipe
        epochs = recipe.epochs if epochs is None else epochs
        patience = recipe.patience if patience is None else patience
        start = time.perf_counter()
        # A distinct but reproducible stream per call: same seed + same call order = same result.
        rng = np.random.default_rng([self.seed, self._stream, self._fits])
        torch.manual_seed(self.seed * 1_000_003 + self._stream * 1000 + self._fits)
        self._fits += 1
        model.to(self.device)
        params = dict(model.named_parameters())
        mask_pairs = _mask_pairs(params, masks, self.device)
        _apply_masks(mask_pairs)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr or recipe.lr, weight_decay=recipe.weight_decay)
        scheduler = _make_scheduler(optimizer, recipe.lr_schedule, epochs)
        weight = self.class_weights.to(self.device) if self.class_weights is not None else None
        objective = loss_fn or LossInputs.cross_entropy
        if teacher is not None:
            teacher.to(self.device).eval()
        use_amp = uses_amp(recipe, self.device)
        scaler = torch.amp.GradScaler("cuda") if use_amp else None

        best_f1, best_epoch, best_state, stale = -1.0, 0, None, 0
        history: list[dict] = []
        epoch = 0
        for epoch in range(1, epochs + 1):
            epoch_lr = float(optimizer.param_groups[0]["lr"])  # what this epoch trains with (the schedule steps after it)
            model.train()
            losses = []
            batches = list(self._train_batches(rng))
            with self._gradients(model):
                for x, y in _progress(batches, self.progress, f"{self.label} epoch {epoch}/{epochs}"):
                    x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                    optimizer.zero_grad(set_to_none=True)
                    with torch.autocast(self.device.type, enabled=use_amp):
                        teacher_logits = None
                        if teacher is not None:
                            with torch.no_grad():
                                teacher_logits = teacher(x)
                        loss = objective(LossInputs(model(x), y, x, teacher_logits, weight))
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(optimizer)
                    else:
                        loss.backward()
                    if recipe.grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    _apply_masks(mask_pairs)
                    losses.append(float(loss.detach()))
            val_f1 = self.evaluate(model, "val")["challenge_f1"]
            row = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"), "val_challenge_f1": val_f1, "lr": epoch_lr}
            history.append(row)
            if on_epoch:
                on_epoch(row)
            if val_f1 > best_f1:
                best_f1, best_epoch, stale = val_f1, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            if scheduler is not None:
                scheduler.step(val_f1) if recipe.lr_schedule == "plateau" else scheduler.step()
            if patience and stale >= patience:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:  # zero epochs: score the model as given
            best_f1 = self.evaluate(model, "val")["challenge_f1"]
        _apply_masks(mask_pairs)
        model.to("cpu")
        if teacher is not None:
            teacher.to("cpu")
        return FitResult(best_f1, best_epoch, epoch if epochs else 0, time.perf_counter() - start, history)

    def _gradients(self, model: torch.nn.Module):
        """The context the training steps run in: the recipe's ``conv_backward`` (CPU only)."""
        if self.recipe.conv_backward == "convolution" and self.device.type == "cpu":
            return convolution_backward(model)
        return contextlib.nullcontext()

    def _train_batches(self, rng: np.random.Generator):
        train = self.splits.train
        order = rng.permutation(len(train))
        bs = self.recipe.batch_size
        n_batches = len(order) // bs if len(order) >= bs else 1  # drop the ragged last batch (BatchNorm)
        if self.recipe.max_batches_per_epoch:
            n_batches = min(n_batches, self.recipe.max_batches_per_epoch)
        for b in range(n_batches):
            idx = order[b * bs : (b + 1) * bs]
            yield torch.from_numpy(random_crops(train, idx, self.window, rng)), torch.from_numpy(train.labels[idx])

    # --- evaluation -----------------------------------------------------------
    def split(self, name: Split) -> SignalSet:
        data = getattr(self.splits, name)
        limit = self.recipe.max_eval_records
        if limit and name != "train" and len(data) > limit:
            key = (name, limit)
            if key not in self._eval_subsets:
                self._eval_subsets[key] = data.subset(np.arange(limit))
            return self._eval_subsets[key]
        return data

    @torch.inference_mode()
    def predict(self, model: torch.nn.Module, split: Split) -> np.ndarray:
        """Logits ``[n_records, n_classes]`` of whole records of ``split``; the model is left where it was."""
        home = next(model.parameters()).device
        model.eval()
        model.to(self.device)
        data = self.split(split)
        out = np.zeros((len(data), len(self.splits.classes)), dtype=np.float32)
        for idx, x in length_buckets(data, self.recipe.eval_batch_size):
            out[idx] = model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
        model.to(home)  # during fit() that is the training device: moving it away broke CUDA training after epoch 1
        return out

    def predict_onnx(self, onnx_model: bytes, split: Split) -> np.ndarray:
        """Logits of whole records of ``split`` computed by onnxruntime."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.recipe.num_threads
        session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        data = self.split(split)
        out = np.zeros((len(data), len(self.splits.classes)), dtype=np.float32)
        for idx, x in length_buckets(data, self.recipe.eval_batch_size):
            out[idx] = session.run(None, {name: x})[0]
        return out

    def evaluate(self, model: torch.nn.Module, split: Split = "val") -> dict:
        """Classification scores of ``model`` on whole records of ``split``."""
        return classification_scores(self.split(split).labels, self.predict(model, split).argmax(axis=1))

    def evaluate_onnx(self, onnx_model: bytes, split: Split = "val") -> dict:
        """Classification scores of an ONNX model run in onnxruntime."""
        return classification_scores(self.split(split).labels, self.predict_onnx(onnx_model, split).argmax(axis=1))

    def calibration_inputs(self, n_records: int = 64) -> list[np.ndarray]:
        """Training-split crops ``[1, 1, window]`` for quantization calibration (deterministic)."""
        rng = np.random.default_rng([self.seed, 7])
        train = self.splits.train
        idx = rng.choice(len(train), size=min(n_records, len(train)), replace=False)
        crops = random_crops(train, idx, self.window, rng)
        return [crops[i : i + 1] for i in range(len(crops))]


def random_crops(data: SignalSet, idx: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """``[len(idx), 1, window]`` crops at random offsets; shorter records are zero-padded at the end."""
    starts = data.offsets[idx]
    lengths = data.offsets[idx + 1] - starts
    shift = (rng.random(len(idx)) * np.maximum(lengths - window + 1, 1)).astype(np.int64)
    pos = (starts + shift)[:, None] + np.arange(window)[None, :]
    ends = (starts + lengths)[:, None]
    x = np.where(pos < ends, data.signals[np.minimum(pos, ends - 1)], 0.0).astype(np.float32)
    return x[:, None, :]


def length_buckets(data: SignalSet, batch_size: int):
    """Yield ``(indices, [b, 1, length])`` batches of records of equal length."""
    lengths = data.lengths()
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        for s in range(0, len(members), batch_size):
            idx = members[s : s + batch_size]
            pos = data.offsets[idx][:, None] + np.arange(length)[None, :]
            yield idx, np.ascontiguousarray(data.signals[pos], dtype=np.float32)[:, None, :]


def _mask_pairs(params, masks, device):
    if not masks:
        return []
    missing = sorted(set(masks) - set(params))
    if missing:
        raise EcgbenchError(f"masks name parameters the model does not have: {missing[:3]}")
    return [(params[name], mask.to(device=device, dtype=params[name].dtype)) for name, mask in masks.items()]


@torch.no_grad()
def _apply_masks(pairs) -> None:
    for param, mask in pairs:
        param.mul_(mask)


def _make_scheduler(optimizer, schedule: str, epochs: int):
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=2)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    return None


def _progress(items, enabled: bool, desc: str):
    if not enabled or os.environ.get("ECGBENCH_QUIET"):
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False, unit="batch")


# --- checkpoints ------------------------------------------------------------------
def save_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Save the ``state_dict`` atomically (temp file + rename)."""
    from ecgbench import atomic

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic.write_bytes(path, buffer.getvalue(), hint="or point ECGBENCH_HOME at a disk with room")


def load_checkpoint(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    """Load a ``state_dict`` saved by :func:`save_checkpoint` (``weights_only=True``), with clear errors."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EcgbenchError(f"checkpoint {path} does not exist") from None
    except Exception as exc:
        raise EcgbenchError(f"checkpoint {path} is corrupt or not a state_dict ({exc.__class__.__name__}); delete it to retrain") from None
    if not isinstance(state, dict):
        raise EcgbenchError(f"checkpoint {path} holds a {type(state).__name__}, not a state_dict; delete it to retrain")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {unexpected[:3]}" if unexpected else "",
                f"shape mismatch {wrong[:3]}" if wrong else "",
            )
            if part
        )
        raise EcgbenchError(f"checkpoint {path} does not match the model ({detail}); was it saved for another model config?")
    model.load_state_dict(state)
    return model
