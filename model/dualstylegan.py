"""DualStyleGAN: a StyleGAN2 generator with an extrinsic (exemplar) style path.

The *intrinsic* path is the plain StyleGAN2 generator (``self.generator``) driven by the content code.
The *extrinsic* path takes an exemplar's W+ code ``exstyles`` and

* for the rows ``<= res_index`` (structure: ``conv1`` and resolutions 8, 16, 32 for the default
  ``res_index=6``) adds a modulative residual block (:class:`AdaResBlock`, "ModRes") after the
  corresponding StyledConv, its AdaIN driven by ``style(exstyles)`` (a 2-layer MLP);
* for the rows ``> res_index`` (colour / texture) replaces the layer's code by
  ``w * res[k](exstyles[:, k]) + (1 - w) * latent[:, k]`` where ``res[k]`` is an affine map
  initialised to the identity.

``interp_weights`` (one per W+ row) sets the style degree of each row; ``w == 0`` makes a ModRes block
an exact identity.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from model.stylegan.model import ConvLayer, EqualLinear, Generator, apply_mapping, mapping_network

__all__ = ["AdaptiveInstanceNorm", "AdaResBlock", "DualStyleGAN", "STRUCTURE_ROWS", "degree_tensor",
           "interp_weights", "mix_rows", "exstyle_code"]

#: W+ rows 0 .. 6 carry an exemplar's structure (the ModRes rows ``<= res_index`` for the default
#: ``res_index=6``); rows 7 .. carry its colour and texture.
STRUCTURE_ROWS = 7


def interp_weights(style_degree: float, color_transfer: bool, n_latent: int = 18) -> list[float]:
    """DualStyleGAN's per-row ``interp_weights``: the style degree on the structure rows, and 1 (the
    exemplar's colours) or 0 (the content's colours) on the colour rows."""
    return [float(style_degree)] * STRUCTURE_ROWS + [1.0 if color_transfer else 0.0] * (n_latent - STRUCTURE_ROWS)


def mix_rows(structure: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """A (B, n_latent, C) code with rows 0 .. 6 from ``structure`` and the remaining rows from ``colour``."""
    return torch.cat([structure[:, :STRUCTURE_ROWS], colour[:, STRUCTURE_ROWS:]], dim=1)


def exstyle_code(exstyle: torch.Tensor, content: torch.Tensor, color_transfer: bool) -> torch.Tensor:
    """The extrinsic style code VToonify-D is driven with: the exemplar's W+ code ``exstyle`` as it is
    with colour transfer, else its structure rows with the colour rows of the ``content`` code."""
    return exstyle if color_transfer else mix_rows(exstyle, content)


class AdaptiveInstanceNorm(nn.Module):
    """Instance norm whose per-channel scale and shift come from a style vector (plain ``nn.Linear``)."""

    def __init__(self, fin: int, style_dim: int = 512):
        super().__init__()
        self.norm = nn.InstanceNorm2d(fin, affine=False)
        self.style = nn.Linear(style_dim, fin * 2)
        with torch.no_grad():
            self.style.bias[:fin] = 1
            self.style.bias[fin:] = 0

    def forward(self, input: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(style.to(self.style.weight.dtype)).unsqueeze(2).unsqueeze(3).chunk(2, 1)
        # The instance norm of ``self.norm`` written out with elementwise ops: they keep the input's memory
        # layout (InstanceNorm2d returns NCHW even for channels-last input, which slows every later
        # convolution), fold gamma into the normalisation, and give 0 for a 1x1 map (which InstanceNorm2d refuses).
        return _instance_norm_affine(input, gamma, beta, self.norm.eps)


def _instance_norm_affine(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` with per-sample, per-channel moments over H and W.

    ``torch.var_mean`` over H and W of a channels-last CPU tensor reduces across the inner (channel) stride and
    runs at ~1 GB/s. At inference on CPU the same maths runs on the (B, H*W, C) view instead: a mean, one
    centred copy, a dot product for the variance and the affine in place on the copy (3x faster on the
    256-1024 channel fusion maps of VToonify-D, same two-pass accuracy). Autograd, CUDA and NCHW inputs keep
    the plain form; an export (``torch.export``, ONNX) the textbook form.
    """
    b, c, h, w = x.shape
    if x.dtype in (torch.bfloat16, torch.float16):
        return _instance_norm_affine_low_precision(x, gamma, beta, eps)
    if torch.compiler.is_exporting():
        # For an exported graph (ONNX) the textbook form, which runtimes recognise as one instance-norm node
        # (OpenVINO fuses it into MVN) instead of transposes to and from the (B, H*W, C) view around many small ops.
        centred = x - x.mean((2, 3), keepdim=True)
        return centred / torch.sqrt(centred.pow(2).mean((2, 3), keepdim=True) + eps) * gamma + beta
    fast = (
        x.device.type == "cpu"
        and not (torch.is_grad_enabled() and (x.requires_grad or gamma.requires_grad or beta.requires_grad))
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
    )
    if not fast:
        var, mean = torch.var_mean(x, dim=(2, 3), unbiased=False, keepdim=True)
        return (x - mean) * (gamma * torch.rsqrt(var + eps)) + beta
    v = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view: channels-last memory is (B, H, W, C)
    out = v - v.mean(1, keepdim=True)
    var = torch.linalg.vecdot(out, out, dim=1).div_(h * w).view(b, 1, c)
    scale = gamma.reshape(gamma.shape[0], 1, c) * torch.rsqrt(var + eps)  # gamma/beta may have batch 1
    torch.addcmul(beta.reshape(beta.shape[0], 1, c), out, scale, out=out)
    return out.view(b, h, w, c).permute(0, 3, 1, 2)


