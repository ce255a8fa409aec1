"""The convolution-based Conv1d backward (``conv_backward: convolution``) and the per-call early-stopping patience."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ecgbench.testing import fast_recipe, make_random_splits
from ecgbench.train import conv_grad
from ecgbench.train.conv_grad import convolution_backward
from ecgbench.train.trainer import Trainer
from ecgbench_plugins.models.hannun34 import Hannun34


@pytest.mark.parametrize("c_in, c_out, length, kernel, stride", [(1, 4, 50, 16, 1), (3, 5, 41, 4, 2), (3, 5, 42, 4, 2), (2, 3, 40, 5, 3), (4, 4, 16, 16, 1)])
def test_gradients_equal_pytorchs(c_in, c_out, length, kernel, stride):
    torch.manual_seed(0)
    conv = nn.Conv1d(c_in, c_out, kernel, stride=stride).double()
    x = torch.randn(3, c_in, length, dtype=torch.float64, requires_grad=True)
    target = torch.randn_like(conv(x))
    expected = torch.autograd.grad((conv(x) * target).sum(), (x, conv.weight, conv.bias))
    with convolution_backward(conv) as switched:
        got = torch.autograd.grad((conv(x) * target).sum(), (x, conv.weight, conv.bias))
    assert switched == 1
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_only_plain_conv1d_layers_switch_and_leaving_the_block_restores_them():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Conv1d(2, 2, 3, padding=1), nn.Conv1d(2, 2, 3, groups=2), nn.Conv1d(2, 2, 3, dilation=2))
    with convolution_backward(model) as switched:
        assert switched == 1
        assert "_conv_forward" in vars(model[0]) and "_conv_forward" not in vars(model[1])
    assert all("_conv_forward" not in vars(m) for m in model)
    copy.deepcopy(model)  # nothing left behind that a deep copy would trip over


def test_a_layer_whose_input_needs_no_gradient_skips_the_input_gradient(monkeypatch):
    calls = []
    monkeypatch.setattr(conv_grad, "input_grad", lambda *args: calls.append(args))
    conv = nn.Conv1d(1, 2, 3)
    with convolution_backward(conv):
        conv(torch.randn(2, 1, 10)).sum().backward()
    assert calls == [] and conv.weight.grad is not None


def _hannun(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return Hannun34.from_params({"width": 4, "blocks": 2, "dropout": 0.0}).build(4)


def test_the_trainer_uses_it_when_asked_and_trains_the_same_model_up_to_rounding(monkeypatch):
    splits = make_random_splits(n_train=64, n_eval=16)
    weight_grads = []
    real = conv_grad.weight_grad
    monkeypatch.setattr(conv_grad, "weight_grad", lambda *args: weight_grads.append(1) or real(*args))
    reference, candidate = _hannun(0), _hannun(0)
    Trainer(splits, fast_recipe(epochs=1, patience=0, lr=1e-3), seed=0).fit(reference)
    assert weight_grads == []  # the default keeps PyTorch's backward
    trainer = Trainer(splits, fast_recipe(epochs=1, patience=0, lr=1e-3, conv_backward="convolution"), seed=0)
    trainer.fit(candidate)
    assert len(weight_grads) > 0
    assert "_conv_forward" not in vars(candidate.stem)  # switched back after fit
    for (name, a), b in zip(reference.state_dict().items(), candidate.state_dict().values()):
        if name.endswith("weight"):  # a bias before BatchNorm has a gradient of rounding noise, which Adam turns into full steps
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
    torch.testing.assert_close(trainer.predict(candidate, "val"), trainer.predict(reference, "val"), rtol=1e-2, atol=1e-3)


def test_fit_patience_overrides_the_recipes(monkeypatch):
    splits = make_random_splits()
    trainer = Trainer(splits, fast_recipe(epochs=6, patience=0), seed=0)
    monkeypatch.setattr(trainer, "evaluate", lambda model, split="val": {"challenge_f1": 0.5})  # never improves after epoch 1
    assert trainer.fit(_hannun(0), patience=2).epochs_run == 3
    assert trainer.fit(_hannun(0)).epochs_run == 6  # the recipe's patience 0: never early
    stopping = Trainer(splits, fast_recipe(epochs=6, patience=1), seed=0)
    monkeypatch.setattr(stopping, "evaluate", lambda model, split="val": {"challenge_f1": 0.5})
    assert stopping.fit(_hannun(0)).epochs_run == 2
    assert stopping.fit(_hannun(0), patience=0).epochs_run == 6


def test_cpu_autocast_falls_back_to_pytorchs_backward():
    conv = nn.Conv1d(2, 3, 4)
    with convolution_backward(conv), torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(torch.randn(2, 2, 20))
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and conv.weight.grad is not None
