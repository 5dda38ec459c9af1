"""Joint random affine augmentation used by VToonify training.

VToonify concatenates the content image and its stylised target along the channel axis and passes the pair
through :func:`random_apply_affine` with ``p = 0.2``, so that input and target receive exactly the same
geometry. The augmentation is a mild version of the geometric part of the StyleGAN2-ADA pipeline: a random
3x3 affine matrix per sample, applied by anti-aliased resampling.

Conventions
-----------
* **Coordinates.** A matrix ``G`` acts on homogeneous *centred pixel coordinates* ``(x, y, 1)``: ``x`` grows
  to the right, ``y`` grows downwards, both in pixels, and ``(0, 0)`` is the centre of the image (pixel column
  ``j`` has ``x = j - (W - 1) / 2``, row ``i`` has ``y = i - (H - 1) / 2``).
* **Direction.** ``G`` is the *forward* map: image content found at position ``p`` of the input appears at
  ``G @ p`` in the output. Resampling therefore uses the inverse, ``output(q) = input(G^-1 @ q)``. Hence
  ``[[1, 0, 8], [0, 1, 0], [0, 0, 1]]`` moves content 8 px to the right and ``diag(-1, 1, 1)`` mirrors the
  image left-right.
* **Rotation sense.** :func:`rotation_matrix` builds ``[[cos t, -sin t], [sin t, cos t]]``. Because ``y``
  points down, a positive angle turns the content *clockwise on screen*: ``rotation_matrix(pi / 2)`` equals
  ``torch.rot90(img, k=-1, dims=(-2, -1))`` and ``rotation_matrix(-pi / 2)`` equals ``k=1``.
* **Translation units (quirk kept on purpose).** Translations are expressed in pixels of this frame, but the
  sampling laws below were designed for translations in units of the image size. As in the original
  implementation, the random translations are therefore *sub-pixel*: at most 0.125 px for the "integer"
  translation and typically ~0.1 px for the "fractional" one, i.e. practically negligible.

Sampling (:func:`sample_affine`)
--------------------------------
Starting from the identity, the following transforms are drawn per sample, each applied with probability
``p`` (unless stated otherwise) and composed by left-multiplication in this order
(``G <- T @ G``, so the first transform is applied first to the content):

1. x-flip: ``diag(s, 1)`` with the sign ``s = +-1`` chosen 50/50 (so a flip happens with probability ``p / 2``);
2. "integer" translation: one ``t ~ U(-0.125, 0.125)`` for both axes, quantised to multiples of ``1 / size``
   (``tx = round(t * W) / W``, ``ty = round(t * H) / H``);
3. isotropic scale ``diag(s, s)`` with ``s = 2 ** N(0, 0.1 ** 2)`` (log-normal, sigma = ``0.1 * ln 2``);
4. pre-rotation by ``U(-pi/4, pi/4)`` with probability ``p_rot = 1 - sqrt(1 - p)``;
5. anisotropic scale ``diag(s, 1 / s)`` with ``s = 2 ** N(0, 0.1 ** 2)``;
6. post-rotation, same law and probability as the pre-rotation (so *some* rotation happens with probability ``p``);
7. "fractional" translation: one ``t ~ N(0, 0.125 ** 2)`` for both axes.

90-degree rotations are not used. With ``p = 0.2`` about 30 % of the samples get exactly the identity
(``0.9 * 0.8 ** 5`` ~ 29.5 %, slightly more where the quantised translation rounds to zero).

Resampling (:func:`apply_affine`)
---------------------------------
1. reflect-pad the input by the extent the inverse-transformed output corners require, plus the support of the
   filters (at most ``size - 1`` per side, the limit of reflection padding; anything further is zero);
2. upsample 2x with the 12-tap Symlet-6 (SYM6) low-pass filter (separable, :func:`~model.stylegan.op.upfirdn2d`);
3. bilinear :func:`torch.nn.functional.grid_sample` (zero padding, ``align_corners=False``) on a 2x-resolution
   grid covering the output plus the down-filter margin, with ``G^-1`` converted to normalised coordinates;
4. downsample 2x with the time-reversed SYM6 filter; the result has the input's size.

SYM6 is an orthogonal wavelet filter, so upsampling with it followed by downsampling with its time reverse is
exactly the identity: the identity transform (and integer-pixel translations) reproduce the input up to
floating-point rounding. SYM6 is, however, not linear-phase: its low-frequency delay is ~5.10 taps while the 2x
samples are placed for the nominal centre (K - 1) / 2 = 5.5, so the upsampled image is offset by ~0.2 px. The
down pass undoes that offset exactly for transforms that keep the orientation of the axes, but a transform that
reverses an axis moves content by up to ~0.4 px relative to the ideal warp (an x-flip maps ``x`` to
``-x + 0.40``; a 90-degree rotation is off by ~0.4 px along one axis). This is inherent in the algorithm and
harmless here, because input and target always receive the same transform.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Union

import torch
import torch.nn.functional as F

from model.stylegan.op import upfirdn2d

__all__ = [
    "SYM6",
    "apply_affine",
    "random_apply_affine",
    "rotation_matrix",
    "sample_affine",
    "scale_matrix",
    "translation_matrix",
]

# Symlet-6 ("sym6") decomposition low-pass filter, 12 taps, sum = sqrt(2).
# Origin: PyWavelets 1.8.0, ``pywt.Wavelet('sym6').dec_lo`` (printed with ``repr`` and pasted here; PyWavelets is
# not a dependency). The same numbers are the published Symlet-6 scaling-filter coefficients (Daubechies' least
# asymmetric wavelets, "Ten Lectures on Wavelets", 1992).
SYM6: tuple[float, ...] = (
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
)

Size = Union[int, Sequence[int]]

# Laws of the sampled transforms (see the module docstring).
_INT_TRANSLATE_MAX = 0.125
_SCALE_LOG2_STD = 0.1
_ROTATE_MAX = math.pi / 4
_FRAC_TRANSLATE_STD = 0.125

# Geometry of the resampling, derived from the filter length K (= 12):
# * the up pass ``upfirdn2d(up=2, pad=(K/2, K/2 - 1))`` puts 2x sample ``o`` at input pixel ``(o - 0.5) / 2`` (half-pixel
#   centres, as ``align_corners=False`` assumes), and each 2x sample depends on input pixels within ``(K - 1) / 4`` px;
# * the down pass ``upfirdn2d(down=2, pad=(d, d))`` centres output pixel ``q`` on 2x index ``2 q + K/2 - 1 - d``. The
#   intermediate 2x grid covers the output plus ``_GRID_MARGIN = M`` px per side (2x index ``s`` at output pixel
#   ``(s - 0.5) / 2 - M``), which requires ``d = K/2 - 1 - 2 M``; the smallest M with ``d <= 0`` (no zero padding)
#   is ``ceil((K/2 - 1) / 2)``: M = 3 and d = -1 (crop one 2x sample per side) for K = 12.
_K = len(SYM6)
_UP_PAD = (_K // 2, _K // 2 - 1)
_GRID_MARGIN = -(-(_K // 2 - 1) // 2)
_DOWN_PAD = (_K // 2 - 1 - 2 * _GRID_MARGIN,) * 2
# Input margin needed around the sampled positions: bilinear reach (0.5 px) + up-filter reach ((K - 1) / 4 px).
_SAMPLE_MARGIN = 0.5 + (_K - 1) / 4


# ----------------------------------------------------------------------------------------------------------------------
# Matrix builders
# ----------------------------------------------------------------------------------------------------------------------


def _eye(batch: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(3, dtype=like.dtype, device=like.device).expand(batch, 3, 3).clone()


def translation_matrix(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) translations by ``(tx, ty)`` pixels; ``tx``/``ty`` are (B,) tensors."""
    g = _eye(tx.shape[0], tx)
    g[:, 0, 2] = tx
    g[:, 1, 2] = ty
    return g


