"""``dscnn``: tens of thousands of parameters, time halved per block, any record length, ONNX round trip."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ecgbench.errors import ConfigError
from ecgbench.train.export import to_onnx
from ecgbench_plugins.models.dscnn import DSCNN


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


def small(**settings) -> DSCNN:
    return DSCNN.from_params({"width": 4, **settings})


def test_default_parameter_count():
    # Bias-free convs followed by BN (gamma + beta): stem 9*32 + 64, then per block
    # depthwise c_in*9 + 2*c_in and pointwise c_in*c_out + 2*c_out, channels 32 32 64 64 128 128; Linear 128*4 + 4.
    blocks = [(32, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
    expected = 9 * 32 + 64 + sum(c * 9 + 2 * c + c * o + 2 * o for c, o in blocks) + 128 * 4 + 4
    model = DSCNN().build(4)
    assert n_params(model) == expected == 38_404
    assert [m.out_channels for name, m in model.named_modules() if name.endswith("pointwise")] == [o for _, o in blocks]


def test_macs_per_30s_record():
    # 300 Hz: stem 4500*9*32; each block's depthwise and pointwise at half the previous length.
    lengths = [2250, 1125, 563, 282, 141, 71]
    blocks = [(32, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
    expected = 4500 * 9 * 32 + sum(n * (c * 9 + c * o) for n, (c, o) in zip(lengths, blocks)) + 128 * 4
    assert count_macs(DSCNN().build(4), 9000) == expected == 10_838_528


@pytest.mark.parametrize("samples", [128, 129, 999, 1500])
def test_logits_shape_for_any_length(samples):
    torch.manual_seed(0)
    model = small().build(4).eval()
    with torch.no_grad():
        logits = model(torch.randn(3, 1, samples))
    assert logits.shape == (3, 4) and logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.parametrize("samples", [128, 129, 255, 3000])
def test_final_feature_map_has_one_step_per_128_samples(samples):
    family = small()
    model = family.build(4).eval()
    seen = []
    model.blocks[-1].register_forward_hook(lambda m, i, o: seen.append(o.shape[2]))
    with torch.no_grad():
        model(torch.zeros(1, 1, samples))
    assert family.subsampling == DSCNN.min_samples == 128
    assert seen == [math.ceil(samples / 128)]


def test_min_samples_runs_with_more_blocks():
    family = small(blocks=9)
    assert family.subsampling == 1024
    with torch.no_grad():
        assert family.build(2).eval()(torch.zeros(1, 1, DSCNN.min_samples)).shape == (1, 2)


def test_pointwise_channels_are_prunable():
    structured = pytest.importorskip("ecgbench_plugins.compressors.structured")
    plan = structured.ChannelPlan(small().build(4), torch.zeros(1, 1, 256))
    assert plan.kept == {"fc": "classifier: its outputs are the class logits"}


def test_same_seed_same_initialisation():
    family = small()
    torch.manual_seed(7)
    a = family.build(4).state_dict()
    torch.manual_seed(7)
    b = family.build(4).state_dict()
    torch.manual_seed(8)
    c = family.build(4).state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not torch.equal(a["blocks.2.pointwise.weight"], c["blocks.2.pointwise.weight"])


def test_onnx_matches_torch_for_two_lengths():
    torch.manual_seed(0)
    model = small().build(4)
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


def test_config_rejects_unknown_keys_and_even_kernels():
    with pytest.raises(ConfigError, match=r"dscnn\.blcoks: unknown key 'blcoks'; did you mean 'blocks'"):
        DSCNN.from_params({"blcoks": 4})
    with pytest.raises(ConfigError, match=r"dscnn\.kernel_size: .*odd.*use 9 or 7"):
        DSCNN.from_params({"kernel_size": 8})
    with pytest.raises(ConfigError, match=r"dscnn\.dropout"):
        DSCNN.from_params({"dropout": 1.0})
    assert DSCNN.from_params({}).config == DSCNN.Config()


def test_registered(registry):
    assert registry.get("models", "dscnn") is DSCNN
