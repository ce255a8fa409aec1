"""``structured``: fewer parameters, a model that still runs and exports, residual pad shortcuts left whole."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ecgbench.kinds.compressor import ModelArtifact
from ecgbench.errors import CompressionError, ConfigError
from ecgbench.train.export import to_onnx
from ecgbench.testing import fast_recipe, make_context
from ecgbench_plugins.compressors.structured import ChannelPlan, StructuredPruning, count_params_and_macs


class PadShortcutBlock(nn.Module):
    """Hannun et al.'s residual block: max-pool shortcut, channels zero-padded with F.pad when they grow."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm1d(c_in), nn.Conv1d(c_in, c_out, 5, stride=stride, padding=2)
        self.bn2, self.conv2 = nn.BatchNorm1d(c_out), nn.Conv1d(c_out, c_out, 5, padding=2)
        self.pool = nn.MaxPool1d(stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.extra = c_out - c_in

    def forward(self, x):
        shortcut = self.pool(x)
        if self.extra:
            shortcut = F.pad(shortcut, (0, 0, 0, self.extra))
        return self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x)))))) + shortcut


class PadResidualNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv1d(1, 4, 5, padding=2), nn.BatchNorm1d(4)
        self.blocks = nn.Sequential(PadShortcutBlock(4, 4, 1), PadShortcutBlock(4, 8, 2), PadShortcutBlock(8, 8, 1))
        self.head_bn, self.fc = nn.BatchNorm1d(8), nn.Linear(8, 4)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.fc(F.relu(self.head_bn(x)).mean(dim=2))


class SeparableNet(nn.Module):
    """Depthwise-separable stack: pointwise and depthwise channels are pruned together."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(1, 8, 9, padding=4, stride=2)
        self.depthwise = nn.Conv1d(8, 8, 9, padding=4, groups=8)
        self.pointwise = nn.Conv1d(8, 16, 1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = F.relu(self.depthwise(F.relu(self.stem(x))))
        return self.fc(F.relu(self.pointwise(x)).mean(dim=2))


class PaddedStreamNet(nn.Module):
    """Every conv output is on one zero-padded residual stream: nothing may lose channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.conv = nn.Conv1d(1, 4, 5, padding=2), nn.Conv1d(4, 8, 5, padding=2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x)
        return self.fc((F.pad(x, (0, 0, 0, 4)) + self.conv(x)).mean(dim=2))


