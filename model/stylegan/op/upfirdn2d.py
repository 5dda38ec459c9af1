"""upfirdn2d: upsample, pad, FIR-filter and downsample a batch of images (StyleGAN2 resampling).

Semantics (per spatial axis, channels filtered independently with the same 2-D kernel):

1. **up**: insert ``up - 1`` zeros after every sample (length ``n * up``, trailing zeros included);
2. **pad**: add ``p0`` zeros before and ``p1`` after; a negative value crops instead;
3. **FIR**: *true* convolution with the kernel (cross-correlation with the kernel flipped in both
   axes), 'valid' extent;
4. **down**: keep samples ``0, down, 2 * down, ...``.

Output length ``(n * up + p0 + p1 - k + down) // down``.

Reference implementation
------------------------
The reference path never materialises the zero-stuffed or padded intermediate of the textbook
definition. Without upsampling it is ``F.pad`` (cropping for negative pads) followed by one
depthwise ``conv2d`` with the flipped kernel and ``stride=down``. With upsampling, zero insertion
followed by a true convolution is exactly a depthwise ``conv_transpose2d`` with ``stride=up`` and the
*unflipped* kernel::

    full[o] = sum_i x[i] * k[o - up * i]            (o = 0 .. (n - 1) * up + k - 1)
    y[o]    = full[o + (k - 1 - p0)]                (zero outside ``full``)

so the result is ``full`` padded by ``p0 - (k - 1)`` in front and ``up + p1 - k`` at the back, then
decimated. Both forms are ordinary PyTorch ops, so autograd (including double backward) is exact.

CUDA implementation
-------------------
On CUDA tensors a dedicated kernel (``cuda/upfirdn2d_kernel.cu``, built on first use) is used when
available; see :mod:`model.stylegan.op._impl` for the ``impl=`` switch and ``$VTOONIFY_OPS``.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F

from ._impl import use_cuda_kernel

__all__ = ["upfirdn2d", "upfirdn2d_ref", "parse_scaling", "parse_padding"]

IntOrPair = Union[int, Sequence[int]]


def parse_scaling(v: IntOrPair, name: str = "up/down") -> tuple[int, int]:
    """``int`` or ``(x, y)`` -> ``(x, y)``; every factor must be a positive integer."""
    if isinstance(v, int):
        v = (v, v)
    vx, vy = (int(a) for a in v)
    if len(v) != 2 or vx < 1 or vy < 1:
        raise ValueError(f"{name} must be a positive int or an (x, y) pair of positive ints, got {v!r}")
    return vx, vy


def parse_padding(pad: Sequence[int]) -> tuple[int, int, int, int]:
    """``(p0, p1)`` (both axes) or ``(x0, x1, y0, y1)`` -> ``(x0, x1, y0, y1)``."""
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        return pad[0], pad[1], pad[0], pad[1]
    if len(pad) == 4:
        return pad  # type: ignore[return-value]
    raise ValueError(f"pad must have 2 or 4 entries, got {pad!r}")


def _check_inputs(x: torch.Tensor, kernel: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"upfirdn2d expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if kernel.dim() != 2:
        raise ValueError(f"upfirdn2d expects a 2-D kernel, got shape {tuple(kernel.shape)}")


def upfirdn2d_ref(
    x: torch.Tensor, kernel: torch.Tensor, up: IntOrPair = 1, down: IntOrPair = 1, pad: Sequence[int] = (0, 0)
) -> torch.Tensor:
    """Reference upfirdn2d in plain PyTorch ops (see the module docstring)."""
    _check_inputs(x, kernel)
    ux, uy = parse_scaling(up, "up")
    dx, dy = parse_scaling(down, "down")
    px0, px1, py0, py1 = parse_padding(pad)
    c = x.shape[1]
    kh, kw = kernel.shape
    out_h = (x.shape[2] * uy + py0 + py1 - kh + dy) // dy
    out_w = (x.shape[3] * ux + px0 + px1 - kw + dx) // dx
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"upfirdn2d: input {tuple(x.shape[2:])} with up={up}, down={down}, pad={tuple(pad)} and a "
            f"{kh}x{kw} kernel gives an empty output"
        )
    kernel = kernel.to(dtype=x.dtype, device=x.device)

    if ux == 1 and uy == 1:
        weight = kernel.flip(0, 1).expand(c, 1, kh, kw)
        if px0 == px1 >= 0 and py0 == py1 >= 0:
            # symmetric zero padding is the convolution's own (no padded copy; keeps channels-last layouts)
            return F.conv2d(x, weight, stride=(dy, dx), padding=(py0, px0), groups=c)
        x = F.pad(x, [px0, px1, py0, py1])
        return F.conv2d(x, weight, stride=(dy, dx), groups=c)

    weight = kernel.expand(c, 1, kh, kw)
    full = F.conv_transpose2d(x, weight, stride=(uy, ux), groups=c)
    out = F.pad(full, [px0 - (kw - 1), ux + px1 - kw, py0 - (kh - 1), uy + py1 - kh])
    if dx > 1 or dy > 1:
        out = out[:, :, ::dy, ::dx]
    return out


def _cuda_available() -> bool:
    from . import upfirdn2d_cuda

    return upfirdn2d_cuda.available()


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: IntOrPair = 1,
    down: IntOrPair = 1,
    pad: Sequence[int] = (0, 0),
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample by ``up``, pad by ``pad``, convolve with ``kernel``, downsample by ``down``.

    Args:
        x: (B, C, H, W) input.
        kernel: (kh, kw) FIR filter, applied as a true convolution (flipped).
        up, down: int, or an ``(x, y)`` pair of ints.
        pad: ``(p0, p1)`` for both axes or ``(x0, x1, y0, y1)``; negative values crop.
        impl: ``None`` (``$VTOONIFY_OPS``, default ``'auto'``), ``'auto'``, ``'ref'`` or ``'cuda'``.
    """
    # The CUDA kernel has no gradient for the FIR filter itself; a learnable filter takes the reference path.
    learnable_kernel = kernel.requires_grad and torch.is_grad_enabled()
    if not learnable_kernel and use_cuda_kernel(x, impl, _cuda_available, "upfirdn2d"):
        from .upfirdn2d_cuda import upfirdn2d_cuda

        _check_inputs(x, kernel)
        return upfirdn2d_cuda(x, kernel, up=parse_scaling(up, "up"), down=parse_scaling(down, "down"), pad=parse_padding(pad))
    return upfirdn2d_ref(x, kernel, up=up, down=down, pad=pad)
