"""BiSeNet face parser (``faceparsing.pth``, 19 CelebAMask-HQ classes).

Architecture (parameter names match the released checkpoint):

* ``cp`` (:class:`ContextPath`): a ResNet-18 trunk gives ``feat8``/``feat16``/``feat32`` (1/8, 1/16,
  1/32 resolution, 128/256/512 channels). A global-context vector ``conv_avg(mean(feat32))`` is added to
  ``arm32(feat32)``; the sum is nearest-upsampled to the 1/16 grid and refined by ``conv_head32``. That
  result is added to ``arm16(feat16)``, nearest-upsampled to the 1/8 grid and refined by ``conv_head16``.
  An :class:`AttentionRefinementModule` is ConvBNReLU(3x3) followed by channel attention
  (global mean -> 1x1 conv -> BN -> sigmoid -> multiply).
* ``ffm`` (:class:`FeatureFusionModule`): concatenates ``feat8`` with the refined context feature,
  applies ConvBNReLU(1x1) and a squeeze-excitation style attention; output = ``f * att + f``.
* ``conv_out`` / ``conv_out16`` / ``conv_out32`` (:class:`BiSeNetOutput`): ConvBNReLU(3x3) + 1x1 conv
  producing class logits from the fused feature and the two context features.

:meth:`BiSeNet.forward` returns the three logit maps, each bilinearly resized (``align_corners=True``)
to the input size. VToonify consumes only the first one, as raw logits. Any input size works (the
context path resizes to the actual feature-map sizes, so sizes need not be multiples of 32).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .resnet import Resnet18

__all__ = [
    "ConvBNReLU",
    "BiSeNetOutput",
    "AttentionRefinementModule",
    "ContextPath",
    "FeatureFusionModule",
    "BiSeNet",
    "resize_logits",
]


class ConvBNReLU(nn.Module):
    """Bias-free ``ks x ks`` convolution ('same' padding for odd ``ks``) -> BatchNorm -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, ks: int = 3, stride: int = 1, padding: int | None = None) -> None:
        super().__init__()
        if padding is None:
            padding = ks // 2
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=ks, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class BiSeNetOutput(nn.Module):
    """Segmentation head: ConvBNReLU(3x3, ``in_ch -> mid_ch``) then a bias-free 1x1 conv to ``n_classes``."""

    def __init__(self, in_ch: int, mid_ch: int, n_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch, ks=3)
        self.conv_out = nn.Conv2d(mid_ch, n_classes, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.conv(x))


class AttentionRefinementModule(nn.Module):
    """ConvBNReLU(3x3) followed by channel attention: ``f * sigmoid(BN(conv1x1(mean(f))))``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, ks=3)
        self.conv_atten = nn.Conv2d(out_ch, out_ch, kernel_size=1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * atten


class ContextPath(nn.Module):
    """ResNet-18 trunk plus attention refinement; returns ``(feat8, context8, context16)``.

    ``feat8`` is the raw 1/8 trunk feature (128 ch); ``context8`` (128 ch, 1/8 grid) and ``context16``
    (128 ch, 1/16 grid) are the refined context features.
    """

    def __init__(self) -> None:
        super().__init__()
        self.resnet = Resnet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, ks=3)
        self.conv_head16 = ConvBNReLU(128, 128, ks=3)
        self.conv_avg = ConvBNReLU(512, 128, ks=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        # Global context: a (B,128,1,1) vector; nearest-upsampling it to the 1/32 grid is a broadcast.
        avg = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + avg
        context16 = self.conv_head32(F.interpolate(feat32_sum, size=feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + context16
        context8 = self.conv_head16(F.interpolate(feat16_sum, size=feat8.shape[2:], mode="nearest"))
        return feat8, context8, context16


class FeatureFusionModule(nn.Module):
    """Fuse spatial and context features: ``f = ConvBNReLU1x1(cat)``, ``out = f * att(f) + f``.

    The attention is global mean -> 1x1 conv (``out_ch -> out_ch/4``) -> ReLU -> 1x1 conv -> sigmoid.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_ch, out_ch, ks=1)
        self.conv1 = nn.Conv2d(out_ch, out_ch // 4, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(out_ch // 4, out_ch, kernel_size=1, bias=False)

    def forward(self, feat_spatial: Tensor, feat_context: Tensor) -> Tensor:
        feat = self.convblk(torch.cat([feat_spatial, feat_context], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return torch.addcmul(feat, feat, atten)


class BiSeNet(nn.Module):
    """BiSeNet face parser; ``forward(x) -> (out, out16, out32)`` logits of shape (B, n_classes, H, W).

    ``x`` is an ImageNet-normalised RGB batch (B, 3, H, W) of any size >= 32x32 (practically).
    """

    def __init__(self, n_classes: int = 19) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        _check_image_batch(x)
        size = x.shape[2:]
        feat8, context8, context16 = self.cp(x)
        fused = self.ffm(feat8, context8)
        outs = (self.conv_out(fused), self.conv_out16(context8), self.conv_out32(context16))
        return tuple(F.interpolate(o, size=size, mode="bilinear", align_corners=True) for o in outs)  # type: ignore[return-value]

    def parse_logits(self, x: Tensor, every: int = 1) -> Tensor:
        """The main output of :meth:`forward` (``forward(x)[0]``) at every ``every``-th row and column only.

        Equal to ``F.interpolate(forward(x)[0], scale_factor=1 / every)`` (nearest decimation) up to float
        rounding, without the two auxiliary heads and without upsampling the logits to the full size first:
        the bilinear (align_corners=True) weights of just the kept rows and columns are applied as two small
        matrix products.
        """
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        return resize_logits(self.head_logits(x), x.shape[2:], every)

    def head_logits(self, x: Tensor) -> Tensor:
        """The main head's logits before any resizing, on the 1/8 grid of ``x`` (what :meth:`parse_logits` resizes;
        the part of the network that ``pipeline.engines`` exports)."""
        _check_image_batch(x)
        feat8, context8, _ = self.cp(x)
        return self.conv_out(self.ffm(feat8, context8))


def resize_logits(logits: Tensor, size: tuple[int, int], every: int = 1) -> Tensor:
    """:meth:`BiSeNet.head_logits` ``logits`` bilinearly resized (``align_corners=True``) to ``size``, at every
    ``every``-th row and column only (two small matrix products)."""
    rows = _bilinear_rows(logits.shape[2], size[0], every, logits)
    cols = _bilinear_rows(logits.shape[3], size[1], every, logits)
    return torch.matmul(torch.matmul(rows, logits.contiguous()), cols.t())


def _check_image_batch(x: Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"BiSeNet expects a (B, 3, H, W) image batch, got shape {tuple(x.shape)}")


def _bilinear_rows(n_in: int, n_out: int, every: int, like: Tensor) -> Tensor:
    """(ceil(n_out / every), n_in) weights of bilinear align_corners=True resizing n_in -> n_out, rows 0, every, ..."""
    dst = torch.arange(0, n_out, every, dtype=torch.float64)
    src = dst * ((n_in - 1) / (n_out - 1)) if n_out > 1 else torch.zeros_like(dst)
    lo = src.floor().long().clamp_(max=n_in - 1)
    hi = (lo + 1).clamp_(max=n_in - 1)
    frac = src - lo
    weights = torch.zeros(len(dst), n_in, dtype=torch.float64)
    weights[torch.arange(len(dst)), lo] += 1 - frac
    weights[torch.arange(len(dst)), hi] += frac
    return weights.to(device=like.device, dtype=like.dtype)
