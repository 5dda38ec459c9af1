"""Drop-in ``conv2d`` / ``conv_transpose2d`` with correct first and second order gradients.

The original project carried a custom autograd implementation because PyTorch 1.7/1.8 could not
double-differentiate convolutions on CUDA efficiently. Every PyTorch this project supports (>= 2.1)
differentiates its own convolution ops twice, exactly, on every device, so these are thin, documented
wrappers over ``torch.nn.functional`` kept for API compatibility.

``no_weight_gradients()`` is accepted for compatibility; it only records a flag (R1 regularisation in
the original used it to skip weight gradients as an optimisation, which changes no result).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

__all__ = ["conv2d", "conv_transpose2d", "no_weight_gradients", "enabled", "weight_gradients_disabled"]

enabled = True
weight_gradients_disabled = False


@contextlib.contextmanager
def no_weight_gradients():
    global weight_gradients_disabled
    old = weight_gradients_disabled
    weight_gradients_disabled = True
    try:
        yield
    finally:
        weight_gradients_disabled = old


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    return F.conv2d(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv_transpose2d(
    input: torch.Tensor, weight: torch.Tensor, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
) -> torch.Tensor:
    return F.conv_transpose2d(
        input, weight, bias, stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation
    )
