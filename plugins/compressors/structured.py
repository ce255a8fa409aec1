"""``structured``: channel (filter) pruning with torch-pruning to a target share of parameters or MACs.

Whole output channels of convolutions are removed together with everything
coupled to them (their BatchNorm slice, the next convolution's input slice),
found by torch-pruning's dependency graph (Fang et al. 2023, "DepGraph").
Channels are ranked by the group L1 or L2 norm of their weights (Li et al.
2017, "Pruning Filters for Efficient ConvNets"). The result is a smaller dense
model, so the saving is real on any runtime, unlike unstructured sparsity.

What is pruned: channel groups in which every layer sees the same channels
one-to-one -- a producer's outputs through BatchNorm, activations, pooling,
time padding or depthwise convolutions into the consumers' inputs (e.g. the
inner channels of a residual block: first conv -> BN -> ReLU -> second conv),
and residual streams whose producers are summed channel by channel (1x1-conv
shortcuts: all producers lose the same channels). Left whole: groups whose
channels are zero-padded by ``F.pad`` (the pad shortcut of Hannun et al.'s
network, which torch-pruning maps one-to-one and would corrupt; with it the
whole residual stream stays whole), groups that pass a slice (torch-pruning
maps a time slice of a Conv1d feature map as a channel slice), groups
reshaped, split or concatenated on the way, and the classifier's outputs.
The record lists every layer left whole and why.

The channel ratio (the same for every prunable group) is found by bisection
so that the pruned model meets the parameter or MAC target; torch-pruning
removes whole channels, so the achieved ratio is recorded next to the
requested one and is at least the requested one.
"""

from __future__ import annotations

import copy
import time
from typing import Literal

import torch
from pydantic import Field

from ecgbench import hookimpl
from ecgbench.kinds.compressor import CompressionContext, Compressor, ModelArtifact, StepOutcome
from ecgbench.errors import CompressionError
from ecgbench.kinds.base import PluginConfig

# Bisection steps on the channel ratio: 2**-14 is far finer than one channel of any layer.
BISECTION_STEPS = 14


class StructuredConfig(PluginConfig):
    """Settings of ``structured``."""

    target: Literal["params", "macs"] = Field("params", description="what `ratio` counts: parameters or multiply-accumulates")
    # 0.5 = 2x, the first of ShrinkBench's shared compression ratios.
    ratio: float = Field(0.5, gt=0.0, lt=1.0, description="fraction of the model's parameters (or MACs) to remove")
    importance: Literal["l1", "l2"] = Field("l1", description="channel ranking: group L1 norm (Li et al. 2017) or L2 norm of the weights")
    iterative_steps: int = Field(1, ge=1, description="prune in this many equal steps of the ratio, each followed by fine-tuning")
    # As for `magnitude`: a short fine-tuning per step, best validation epoch kept.
    finetune_epochs: int = Field(3, ge=0, description="fine-tuning epochs after each step (best validation epoch kept)")
    finetune_lr: float | None = Field(None, gt=0, description="fine-tuning learning rate; null = the recipe's lr")
    # torch-pruning's own default keeps at least one channel; 0.9 keeps every pruned layer at >= 10 % of its width.
    max_channel_ratio: float = Field(0.9, gt=0.0, lt=1.0, description="most of any one layer's channels that may be removed")
    round_to: int | None = Field(None, ge=1, description="keep channel counts multiples of this (SIMD-friendly widths); null = any count")


def _importance(kind: str):
    import torch_pruning as tp

    # GroupMagnitudeImportance: the norm over every coupled slice (conv filter, BN, next conv's input).
    return tp.importance.GroupMagnitudeImportance(p=1 if kind == "l1" else 2)


def _producers(group, dg) -> list[torch.nn.Module]:
    """Layers whose output channels a torch-pruning group removes (depthwise convs only pass channels on)."""
    import torch_pruning as tp

    out = []
    for dep, _ in group:
        module = dep.target.module
        if (
            isinstance(module, (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR))
            and dg.is_out_channel_pruning_fn(dep.handler)
            and dep.target.type != tp.ops.OPTYPE.DEPTHWISE_CONV
        ):
            out.append(module)
    return out


