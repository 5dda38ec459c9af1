"""Joint random affine augmentation (``model/simple_augment.py``): matrix laws, geometry conventions, resampling accuracy."""
from __future__ import annotations

import math

import pytest
import torch

from model.simple_augment import (
    SYM6,
    apply_affine,
    random_apply_affine,
    rotation_matrix,
    sample_affine,
    scale_matrix,
    translation_matrix,
)

# Known resampling offset of transforms that reverse an axis: SYM6 is not linear-phase; its low-frequency delay
# (centroid, ~5.098 taps) differs from the nominal centre (K - 1) / 2 = 5.5 used to place the 2x samples, which shifts
# the upsampled image by ~0.2 px; reversing an axis turns that into ~0.4 px (an x-flip maps x to -x + 0.40).
_CENTROID = sum(i * c for i, c in enumerate(SYM6)) / sum(SYM6)
FLIP_OFFSET = (len(SYM6) - 1) / 2 - _CENTROID


def centred_coords(h: int, w: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred pixel coordinates (x right, y down, origin at the image centre), each (H, W)."""
    y = torch.arange(h, dtype=dtype) - (h - 1) / 2
    x = torch.arange(w, dtype=dtype) - (w - 1) / 2
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return xx, yy


def blobs(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A smooth, asymmetric pattern (wide Gaussian blobs) as a function of centred coordinates."""
    g = torch.exp(-(x**2 / (2 * 12.0**2) + y**2 / (2 * 7.0**2)))
    g = g + 0.6 * torch.exp(-((x - 9.0) ** 2 + (y + 6.0) ** 2) / (2 * 6.0**2))
    return g - 0.4 * torch.exp(-((x + 8.0) ** 2 + (y - 10.0) ** 2) / (2 * 8.0**2))


def smooth_image(b: int = 2, c: int = 3, h: int = 64, w: int = 64, dtype=torch.float32) -> torch.Tensor:
    xx, yy = centred_coords(h, w)
    img = torch.stack([blobs(xx, yy), torch.cos(0.09 * xx + 0.05 * yy), 0.5 * torch.sin(0.07 * yy - 0.3)])
    img = img[torch.arange(c) % 3]
    return img.unsqueeze(0).repeat(b, 1, 1, 1).to(dtype)


def interior(t: torch.Tensor, m: int = 12) -> torch.Tensor:
    return t[..., m:-m, m:-m]


# ----------------------------------------------------------------------------------------------------------------------
# p = 0, invariants
# ----------------------------------------------------------------------------------------------------------------------


def test_p0_gives_identity_matrix_and_input():
    img = smooth_image()
    out, G = random_apply_affine(img, 0.0)
    assert torch.equal(G, torch.eye(3).expand(2, 3, 3))
    # SYM6 is orthogonal, so up- then time-reversed down-filtering is exactly the identity: only rounding remains
    # (measured ~1.2e-6 on this image, ~2.5e-5 on unit Gaussian noise).
    assert (out - img).abs().max().item() < 1e-5
    noise = torch.randn(2, 3, 40, 56)
    assert (random_apply_affine(noise, 0.0)[0] - noise).abs().max().item() < 1e-4
    noise64 = noise.double()
    assert (random_apply_affine(noise64, 0.0)[0] - noise64).abs().max().item() < 1e-10  # coefficients orthonormal to ~1e-12


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_constant_image_stays_constant(p):
    g = torch.Generator().manual_seed(1)
    img = torch.full((4, 2, 48, 48), 0.7)
    out, _ = random_apply_affine(img, p, generator=g)
    assert (out - 0.7).abs().max().item() < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_preserved(dtype):
    img = torch.rand(3, 5, 40, 56, dtype=dtype)
    out, G = random_apply_affine(img, 0.5, generator=torch.Generator().manual_seed(0))
    assert out.shape == img.shape and out.dtype == dtype and out.device == img.device
    assert G.shape == (3, 3, 3) and G.device == img.device
    assert torch.equal(G[:, 2], torch.tensor([0.0, 0.0, 1.0]).expand(3, 3))


def test_same_transform_for_all_channels():
    img = torch.rand(4, 3, 48, 48)
    out, G = random_apply_affine(torch.cat([img, img], dim=1), 1.0, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(G, torch.eye(3).expand(4, 3, 3))
    assert torch.allclose(out[:, :3], out[:, 3:], rtol=0, atol=1e-6)


def test_batch_samples_are_independent():
    """Each sample is transformed by its own matrix (the shared padding of the batch must not matter)."""
    img = smooth_image(b=4, c=2, h=48, w=48)
    out, G = random_apply_affine(img, 1.0, generator=torch.Generator().manual_seed(5))
    for i in range(4):
        alone = apply_affine(img[i : i + 1], G[i])
        assert torch.allclose(alone, out[i : i + 1], rtol=0, atol=1e-5)


def test_gradients_flow_through_image():
    img = torch.rand(2, 3, 32, 32, requires_grad=True)
    out, _ = random_apply_affine(img, 1.0, generator=torch.Generator().manual_seed(0))
    out.square().sum().backward()
    assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0


def test_rejects_bad_inputs():
    with pytest.raises(ValueError):
        sample_affine(2, 1.5, 64)
    with pytest.raises(ValueError):
        apply_affine(torch.rand(3, 32, 32), torch.eye(3))
    with pytest.raises(ValueError):
        apply_affine(torch.rand(2, 3, 32, 32), torch.eye(3).expand(3, 3, 3))
    with pytest.raises(TypeError):
        apply_affine(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.eye(3))


# ----------------------------------------------------------------------------------------------------------------------
# Geometry conventions with hand-built matrices
# ----------------------------------------------------------------------------------------------------------------------


def test_x_flip_matrix_flips_the_image():
    img = smooth_image()
    out = apply_affine(img, torch.diag(torch.tensor([-1.0, 1.0, 1.0])))
    # Against the plain flip: off by the documented ~0.4 px filter offset only (the pattern's slope is < 0.1 / px).
    assert (interior(out) - interior(img.flip(-1))).abs().max().item() < 0.05
    # Against the analytic flip including that offset: x -> -x + FLIP_OFFSET.
    xx, yy = centred_coords(64, 64)
    ref = blobs(-xx + FLIP_OFFSET, yy)
    assert (interior(out[0, 0].double()) - interior(ref)).abs().max().item() < 2e-3


def test_rotation_direction_matches_rot90():
    """``rotation_matrix(+pi/2)`` turns content clockwise on screen (y points down) = ``torch.rot90(k=-1)``."""
    img = smooth_image(c=1)
    rot = rotation_matrix(torch.tensor([math.pi / 2]))[0]
    out = apply_affine(img, rot)
    clockwise = torch.rot90(img, k=-1, dims=(-2, -1))
    counter = torch.rot90(img, k=1, dims=(-2, -1))
    err_cw = (interior(out) - interior(clockwise)).abs().max().item()
    err_ccw = (interior(out) - interior(counter)).abs().max().item()
    assert err_cw < 0.05 and err_ccw > 0.3
    # The opposite angle is the opposite rotation.
    out_neg = apply_affine(img, rotation_matrix(torch.tensor([-math.pi / 2]))[0])
    assert (interior(out_neg) - interior(counter)).abs().max().item() < 0.05
    # Four quarter turns compose to the identity matrix.
    assert torch.allclose(torch.linalg.matrix_power(rot, 4), torch.eye(3), atol=1e-6)


def test_integer_translation_moves_content_by_pixels():
    img = smooth_image()
    shift = translation_matrix(torch.tensor([8.0]), torch.tensor([0.0]))[0]
    out = apply_affine(img, shift)
    # Content moves 8 px to the right; integer shifts land on the 2x grid, so the round trip is exact.
    assert (out[..., 8:] - img[..., :-8]).abs().max().item() < 1e-5
    down = apply_affine(img, translation_matrix(torch.tensor([0.0]), torch.tensor([-5.0]))[0])
    assert (down[..., :-5, :] - img[..., 5:, :]).abs().max().item() < 1e-5


def test_subpixel_translation_quirk():
    """The sampled translations (|t| <= 0.125 or ~N(0, 0.125^2)) are in pixels: 0.125 moves content by 1/8 px."""
    xx, _ = centred_coords(64, 64)
    img = torch.sin(0.2 * xx + 0.4)[None, None].float()
    out = apply_affine(img, translation_matrix(torch.tensor([0.125]), torch.tensor([0.0]))[0])
    ref = torch.sin(0.2 * (xx - 0.125) + 0.4)
    assert (interior(out[0, 0].double()) - interior(ref)).abs().max().item() < 2e-3


def test_random_matrices_warp_like_the_analytic_inverse_map():
    """For sampled matrices, output(q) ~ input(G^-1 q) on a smooth analytic image (all conventions at once)."""
    h = w = 64
    xx, yy = centred_coords(h, w)

    def pattern(x, y):
        return torch.cos(0.08 * x + 0.3) + torch.sin(0.06 * y - 0.02 * x)

    img = pattern(xx, yy)[None, None].float().repeat(6, 1, 1, 1)
    G = sample_affine(6, 1.0, (h, w), generator=torch.Generator().manual_seed(3))
    out = apply_affine(img, G).double()
    pts = torch.stack([xx.flatten(), yy.flatten(), torch.ones(h * w, dtype=torch.float64)])
    src = torch.linalg.inv(G.double()) @ pts
    ref = pattern(src[:, 0], src[:, 1]).view(6, 1, h, w)
    err = (interior(out, 14) - interior(ref, 14)).abs().amax(dim=(1, 2, 3))
    assert err.max().item() < 0.05, err  # residual: the < 0.45 px filter offset times the pattern's slope (< 0.1 / px)


# ----------------------------------------------------------------------------------------------------------------------
# Randomness and sampling laws
# ----------------------------------------------------------------------------------------------------------------------


def test_seeded_generator_is_deterministic_and_G_can_be_reused():
    img = torch.rand(3, 4, 32, 32)
    out1, G1 = random_apply_affine(img, 0.7, generator=torch.Generator().manual_seed(42))
    out2, G2 = random_apply_affine(img, 0.7, generator=torch.Generator().manual_seed(42))
    assert torch.equal(G1, G2) and torch.equal(out1, out2)
    out3, G3 = random_apply_affine(img, 0.7, G=G1)
    assert G3 is G1 or torch.equal(G3, G1)
    assert torch.equal(out3, out1)
    _, G4 = random_apply_affine(img, 0.7, generator=torch.Generator().manual_seed(43))
    assert not torch.equal(G1, G4)


def test_global_rng_is_used_without_generator():
    torch.manual_seed(7)
    a = sample_affine(16, 0.8, 64)
    torch.manual_seed(7)
    b = sample_affine(16, 0.8, 64)
    assert torch.equal(a, b)


def test_identity_fraction_for_p_0_2():
    n, size, p = 2000, 256, 0.2
    G = sample_affine(n, p, size, generator=torch.Generator().manual_seed(0))
    frac = (G == torch.eye(3)).all(dim=(1, 2)).double().mean().item()
    # Identity unless: a flip (p/2), a non-zero quantised translation (p, rounds to 0 w.p. 1/64 at 256 px), an isotropic
    # scale, an anisotropic scale or a fractional translation (p each), or a rotation (two draws at 1 - sqrt(1 - p)).
    p_zero_shift = 0.5 / (0.125 * size)
    expected = (1 - p / 2) * (1 - p + p * p_zero_shift) * (1 - p) ** 3 * (1 - p)
    assert 0.2 < frac < 0.4
    assert abs(frac - expected) < 0.04, (frac, expected)


def test_scale_law():
    """With p = 1 every step is applied; |det| of the linear part is the squared isotropic scale 2^N(0, 0.1^2)."""
    G = sample_affine(4000, 1.0, 128, generator=torch.Generator().manual_seed(1))
    det = torch.linalg.det(G[:, :2, :2].double())
    log2_iso = torch.log2(det.abs()) / 2
    assert abs(log2_iso.std().item() - 0.1) < 0.01
    assert abs(log2_iso.mean().item()) < 0.01
    # Flip sign: negative determinant with probability 1/2 (the step is always applied, the sign is a coin toss).
    assert abs((det < 0).double().mean().item() - 0.5) < 0.05
    # Translations are sub-pixel: |integer part| <= 0.125 and N(0, 0.125^2) per axis, rotated/scaled afterwards only by
    # the later steps, so the total stays small.
    assert G[:, :2, 2].abs().max().item() < 1.0


def test_matrix_builders():
    one = torch.ones(1)
    assert torch.equal(scale_matrix(2 * one, 3 * one)[0], torch.diag(torch.tensor([2.0, 3.0, 1.0])))
    t = translation_matrix(one, -one)[0]
    assert torch.equal(t @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, -1.0, 1.0]))
    r = rotation_matrix(torch.tensor([math.pi / 2]))[0]
    # (1, 0) (right of centre) goes to (0, 1) (below centre): clockwise on screen.
    assert torch.allclose(r @ torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 1.0]), atol=1e-7)
