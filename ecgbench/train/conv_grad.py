"""A faster CPU backward pass for plain 1-D convolutions, as the same arithmetic in other kernels.

PyTorch's oneDNN ``convolution_backward`` is several times slower than its
forward pass for the narrow (8-64 channel), long-kernel (16) convolutions of
ECG networks on one CPU thread: on a width-8 ``hannun34`` it takes about three
quarters of a training step. Both gradients are themselves convolutions, which
run at the forward kernels' speed:

- weight: ``dW[o, c, k] = sum_{b, l} dY[b, o, l] X[b, c, l*s + k]``, a convolution of
  ``X`` with batch and channels swapped by ``dY`` (dilated by the stride);
- input: a transposed convolution of ``dY`` with ``W`` (for stride 1, a
  convolution of the zero-padded ``dY`` with the flipped kernels).

The gradients equal PyTorch's up to float rounding (summation order), so a
training run follows a numerically different but statistically equivalent
trajectory: :class:`~ecgbench.train.trainer.TrainRecipe` makes it an opt-in
setting (``conv_backward: convolution``) that is part of a cell's identity.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class _Conv1dConvBackward(torch.autograd.Function):
    """``F.conv1d(x, weight, bias, stride)`` without padding, dilation or groups; backward by convolutions."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride = stride
        ctx.has_bias = bias is not None
        return F.conv1d(x, weight, bias, stride=stride)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        stride, kernel = ctx.stride, weight.shape[2]
        grad_out = grad_out.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = input_grad(grad_out, weight, x.shape[2], stride)
        if ctx.needs_input_grad[1]:
            grad_w = weight_grad(x, grad_out, kernel, stride)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum(dim=(0, 2))
        return grad_x, grad_w, grad_b, None


def weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """``dW [out, in, kernel]`` of a convolution of ``x [batch, in, length]`` giving ``grad_out [batch, out, steps]``."""
    # conv1d over (in as batch, batch as channels) with grad_out's (out, batch, steps) as the kernel
    swapped = F.conv1d(x.transpose(0, 1).contiguous(), grad_out.transpose(0, 1).contiguous(), dilation=stride)
    return swapped[:, :, :kernel].transpose(0, 1).contiguous()


def input_grad(grad_out: torch.Tensor, weight: torch.Tensor, length: int, stride: int) -> torch.Tensor:
    """``dX [batch, in, length]`` of a convolution with ``weight [out, in, kernel]`` giving ``grad_out``."""
    kernel = weight.shape[2]
    if stride == 1:
        return F.conv1d(F.pad(grad_out, (kernel - 1, kernel - 1)), weight.flip(2).transpose(0, 1))
    extra = length - ((grad_out.shape[2] - 1) * stride + kernel)  # inputs past the last window: zero gradient
    return F.conv_transpose1d(grad_out, weight, stride=stride, output_padding=extra)


def supports(module: nn.Module) -> bool:
    """Whether ``module`` is a plain :class:`nn.Conv1d` this backward handles (no padding, dilation or groups)."""
    return (
        type(module) is nn.Conv1d
        and module.groups == 1
        and module.dilation == (1,)
        and module.padding in ((0,), "valid")
        and module.padding_mode == "zeros"
    )


def _conv_forward(module: nn.Conv1d):
    stride = module.stride[0]

    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not torch.is_grad_enabled() or x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
            return F.conv1d(x, weight, bias, stride=stride)
        return _Conv1dConvBackward.apply(x, weight, bias, stride)

    return forward


@contextmanager
def convolution_backward(model: nn.Module) -> Iterator[int]:
    """Within the block, the plain ``Conv1d`` layers of ``model`` compute their CPU gradients by convolutions.

    Yields how many layers it switched; other layers (padded, dilated, grouped), other devices and CPU
    autocast keep PyTorch's backward. The layers' parameters and state are untouched; leaving the block restores them.
    """
    switched = [m for m in model.modules() if supports(m)]
    for module in switched:
        module._conv_forward = _conv_forward(module)  # instance attribute shadows nn.Conv1d._conv_forward
    try:
        yield len(switched)
    finally:
        for module in switched:
            module.__dict__.pop("_conv_forward", None)
