"""``magnitude``: exact sparsity, smallest weights first, global vs layerwise, masks kept through fine-tuning."""

from __future__ import annotations

import json

import pytest
import torch

from ecgbench.kinds.compressor import ModelArtifact
from ecgbench.errors import CompressionError, ConfigError
from ecgbench.testing import fast_recipe, make_context
from ecgbench_plugins.compressors.magnitude import MagnitudePruning, sparsity_schedule

# TinyNet(width 8): conv1 8x1x9 = 72, conv2 8x8x9 = 576, fc 4x8 = 32 prunable weights.
LAYER_SIZES = {"conv1.weight": 72, "conv2.weight": 576, "fc.weight": 32}
PRUNABLE = sum(LAYER_SIZES.values())  # 680


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    return make_context(tmp_path_factory.mktemp("magnitude"), recipe=fast_recipe(epochs=3))


def _prune(trained, **settings):
    model, ctx = trained
    artifact = settings.pop("artifact", ModelArtifact(model))
    return MagnitudePruning.from_params(settings).run(artifact, ctx)


def _zeros(masks, name):
    return int((masks[name] == 0).sum())


def test_global_one_shot_hits_the_target_to_the_weight_and_keeps_masked_weights_zero(trained):
    out = _prune(trained, sparsity=0.75, finetune_epochs=2)
    masks, model = out.artifact.masks, out.artifact.model
    assert set(masks) == set(LAYER_SIZES)  # weights only: no bias, no BatchNorm
    assert sum(_zeros(masks, n) for n in masks) == 510  # round(0.75 * 680)
    assert out.record["pruned_weights"] == 510 and out.record["prunable_weights"] == PRUNABLE
    json.dumps(out.record, allow_nan=False)  # the record is stored as JSON
    assert out.record["achieved_sparsity"] == pytest.approx(0.75, abs=1 / PRUNABLE)
    params = dict(model.named_parameters())
    for name, mask in masks.items():  # after 2 epochs of fine-tuning
        assert torch.all(params[name][mask == 0] == 0)
        assert torch.count_nonzero(params[name]) <= int(mask.sum())


def test_pruning_is_made_permanent(trained):
    model = _prune(trained, sparsity=0.5, finetune_epochs=0).artifact.model
    names = {name for name, _ in model.named_parameters()}
    assert not any(name.endswith("_orig") for name in names)
    assert not any(name.endswith("_mask") for name, _ in model.named_buffers())
    assert all(not module._forward_pre_hooks for module in model.modules())


def test_global_pruning_removes_the_smallest_magnitudes(trained):
    model, _ = trained
    before = {n: p.detach().abs() for n, p in model.named_parameters() if n in LAYER_SIZES}
    masks = _prune(trained, sparsity=0.5, finetune_epochs=0).artifact.masks
    pruned = torch.cat([before[n][masks[n] == 0] for n in LAYER_SIZES])
    kept = torch.cat([before[n][masks[n] == 1] for n in LAYER_SIZES])
    assert pruned.numel() == 340
    assert pruned.max() <= kept.min()


def test_layerwise_prunes_each_layer_to_the_target_and_differs_from_global(trained):
    layerwise = _prune(trained, sparsity=0.5, scope="layerwise", finetune_epochs=0).artifact.masks
    assert {n: _zeros(layerwise, n) for n in LAYER_SIZES} == {"conv1.weight": 36, "conv2.weight": 288, "fc.weight": 16}
    global_ = _prune(trained, sparsity=0.5, scope="global", finetune_epochs=0)
    assert sum(_zeros(global_.artifact.masks, n) for n in LAYER_SIZES) == 340
    assert global_.record["layer_sparsity"] != {n: 0.5 for n in LAYER_SIZES}