def _unsafe_reason(group, dg, names: dict) -> str | None:
    """Why a group's channels must stay whole, or None when every layer in it sees the same channels one-to-one."""
    import torch_pruning as tp

    root = group[0][0].target.module
    channels = dg.get_out_channels(root)
    for dep, _ in group:
        module = dep.target.module
        if isinstance(module, tp.ops._ElementWiseOp):  # activations, pooling, means, time padding: channel-wise
            pad = getattr(dep.target.grad_fn, "_saved_pad", None)
            if pad is not None and any(pad[2:4]):  # F.pad pairs run from the last axis: (time, time, channel, channel)
                return "its channels are zero-padded (F.pad) on the way, which torch-pruning maps one-to-one (wrongly)"
        elif isinstance(module, tp.ops._SliceOp):
            # torch-pruning 1.6 takes 3-D tensors as [batch, tokens, channels] and maps a slice of the time
            # axis of a Conv1d feature map as a channel slice (index_mapping.update_slice_index_mapping).
            return "its channels pass a slice (x[..., a:b]), which torch-pruning maps as a channel slice on 1-D feature maps"
        elif isinstance(module, (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR, tp.ops.TORCH_BATCHNORM)):
            seen = dg.get_out_channels(module) if dg.is_out_channel_pruning_fn(dep.handler) else dg.get_in_channels(module)
            if seen != channels:
                return f"{names.get(module, '?')} sees {seen} channels where it produces {channels} (reshape or padding between)"
        else:
            return f"its channels reach a {type(module).__name__.strip('_')} (concatenation, split, reshape or output)"
    return None


class ChannelPlan:
    """Which layers of a model may lose output channels (``prunable``), and why the others may not (``kept``)."""

    def __init__(self, model: torch.nn.Module, example: torch.Tensor) -> None:
        import torch_pruning as tp

        names = {module: name for name, module in model.named_modules()}
        self.classifier = _last_layer(model, example)
        try:
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        except Exception as exc:  # torch-pruning's tracer fails on some graphs: say where
            raise CompressionError(
                f"torch-pruning could not trace {type(model).__name__} ({exc.__class__.__name__}: {exc}); "
                "structured pruning does not support this model, use 'magnitude' or 'lth' instead"
            ) from None
        self.prunable: dict[str, int] = {}  # layer name -> output channels
        self.kept: dict[str, str] = {names[self.classifier]: "classifier: its outputs are the class logits"}
        for group in dg.get_all_groups(ignored_layers=[self.classifier], root_module_types=[tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR]):
            root = group[0][0].target.module
            reason = _unsafe_reason(group, dg, names)
            if reason is None:
                self.prunable[names[root]] = dg.get_out_channels(root)
                continue
            for producer in _producers(group, dg) or [root]:
                self.kept.setdefault(names[producer], reason)
        if not self.prunable:
            detail = "; ".join(f"{name}: {why}" for name, why in self.kept.items())
            raise CompressionError(
                f"structured pruning found no prunable channel group in {type(model).__name__} ({detail}); "
                "use 'magnitude' or 'lth' for this model"
            )


def _last_layer(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """The last conv/linear layer run in a forward pass: its outputs are the logits."""
    import torch_pruning as tp

    order: list[torch.nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda module, inputs, output: order.append(module))
        for m in model.modules()
        if isinstance(m, (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR))
    ]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()
    if not order:
        raise CompressionError(f"{type(model).__name__} has no convolution or linear layer to prune")
    return order[-1]


