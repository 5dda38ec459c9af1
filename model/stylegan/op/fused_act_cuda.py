"""CUDA implementation of the fused bias + leaky ReLU + gain op.

``y = leaky_relu(x + bias, negative_slope) * scale`` with ``bias`` broadcast along dim 1.

The gradient with respect to ``x`` is ``grad_y * scale * (pre > 0 ? 1 : negative_slope)``,
where ``pre = x + bias`` is the pre-activation, and the bias gradient is its sum over all
dims but 1. The backward kernel only needs the sign of ``pre``: in the usual case
``scale > 0`` and ``negative_slope >= 0`` the output ``y`` has that sign wherever it is
non-zero (and ``y == 0`` only where ``pre <= 0``), so ``y`` is saved and ``x`` can be freed;
otherwise the pre-activation is saved. The gradient is linear in ``grad_y`` and piecewise
constant in ``x`` (its derivative with respect to ``x`` is zero almost everywhere), so the
backward is itself an autograd function whose backward applies the same mask again: gradients
of any order are available. (In float16, a positive pre-activation so small that its output
underflows to zero, below about 6e-8, gets the gradient of the negative side.)

Use :func:`available` (or the dispatcher in :mod:`model.stylegan.op.fused_act`) before calling
:func:`fused_bias_act_cuda`; the extension is compiled on first use (see :mod:`._cuda_build`).
"""

from __future__ import annotations

import torch

from . import _cuda_build

__all__ = ["fused_bias_act_cuda", "available"]

_EXTENSION = "fused_bias_act"


def available() -> bool:
    """Whether the CUDA extension can be used (builds it on first call, on CUDA machines only)."""
    return _cuda_build.cuda_ops_available(_EXTENSION)


def _extension():
    extension = _cuda_build.get_extension(_EXTENSION)
    if extension is None:
        raise RuntimeError(
            "The fused_bias_act CUDA extension is not available; use the reference "
            "implementation."
        )
    return extension


class _FusedBiasActGrad(torch.autograd.Function):
    """``grad_y * scale * (ref > 0 ? 1 : negative_slope)``; ``ref`` only supplies the mask."""

    @staticmethod
    def forward(ctx, grad_y, ref, negative_slope, scale):
        ctx.save_for_backward(ref)
        ctx.negative_slope, ctx.scale = negative_slope, scale
        return _extension().fused_bias_act_grad(grad_y.contiguous(), ref, negative_slope, scale)

    @staticmethod
    def backward(ctx, grad_grad_x):
        (ref,) = ctx.saved_tensors
        grad_grad_y = None
        if ctx.needs_input_grad[0]:
            grad_grad_y = _FusedBiasActGrad.apply(grad_grad_x, ref, ctx.negative_slope, ctx.scale)
        # The mask is piecewise constant in ref: its derivative is zero almost everywhere.
        return grad_grad_y, None, None, None


class _FusedBiasAct(torch.autograd.Function):
    """``leaky_relu(x + bias, negative_slope) * scale``; ``bias`` is a tensor or ``None``."""

    @staticmethod
    def forward(ctx, x, bias, negative_slope, scale):
        extension = _extension()
        bias_arg = x.new_empty(0) if bias is None else bias
        y = extension.fused_bias_act(x, bias_arg, negative_slope, scale)
        if scale > 0 and negative_slope >= 0:
            ref = y
        elif bias is None:
            ref = x
        else:
            ref = extension.fused_bias_act(x, bias, 1.0, 1.0)  # the pre-activation x + bias
        ctx.save_for_backward(ref)
        ctx.negative_slope, ctx.scale = negative_slope, scale
        return y

    @staticmethod
    def backward(ctx, grad_y):
        (ref,) = ctx.saved_tensors
        needs_x, needs_bias = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x = grad_bias = None
        if needs_x or needs_bias:
            grad_x = _FusedBiasActGrad.apply(grad_y, ref, ctx.negative_slope, ctx.scale)
        if needs_bias:
            grad_bias = grad_x.sum(dim=[0, *range(2, grad_x.dim())])
        return grad_x if needs_x else None, grad_bias, None, None


def fused_bias_act_cuda(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    scale: float = 2**0.5,
) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale`` on the GPU, bias broadcast along dim 1.

    Args:
        x: CUDA tensor of shape (N, C, ...), dtype float64, float32, float16 or bfloat16.
        bias: ``None`` or a tensor of shape (C,); it is cast to the dtype of ``x``.
        negative_slope: slope of the leaky ReLU for negative inputs.
        scale: gain applied after the activation.

    Returns:
        Tensor like ``x``, differentiable (to any order) with respect to ``x`` and ``bias``.
        Half-precision inputs are computed in float32 internally.
    """
    if bias is not None:
        bias = bias.to(dtype=x.dtype).contiguous()
    return _FusedBiasAct.apply(x.contiguous(), bias, float(negative_slope), float(scale))
