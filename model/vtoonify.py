"""VToonify: a fully convolutional encoder feeding the mid/high-resolution layers of a frozen StyleGAN.

``VToonify(backbone='dualstylegan')`` (VToonify-D) uses a DualStyleGAN and supports exemplar style,
style degree ``d_s`` and colour control; ``VToonify(backbone='toonify')`` (VToonify-T) uses a fine-tuned
("Toonify") StyleGAN2 generator. Both take a ``(B, 3 + 19, H, W)`` input (RGB in [-1, 1] plus face
parsing logits / 16), with ``H`` and ``W`` multiples of 8, and return a ``(B, 3, 4H, 4W)`` image.

Data flow for the released configuration (``in_size=256``, ``out_size=1024``):

* encoder levels 0-3 produce features at H, H/2, H/4, H/8 (128, 256, 512, 512 channels);
* six residual blocks refine the H/8 features; VToonify-D applies after each of them one of the
  DualStyleGAN ModRes blocks of the 8/16/32 resolutions, dilated 4/2/1 to keep their receptive field;
* the H/8 features replace the generator's 32x32 features, and StyleGAN blocks 64 ... 1024 (W+ rows
  7 ... 17) synthesise the output; before each of the first four blocks the encoder features of the
  same size are fused in (:class:`Fusion` for D, a plain conv for T), and also into the RGB skip.

Generalisations beyond the original (defaults unchanged): the level structure is derived from
``in_size`` / ``out_size`` (``out_size == 4 * in_size``), ``channel_max`` caps all widths so tiny models
can be built for tests, ``d_s`` may be a per-sample tensor, and nothing depends on the default dtype or
device (the original built the degree label in the default dtype, breaking ``.half()``/``.double()``).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from model.dualstylegan import AdaptiveInstanceNorm, AdaResBlock, DualStyleGAN, degree_tensor
from model.stylegan.model import (
    ConvLayer,
    EqualLinear,
    Generator,
    StyledConv,
    apply_mapping,
    discriminator_body,
    minibatch_stddev,
    stylegan_channels,
)

__all__ = ["VToonify", "VToonifyResBlock", "Fusion", "ConditionalDiscriminator", "PreparedStyle", "degree_tensor"]

#: The face-parsing logits enter the model divided by this (``concat(image, logits / PARSING_SCALE)``).
PARSING_SCALE = 16


class PreparedStyle(NamedTuple):
    """A W+ code as the layers of :class:`VToonify` use it (:meth:`VToonify.prepare_styles`): the ModRes styles
    (VToonify-D; None for VToonify-T) and the AdaIN/modulation styles of the StyleGAN layers, batch 1 or B, and the
    W+ ``code`` they were computed from."""

    resstyles: torch.Tensor | None
    adastyles: torch.Tensor
    code: torch.Tensor

    def expand(self, batch: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Both, broadcast to ``batch`` samples (a batch-1 style serves any batch)."""
        def grow(t):
            return t if t is None or t.shape[0] == batch else t.expand(batch, *t.shape[1:])
        return grow(self.resstyles), grow(self.adastyles)


