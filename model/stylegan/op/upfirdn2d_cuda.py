"""CUDA implementation of :func:`upfirdn2d` (upsample, pad, FIR filter, downsample).

The op is linear in ``x``, so its gradient is the adjoint resampling, which is again an
``upfirdn2d`` (flipped kernel, up and down factors swapped, adjusted pads; see
:func:`_gradient_pads`). The backward pass calls the same autograd function, so gradients of
any order are available. Gradients with respect to the filter kernel are not implemented:
kernels are fixed buffers in the networks of this project, and passing a kernel that
requires grad while grad mode is enabled raises an error instead of silently returning no
gradient (use the reference implementation for that).

Use :func:`available` (or the dispatcher in :mod:`model.stylegan.op.upfirdn2d`) before calling
:func:`upfirdn2d_cuda`; the extension is compiled on first use (see :mod:`._cuda_build`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Union

import torch

from . import _cuda_build

__all__ = ["upfirdn2d_cuda", "available"]

_EXTENSION = "upfirdn2d"

IntOrPair = Union[int, Sequence[int]]


def available() -> bool:
    """Whether the CUDA extension can be used (builds it on first call, on CUDA machines only)."""
    return _cuda_build.cuda_ops_available(_EXTENSION)


def _extension():
    extension = _cuda_build.get_extension(_EXTENSION)
    if extension is None:
        raise RuntimeError(
            "The upfirdn2d CUDA extension is not available; use the reference implementation."
        )
    return extension


def _pair(value: IntOrPair, name: str) -> tuple[int, int]:
    """``value`` as an ``(x, y)`` pair of ints."""
    if isinstance(value, numbers.Integral):
        return int(value), int(value)
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or an (x, y) pair, got {value!r}")
    return int(value[0]), int(value[1])


def _pads(pad: Sequence[int]) -> tuple[int, int, int, int]:
    """``pad`` as ``(x0, x1, y0, y1)``; a ``(p0, p1)`` pair applies to both axes."""
    if len(pad) == 2:
        return int(pad[0]), int(pad[1]), int(pad[0]), int(pad[1])
    if len(pad) == 4:
        return int(pad[0]), int(pad[1]), int(pad[2]), int(pad[3])
    raise ValueError(f"pad must be (p0, p1) or (x0, x1, y0, y1), got {pad!r}")


def _gradient_pads(
    in_size: int, out_size: int, kernel_size: int, up: int, down: int, pad0: int
) -> tuple[int, int]:
    """Pads ``(a0, a1)`` of the adjoint upfirdn2d along one axis.

    Along one axis let the input have length ``n = in_size``, the output ``m = out_size``,
    the kernel ``k`` taps, and write ``u = up``, ``d = down``, ``p0 = pad0``. Input sample
    ``s`` sits at position ``s*u + p0`` of the padded, upsampled signal, and output ``i``
    applies the flipped kernel to positions ``i*d + j``, ``j = 0..k-1``, so

        y[i] = sum_s x[s] * kernel[k-1 - (s*u + p0 - i*d)]       (terms with the index in [0, k))

    and the adjoint (the gradient with respect to ``x`` of ``sum_i g[i] * y[i]``) is

        gx[s] = sum_i g[i] * kernel[k-1 - (s*u + p0 - i*d)].

    An upfirdn2d of ``g`` with the flipped kernel ``kernel'[t] = kernel[k-1-t]``, up factor
    ``d``, down factor ``u`` and leading pad ``a0`` gives, by the same formula,

        r[s] = sum_i g[i] * kernel'[k-1 - (i*d + a0 - s*u)] = sum_i g[i] * kernel[i*d + a0 - s*u],

    which equals ``gx[s]`` for all ``s`` and ``i`` exactly when ``i*d + a0 - s*u`` equals
    ``k-1 - (s*u + p0 - i*d)``, i.e. ``a0 = k - 1 - p0``.

    The trailing pad ``a1`` only sets the length ``L = m*d + a0 + a1`` of the padded signal
    (it adds zeros or crops samples at its end). Output ``s`` of the adjoint reads positions up
    to ``s*u + k - 1``, so the shortest ``L`` that yields all ``n`` outputs,
    ``L = (n-1)*u + k``, keeps every sample they read, and the output length
    ``(L - k + u) // u`` is exactly ``n``. Hence ``a1 = (n-1)*u + k - m*d - a0``
    ``= (n-1)*u - m*d + p0 + 1``.
    """
    a0 = kernel_size - 1 - pad0
    a1 = (in_size - 1) * up - out_size * down + pad0 + 1
    return a0, a1


class _UpFirDn2d(torch.autograd.Function):
    """upfirdn2d of a contiguous NCHW tensor; differentiable to any order in ``x``."""

    @staticmethod
    def forward(ctx, x, kernel, up, down, pad):
        (up_x, up_y), (down_x, down_y) = up, down
        pad_x0, pad_x1, pad_y0, pad_y1 = pad
        y = _extension().upfirdn2d(
            x, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1
        )
        ctx.save_for_backward(kernel)
        ctx.in_size = (x.shape[2], x.shape[3])
        ctx.up, ctx.down, ctx.pad = up, down, pad
        return y

    @staticmethod
    def backward(ctx, grad_y):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        (kernel,) = ctx.saved_tensors
        (up_x, up_y), (down_x, down_y) = ctx.up, ctx.down
        pad_x0, _, pad_y0, _ = ctx.pad
        in_h, in_w = ctx.in_size
        kernel_h, kernel_w = kernel.shape
        grad_pad_x = _gradient_pads(in_w, grad_y.shape[3], kernel_w, up_x, down_x, pad_x0)
        grad_pad_y = _gradient_pads(in_h, grad_y.shape[2], kernel_h, up_y, down_y, pad_y0)
        grad_x = _UpFirDn2d.apply(
            grad_y.contiguous(),
            kernel.flip((0, 1)).contiguous(),
            ctx.down,
            ctx.up,
            grad_pad_x + grad_pad_y,
        )
        return grad_x, None, None, None, None


def upfirdn2d_cuda(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: IntOrPair = 1,
    down: IntOrPair = 1,
    pad: Sequence[int] = (0, 0),
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample every channel of ``x`` on the GPU.

    Per axis: insert ``up - 1`` zeros after every sample, pad with ``p0``/``p1`` zeros
    (negative values crop), convolve with ``kernel`` (true convolution, i.e. the kernel is
    flipped; 'valid' extent) and keep every ``down``-th sample. The output size per axis is
    ``(n * up + p0 + p1 - k + down) // down``.

    Args:
        x: CUDA tensor of shape (N, C, H, W), dtype float64, float32, float16 or bfloat16.
        kernel: filter of shape (kh, kw), applied to every channel; it is cast to float64 for
            float64 inputs and to float32 otherwise (the accumulation type). It must not
            require grad while grad mode is enabled (no kernel gradient is implemented).
        up: upsampling factor, an int or an ``(x, y)`` pair, each >= 1.
        down: downsampling factor, an int or an ``(x, y)`` pair, each >= 1.
        pad: ``(p0, p1)`` for both axes or ``(x0, x1, y0, y1)``.

    Returns:
        Tensor of shape (N, C, out_h, out_w) with the dtype of ``x``, differentiable (to any
        order) with respect to ``x``.
    """
    if kernel.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError(
            "upfirdn2d_cuda has no gradient with respect to the kernel; detach the kernel or "
            "use the reference implementation"
        )
    kernel_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    kernel = kernel.to(device=x.device, dtype=kernel_dtype).contiguous()
    return _UpFirDn2d.apply(
        x.contiguous(), kernel, _pair(up, "up"), _pair(down, "down"), _pads(pad)
    )