class ProjectedStreamNet(nn.Module):
    """A residual stream with a 1x1-conv shortcut: all its producers lose the same channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.conv = nn.Conv1d(1, 4, 5, padding=2), nn.Conv1d(4, 8, 5, padding=2)
        self.project = nn.Conv1d(4, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x)
        return self.fc((self.project(x) + self.conv(x)).mean(dim=2))


class PaddedChainNet(nn.Module):
    """conv1 -> pad -> conv2: prunable when the pad is on the time axis, not when it appends channels."""

    def __init__(self, channel_pad: bool) -> None:
        super().__init__()
        self.pad = (0, 0, 0, 4) if channel_pad else (4, 4)
        self.conv1 = nn.Conv1d(1, 4, 9)
        self.conv2 = nn.Conv1d(8 if channel_pad else 4, 8, 9, padding=4)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.pad(F.relu(self.conv1(x)), self.pad)
        return self.fc(F.relu(self.conv2(x)).mean(dim=2))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    return make_context(tmp_path_factory.mktemp("structured"), recipe=fast_recipe(epochs=3))


def _compress(ctx, model, **settings):
    settings.setdefault("finetune_epochs", 1)
    return StructuredPruning.from_params(settings).run(ModelArtifact(model), ctx)


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def _runs_and_exports(model, ctx):
    model.eval()
    with torch.no_grad():
        for samples in (400, 537, 1000):
            assert model(torch.randn(2, 1, samples)).shape == (2, 4)
    scores = ctx.trainer.evaluate_onnx(to_onnx(model, 3000), "val")  # onnxruntime, whole records
    assert 0.0 <= scores["challenge_f1"] <= 1.0


def test_tinynet_loses_half_its_parameters_and_still_runs(trained):
    model, ctx = trained
    out = _compress(ctx, model, ratio=0.5)
    small = out.artifact.model
    assert _n_params(model) == 732
    assert _n_params(small) <= 366 and out.record["params_after"] == _n_params(small)
    assert out.record["achieved_ratio"] == pytest.approx(1 - _n_params(small) / 732)
    json.dumps(out.record, allow_nan=False)  # the record is stored as JSON
    assert small.fc.out_features == 4 and "fc" in out.record["kept_layers"]
    assert set(out.record["pruned_layers"]) == {"conv1", "conv2"}
    assert _n_params(model) == 732  # the input model is untouched
    _runs_and_exports(small, ctx)


def test_mac_target_counts_macs(trained):
    model, ctx = trained
    example = torch.zeros(1, 1, ctx.trainer.window)
    out = _compress(ctx, model, target="macs", ratio=0.3, iterative_steps=2)
    _, macs_before = count_params_and_macs(model, example)
    _, macs_after = count_params_and_macs(out.artifact.model, example)
    assert macs_after <= 0.7 * macs_before
    assert out.record["achieved_ratio"] == pytest.approx(1 - macs_after / macs_before)
    assert [s["step"] for s in out.record["steps"]] == [1, 2]


def test_pad_shortcut_residual_net_prunes_only_inner_block_channels(trained):
    _, ctx = trained
    torch.manual_seed(0)
    model = PadResidualNet()
    out = _compress(ctx, model, ratio=0.2)
    small = out.artifact.model
    assert _n_params(small) <= 0.8 * _n_params(model)
    assert set(out.record["pruned_layers"]) <= {"blocks.0.conv1", "blocks.1.conv1", "blocks.2.conv1"}
    for name in ("stem", "blocks.0.conv2", "blocks.1.conv2", "blocks.2.conv2"):
        assert "zero-padded" in out.record["kept_layers"][name]
    assert [b.conv2.out_channels for b in small.blocks] == [4, 8, 8]  # the stream keeps its width
    _runs_and_exports(small, ctx)


def test_depthwise_channels_follow_their_pointwise_producer(trained):
    _, ctx = trained
    torch.manual_seed(0)
    small = _compress(ctx, SeparableNet(), ratio=0.3).artifact.model
    assert small.depthwise.groups == small.depthwise.out_channels == small.stem.out_channels < 8
    _runs_and_exports(small, ctx)


def test_earlier_masks_are_carried_through_channel_removal(trained):
    model, ctx = trained
    mask = (torch.arange(576).reshape(8, 8, 9) % 2).float()  # every other conv2 weight pruned
    masked = type(model)()
    masked.load_state_dict(model.state_dict())
    with torch.no_grad():
        masked.conv2.weight.mul_(mask)
    out = StructuredPruning.from_params({"ratio": 0.3, "finetune_epochs": 1}).run(ModelArtifact(masked, {"conv2.weight": mask}), ctx)
    weight, kept_mask = out.artifact.model.conv2.weight, out.artifact.masks["conv2.weight"]
    assert kept_mask.shape == weight.shape
    assert torch.all(weight[kept_mask == 0] == 0)
    # each surviving kernel row of 9 taps keeps its 4 or 5 masked taps
    assert int((kept_mask == 0).sum()) >= 4 * weight.shape[0] * weight.shape[1]


def test_unreachable_ratio_is_a_compression_error(trained):
    model, ctx = trained
    with pytest.raises(CompressionError, match="max_channel_ratio"):
        _compress(ctx, model, ratio=0.9, max_channel_ratio=0.3)


def test_model_without_a_prunable_group_is_a_compression_error(trained):
    _, ctx = trained
    with pytest.raises(CompressionError, match="no prunable channel group.*zero-padded"):
        _compress(ctx, PaddedStreamNet())


def test_a_projected_residual_stream_loses_the_same_channels_in_every_producer(trained):
    _, ctx = trained
    torch.manual_seed(0)
    small = _compress(ctx, ProjectedStreamNet(), ratio=0.3).artifact.model
    assert small.conv.out_channels == small.project.out_channels == small.fc.in_features < 8
    _runs_and_exports(small, ctx)


def test_onnx_only_input_is_rejected(trained):
    _, ctx = trained
    with pytest.raises(CompressionError, match="before quantization"):
        StructuredPruning().run(ModelArtifact(None, onnx=b"x", precision="int8"), ctx)


def test_channel_plan_names_layers_and_reasons():
    plan = ChannelPlan(PadResidualNet(), torch.zeros(1, 1, 200))
    assert set(plan.prunable) == {"blocks.0.conv1", "blocks.1.conv1", "blocks.2.conv1"}
    assert plan.prunable["blocks.1.conv1"] == 8
    assert plan.kept["fc"].startswith("classifier")


def test_only_channel_padding_stops_pruning():
    example = torch.zeros(1, 1, 200)
    assert "conv1" in ChannelPlan(PaddedChainNet(channel_pad=False), example).prunable
    plan = ChannelPlan(PaddedChainNet(channel_pad=True), example)
    assert "conv1" not in plan.prunable and "zero-padded" in plan.kept["conv1"]


class SlicedChainNet(nn.Module):
    """conv1 -> time slice -> conv2: torch-pruning would map the slice onto the channels, so conv1 stays whole."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.fc = nn.Conv1d(1, 4, 9), nn.Conv1d(4, 8, 9), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(F.relu(self.conv2(F.relu(self.conv1(x))[..., 1:])).mean(dim=2))