def scale_matrix(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) axis-aligned scalings ``diag(sx, sy, 1)``; ``sx``/``sy`` are (B,) tensors."""
    g = _eye(sx.shape[0], sx)
    g[:, 0, 0] = sx
    g[:, 1, 1] = sy
    return g


def rotation_matrix(theta: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations ``[[cos, -sin], [sin, cos]]`` by ``theta`` radians (clockwise on screen, y points down)."""
    g = _eye(theta.shape[0], theta)
    c, s = torch.cos(theta), torch.sin(theta)
    g[:, 0, 0] = c
    g[:, 0, 1] = -s
    g[:, 1, 0] = s
    g[:, 1, 1] = c
    return g


# ----------------------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------------------


def _parse_size(size: Size) -> tuple[int, int]:
    """``int`` or ``(H, W)`` -> ``(H, W)``."""
    if isinstance(size, int):
        return size, size
    h, w = (int(v) for v in size)
    return h, w


def sample_affine(
    batch: int,
    p: float,
    size: Size,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw ``batch`` random forward affine matrices (B, 3, 3) in centred pixel coordinates.

    See the module docstring for the seven transforms, their laws and the composition order.

    Args:
        batch: number of matrices B.
        p: augmentation probability in ``[0, 1]``; ``p = 0`` returns exact identities.
        size: image size, ``int`` (square) or ``(H, W)``; only used to quantise the "integer" translation.
        generator: source of all randomness; the global RNG (of the generator's / ``device``'s device type)
            when ``None``. Random numbers are drawn on the generator's device and moved to ``device``.
        device: device of the result (default: the generator's device, else CPU).
        dtype: floating dtype of the result.

    Returns:
        (B, 3, 3) tensor; the last row of every matrix is ``(0, 0, 1)``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    height, width = _parse_size(size)
    out_device = torch.device(device) if device is not None else (generator.device if generator is not None else None)
    draw_device = generator.device if generator is not None else out_device
    opts = {"generator": generator, "device": draw_device, "dtype": dtype}

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(batch, **opts) * (hi - lo) + lo

    def log2_normal(std: float) -> torch.Tensor:
        return torch.exp2(torch.randn(batch, **opts) * std)

    def gated(transform: torch.Tensor, prob: float, g: torch.Tensor) -> torch.Tensor:
        """Left-multiply ``transform`` onto ``g`` for the samples selected with probability ``prob``."""
        keep = (torch.rand(batch, **opts) < prob).view(batch, 1, 1)
        transform = torch.where(keep, transform, _eye(batch, transform))
        return transform @ g

    p_rot = 1.0 - math.sqrt(1.0 - p)
    g = _eye(batch, torch.empty(0, device=draw_device, dtype=dtype))

    # 1. x-flip: sign -1 or +1 with equal probability.
    sign = 1.0 - 2.0 * torch.randint(0, 2, (batch,), generator=generator, device=draw_device).to(dtype)
    g = gated(scale_matrix(sign, torch.ones_like(sign)), p, g)
    # 2. "integer" translation (one value for both axes, quantised to 1/size; sub-pixel in this frame).
    t = uniform(-_INT_TRANSLATE_MAX, _INT_TRANSLATE_MAX)
    g = gated(translation_matrix(torch.round(t * width) / width, torch.round(t * height) / height), p, g)
    # 3. isotropic scale.
    s = log2_normal(_SCALE_LOG2_STD)
    g = gated(scale_matrix(s, s), p, g)
    # 4. pre-rotation.
    g = gated(rotation_matrix(uniform(-_ROTATE_MAX, _ROTATE_MAX)), p_rot, g)
    # 5. anisotropic scale.
    s = log2_normal(_SCALE_LOG2_STD)
    g = gated(scale_matrix(s, 1.0 / s), p, g)
    # 6. post-rotation.
    g = gated(rotation_matrix(uniform(-_ROTATE_MAX, _ROTATE_MAX)), p_rot, g)
    # 7. "fractional" translation (one value for both axes).
    t = torch.randn(batch, **opts) * _FRAC_TRANSLATE_STD
    g = gated(translation_matrix(t, t), p, g)

    return g.to(out_device) if out_device is not None else g


# ----------------------------------------------------------------------------------------------------------------------
# Resampling
# ----------------------------------------------------------------------------------------------------------------------


def _filters(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D up (gain 2, so each polyphase branch sums to 1) and down (time-reversed, gain 1) SYM6 filters."""
    h = torch.tensor(SYM6, dtype=torch.float64)
    up = h * (2.0 / h.sum())
    down = h.flip(0) / h.sum()
    return up.to(like), down.to(like)


def _separable(x: torch.Tensor, k: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Apply the 1-D filter ``k`` along W then H with :func:`upfirdn2d` (same ``up``/``down``/``pad`` on both axes)."""
    x = upfirdn2d(x, k.view(1, -1), up=(up, 1), down=(down, 1), pad=(pad[0], pad[1], 0, 0))
    return upfirdn2d(x, k.view(-1, 1), up=(1, up), down=(1, down), pad=(0, 0, pad[0], pad[1]))


def _required_padding(g_inv: torch.Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    """Reflection padding (left, right, top, bottom) so that every input pixel the resampling reads exists.

    The positions read are ``G^-1`` applied to the intermediate 2x grid (the output extended by the down-filter
    margin); an affine map takes a box's extremes at its corners. The bilinear and up-filter reach are added and
    each side is clamped to ``[0, size - 1]`` (the limit of reflection padding).
    """
    cx, cy = (width - 1) / 2, (height - 1) / 2
    ex, ey = cx + _GRID_MARGIN + 0.25, cy + _GRID_MARGIN + 0.25  # centres of the outermost 2x samples
    corners = g_inv.new_tensor([[-ex, ex, ex, -ex], [-ey, -ey, ey, ey], [1.0, 1.0, 1.0, 1.0]])
    pts = (g_inv.detach() @ corners)[:, :2, :]  # (B, 2, 4)
    lo = (pts.amin(dim=(0, 2)) - _SAMPLE_MARGIN).tolist()
    hi = (pts.amax(dim=(0, 2)) + _SAMPLE_MARGIN).tolist()

    def side(extent: float, limit: int) -> int:
        return int(min(max(math.ceil(extent - 1e-6), 0), limit - 1))

    return (side(-lo[0] - cx, width), side(hi[0] - cx, width), side(-lo[1] - cy, height), side(hi[1] - cy, height))


def apply_affine(img: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Resample ``img`` (B, C, H, W) with the forward affine matrices ``G`` (B, 3, 3) or (3, 3).

    Output pixel ``q`` (centred pixel coordinates) takes the value of the input at ``G^-1 @ q``, evaluated by
    reflect padding, SYM6 2x upsampling, bilinear interpolation and time-reversed SYM6 2x downsampling (see the
    module docstring). All channels of a sample share its matrix. The output has ``img``'s shape, dtype and
    device; the operation is differentiable with respect to ``img``.
    """
    if img.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) image, got shape {tuple(img.shape)}")
    if not img.is_floating_point():
        raise TypeError(f"expected a floating-point image, got {img.dtype}")
    batch, _, height, width = img.shape
    if G.dim() == 2:
        G = G.unsqueeze(0).expand(batch, 3, 3)
    if G.shape != (batch, 3, 3):
        raise ValueError(f"G must be (B, 3, 3) or (3, 3) with B = {batch}, got shape {tuple(G.shape)}")

    # Geometry in at least float32 (linalg.inv has no half kernels), on the image's device.
    calc_dtype = torch.promote_types(img.dtype, torch.float32)
    g_inv = torch.linalg.inv(G.to(device=img.device, dtype=calc_dtype))

    # 1. Reflect padding.
    pl, pr, pt, pb = _required_padding(g_inv, height, width)
    x = F.pad(img, [pl, pr, pt, pb], mode="reflect") if (pl or pr or pt or pb) else img
    hp, wp = height + pt + pb, width + pl + pr

    # 2. 2x upsampling: 2x sample o lies at padded-pixel position (o - 0.5) / 2.
    k_up, k_down = _filters(img)
    x = _separable(x, k_up, up=2, pad=_UP_PAD)

    # 3. Bilinear resampling on the 2x grid of the output extended by _GRID_MARGIN px per side.
    m = _GRID_MARGIN
    gh, gw = 2 * (height + 2 * m), 2 * (width + 2 * m)
    # a) grid_sample's normalised output coordinate n (align_corners=False) -> centred output pixels:
    #    2x index s = ((n + 1) * N - 1) / 2, output pixel z = (s - 0.5) / 2 - m, centred y = z - (size - 1) / 2.
    #    Together y = n * N / 4 + (N / 4 - 0.5 - m - (size - 1) / 2) = n * N / 4, as N = 2 * (size + 2 m).
    to_centred = torch.diag(g_inv.new_tensor([gw / 4, gh / 4, 1.0]))
    # b) centred input pixels -> normalised coordinates of the (padded, upsampled) image (align_corners=False):
    #    padded pixel j' = x + pl + (W - 1) / 2, normalised u = (2 j' + 1) / Wp - 1.
    to_normalised = g_inv.new_tensor(
        [
            [2.0 / wp, 0.0, (2.0 * (pl + (width - 1) / 2) + 1.0) / wp - 1.0],
            [0.0, 2.0 / hp, (2.0 * (pt + (height - 1) / 2) + 1.0) / hp - 1.0],
            [0.0, 0.0, 1.0],
        ]
    )
    theta = (to_normalised @ g_inv @ to_centred)[:, :2, :]
    grid = F.affine_grid(theta, [batch, img.shape[1], gh, gw], align_corners=False).to(img.dtype)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # 4. 2x downsampling with the time-reversed filter: output pixel q is centred on 2x index 2 q + 2 m + 0.5.
    return _separable(x, k_down, down=2, pad=_DOWN_PAD)


def random_apply_affine(
    img: torch.Tensor,
    p: float,
    G: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly affine-augment a batch, the same transform for all channels of a sample.

    Args:
        img: (B, C, H, W) floating-point batch (VToonify passes input and target concatenated along C).
        p: augmentation probability (VToonify uses 0.2); ignored when ``G`` is given.
        G: optional (B, 3, 3) forward matrices to reuse instead of sampling new ones.
        generator: optional :class:`torch.Generator` providing all randomness (else the global RNG).

    Returns:
        ``(augmented, G)``: the augmented batch (same shape, dtype and device as ``img``) and the (B, 3, 3) forward
        matrices used (on ``img``'s device), which can be passed back as ``G`` to repeat the transform.
    """
    if G is None:
        G = sample_affine(img.shape[0], p, (img.shape[2], img.shape[3]), generator=generator, device=img.device)
    else:
        G = G.to(img.device)
    return apply_affine(img, G), G