def count_params_and_macs(model: torch.nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """Parameters and multiply-accumulates of one forward pass on ``example`` (torch-pruning's counter)."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model.eval(), example)
    return int(params), int(macs)


def prune_channels(
    model: torch.nn.Module, example: torch.Tensor, plan: ChannelPlan, channel_ratio: float, cfg: StructuredConfig
) -> torch.nn.Module:
    """A copy of ``model`` with ``channel_ratio`` of every prunable layer's output channels removed.

    Every layer keeps at least one channel: torch-pruning skips a layer whose
    ratio would remove all of them, which would make the count jump back up.
    """
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    modules = dict(pruned.named_modules())
    pruner = tp.pruner.BasePruner(
        pruned,
        example,
        importance=_importance(cfg.importance),
        pruning_ratio_dict={modules[name]: min(channel_ratio, 1 - 1 / width - 1e-9) for name, width in plan.prunable.items()},
        ignored_layers=[modules[name] for name in plan.kept],
        round_to=cfg.round_to,
    )
    pruner.step()
    return pruned


class StructuredPruning(Compressor):
    """Channel pruning (torch-pruning's dependency graph, L1/L2 group norm) to a target share of parameters or MACs, then fine-tuning."""

    name = "structured"
    Config = StructuredConfig

    def compress(self, artifact: ModelArtifact, ctx: CompressionContext) -> StepOutcome:
        cfg: StructuredConfig = self.config
        model = artifact.model.eval()
        example = torch.zeros(1, 1, ctx.trainer.window)
        params_before, macs_before = count_params_and_macs(model, example)
        widths_before = _widths(model)
        measure_index = 0 if cfg.target == "params" else 1
        reference = (params_before, macs_before)[measure_index]
        steps = []
        for step in range(1, cfg.iterative_steps + 1):
            step_start = time.perf_counter()
            plan = ChannelPlan(model, example)
            goal = reference * (1 - cfg.ratio * step / cfg.iterative_steps)
            model, channel_ratio = self._prune_to(model, example, plan, goal, measure_index, cfg)
            masks = _masks_from_zeros(model, artifact.masks)
            pruned_f1 = ctx.trainer.evaluate(model, "val")["challenge_f1"]
            fit = ctx.trainer.fit(model, epochs=cfg.finetune_epochs, masks=masks, lr=cfg.finetune_lr)
            params, macs = count_params_and_macs(model, example)
            steps.append(
                {
                    "step": step,
                    "target_ratio": round(cfg.ratio * step / cfg.iterative_steps, 6),
                    "channel_ratio": round(channel_ratio, 6),
                    "achieved_params_ratio": round(1 - params / params_before, 6),
                    "achieved_macs_ratio": round(1 - macs / macs_before, 6),
                    "val_challenge_f1_pruned": pruned_f1,
                    "val_challenge_f1_finetuned": fit.best_val_challenge_f1,
                    "seconds": round(time.perf_counter() - step_start, 3),
                }
            )
            ctx.log(
                f"structured step {step}/{cfg.iterative_steps}: params -{steps[-1]['achieved_params_ratio']:.3f}, "
                f"val F1 {fit.best_val_challenge_f1:.4f}"
            )
        params_after, macs_after = count_params_and_macs(model, example)
        widths_after = _widths(model)
        achieved = 1 - (params_after / params_before if cfg.target == "params" else macs_after / macs_before)
        record = {
            "target": cfg.target,
            "requested_ratio": cfg.ratio,
            "achieved_ratio": achieved,
            "params_before": params_before,
            "params_after": params_after,
            "macs_before": macs_before,
            "macs_after": macs_after,
            "macs_input_samples": int(example.shape[-1]),
            "importance": cfg.importance,
            "pruned_layers": {n: [widths_before[n], widths_after[n]] for n in widths_before if widths_after.get(n) != widths_before[n]},
            "kept_layers": plan.kept,
            "steps": steps,
        }
        return StepOutcome(ModelArtifact(model=model, masks=masks), record)

    def _prune_to(self, model, example, plan: ChannelPlan, goal: float, measure_index: int, cfg: StructuredConfig):
        """The smallest uniform channel ratio whose pruned model counts at most ``goal`` (bisection)."""

        def trial(ratio: float):
            pruned = prune_channels(model, example, plan, ratio, cfg)
            return pruned, count_params_and_macs(pruned, example)[measure_index]

        best, count = trial(cfg.max_channel_ratio)
        if count > goal:
            what = "parameters" if measure_index == 0 else "MACs"
            raise CompressionError(
                f"structured pruning cannot remove {cfg.ratio:.0%} of the {what} of {type(model).__name__}: removing "
                f"{cfg.max_channel_ratio:.0%} of the channels of the prunable layers ({', '.join(plan.prunable)}) leaves "
                f"{count} of the {what} where {int(goal)} is the goal; lower `ratio` or raise `max_channel_ratio`"
            )
        lo, hi = 0.0, cfg.max_channel_ratio
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            pruned, count = trial(mid)
            if count <= goal:
                best, hi = pruned, mid
            else:
                lo = mid
        return best, hi


def _widths(model: torch.nn.Module) -> dict[str, int]:
    return {
        name: m.out_channels if isinstance(m, torch.nn.modules.conv._ConvNd) else m.out_features
        for name, m in model.named_modules()
        if isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))
    }


def _masks_from_zeros(model: torch.nn.Module, masks):
    """Carry earlier pruning masks through channel removal: the surviving zeros of masked weights stay masked."""
    if not masks:
        return None
    params = dict(model.named_parameters())
    return {name: (params[name].detach() != 0).float() for name in masks if name in params}


@hookimpl
def ecgbench_register_compressors(register):
    register(StructuredPruning)