def _instance_norm_affine_low_precision(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """:func:`_instance_norm_affine` of a bfloat16 / float16 map, computed in float32 and rounded once.

    The moments (two-pass), the scale ``gamma / sqrt(var + eps)`` and the affine run on a float32 copy; only the
    output is rounded to ``x``'s dtype. In bfloat16 (8-bit mantissa) a mean rounded to the map's dtype is off by
    up to 0.4% of its value, the same for every pixel of a channel: VToonify-D's fusion maps ``|f_G - f_E|``
    have means several times their spread, so a rounded mean shifts a channel by a visible fraction of it.
    (A mixed-dtype ``addcmul`` straight into a bfloat16 buffer would skip the copy but is several times slower
    on CPU than these float32 passes and one cast.)
    """
    b, c, h, w = x.shape
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    # channels-last: the (B, H*W, C) view (reducing over H, W of the 4-D tensor is slow, see above)
    v = (x.permute(0, 2, 3, 1).reshape(b, h * w, c) if cl else x.reshape(b, c, h * w).transpose(1, 2)).float()
    v.sub_(v.mean(1, keepdim=True))
    var = torch.linalg.vecdot(v, v, dim=1).div_(h * w).view(b, 1, c)
    scale = gamma.float().reshape(gamma.shape[0], 1, c) * torch.rsqrt(var + eps)
    torch.addcmul(beta.float().reshape(beta.shape[0], 1, c), v, scale, out=v)
    out = v.to(x.dtype).view(b, h, w, c).permute(0, 3, 1, 2)
    return out if cl else out.contiguous()


def _is_zero_weight(w) -> bool:
    return not torch.is_tensor(w) and w == 0


def degree_tensor(d_s, batch: int, like: torch.Tensor) -> torch.Tensor:
    """The one reading of a style degree: a number, 0-d tensor, (B,) or (B, 1) tensor as a (B, 1) tensor of
    ``like``'s dtype/device (VToonify's fusion labels, the ModRes weights below)."""
    if torch.is_tensor(d_s):
        d = d_s.to(device=like.device, dtype=like.dtype).reshape(-1, 1)
        if d.shape[0] == 1:
            d = d.expand(batch, 1)
        if d.shape[0] != batch:
            raise ValueError(f"d_s has {d.shape[0]} values for a batch of {batch}")
        return d
    return torch.full((batch, 1), float(d_s), device=like.device, dtype=like.dtype)


def _as_feature_weight(w, like: torch.Tensor):
    """A python number stays as is (exact, and 0 skips the block); a tensor (:func:`degree_tensor`'s forms)
    broadcasts over (B, C, H, W)."""
    if not torch.is_tensor(w):
        return w
    return degree_tensor(w, like.shape[0], like).view(-1, 1, 1, 1)


class AdaResBlock(nn.Module):
    """Modulative residual block ("ModRes"): ``x + w * conv2(AdaIN2(conv(AdaIN(x, s)), s))``.

    The 3x3 convs may be dilated (VToonify re-applies the 8x8 / 16x16 blocks at 32x32 with dilation 4 / 2
    to keep their receptive field). ``w == 0`` (a Python number) returns ``x`` unchanged.
    """

    def __init__(self, fin: int, style_dim: int = 512, dilation: int = 1):
        super().__init__()
        self.conv = ConvLayer(fin, fin, 3, dilation=dilation)
        self.conv2 = ConvLayer(fin, fin, 3, dilation=dilation)
        self.norm = AdaptiveInstanceNorm(fin, style_dim)
        self.norm2 = AdaptiveInstanceNorm(fin, style_dim)
        with torch.no_grad():
            self.conv[0].weight.mul_(0.01)
            self.conv2[0].weight.mul_(0.01)

    def forward(self, x: torch.Tensor, s: torch.Tensor, w=1) -> torch.Tensor:
        if _is_zero_weight(w):
            return x
        out = self.conv(self.norm(x, s))
        out = self.conv2(self.norm2(out, s))
        return out * _as_feature_weight(w, out) + x


class DualStyleGAN(nn.Module):
    """DualStyleGAN generator (defaults build the released 1024px configuration)."""

    def __init__(
        self,
        size: int,
        style_dim: int,
        n_mlp: int,
        channel_multiplier: int = 2,
        twoRes: bool = True,
        res_index: int = 6,
        channel_max: int = 512,
    ):
        super().__init__()
        if not twoRes:
            raise ValueError("DualStyleGAN: only twoRes=True (two ModRes blocks per resolution, as released) is supported")
        if n_mlp <= 6:
            raise ValueError(f"DualStyleGAN: n_mlp must be > 6 (its extrinsic mapping has n_mlp - 6 layers), got {n_mlp}")
        self.style = mapping_network(style_dim, n_mlp - 6, 0.01)
        self.generator = Generator(size, style_dim, n_mlp, channel_multiplier=channel_multiplier, channel_max=channel_max)
        self.res_index = res_index
        self.n_latent = self.generator.n_latent
        if not 0 <= res_index < self.n_latent:
            raise ValueError(f"res_index must be in [0, {self.n_latent}), got {res_index}")

        channels = self.generator.channels
        self.res = nn.ModuleList()
        for row in range(self.n_latent):
            if row <= res_index:
                # row 0 follows conv1 (4x4); rows 2j+1, 2j+2 follow the convs of block j (resolution 2**(j+3))
                resolution = 4 if row == 0 else 2 ** ((row - 1) // 2 + 3)
                self.res.append(AdaResBlock(channels[resolution], style_dim))
            else:
                linear = EqualLinear(style_dim, style_dim)
                with torch.no_grad():
                    linear.weight.copy_(torch.eye(style_dim) * math.sqrt(style_dim) + 0.01 * torch.randn(style_dim, style_dim))
                self.res.append(linear)

    def make_noise(self) -> list[torch.Tensor]:
        return self.generator.make_noise()

    def mean_latent(self, n_latent: int) -> torch.Tensor:
        return self.generator.mean_latent(n_latent)

    def get_latent(self, input: torch.Tensor) -> torch.Tensor:
        return self.generator.style(input)

    def extrinsic_codes(self, exstyles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(resstyles, adastyles)``: the ModRes AdaIN codes and the per-row extrinsic W+ codes."""
        if exstyles.dim() < 3:
            exstyles = exstyles.unsqueeze(1).repeat(1, self.n_latent, 1)
        return apply_mapping(self.style, exstyles), exstyles

    def forward(
        self,
        styles: Sequence[torch.Tensor],
        exstyles: torch.Tensor | None,
        return_latents: bool = False,
        return_feat: bool = False,
        inject_index: int | None = None,
        truncation: float = 1,
        truncation_latent: torch.Tensor | None = None,
        input_is_latent: bool = False,
        noise: Sequence[torch.Tensor | None] | None = None,
        randomize_noise: bool = True,
        z_plus_latent: bool = False,
        use_res: bool = True,
        fuse_index: int = 18,
        interp_weights: Sequence[float] = (1,) * 18,
    ):
        g = self.generator
        latent = g.prepare_latent(styles, inject_index, truncation, truncation_latent, input_is_latent, z_plus_latent)
        noise = g.resolve_noise(noise, randomize_noise)
        if use_res:
            if exstyles is None:
                raise ValueError("use_res=True needs exstyles")
            if len(interp_weights) < self.n_latent:
                raise ValueError(f"interp_weights needs {self.n_latent} entries, got {len(interp_weights)}")
            resstyles, adastyles = self.extrinsic_codes(exstyles)

        def code(row: int) -> torch.Tensor:
            if use_res and row < fuse_index and row > self.res_index:
                w = interp_weights[row]
                return w * self.res[row](adastyles[:, row]) + (1 - w) * latent[:, row]
            return latent[:, row]

        def modres(out: torch.Tensor, row: int) -> torch.Tensor:
            if use_res and row < fuse_index and row <= self.res_index:
                return self.res[row](out, resstyles[:, row], interp_weights[row])
            return out

        out = g.input(latent)
        out = modres(g.conv1(out, latent[:, 0], noise=noise[0]), 0)
        skip = g.to_rgb1(out, code(1))

        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(g.convs[::2], g.convs[1::2], noise[1::2], noise[2::2], g.to_rgbs):
            out = modres(conv1(out, code(i), noise=noise1), i)
            out = modres(conv2(out, code(i + 1), noise=noise2), i + 1)
            skip = to_rgb(out, code(i + 2), skip)
            i += 2
            if return_feat and i > self.res_index:
                return out, skip

        image = skip
        return (image, latent) if return_latents else (image, None)
