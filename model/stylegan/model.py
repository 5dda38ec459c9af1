"""StyleGAN2 generator, discriminator and building blocks (equalised learning rate throughout).

State-dict layout, constructor and forward signatures follow the original PyTorch port that VToonify
builds on, so released checkpoints load unchanged (``strict=True``). Two VToonify-specific extensions
of that port are included: ``dilation`` on :class:`EqualConv2d` / :class:`ConvLayer`, and
``z_plus_latent`` / ``return_feature_ind`` on :meth:`Generator.forward`.

Beyond the original, :class:`Generator` and :class:`Discriminator` accept ``channel_max`` (default 512,
the released configuration) so tiny models can be built for tests.

W+ row usage of a generator with ``n_latent = 2 * log2(size) - 2`` rows: row 0 drives ``conv1``, row 1
``to_rgb1`` and block 0's up-conv; block ``j`` (resolution ``2 ** (j + 3)``) uses rows ``2j+1`` (up-conv),
``2j+2`` (conv) and ``2j+3`` (ToRGB).
"""
from __future__ import annotations

import math
import random
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .op import FusedLeakyReLU, conv2d_gradfix, fused_leaky_relu, upfirdn2d

__all__ = [
    "PixelNorm",
    "make_kernel",
    "Upsample",
    "Downsample",
    "Blur",
    "EqualConv2d",
    "EqualLinear",
    "ModulatedConv2d",
    "NoiseInjection",
    "ConstantInput",
    "StyledConv",
    "ToRGB",
    "Generator",
    "ConvLayer",
    "ResBlock",
    "Discriminator",
    "stylegan_channels",
    "minibatch_stddev",
    "discriminator_body",
]


