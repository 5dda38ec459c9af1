"""pSp ``GradualStyleEncoder``: IR-SE-50 backbone + feature pyramid + one style head per StyleGAN layer.

* ``input_layer``: conv3x3 (``input_nc -> 64``, no bias) -> BN -> PReLU.
* ``body``: 24 IR-SE units (:mod:`.helpers`). For a 256x256 input, ``c1`` = output of unit 6
  (128 ch, 64x64), ``c2`` = unit 20 (256 ch, 32x32), ``c3`` = unit 23 (512 ch, 16x16).
* Feature pyramid: ``p2 = up(c3 -> c2 size) + latlayer1(c2)``, ``p1 = up(p2 -> c1 size) + latlayer2(c1)``,
  with bilinear ``align_corners=True`` upsampling.
* ``styles``: ``n_styles`` :class:`GradualStyleBlock` heads; rows 0-2 read ``c3`` (16x16), rows 3-6 read
  ``p2`` (32x32), the remaining rows read ``p1`` (64x64). Each head halves the map with stride-2
  conv3x3 + LeakyReLU(0.01) until it is 1x1, then applies an :class:`~model.stylegan.model.EqualLinear`.

``forward`` returns ``(B, n_styles, 512)``. In VToonify the loader adds ``latent_avg`` to obtain a Z+ code
(:func:`model.encoder.psp.load_psp_standalone`). The network only accepts 256x256 inputs.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.stylegan.model import EqualLinear

from .helpers import BottleneckIR, BottleneckIRSE, get_blocks

__all__ = ["GradualStyleBlock", "GradualStyleEncoder"]

INPUT_SIZE = 256
COARSE_END = 3  # styles[0:3] read c3
MIDDLE_END = 7  # styles[3:7] read p2, the rest read p1


def _opt(opts: Any, name: str, default: Any) -> Any:
    """Read option ``name`` from a dict, an attribute object, or None (``default``)."""
    if opts is None:
        return default
    if isinstance(opts, Mapping):
        return opts.get(name, default)
    return getattr(opts, name, default)


class GradualStyleBlock(nn.Module):
    """Map a ``spatial x spatial`` feature to one 512-d style vector.

    ``log2(spatial)`` stride-2 conv3x3 (with bias) + LeakyReLU(0.01) layers reduce the map to 1x1;
    the flattened vector goes through ``EqualLinear(out_c, out_c)``.
    """

    def __init__(self, in_c: int, out_c: int, spatial: int) -> None:
        super().__init__()
        self.out_c = out_c
        self.spatial = spatial
        num_pools = int(math.log2(spatial))
        if 2**num_pools != spatial or num_pools < 1:
            raise ValueError(f"GradualStyleBlock spatial size must be a power of two >= 2, got {spatial}")
        layers: list[nn.Module] = []
        for i in range(num_pools):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x)
        return self.linear(x.flatten(1))


class GradualStyleEncoder(nn.Module):
    """The pSp encoder used by VToonify/DualStyleGAN (``GradualStyleEncoder(50, 'ir_se', opts)``).

    Args:
        num_layers: backbone depth; only 50 is supported.
        mode: ``'ir_se'`` (IR units with squeeze-excitation, as in ``encoder.pt``) or ``'ir'``.
        opts: options with ``input_nc`` (input channels) and ``n_styles`` (number of style rows);
            a dict, any object with those attributes, or None (3 and 18). Missing entries default too.
    """

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", opts: Any = None) -> None:
        super().__init__()
        if mode not in ("ir", "ir_se"):
            raise ValueError(f"mode must be 'ir' or 'ir_se', got {mode!r}")
        if num_layers != 50:
            raise ValueError(f"num_layers must be 50, got {num_layers}")
        self.input_nc = int(_opt(opts, "input_nc", 3))
        self.style_count = int(_opt(opts, "n_styles", 18))
        if self.style_count < 1:
            raise ValueError(f"n_styles must be positive, got {self.style_count}")
        unit = BottleneckIRSE if mode == "ir_se" else BottleneckIR

        self.input_layer = nn.Sequential(
            nn.Conv2d(self.input_nc, 64, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.PReLU(64),
        )
        self.body = nn.Sequential(*[unit(*spec) for stage in get_blocks(num_layers) for spec in stage])
        # Indices (into body) of the units whose outputs feed the pyramid.
        self._c1_idx, self._c2_idx, self._c3_idx = 6, 20, len(self.body) - 1

        self.styles = nn.ModuleList(
            GradualStyleBlock(512, 512, 16 if i < COARSE_END else 32 if i < MIDDLE_END else 64)
            for i in range(self.style_count)
        )
        self.latlayer1 = nn.Conv2d(256, 512, kernel_size=1)
        self.latlayer2 = nn.Conv2d(128, 512, kernel_size=1)

    @staticmethod
    def _upsample_add(x: Tensor, y: Tensor) -> Tensor:
        return F.interpolate(x, size=y.shape[2:], mode="bilinear", align_corners=True) + y

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.input_nc or tuple(x.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(
                f"GradualStyleEncoder expects a (B, {self.input_nc}, {INPUT_SIZE}, {INPUT_SIZE}) input "
                f"(an aligned face resized to {INPUT_SIZE}x{INPUT_SIZE}), got shape {tuple(x.shape)}"
            )
        x = self.input_layer(x)
        c1 = c2 = x
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i == self._c1_idx:
                c1 = x
            elif i == self._c2_idx:
                c2 = x
        c3 = x

        latents = [self.styles[j](c3) for j in range(min(COARSE_END, self.style_count))]
        if self.style_count > COARSE_END:
            p2 = self._upsample_add(c3, self.latlayer1(c2))
            latents += [self.styles[j](p2) for j in range(COARSE_END, min(MIDDLE_END, self.style_count))]
            if self.style_count > MIDDLE_END:
                p1 = self._upsample_add(p2, self.latlayer2(c1))
                latents += [self.styles[j](p1) for j in range(MIDDLE_END, self.style_count)]
        return torch.stack(latents, dim=1)