class VToonifyResBlock(nn.Module):
    """``(lrelu(conv2(lrelu(conv(x)))) + x) / sqrt(2)`` with plain 3x3 convs."""

    def __init__(self, fin: int):
        super().__init__()
        self.conv = nn.Conv2d(fin, fin, 3, 1, 1)
        self.conv2 = nn.Conv2d(fin, fin, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lrelu(self.conv(x))
        out = self.lrelu(self.conv2(out))
        return (out + x) / math.sqrt(2)


class Fusion(nn.Module):
    """Degree-conditioned fusion of generator features ``f_G`` with encoder features ``f_E`` (VToonify-D).

    A mask ``m_E = tanh(relu(conv2(AdaIN([f_G, |f_G - f_E|], label(d_s)))))`` in [0, 1) gates the encoder
    features; the output is ``conv([f_G, f_E * m_E])``. Returns ``(f_out, m_E)``.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        # The released models always use in = skip = out; the conv widths follow the original.
        self.conv = nn.Conv2d(in_channels + skip_channels, out_channels, 3, 1, 1, bias=True)
        self.norm = AdaptiveInstanceNorm(in_channels * 2, 128)
        self.conv2 = nn.Conv2d(in_channels * 2, 1, 3, 1, 1, bias=True)
        self.linear = nn.Sequential(nn.Linear(1, 64), nn.LeakyReLU(0.2, True), nn.Linear(64, 128), nn.LeakyReLU(0.2, True))

    def forward(self, f_G: torch.Tensor, f_E: torch.Tensor, d_s=1) -> tuple[torch.Tensor, torch.Tensor]:
        f_out, m_E, _ = self.fuse(f_G, f_E, d_s)
        return f_out, m_E

    def fuse(self, f_G: torch.Tensor, f_E: torch.Tensor, d_s=1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(f_out, m_E, f_E * m_E)``: :meth:`forward` plus the gated encoder features (VToonify reuses them)."""
        label = self.linear(degree_tensor(d_s, f_G.shape[0], self.linear[0].weight))
        autograd = torch.is_grad_enabled() and (f_G.requires_grad or f_E.requires_grad or self.conv.weight.requires_grad)
        if autograd or torch.compiler.is_compiling():  # the compiler fuses this form itself (and refuses strided out=)
            out = torch.cat([f_G, torch.abs(f_G - f_E)], dim=1)
            m_E = F.relu(self.conv2(self.norm(out, label))).tanh()
            gated = f_E * m_E
            return self.conv(torch.cat([f_G, gated], dim=1)), m_E, gated
        # Inference: one (B, 2C, H, W) buffer holds [f_G, |f_G - f_E|], then [f_G, f_E * m_E] (no concatenations,
        # half the full-resolution writes of the form above; the same values).
        c = f_G.shape[1]
        buf = torch.empty((f_G.shape[0], 2 * c, *f_G.shape[2:]), dtype=f_G.dtype, device=f_G.device,
                          memory_format=torch.channels_last)
        buf[:, :c].copy_(f_G)
        torch.sub(f_G, f_E, out=buf[:, c:]).abs_()
        m_E = F.relu(self.conv2(self.norm(buf, label))).tanh()
        gated = torch.mul(f_E, m_E, out=buf[:, c:])
        return self.conv(buf), m_E, gated


def _encoder_stage(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=True),
        nn.LeakyReLU(negative_slope=0.2, inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=True),
        nn.LeakyReLU(negative_slope=0.2, inplace=True),
    )