def test_time_slices_stop_pruning():
    plan = ChannelPlan(SlicedChainNet(), torch.zeros(1, 1, 200))
    assert "conv1" not in plan.prunable and "slice" in plan.kept["conv1"]


def _family(registry, name):
    try:
        return registry.get("models", name)
    except ConfigError:
        pytest.skip(f"model family {name} is not available in this build")


@pytest.mark.parametrize("shortcut", ["pad", "conv"])
def test_small_hannun34_prunes_its_inner_block_channels(trained, registry, shortcut):
    _, ctx = trained
    torch.manual_seed(0)
    settings = {"width": 4, "blocks": 4, "double_every": 2, "kernel_size": 8, "shortcut": shortcut}  # 4 -> 8 channels
    model = _family(registry, "hannun34").from_params(settings).build(4)
    out = _compress(ctx, model, ratio=0.3, finetune_epochs=0)
    assert _n_params(out.artifact.model) <= 0.7 * _n_params(model)
    inner = {f"blocks.{i}.conv1" for i in range(4)}
    if shortcut == "pad":  # the paper's zero-channel shortcut pins the residual stream
        assert set(out.record["pruned_layers"]) == inner
        assert "stem" in out.record["kept_layers"] and "blocks.3.conv2" in out.record["kept_layers"]
    else:  # 1x1 projections decouple the stages: the stream is pruned too
        stream = {"stem", "blocks.2.project"} | {f"blocks.{i}.conv2" for i in range(4)}
        assert set(out.record["pruned_layers"]) == inner | stream
    _runs_and_exports(out.artifact.model, ctx)


def test_dscnn_prunes_every_block(trained, registry):
    _, ctx = trained
    torch.manual_seed(0)
    model = _family(registry, "dscnn").from_params({"width": 8}).build(4)
    out = _compress(ctx, model, ratio=0.3, finetune_epochs=0)
    assert _n_params(out.artifact.model) <= 0.7 * _n_params(model)
    assert set(out.record["kept_layers"]) == {"fc"}
    _runs_and_exports(out.artifact.model, ctx)


def test_registered(registry):
    assert registry.get("compressors", "structured") is StructuredPruning
