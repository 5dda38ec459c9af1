"""Fused bias + leaky ReLU + gain: ``y = leaky_relu(x + bias, negative_slope) * scale``.

``bias`` (C,) is broadcast along dim 1 of an N-D input (N >= 2). StyleGAN2 uses slope 0.2 and gain
sqrt(2) to keep activations at unit variance. Unlike the original CPU twin, every path honours
``negative_slope`` and ``scale``.

The reference path is two PyTorch ops (an add and ``leaky_relu``) with the gain applied in place, so it
allocates one output-sized tensor besides the bias sum; the CUDA path fuses everything in one kernel.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._impl import use_cuda_kernel

__all__ = ["fused_leaky_relu", "fused_leaky_relu_ref", "FusedLeakyReLU"]

SQRT2 = math.sqrt(2.0)


def _bias_view(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    if x.dim() < 2:
        raise ValueError(f"fused_leaky_relu expects an input with a channel dim (N-D, N >= 2), got shape {tuple(x.shape)}")
    if bias.dim() != 1 or bias.shape[0] != x.shape[1]:
        raise ValueError(f"fused_leaky_relu: bias of shape {tuple(bias.shape)} does not match {x.shape[1]} channels")
    return bias.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))


def fused_leaky_relu_ref(
    x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2, scale: float = SQRT2
) -> torch.Tensor:
    """Reference implementation in plain PyTorch ops."""
    if bias is not None:
        x = x + _bias_view(x, bias)
    # leaky_relu's backward uses its input, so scaling its output in place is autograd-safe.
    return F.leaky_relu(x, negative_slope).mul_(scale)


def _cuda_available() -> bool:
    from . import fused_act_cuda

    return fused_act_cuda.available()


def fused_leaky_relu(
    input: torch.Tensor,
    bias: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    scale: float = SQRT2,
    impl: str | None = None,
) -> torch.Tensor:
    """``leaky_relu(input + bias, negative_slope) * scale`` (``impl`` as in :func:`upfirdn2d`)."""
    if use_cuda_kernel(input, impl, _cuda_available, "fused_leaky_relu"):
        from .fused_act_cuda import fused_bias_act_cuda

        if bias is not None:
            _bias_view(input, bias)  # validates the shape
        return fused_bias_act_cuda(input, bias, negative_slope, scale)
    return fused_leaky_relu_ref(input, bias, negative_slope, scale)


class FusedLeakyReLU(nn.Module):
    """Learned per-channel bias followed by leaky ReLU and a gain (parameter ``bias``, zeros init)."""

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = 0.2, scale: float = SQRT2):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(input, self.bias, self.negative_slope, self.scale)

    def extra_repr(self) -> str:
        channel = None if self.bias is None else self.bias.shape[0]
        return f"channel={channel}, negative_slope={self.negative_slope}, scale={self.scale:.4f}"