def stylegan_channels(channel_multiplier: int = 2, channel_max: int = 512, size: int = 1024) -> dict[int, int]:
    """Feature channels per resolution: ``min(channel_max, 16384 * channel_multiplier / r)``.

    For the defaults this is the StyleGAN2 config-f table {4..32: 512, 64: 512, 128: 256, 256: 128,
    512: 64, 1024: 32}.
    """
    return {2**i: min(channel_max, 16384 * channel_multiplier // 2**i) for i in range(2, int(math.log2(size)) + 1)}


class PixelNorm(nn.Module):
    """Normalise each feature vector to unit root-mean-square over dim 1."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input * torch.rsqrt(torch.mean(input**2, dim=1, keepdim=True) + 1e-8)


def make_kernel(k: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A 1-D kernel becomes its outer product, then every kernel is normalised to sum 1."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.dim() == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


class Upsample(nn.Module):
    """2x (``factor``) upsampling with an FIR anti-imaging filter; n -> factor * n exactly."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * (factor**2))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(input, self.kernel, up=self.factor, down=1, pad=self.pad)


class Downsample(nn.Module):
    """Anti-aliased 1/``factor`` downsampling (FIR filter then decimation); n -> n / factor."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2, p // 2)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(input, self.kernel, up=1, down=self.factor, pad=self.pad)


class Blur(nn.Module):
    """FIR filtering with padding ``pad``; the kernel gains ``upsample_factor ** 2`` after upsampling."""

    def __init__(self, kernel: Sequence[float], pad: Sequence[int], upsample_factor: int = 1):
        super().__init__()
        kernel = make_kernel(kernel)
        if upsample_factor > 1:
            kernel = kernel * (upsample_factor**2)
        self.register_buffer("kernel", kernel)
        self.pad = tuple(pad)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(input, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate: runtime weight = weight / sqrt(in_channel * k * k)."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        dilation: int = 1,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return conv2d_gradfix.conv2d(
            input, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation
        )

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, {k}, stride={self.stride}, padding={self.padding}, dilation={self.dilation}"


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate and an optional fused bias + leaky ReLU.

    Stored weights are N(0, 1) / lr_mul; runtime weight = weight * lr_mul / sqrt(in_dim), runtime
    bias = bias * lr_mul. ``activation`` may be None or ``'fused_lrelu'``.
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0, lr_mul: float = 1, activation=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"EqualLinear: unsupported activation {activation!r}")
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            return fused_leaky_relu(F.linear(input, self.weight * self.scale), bias)
        return F.linear(input, self.weight * self.scale, bias=bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, activation={self.activation}"


class ModulatedConv2d(nn.Module):
    """Style-modulated (and optionally demodulated) convolution with fused 2x up/downsampling.

    The per-sample weight is ``scale * weight * s_b`` (``s_b = modulation(style)`` scaling input
    channels), demodulated to unit norm per output channel. Upsampling is a stride-2 transposed
    convolution followed by a ``Blur`` with pad (1, 1); downsampling is a blur then a stride-2 conv.
    ``fused=False`` modulates activations instead of weights (mathematically identical).
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        downsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        fused: bool = True,
    ):
        super().__init__()
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.upsample = upsample
        self.downsample = downsample

        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))

        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate = demodulate
        self.fused = fused

    def extra_repr(self) -> str:
        return (
            f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, demodulate={self.demodulate}, "
            f"upsample={self.upsample}, downsample={self.downsample}"
        )

    def _resample_conv(self, x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
        """Apply ``weight`` ((groups * out, in, k, k)) with the layer's resampling to ``x``."""
        if self.upsample:
            k = weight.shape[-1]
            w = weight.view(groups, -1, weight.shape[1], k, k).transpose(1, 2).reshape(-1, weight.shape[0] // groups, k, k)
            out = conv2d_gradfix.conv_transpose2d(x, w, padding=0, stride=2, groups=groups)
            if x.is_contiguous(memory_format=torch.channels_last):  # some backends return NCHW; keep the layout
                out = out.contiguous(memory_format=torch.channels_last)
            return self.blur(out)
        if self.downsample:
            return conv2d_gradfix.conv2d(self.blur(x), weight, padding=0, stride=2, groups=groups)
        return conv2d_gradfix.conv2d(x, weight, padding=self.padding, groups=groups)

    def forward(self, input: torch.Tensor, style: torch.Tensor, externalweight: torch.Tensor | None = None) -> torch.Tensor:
        batch, in_channel, height, width = input.shape
        base = self.weight if externalweight is None else self.weight + externalweight
        s = self.modulation(style.to(self.modulation.weight.dtype))  # (B, in)

        # The style affine ``s``, the modulated weights and the demodulation coefficients are computed in the
        # parameters' dtype (float32 in a model from VToonify.to_mixed_precision); only what meets the
        # activations is cast to the activations' dtype (a no-op when the two agree).
        act = input.dtype
        if not self.fused or batch > 1:
            # Modulating activations instead of weights is the same maths; for a batch it runs one dense
            # convolution instead of a grouped one per sample.
            weight = self.scale * base.squeeze(0)  # (out, in, k, k)
            out = self._resample_conv(input * s.view(batch, in_channel, 1, 1).to(act), weight.to(act), groups=1)
            if self.demodulate:
                w = weight.unsqueeze(0) * s.view(batch, 1, in_channel, 1, 1)
                dcoefs = (w.square().sum((2, 3, 4)) + self.eps).rsqrt()
                out = out * dcoefs.view(batch, -1, 1, 1).to(act)
            return out

        weight = self.scale * base * s.view(batch, 1, in_channel, 1, 1)  # (B, out, in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)
            weight = weight * demod.view(batch, self.out_channel, 1, 1, 1)
        weight = weight.view(batch * self.out_channel, in_channel, self.kernel_size, self.kernel_size).to(act)
        if batch == 1:  # (reshaping a 1-sample channels-last tensor would change its batch stride and layout)
            return self._resample_conv(input, weight, groups=1)
        out = self._resample_conv(input.reshape(1, batch * in_channel, height, width), weight, groups=batch)
        return out.view(batch, self.out_channel, out.shape[-2], out.shape[-1])


class NoiseInjection(nn.Module):
    """Adds per-pixel noise (shared over channels) scaled by a learned strength ``weight``."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            batch, _, height, width = image.shape
            noise = image.new_empty(batch, 1, height, width).normal_()
        return image + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 constant that starts synthesis (repeated over the batch)."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.input.repeat(input.shape[0], 1, 1, 1)


class StyledConv(nn.Module):
    """ModulatedConv2d -> noise -> bias + leaky ReLU (x sqrt 2)."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        demodulate: bool = True,
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel, out_channel, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel, demodulate=demodulate
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(
        self,
        input: torch.Tensor,
        style: torch.Tensor,
        noise: torch.Tensor | None = None,
        externalweight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.conv(input, style, externalweight)
        out = self.noise(out, noise=noise)
        return self.activate(out)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) + bias, added to the upsampled previous skip."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(
        self,
        input: torch.Tensor,
        style: torch.Tensor,
        skip: torch.Tensor | None = None,
        externalweight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.conv(input, style, externalweight) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def mapping_network(style_dim: int, n_mlp: int, lr_mlp: float) -> nn.Sequential:
    """PixelNorm followed by ``n_mlp`` equalised FC + lrelu layers (keys ``1 .. n_mlp``)."""
    layers: list[nn.Module] = [PixelNorm()]
    layers += [EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)]
    return nn.Sequential(*layers)


def apply_mapping(mapping: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Map a (B, D) code, or every row of a (B, N, D) Z+ code, through ``mapping``."""
    if z.dim() == 3:
        b, n, d = z.shape
        return mapping(z.reshape(b * n, d)).reshape(b, n, -1)
    return mapping(z)


class Generator(nn.Module):
    """StyleGAN2 generator (config-f for the defaults ``(1024, 512, 8, 2)``)."""

    def __init__(
        self,
        size: int,
        style_dim: int,
        n_mlp: int,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        lr_mlp: float = 0.01,
        channel_max: int = 512,
    ):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"Generator size must be a power of two >= 8, got {size}")
        self.size = size
        self.style_dim = style_dim
        self.style = mapping_network(style_dim, n_mlp, lr_mlp)
        self.channels = stylegan_channels(channel_multiplier, channel_max, size)

        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)

        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2**res, 2**res))

        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim))
            in_channel = out_channel

    def make_noise(self) -> list[torch.Tensor]:
        device = self.input.input.device
        noises = [torch.randn(1, 1, 4, 4, device=device)]
        for i in range(3, self.log_size + 1):
            for _ in range(2):
                noises.append(torch.randn(1, 1, 2**i, 2**i, device=device))
        return noises

    @torch.no_grad()
    def mean_latent(self, n_latent: int) -> torch.Tensor:
        latent_in = torch.randn(n_latent, self.style_dim, device=self.input.input.device)
        return self.style(latent_in).mean(0, keepdim=True)

    def get_latent(self, input: torch.Tensor) -> torch.Tensor:
        return self.style(input)

    def prepare_latent(
        self,
        styles: Sequence[torch.Tensor],
        inject_index: int | None,
        truncation: float,
        truncation_latent: torch.Tensor | None,
        input_is_latent: bool,
        z_plus_latent: bool,
    ) -> torch.Tensor:
        """Map, truncate and mix ``styles`` into one (B, n_latent, style_dim) W+ code."""
        if not isinstance(styles, (list, tuple)):
            raise TypeError("styles must be a list of latent tensors, e.g. [z]")
        if not input_is_latent:
            if z_plus_latent:
                styles = [apply_mapping(self.style, s) for s in styles]
            else:
                styles = [self.style(s) for s in styles]
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (e.g. generator.mean_latent(4096))")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        return mix_styles(styles, self.n_latent, inject_index)

    def forward(
        self,
        styles: Sequence[torch.Tensor],
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1,
        truncation_latent: torch.Tensor | None = None,
        input_is_latent: bool = False,
        noise: Sequence[torch.Tensor | None] | None = None,
        randomize_noise: bool = True,
        z_plus_latent: bool = False,
        return_feature_ind: int = 999,
    ):
        latent = self.prepare_latent(styles, inject_index, truncation, truncation_latent, input_is_latent, z_plus_latent)
        noise = self.resolve_noise(noise, randomize_noise)

        out = self.input(latent)
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])

        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2],
                                                        self.to_rgbs):
            out = conv1(out, latent[:, i], noise=noise1)
            out = conv2(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
            if i > return_feature_ind:
                return out, skip

        image = skip
        return (image, latent) if return_latents else (image, None)

    def resolve_noise(self, noise, randomize_noise: bool) -> list:
        if noise is not None:
            return list(noise)
        if randomize_noise:
            return [None] * self.num_layers
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]


def mix_styles(styles: Sequence[torch.Tensor], n_latent: int, inject_index: int | None) -> torch.Tensor:
    """One or two codes (each (B, D) or (B, n_latent, D)) -> (B, n_latent, D), mixing at ``inject_index``."""

    def rows(s: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if s.dim() < 3:
            return s.unsqueeze(1).repeat(1, stop - start, 1)
        if s.shape[1] != n_latent:
            raise ValueError(f"a 3-D latent must have {n_latent} rows, got shape {tuple(s.shape)}")
        return s[:, start:stop]

    if len(styles) == 0 or len(styles) > 2:
        raise ValueError(f"expected one or two style codes, got {len(styles)}")
    if len(styles) == 1:
        return rows(styles[0], 0, n_latent)
    if inject_index is None:
        inject_index = random.randint(1, n_latent - 1)
    return torch.cat([rows(styles[0], 0, inject_index), rows(styles[1], inject_index, n_latent)], 1)


class ConvLayer(nn.Sequential):
    """[Blur +] EqualConv2d [+ FusedLeakyReLU] as an ``nn.Sequential`` (keys ``0``, ``1``, ``2``)."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        bias: bool = True,
        activate: bool = True,
        dilation: int = 1,
    ):
        layers: list[nn.Module] = []
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, self_padding = 2, 0
        else:
            stride, self_padding = 1, kernel_size // 2 + dilation - 1
        layers.append(
            EqualConv2d(
                in_channel,
                out_channel,
                kernel_size,
                padding=self_padding,
                stride=stride,
                bias=bias and not activate,
                dilation=dilation,
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Discriminator residual block: two 3x3 convs (the second downsamples) + 1x1 skip, / sqrt 2."""

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False, bias=False)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(input))
        skip = self.skip(input)
        return (out + skip) / math.sqrt(2)


def minibatch_stddev(out: torch.Tensor, group_size: int = 4, n_feat: int = 1) -> torch.Tensor:
    """Append the minibatch standard deviation as ``n_feat`` extra channels.

    Samples are split into groups of ``min(B, group_size)``; the batch size must be divisible by it.
    """
    batch, channel, height, width = out.shape
    group = min(batch, group_size)
    if batch % group:
        raise ValueError(
            f"minibatch-stddev needs a batch size divisible by min(batch, {group_size}) = {group}, got {batch}"
        )
    stddev = out.view(group, -1, n_feat, channel // n_feat, height, width)
    stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
    stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)
    stddev = stddev.repeat(group, 1, height, width)
    return torch.cat([out, stddev], 1)


def discriminator_body(channels: dict[int, int], size: int, blur_kernel: Sequence[float]) -> tuple[nn.Sequential, int]:
    """``[ConvLayer(3, C_size, 1), ResBlock ... down to 4x4]`` and its output channel count."""
    convs: list[nn.Module] = [ConvLayer(3, channels[size], 1)]
    in_channel = channels[size]
    for i in range(int(math.log2(size)), 2, -1):
        out_channel = channels[2 ** (i - 1)]
        convs.append(ResBlock(in_channel, out_channel, blur_kernel))
        in_channel = out_channel
    return nn.Sequential(*convs), in_channel


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator (unconditional). Not used by VToonify; kept for completeness."""

    def __init__(
        self, size: int, channel_multiplier: int = 2, blur_kernel: Sequence[float] = (1, 3, 3, 1), channel_max: int = 512
    ):
        super().__init__()
        channels = stylegan_channels(channel_multiplier, channel_max, size)
        self.convs, in_channel = discriminator_body(channels, size, blur_kernel)
        self.stddev_group = 4
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_channel + 1, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation="fused_lrelu"),
            EqualLinear(channels[4], 1),
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        out = self.convs(input)
        out = minibatch_stddev(out, self.stddev_group, self.stddev_feat)
        out = self.final_conv(out)
        return self.final_linear(out.view(out.shape[0], -1))
