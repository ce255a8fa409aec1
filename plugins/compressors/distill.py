"""``distill``: knowledge distillation of the incoming model (the teacher) into a smaller student.

Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural
Network" (arXiv:1503.02531): the student learns from the teacher's softened
class probabilities as well as from the labels,

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)

The ``T^2`` keeps the soft term's gradients at the scale of the hard one's
as ``T`` changes (Hinton et al., section 2). The student is any registered
model family with its settings (``student: {dscnn: {width: 8}}``), built by
``ctx.build_model`` from the cell's seed and trained by the one
``Trainer`` (``fit(loss_fn=..., teacher=...)``), so the recipe's schedule,
mixed precision, early stopping on validation F1 and ``--smoke`` cap apply.
The cross-entropy term is the recipe's own (class-weighted when it is). The
teacher is the incoming model, frozen in eval mode; the step returns the
student with its spec, which the runner exports, measures and reports.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from ecgbench import hookimpl
from ecgbench.kinds.base import PluginConfig
from ecgbench.kinds.compressor import CompressionContext, Compressor, ModelArtifact, StepOutcome
from ecgbench.train.trainer import LossInputs


class DistillConfig(PluginConfig):
    """Settings of ``distill``."""

    student: dict[str, dict[str, Any] | None] = Field(
        description="the student: one registered model name with its settings, e.g. {hannun34: {width: 4}} or {dscnn: {}}"
    )
    temperature: float = Field(4.0, gt=0, description="softmax temperature T of the soft targets (Hinton et al. 2015)")
    # Hinton et al. 2015, section 2: "the best results were generally obtained by using a considerably
    # lower weight on the second objective function" (the hard labels' cross-entropy).
    alpha: float = Field(0.9, ge=0.0, le=1.0, description="weight of the soft (KL) term; 1 - alpha weighs the labels' cross-entropy")
    epochs: int | None = Field(None, ge=0, description="maximum training epochs of the student (best validation epoch kept); null = the recipe's")
    lr: float | None = Field(None, gt=0, description="the student's learning rate; null = the recipe's")

    @field_validator("student")
    @classmethod
    def _one_student(cls, value: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any] | None]:
        if len(value) != 1:
            raise ValueError(f"name exactly one student model with its settings, e.g. {{dscnn: {{width: 8}}}}; got {len(value)}")
        return value


def distillation_loss(batch: LossInputs, temperature: float, alpha: float) -> torch.Tensor:
    """``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``, averaged over the batch."""
    t = temperature
    soft = F.kl_div(
        F.log_softmax(batch.logits.float() / t, dim=1),
        F.log_softmax(batch.teacher_logits.float() / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * t * t * soft + (1.0 - alpha) * batch.cross_entropy()


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class Distill(Compressor):
    """Knowledge distillation (Hinton et al. 2015) of the incoming model into a smaller registered student."""

    name = "distill"
    description = "knowledge distillation (Hinton et al. 2015) into a smaller student model: KL on softened logits + cross-entropy"
    Config = DistillConfig

    @classmethod
    def check_config(cls, config: DistillConfig, registry, where: str) -> None:
        """The student must be a registered model with valid settings: checked when the suite is loaded."""
        (name, settings), = config.student.items()
        family = registry.get("models", name, where=f"{where}.student")
        family.from_params(settings or {}, where=f"{where}.student.{name}")

    def compress(self, artifact: ModelArtifact, ctx: CompressionContext) -> StepOutcome:
        cfg: DistillConfig = self.config
        (student_name, settings), = cfg.student.items()
        student, spec = ctx.build_model(student_name, settings or {})
        teacher = artifact.model
        for p in teacher.parameters():
            p.requires_grad_(False)
        teacher_f1 = ctx.trainer.evaluate(teacher, "val")["challenge_f1"]
        ctx.progress(f"distill: training {spec.label()} from {ctx.model_spec.label() if ctx.model_spec else 'the teacher'}")
        fit = ctx.trainer.fit(
            student,
            epochs=cfg.epochs,
            lr=cfg.lr,
            teacher=teacher,
            loss_fn=lambda batch: distillation_loss(batch, cfg.temperature, cfg.alpha),
        )
        record = {
            "student": spec.to_dict(),
            "teacher": ctx.model_spec.to_dict() if ctx.model_spec else None,
            "student_params": parameter_count(student),
            "teacher_params": parameter_count(teacher),
            "temperature": cfg.temperature,
            "alpha": cfg.alpha,
            "val_challenge_f1_teacher": teacher_f1,
            "val_challenge_f1_student": fit.best_val_challenge_f1,
            "best_epoch": fit.best_epoch,
            "epochs_run": fit.epochs_run,
            "history": fit.history,
        }
        return StepOutcome(ModelArtifact(model=student, spec=spec), record)


@hookimpl
def ecgbench_register_compressors(register):
    register(Distill)