def test_weights_pruned_before_stay_pruned(trained):
    model, _ = trained
    # Mask the 40 LARGEST conv2 weights: magnitude pruning alone would never choose them.
    magnitudes = model.conv2.weight.detach().abs().flatten()
    mask = torch.ones(576)
    mask[magnitudes.topk(40).indices] = 0
    prior = {"conv2.weight": mask.reshape(model.conv2.weight.shape)}
    with torch.no_grad():
        masked = type(model)()
        masked.load_state_dict(model.state_dict())
        masked.conv2.weight.mul_(prior["conv2.weight"])
    out = _prune(trained, artifact=ModelArtifact(masked, masks=prior), sparsity=0.6, finetune_epochs=1)
    masks = out.artifact.masks
    assert torch.all(masks["conv2.weight"][prior["conv2.weight"] == 0] == 0)
    assert torch.all(out.artifact.model.conv2.weight[prior["conv2.weight"] == 0] == 0)
    assert sum(_zeros(masks, n) for n in LAYER_SIZES) == 408  # round(0.6 * 680), the 40 included
    assert out.record["input_sparsity"] == pytest.approx(40 / PRUNABLE)
    # a target under the input's sparsity (round(0.05 * 680) = 34 < 40) prunes nothing more
    out = _prune(trained, artifact=ModelArtifact(masked, masks=prior), sparsity=0.05, finetune_epochs=0)
    assert sum(_zeros(out.artifact.masks, n) for n in LAYER_SIZES) == 40 and "already" in out.record["note"]


def test_sparsity_schedules_reach_the_target():
    # geometric: 1 - 0.125 ** (i / 3) = 0.5, 0.75, 0.875
    assert sparsity_schedule(0.0, 0.875, 3, "geometric") == pytest.approx([0.5, 0.75, 0.875])
    # cubic (Zhu & Gupta): 0.8 - 0.8 * (1 - i / 2) ** 3 = 0.7, 0.8
    assert sparsity_schedule(0.0, 0.8, 2, "cubic") == pytest.approx([0.7, 0.8])
    assert sparsity_schedule(0.9, 0.5, 4, "geometric") == [0.9]  # already sparser: nothing to do


def test_iterative_pruning_follows_the_schedule(trained):
    out = _prune(trained, sparsity=0.875, steps=3, finetune_epochs=1)
    achieved = [step["achieved_sparsity"] for step in out.record["steps"]]
    assert achieved == pytest.approx([0.5, 0.75, 0.875], abs=1 / PRUNABLE)
    assert out.record["schedule"] == "geometric"


def test_onnx_only_input_is_rejected(trained):
    _, ctx = trained
    with pytest.raises(CompressionError, match="before quantization"):
        MagnitudePruning().run(ModelArtifact(None, onnx=b"onnx", precision="int8"), ctx)


@pytest.mark.parametrize(("family", "settings"), [("hannun34", {"width": 4, "blocks": 4}), ("dscnn", {"width": 8})])
def test_builtin_model_families_prune_to_the_weight(trained, registry, family, settings):
    try:
        model_family = registry.get("models", family)
    except ConfigError:
        pytest.skip(f"model family {family} is not available in this build")
    torch.manual_seed(0)
    model = model_family.from_params(settings).build(4)
    weights = {n: p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}  # conv and linear
    out = _prune(trained, artifact=ModelArtifact(model), sparsity=0.7, finetune_epochs=1)
    masks = out.artifact.masks
    assert set(masks) == set(weights)
    total = sum(p.numel() for p in weights.values())
    assert sum(_zeros(masks, n) for n in masks) == round(0.7 * total)
    params = dict(out.artifact.model.named_parameters())
    assert all(torch.all(params[n][masks[n] == 0] == 0) for n in masks)


def test_registered(registry):
    assert registry.get("compressors", "magnitude") is MagnitudePruning


def test_run_prunes_a_copy_and_times_the_step(trained):
    model, ctx = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = MagnitudePruning.from_params({"sparsity": 0.5, "finetune_epochs": 0}).run(ModelArtifact(model), ctx)
    assert out.artifact.model is not model
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the caller's model untouched
    assert out.seconds > 0
