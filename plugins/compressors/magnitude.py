"""``magnitude``: unstructured magnitude pruning to a target sparsity, one-shot or iterative, with fine-tuning.

Han et al. 2015 ("Learning both weights and connections"): zero the
smallest-magnitude weights, then fine-tune the rest. Sparsity counts the
prunable weights only (conv and linear weights; biases and BatchNorm stay).
Weights already pruned by an earlier step stay pruned.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from ecgbench import hookimpl
from ecgbench.kinds.compressor import CompressionContext, Compressor, ModelArtifact, StepOutcome
from ecgbench.kinds.base import PluginConfig
from ecgbench_plugins.compressors import _masks


class MagnitudeConfig(PluginConfig):
    """Settings of ``magnitude``."""

    # 0.75 = 4x fewer weights, one of the compression ratios {2, 4, 8, 16, 32} ShrinkBench compares strategies at.
    sparsity: float = Field(0.75, ge=0.0, lt=1.0, description="target fraction of prunable (conv/linear) weights set to zero")
    scope: Literal["global", "layerwise"] = Field(
        "global", description="global: one magnitude threshold over all layers; layerwise: every layer pruned to the target"
    )
    steps: int = Field(1, ge=1, description="1 = one-shot; k = k prune/fine-tune steps following `schedule`")
    schedule: Literal["geometric", "cubic"] = Field(
        "geometric",
        description="iterative sparsity schedule: geometric prunes the same fraction of the remaining weights each step "
        "(as lottery-ticket rounds); cubic front-loads pruning (Zhu & Gupta 2017)",
    )
    # A short fine-tuning per step; the best validation epoch is kept, so extra epochs cost time, not accuracy.
    finetune_epochs: int = Field(3, ge=0, description="fine-tuning epochs after each pruning step (best validation epoch kept)")
    finetune_lr: float | None = Field(None, gt=0, description="fine-tuning learning rate; null = the recipe's lr")


def sparsity_schedule(start: float, target: float, steps: int, kind: str) -> list[float]:
    """Sparsity to reach after each of ``steps`` steps, from ``start`` to exactly ``target``.

    geometric: the remaining fraction shrinks by the same factor each step,
    ``1 - s_i = (1 - start) * ((1 - target) / (1 - start)) ** (i / steps)``.
    cubic (Zhu & Gupta 2017, "To prune, or not to prune"):
    ``s_i = target + (start - target) * (1 - i / steps) ** 3``.
    """
    if target <= start:  # already sparse enough: one step that prunes nothing
        return [start]
    out = []
    for i in range(1, steps + 1):
        if kind == "cubic":
            out.append(target + (start - target) * (1 - i / steps) ** 3)
        else:
            out.append(1 - (1 - start) * ((1 - target) / (1 - start)) ** (i / steps))
    out[-1] = target  # no floating-point drift on the last step
    return out


class MagnitudePruning(Compressor):
    """Unstructured magnitude pruning (global or per layer) to a target sparsity, one-shot or iterative, each step fine-tuned."""

    name = "magnitude"
    Config = MagnitudeConfig

    def compress(self, artifact: ModelArtifact, ctx: CompressionContext) -> StepOutcome:
        cfg: MagnitudeConfig = self.config
        model = artifact.model
        masks = _masks.full_masks(model, artifact.masks)
        names = list(_masks.prunable_weights(model))
        start_sparsity = _masks.sparsity(masks, names)
        schedule = sparsity_schedule(start_sparsity, cfg.sparsity, cfg.steps, cfg.schedule)
        steps, first = [], 1
        saved = ctx.checkpoints.load()
        if saved is not None:  # resume after the last saved step
            model.load_state_dict(saved["model"])
            masks, steps, first = dict(saved["masks"]), list(saved["steps"]), int(saved["round"]) + 1
            ctx.trainer.set_rng_state(saved["rng"])
        for step, target in enumerate(schedule, 1):
            if step < first:
                continue
            step_start = time.perf_counter()
            masks = _masks.prune_by_magnitude(model, masks, target, cfg.scope)
            pruned_f1 = ctx.trainer.evaluate(model, "val")["challenge_f1"]
            fit = ctx.trainer.fit(model, epochs=cfg.finetune_epochs, masks=masks, lr=cfg.finetune_lr)
            steps.append(
                {
                    "step": step,
                    "target_sparsity": round(target, 6),
                    "achieved_sparsity": round(_masks.sparsity(masks, names), 6),
                    "val_challenge_f1_pruned": pruned_f1,
                    "val_challenge_f1_finetuned": fit.best_val_challenge_f1,
                    "finetune_best_epoch": fit.best_epoch,
                    "seconds": round(time.perf_counter() - step_start, 3),
                }
            )
            if step < len(schedule):  # the last step's result goes to the step cache
                ctx.checkpoints.save(
                    {
                        "round": step,
                        "model": {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()},
                        "masks": {k: v.detach().to("cpu").clone() for k, v in masks.items()},
                        "steps": steps,
                        "rng": ctx.trainer.rng_state(),
                    }
                )
            ctx.progress(
                f"magnitude step {step}/{len(schedule)}: sparsity {steps[-1]['achieved_sparsity']:.4f}, "
                f"val F1 {fit.best_val_challenge_f1:.4f}"
            )
        zeros, total = _masks.count_zeros(masks, names), _masks.count_weights(masks, names)
        record = {
            "requested_sparsity": cfg.sparsity,
            "achieved_sparsity": zeros / total,
            "input_sparsity": start_sparsity,
            "pruned_weights": zeros,
            "prunable_weights": total,
            "scope": cfg.scope,
            "schedule": cfg.schedule if cfg.steps > 1 else "one-shot",
            "layer_sparsity": _masks.layer_sparsities({n: masks[n] for n in names}),
            "steps": steps,
        }
        if cfg.sparsity < start_sparsity:
            record["note"] = f"the input was already {start_sparsity:.4f} sparse, above the requested {cfg.sparsity}; nothing more pruned"
        return StepOutcome(ModelArtifact(model=model, masks=masks), record)


@hookimpl
def ecgbench_register_compressors(register):
    register(MagnitudePruning)
