"""``hannun34``: the paper's size and cost, Keras 'same' padding, any record length, ONNX round trip."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from ecgbench.errors import ConfigError
from ecgbench.train.export import to_onnx
from ecgbench_plugins.models.hannun34 import Hannun34, ResidualBlock


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, samples: int) -> int:
    """Multiply-accumulates of conv and linear layers for one record, from shapes alone (meta tensors, no compute)."""
    model = model.to("meta").eval()
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv1d):
            total += output.numel() * module.in_channels // module.groups * module.kernel_size[0]
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    for module in model.modules():
        module.register_forward_hook(hook)
    model(torch.zeros(1, 1, samples, device="meta"))
    return total


def paper_param_count(width: int, n_classes: int = 4, k: int = 16) -> int:
    """Stem conv + BN, 16 blocks ([BN] conv BN conv, channels doubling every 4), head BN + Linear."""
    conv = lambda c_in, c_out: c_in * c_out * k + c_out  # noqa: E731 -- weights + bias
    bn = lambda c: 2 * c  # noqa: E731 -- gamma + beta
    total, c_in = conv(1, width) + bn(width), width
    for index in range(16):
        c_out = width * 2 ** (index // 4)
        total += (bn(c_in) if index else 0) + conv(c_in, c_out) + bn(c_out) + conv(c_out, c_out)
        c_in = c_out
    return total + bn(c_in) + c_in * n_classes + n_classes


def small(**settings) -> Hannun34:
    return Hannun34.from_params({"width": 4, **settings})


def test_paper_scale_parameter_count():
    model = Hannun34().build(4)  # construction only, no forward pass
    assert n_params(model) == paper_param_count(32) == 10_466_148
    assert n_params(model) == pytest.approx(10.5e6, rel=0.02)  # ~10.47 M (anchors.md)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert len(convs) == 33 and {m.kernel_size[0] for m in convs} == {16}
    assert [m.out_channels for m in convs][-1] == 256


def test_width_8_parameter_count():
    model = Hannun34.from_params({"width": 8}).build(4)
    assert n_params(model) == paper_param_count(8) == 656_604
    assert n_params(model) == pytest.approx(0.66e6, rel=0.05)


def test_paper_scale_macs_per_30s_record():
    # anchors.md: ~2.44 G MACs for a 30-s record at 300 Hz.
    assert count_macs(Hannun34().build(4), 9000) == pytest.approx(2.44e9, rel=0.05)
    # Halving the width quarters the cost of every conv but the stem (whose input has 1 channel).
    wide, narrow = count_macs(Hannun34().build(4), 3000), count_macs(Hannun34.from_params({"width": 16}).build(4), 3000)
    stem_wide, stem_narrow = 3000 * 16 * 32, 3000 * 16 * 16
    head_wide, head_narrow = 256 * 4, 128 * 4
    assert wide - stem_wide - head_wide == 4 * (narrow - stem_narrow - head_narrow)


@pytest.mark.parametrize("samples", [256, 257, 999, 1500])
def test_logits_shape_for_any_length(samples):
    torch.manual_seed(0)
    model = small().build(4).eval()
    with torch.no_grad():
        logits = model(torch.randn(3, 1, samples))
    assert logits.shape == (3, 4) and logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.parametrize("samples", [256, 257, 511, 3000])
def test_final_feature_map_has_one_step_per_256_samples(samples):
    family = small()
    model = family.build(4).eval()
    seen = []
    model.head_bn.register_forward_hook(lambda m, i, o: seen.append(o.shape[2]))
    with torch.no_grad():
        model(torch.zeros(1, 1, samples))
    assert family.subsampling == Hannun34.min_samples == 256
    assert seen == [math.ceil(samples / 256)]


def test_min_samples_runs_with_more_subsampling():
    family = small(blocks=4, subsample_every=1)  # every block strided
    assert family.subsampling == 16
    with torch.no_grad():
        assert family.build(2).eval()(torch.zeros(1, 1, Hannun34.min_samples)).shape == (1, 2)


def keras_same(x: torch.Tensor, conv: torch.nn.Conv1d) -> torch.Tensor:
    """Keras Conv1D(padding='same'): total pad max((ceil(L/s)-1)*s + k - L, 0), the smaller half on the left."""
    length, k, s = x.shape[2], conv.kernel_size[0], conv.stride[0]
    total = max((math.ceil(length / s) - 1) * s + k - length, 0)
    return F.conv1d(F.pad(x, (total // 2, total - total // 2)), conv.weight, conv.bias, stride=s)


@pytest.mark.parametrize(("stride", "samples"), [(1, 40), (1, 41), (2, 40), (2, 41)])
def test_block_matches_keras_same_padding(stride, samples):
    torch.manual_seed(0)
    block = ResidualBlock(4, 8, kernel_size=16, stride=stride, dropout=0.2, first=False, shortcut="pad").eval()
    x = torch.randn(2, 4, samples)
    h = F.relu(block.bn1(x))
    h = F.relu(block.bn2(keras_same(h, block.conv1)))
    expected = keras_same(h, block.conv2)
    shortcut = F.max_pool1d(x, stride, ceil_mode=True) if stride > 1 else x
    expected = expected + torch.cat([shortcut, torch.zeros_like(shortcut)], dim=1)
    with torch.no_grad():
        out = block(x)
    assert out.shape == (2, 8, math.ceil(samples / stride))
    torch.testing.assert_close(out, expected)


def test_pad_shortcut_appends_zero_channels():
    block = ResidualBlock(2, 4, kernel_size=16, stride=2, dropout=0.0, first=False, shortcut="pad").eval()
    torch.nn.init.zeros_(block.conv2.weight)
    torch.nn.init.zeros_(block.conv2.bias)
    x = torch.tensor([[[1.0, 5.0, 2.0, 0.0, 7.0], [-1.0, -2.0, 3.0, 4.0, -5.0]]])
    with torch.no_grad():
        out = block(x)
    assert out.tolist() == [[[5.0, 2.0, 7.0], [-1.0, 4.0, -5.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]


def test_conv_shortcut_projects_where_channels_grow():
    pad, conv = Hannun34.from_params({"width": 8}).build(4), Hannun34.from_params({"width": 8, "shortcut": "conv"}).build(4)
    projected = [name for name, m in conv.named_modules() if name.endswith("project")]
    assert projected == ["blocks.4.project", "blocks.8.project", "blocks.12.project"]
    assert n_params(conv) - n_params(pad) == 8 * 16 + 16 * 32 + 32 * 64  # bias-free 1x1 convs
    with torch.no_grad():
        assert conv.eval()(torch.zeros(2, 1, 301)).shape == (2, 4)


@pytest.mark.parametrize("shortcut", ["pad", "conv"])
def test_inner_channels_of_every_block_are_prunable(shortcut):
    structured = pytest.importorskip("ecgbench_plugins.compressors.structured")
    model = small(blocks=4, shortcut=shortcut).build(4)
    plan = structured.ChannelPlan(model, torch.zeros(1, 1, 256))
    inner = {"blocks.0.conv1": 4, "blocks.1.conv1": 4, "blocks.2.conv1": 4, "blocks.3.conv1": 4}
    # Four blocks of one width: no channel growth, so the residual stream (stem, every conv2,
    # the classifier's input) is one prunable group too, named by its last producer.
    assert plan.prunable == {**inner, "blocks.3.conv2": 4}


def test_same_seed_same_initialisation():
    family = small()
    torch.manual_seed(7)
    a = family.build(4).state_dict()
    torch.manual_seed(7)
    b = family.build(4).state_dict()
    torch.manual_seed(8)
    c = family.build(4).state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not torch.equal(a["blocks.3.conv2.weight"], c["blocks.3.conv2.weight"])
    assert torch.count_nonzero(a["blocks.3.conv2.bias"]) == 0  # Keras zero biases


def test_onnx_matches_torch_for_two_lengths():
    torch.manual_seed(0)
    model = small(shortcut="pad").build(4)
    for module in model.modules():  # non-trivial BatchNorm statistics, so a mistake in them shows
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.eval()
    session = ort.InferenceSession(to_onnx(model, samples=512), providers=["CPUExecutionProvider"])
    for samples in (300, 1001):
        x = torch.randn(2, 1, samples)
        with torch.no_grad():
            expected = model(x).numpy()
        (got,) = session.run(["logits"], {"ecg": x.numpy()})
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_config_rejects_unknown_and_mistyped_keys():
    with pytest.raises(ConfigError, match=r"hannun34\.widht: unknown key 'widht'; did you mean 'width'"):
        Hannun34.from_params({"widht": 8})
    with pytest.raises(ConfigError, match=r"hannun34\.shortcut"):
        Hannun34.from_params({"shortcut": "projection"})
    with pytest.raises(ConfigError, match=r"hannun34\.width"):
        Hannun34.from_params({"width": "8"})
    assert Hannun34.from_params({}).config == Hannun34.Config()


def test_registered(registry):
    assert registry.get("models", "hannun34") is Hannun34
