"""Mask utilities shared by the unstructured pruning strategies (magnitude, lth, lth_ecg).

Prunable weights are the ``weight`` tensors of convolution and linear layers;
biases and normalisation parameters are never pruned (Han et al. 2015,
Frankle & Carbin 2019 prune weights only). A mask is a 0/1 float tensor
shaped like its weight, keyed by ``model.named_parameters()`` name.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn.utils import prune

from ecgbench.kinds.compressor import Masks
from ecgbench.errors import CompressionError

PRUNABLE_LAYERS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)

Scope = Literal["global", "layerwise"]


def prunable_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Convolution and linear layers by module name, in registration order."""
    return {name: module for name, module in model.named_modules() if isinstance(module, PRUNABLE_LAYERS)}


def prunable_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The prunable weight tensors by parameter name (``"<layer>.weight"``)."""
    return {_weight_name(name): module.weight for name, module in prunable_layers(model).items()}


def full_masks(model: torch.nn.Module, masks: Masks | None) -> Masks:
    """A mask for every prunable weight: the given one where present, else all ones."""
    masks = dict(masks or {})
    weights = prunable_weights(model)
    unknown = sorted(set(masks) - set(dict(model.named_parameters())))
    if unknown:
        raise CompressionError(
            f"the input artifact's masks name parameters the model does not have: {unknown[:3]}; "
            "the masks belong to another model (check the pipeline order)"
        )
    for name, weight in weights.items():
        if name in masks:
            masks[name] = masks[name].detach().to(dtype=torch.float32, device="cpu").clone()
        else:
            masks[name] = torch.ones_like(weight, dtype=torch.float32, device="cpu")
    return masks


def sparsity(masks: Masks, names: list[str] | None = None) -> float:
    """Fraction of zeros in ``masks`` (restricted to ``names`` when given)."""
    selected = [masks[n] for n in (names if names is not None else masks)]
    total = sum(m.numel() for m in selected)
    return float(sum(int((m == 0).sum()) for m in selected) / total) if total else 0.0


def layer_sparsities(masks: Masks) -> dict[str, float]:
    """Fraction of zeros per masked tensor, rounded for records."""
    return {name: round(float((m == 0).sum()) / m.numel(), 6) for name, m in masks.items()}


def count_zeros(masks: Masks, names: list[str] | None = None) -> int:
    """Number of pruned entries in ``masks`` (restricted to ``names`` when given)."""
    return sum(int((masks[n] == 0).sum()) for n in (names if names is not None else masks))


def count_weights(masks: Masks, names: list[str] | None = None) -> int:
    """Number of entries in ``masks`` (restricted to ``names`` when given)."""
    return sum(masks[n].numel() for n in (names if names is not None else masks))


@torch.no_grad()
def apply_masks(model: torch.nn.Module, masks: Masks) -> None:
    """Set masked weights of ``model`` to exactly zero, in place."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))


def prune_by_magnitude(model: torch.nn.Module, masks: Masks, target_sparsity: float, scope: Scope) -> Masks:
    """Zero the smallest-magnitude weights of ``model`` in place until ``target_sparsity``; return all masks.

    Already-pruned weights stay pruned (they enter ``torch.nn.utils.prune`` as its
    default mask, so only the remaining weights are ranked). ``global`` ranks all
    prunable weights together and hits the target to the weight; ``layerwise``
    gives every layer the target sparsity (each layer rounded to the weight).
    The pruning is made permanent with ``prune.remove``: the module keeps plain
    parameters, no reparametrisation or hook.
    """
    if not 0.0 <= target_sparsity < 1.0:
        raise CompressionError(f"target sparsity {target_sparsity} is outside [0, 1); set a fraction such as 0.8")
    layers = prunable_layers(model)
    masks = full_masks(model, masks)
    for layer_name, module in layers.items():
        prune.custom_from_mask(module, "weight", masks[_weight_name(layer_name)].to(module.weight.device))
    try:
        if scope == "global":
            names = [_weight_name(n) for n in layers]
            extra = round(target_sparsity * count_weights(masks, names)) - count_zeros(masks, names)
            prune.global_unstructured(
                [(module, "weight") for module in layers.values()],
                pruning_method=prune.L1Unstructured,
                amount=max(0, extra),
            )
        else:
            for layer_name, module in layers.items():
                mask = masks[_weight_name(layer_name)]
                extra = round(target_sparsity * mask.numel()) - int((mask == 0).sum())
                prune.l1_unstructured(module, "weight", amount=max(0, extra))
        for layer_name, module in layers.items():
            masks[_weight_name(layer_name)] = module.weight_mask.detach().to("cpu", torch.float32).clone()
    finally:
        for module in layers.values():
            if prune.is_pruned(module):
                prune.remove(module, "weight")
    return masks


def prune_remaining(model: torch.nn.Module, masks: Masks, rate: float) -> Masks:
    """Globally prune ``rate`` of the weights that are still unpruned (one lottery-ticket round)."""
    names = list(prunable_weights(model))
    masks = full_masks(model, masks)
    zeros, total = count_zeros(masks, names), count_weights(masks, names)
    target = (zeros + round(rate * (total - zeros))) / total
    return prune_by_magnitude(model, masks, target, "global")


def _weight_name(layer_name: str) -> str:
    return f"{layer_name}.weight" if layer_name else "weight"