def _styled_conv_without_noise(conv: StyledConv, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """A StyledConv with zero noise (exactly what VToonify feeds): the noise add is skipped.

    Without autograd the bias and activation are applied in place on the fresh convolution output
    (same values, two fewer full-resolution temporaries).
    """
    out = conv.conv(x, style)
    act = conv.activate
    if torch.is_grad_enabled() or act.bias is None:
        return act(out)
    out.add_(act.bias.to(out.dtype).view(1, -1, 1, 1))
    return F.leaky_relu_(out, act.negative_slope).mul_(act.scale)


def _conv_as_own_dtype(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` with ``x`` cast to the convolution's dtype (the RGB skip path of a mixed-precision model)."""
    return conv(x.to(conv.weight.dtype))


class VToonify(nn.Module):
    """The VToonify generator (see the module docstring)."""

    def __init__(
        self,
        in_size: int = 256,
        out_size: int = 1024,
        img_channels: int = 3,
        style_channels: int = 512,
        num_mlps: int = 8,
        channel_multiplier: int = 2,
        num_res_layers: int = 6,
        backbone: str = "dualstylegan",
        channel_max: int = 512,
    ):
        super().__init__()
        if backbone not in ("dualstylegan", "toonify"):
            raise ValueError(f"backbone must be 'dualstylegan' or 'toonify', got {backbone!r}")
        if in_size < 64 or in_size & (in_size - 1) or out_size != 4 * in_size:
            raise ValueError(f"need in_size a power of two >= 64 and out_size == 4 * in_size, got {in_size}, {out_size}")
        self.backbone = backbone
        self.in_size = in_size
        self.out_size = out_size
        self.style_channels = style_channels
        # Generator block j has resolution 2**(j+3); the encoder's bottom level (in_size/8) replaces block
        # `bottom` and decoding starts at the next block, whose first W+ row is 2*bottom + 3.
        self.bottom_block = int(math.log2(in_size)) - 6
        self.first_row = 2 * self.bottom_block + 3
        n_structure_rows = self.first_row - 1  # W+ rows 1 .. first_row-1 belong to the replaced blocks

        if backbone == "dualstylegan":
            if num_res_layers != n_structure_rows:
                raise ValueError(
                    f"VToonify-D needs num_res_layers == {n_structure_rows} (one per replaced ModRes block), "
                    f"got {num_res_layers}"
                )
            self.generator = DualStyleGAN(
                out_size, style_channels, num_mlps, channel_multiplier, res_index=n_structure_rows, channel_max=channel_max
            )
        else:
            self.generator = Generator(
                out_size, style_channels, num_mlps, channel_multiplier=channel_multiplier, channel_max=channel_max
            )
        self.channels = stylegan_channels(channel_multiplier, channel_max, out_size)
        ch = self.channels

        levels = [in_size, in_size // 2, in_size // 4, in_size // 8]  # encoder output sizes for an in_size input
        self.encoder = nn.ModuleList()
        self.encoder.append(_encoder_stage_first(img_channels + 19, ch[levels[0]]))
        for prev, cur in zip(levels[:-1], levels[1:]):
            self.encoder.append(_encoder_stage(ch[prev], ch[cur], 2))
        self.encoder.append(nn.Sequential(*[VToonifyResBlock(ch[levels[-1]]) for _ in range(num_res_layers)]))
        self.encoder.append(nn.Conv2d(ch[levels[-1]], img_channels, 1, 1, 0, bias=True))

        self.fusion_out = nn.ModuleList()
        self.fusion_skip = nn.ModuleList()
        for res in levels[::-1]:
            c = ch[res]
            if backbone == "dualstylegan":
                self.fusion_out.append(Fusion(c, c, c))
            else:
                self.fusion_out.append(nn.Conv2d(c * 2, c, 3, 1, 1, bias=True))
            self.fusion_skip.append(nn.Conv2d(c + 3, 3, 3, 1, 1, bias=True))

        if backbone == "dualstylegan":
            # res[0] is never used but kept so DualStyleGAN's res[0] can be copied in (and for strict loading);
            # res[k] re-applies the ModRes block of W+ row k at the bottom level with dilation.
            bottom_res = in_size // 8
            if any(ch[2 ** ((k - 1) // 2 + 3)] != ch[bottom_res] for k in range(1, n_structure_rows + 1)):
                raise ValueError("VToonify-D needs equal channel counts for all resolutions up to in_size/8")
            self.res = nn.ModuleList([AdaResBlock(ch[4], style_channels)])
            for k in range(1, n_structure_rows + 1):
                resolution = 2 ** ((k - 1) // 2 + 3)
                self.res.append(AdaResBlock(ch[resolution], style_channels, dilation=bottom_res // resolution))

    # ------------------------------------------------------------------------------------------------
    def low_precision_modules(self) -> list[nn.Module]:
        """The convolutions :meth:`to_mixed_precision` casts: the encoder's 3x3 convolutions and residual
        blocks, VToonify-D's dilated ModRes convolutions, and the fusion convolutions (for VToonify-D also
        the fusion-mask convolution). About 2/3 of the FLOPs; the StyleGAN blocks' modulated convolutions run
        in the activations' dtype as well, from float32 weights modulated and demodulated per call."""
        mods: list[nn.Module] = list(self.encoder[:5])
        if self.backbone == "dualstylegan":
            for block in self.res[1:]:
                mods += [block.conv[0], block.conv2[0]]
            for fusion in self.fusion_out:
                mods += [fusion.conv, fusion.conv2]
        else:
            mods += list(self.fusion_out)
        return mods

    def to_mixed_precision(self, dtype: torch.dtype = torch.bfloat16) -> VToonify:
        """Cast the model in place for ``dtype`` (bfloat16 or float16) inference and return it.

        The convolutions of :meth:`low_precision_modules` take ``dtype`` and so do the activations between
        them; every part whose rounding would show in the output stays float32: the style mapping and affine
        maps (W+ codes, modulation ``s``, AdaIN's gamma/beta and the degree MLP), the modulated weights and
        demodulation coefficients (cast to ``dtype`` only when they meet the activations), instance-norm
        statistics (``model.dualstylegan`` computes them in float32 for low-precision maps), the RGB skip
        path (``encoder[5]``, ``fusion_skip``, the ToRGB bias and the sum of the upsampled skips) and so the
        output, which is float32. Any other ``dtype`` casts the whole model (``.to(dtype)``).
        """
        self.float()
        if dtype not in (torch.bfloat16, torch.float16):
            return self.to(dtype)
        for m in self.low_precision_modules():
            m.to(dtype)
        return self

    def stylegan(self) -> Generator:
        """The StyleGAN2 generator (inside the DualStyleGAN for VToonify-D)."""
        return self.generator.generator if self.backbone == "dualstylegan" else self.generator

    def zplus2wplus(self, zplus: torch.Tensor) -> torch.Tensor:
        """Map a (B, 18, 512) Z+ code (e.g. pSp output) row by row to W+ with the StyleGAN mapping net."""
        return apply_mapping(self.stylegan().style, zplus.to(self.stylegan().style[1].weight.dtype))

    def prepare_styles(self, style: torch.Tensor) -> PreparedStyle:
        """The per-layer styles of a W+ code, as :meth:`forward` computes them (in the mapping's dtype): for a style
        that is fixed over many calls (a video), compute them once and pass the result as ``style``."""
        return PreparedStyle(*self._prepare_styles(style.to(self.stylegan().style[1].weight.dtype)), style)

    def _prepare_styles(self, style: torch.Tensor):
        n_latent = self.stylegan().n_latent
        if style.dim() == 2:
            style = style.unsqueeze(1).repeat(1, n_latent, 1)
        if style.dim() != 3 or style.shape[1] != n_latent or style.shape[2] != self.style_channels:
            raise ValueError(
                f"style must be (B, {self.style_channels}) or (B, {n_latent}, {self.style_channels}), got {tuple(style.shape)}"
            )
        if self.backbone == "toonify":
            return None, style
        g = self.generator
        resstyles = apply_mapping(g.style, style[:, : self.first_row])
        decoder_rows = [g.res[k](style[:, k]) for k in range(self.first_row, n_latent)]
        adastyles = torch.cat([style[:, : self.first_row], torch.stack(decoder_rows, 1)], 1)
        return resstyles, adastyles

    def forward(
        self,
        x: torch.Tensor,
        style: torch.Tensor,
        d_s=None,
        return_mask: bool = False,
        return_feat: bool = False,
        prepared: PreparedStyle | None = None,
    ):
        """Stylise ``x`` ((B, 22, H, W), H and W multiples of 8) with W+ code ``style``.

        Returns the (B, 3, 4H, 4W) image; with ``return_mask`` also the list of the four fusion masks
        (VToonify-D; an empty list for VToonify-T); with ``return_feat`` only the encoder's bottom
        features and RGB skip ((B, C, H/8, W/8), (B, 3, H/8, W/8)), as used for pre-training.
        ``prepared``: :meth:`prepare_styles` of ``style``, computed once for many calls (a video); the layers use
        it instead of computing it again.
        """
        dual = self.backbone == "dualstylegan"
        if x.dim() != 4 or x.shape[1] != self.encoder[0][0].in_channels:
            raise ValueError(f"x must be (B, {self.encoder[0][0].in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % 8 or x.shape[3] % 8:
            raise ValueError(f"VToonify needs H and W to be multiples of 8, got {x.shape[2]}x{x.shape[3]}")
        if dual and d_s is None:
            raise ValueError("VToonify-D needs a style degree d_s (0 = no style ... 1 = full style)")
        if style is None:
            if dual or not return_feat:
                raise ValueError("style (a W+ code) is required")
            resstyles = adastyles = None  # VToonify-T encoder features do not depend on the style
        elif prepared is not None:  # computed once from this ``style`` by prepare_styles
            resstyles, adastyles = prepared.expand(x.shape[0])
        else:
            # style codes run in the mapping network's dtype (float32 in a mixed-precision model)
            resstyles, adastyles = self._prepare_styles(style.to(self.stylegan().style[1].weight.dtype))

        features = []
        # channels-last activations: oneDNN (CPU) and cuDNN run these convolutions 2-4x faster in NHWC;
        # the activations take the dtype of the encoder's convolutions (see to_mixed_precision)
        feat = x.to(self.encoder[0][0].weight.dtype).contiguous(memory_format=torch.channels_last)
        for stage in self.encoder[:4]:
            feat = stage(feat)
            features.append(feat)
        features = features[::-1]  # bottom (H/8) first

        feat = features[0]
        for k, block in enumerate(self.encoder[4]):
            feat = block(feat)
            if dual:
                feat = self.res[k + 1](feat, resstyles[:, k + 1], d_s)
        out = feat
        skip = _conv_as_own_dtype(self.encoder[5], feat)
        if return_feat:
            return out, skip

        stylegan = self.stylegan()
        masks = []
        row = self.first_row
        first_conv = 2 * (self.bottom_block + 1)
        blocks = zip(stylegan.convs[first_conv::2], stylegan.convs[first_conv + 1 :: 2],
                     stylegan.to_rgbs[self.bottom_block + 1 :])
        for t, (conv1, conv2, to_rgb) in enumerate(blocks):
            if t < len(self.fusion_out):
                f_E = features[t]
                if dual:
                    out, m_E, gated = self.fusion_out[t].fuse(out, f_E, d_s)
                    skip = _conv_as_own_dtype(self.fusion_skip[t], torch.cat([skip, gated.to(skip.dtype)], dim=1))
                    masks.append(m_E)
                else:
                    out = self.fusion_out[t](torch.cat([out, f_E], dim=1))
                    skip = _conv_as_own_dtype(self.fusion_skip[t], torch.cat([skip, f_E.to(skip.dtype)], dim=1))
            out = _styled_conv_without_noise(conv1, out, adastyles[:, row])
            out = _styled_conv_without_noise(conv2, out, adastyles[:, row + 1])
            skip = to_rgb(out, adastyles[:, row + 2], skip)
            row += 2

        if return_mask:
            return skip, masks
        return skip


def _encoder_stage_first(in_ch: int, out_ch: int) -> nn.Sequential:
    """Full-resolution stage: in_ch -> 32 -> out_ch (keys ``0.0``, ``0.2``)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, 32, 3, 1, 1, bias=True),
        nn.LeakyReLU(negative_slope=0.2, inplace=True),
        nn.Conv2d(32, out_ch, 3, 1, 1, bias=True),
        nn.LeakyReLU(negative_slope=0.2, inplace=True),
    )


class ConditionalDiscriminator(nn.Module):
    """StyleGAN2 discriminator used to train VToonify, optionally a projection discriminator
    conditioned on the style degree and the style index (VToonify-D)."""

    def __init__(
        self,
        size: int,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        use_condition: bool = False,
        style_num: int | None = None,
        channel_max: int = 512,
    ):
        super().__init__()
        channels = stylegan_channels(channel_multiplier, channel_max, size)
        self.convs, in_channel = discriminator_body(channels, size, blur_kernel)
        self.stddev_group = 4
        self.stddev_feat = 1
        self.use_condition = use_condition
        if use_condition:
            if not style_num or style_num < 1:
                raise ValueError("use_condition=True needs style_num >= 1 (the number of exemplar styles)")
            self.condition_dim = 128
            self.label_mapper = nn.Sequential(
                nn.Linear(1, 64), nn.LeakyReLU(0.2, True), nn.Linear(64, 64), nn.LeakyReLU(0.2, True), nn.Linear(64, 64)
            )
            self.style_mapper = nn.Embedding(style_num, 64)
        else:
            self.condition_dim = 1
        self.final_conv = ConvLayer(in_channel + 1, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation="fused_lrelu"),
            EqualLinear(channels[4], self.condition_dim),
        )

    def forward(self, input: torch.Tensor, degree_label: torch.Tensor | None = None, style_ind: torch.Tensor | None = None):
        out = self.convs(input)
        out = minibatch_stddev(out, self.stddev_group, self.stddev_feat)
        out = self.final_conv(out)
        out = self.final_linear(out.view(out.shape[0], -1))
        if not self.use_condition:
            return out
        if degree_label is None or style_ind is None:
            raise ValueError("a conditional discriminator needs degree_label (B, 1) and style_ind (B,)")
        condition = torch.cat(
            [self.label_mapper(degree_label.to(out.dtype).view(-1, 1)), self.style_mapper(style_ind.to(out.device).long())],
            dim=1,
        )
        return (out * condition).sum(dim=1, keepdim=True) / math.sqrt(self.condition_dim)
