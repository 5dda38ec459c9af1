"""Custom ops: golden parity, exact gradients, and the implementation switch (CPU; CUDA in test_ops_cuda.py)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_golden, golden_case
from model.stylegan.op import FusedLeakyReLU, conv2d_gradfix, fused_leaky_relu, upfirdn2d
from model.stylegan.op.fused_act import fused_leaky_relu_ref
from model.stylegan.op.upfirdn2d import upfirdn2d_ref

UPFIRDN_CASES = {
    "upfirdn_up2_sym": dict(up=2, down=1, pad=(2, 1)),
    "upfirdn_down2_sym": dict(up=1, down=2, pad=(1, 1)),
    "upfirdn_blur_pad22": dict(up=1, down=1, pad=(2, 2)),
    "upfirdn_asym_k_up2": dict(up=2, down=1, pad=(1, 2)),
    "upfirdn_asym_k_down2": dict(up=1, down=2, pad=(0, 1)),
    "upfirdn_negpad": dict(up=2, down=1, pad=(-1, 2)),
    "upfirdn_4pad_tuple": dict(up=(2, 1), down=(1, 2), pad=(1, 0, 2, -1)),
}


def textbook_upfirdn2d(x, kernel, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0)):
    """The literal definition (zero insertion, pad/crop, flipped-kernel correlation, decimation), float64."""
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, pad
    b, c, h, w = x.shape
    z = x.new_zeros(b, c, h * uy, w * ux)
    z[:, :, ::uy, ::ux] = x
    z = F.pad(z, [px0, px1, py0, py1])
    k = kernel.flip(0, 1)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(z, k, groups=c)[:, :, ::dy, ::dx]


@pytest.mark.parametrize("case", sorted(UPFIRDN_CASES))
def test_upfirdn2d_golden(case):
    g = golden_case("ops", case)
    out = upfirdn2d(g["in.x"], g["in.kernel"], **UPFIRDN_CASES[case])
    assert_golden(out, g["out.0"], case)


@pytest.mark.parametrize(
    "up,down,pad,ksize",
    [
        ((1, 1), (1, 1), (0, 0, 0, 0), (3, 3)),
        ((2, 2), (1, 1), (2, 1, 2, 1), (4, 4)),
        ((3, 2), (1, 1), (1, 3, -1, 2), (3, 5)),
        ((1, 1), (2, 3), (1, 1, 0, 2), (4, 3)),
        ((2, 3), (3, 2), (-2, 1, 3, -1), (5, 2)),
        ((4, 1), (1, 4), (3, 0, 0, 3), (1, 6)),
    ],
)
def test_upfirdn2d_matches_definition(up, down, pad, ksize):
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    k = torch.randn(*ksize, dtype=torch.float64)
    ref = textbook_upfirdn2d(x, k, up, down, pad)
    out = upfirdn2d(x, k, up=up, down=down, pad=pad)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "up,down,pad,ksize",
    [
        (2, 1, (2, 1), (4, 4)),  # StyleGAN upsample
        (1, 2, (1, 1), (4, 4)),  # downsample
        (2, 1, (1, 2), (3, 2)),  # non-square kernel, asymmetric pads
        (1, 2, (-1, 2, 2, 0), (2, 3)),
        ((2, 1), (1, 2), (1, 0, 2, -1), (3, 3)),
    ],
)
def test_upfirdn2d_gradcheck(up, down, pad, ksize):
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*ksize, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, k, up=up, down=down, pad=pad), (x,))
    assert torch.autograd.gradgradcheck(lambda t: upfirdn2d(t, k, up=up, down=down, pad=pad), (x,))


def test_upfirdn2d_bad_arguments():
    x = torch.randn(1, 1, 4, 4)
    k = torch.ones(2, 2)
    with pytest.raises(ValueError, match="pad"):
        upfirdn2d(x, k, pad=(1, 2, 3))
    with pytest.raises(ValueError, match="up"):
        upfirdn2d(x, k, up=0)
    with pytest.raises(ValueError, match="empty"):
        upfirdn2d(x, k, pad=(-3, -3))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        upfirdn2d(x[0], k)


def test_fused_lrelu_golden():
    g = golden_case("ops", "fused_lrelu")
    assert_golden(fused_leaky_relu(g["in.x"], g["in.bias"]), g["out.0"], "fused_lrelu")


@pytest.mark.parametrize("slope,scale", [(0.2, math.sqrt(2)), (0.0, 1.0), (0.5, 3.0)])
def test_fused_lrelu_honours_slope_and_scale(slope, scale):
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    expect = torch.where(x + b[None, :, None] >= 0, x + b[None, :, None], slope * (x + b[None, :, None])) * scale
    torch.testing.assert_close(fused_leaky_relu(x, b, slope, scale), expect)
    torch.testing.assert_close(fused_leaky_relu(x, None, slope, scale), torch.where(x >= 0, x, slope * x) * scale)


def test_fused_lrelu_gradcheck():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, c: fused_leaky_relu(a, c, 0.3, 1.7), (x, b))
    assert torch.autograd.gradgradcheck(lambda a, c: fused_leaky_relu(a, c, 0.3, 1.7), (x, b))


def test_fused_lrelu_module_and_2d_input():
    m = FusedLeakyReLU(6)
    with torch.no_grad():
        m.bias.copy_(torch.arange(6.0) - 3)
    x = torch.randn(4, 6)
    torch.testing.assert_close(m(x), F.leaky_relu(x + m.bias, 0.2) * math.sqrt(2))
    with pytest.raises(ValueError, match="channels"):
        fused_leaky_relu(torch.randn(2, 5), torch.zeros(6))


def test_impl_switch(monkeypatch):
    x = torch.randn(1, 2, 4, 4)
    k = torch.ones(2, 2) / 4
    with pytest.raises(ValueError, match="impl"):
        upfirdn2d(x, k, impl="triton")
    monkeypatch.setenv("VTOONIFY_OPS", "nonsense")
    with pytest.raises(ValueError, match="VTOONIFY_OPS"):
        fused_leaky_relu(x)
    monkeypatch.setenv("VTOONIFY_OPS", "ref")
    torch.testing.assert_close(upfirdn2d(x, k), upfirdn2d_ref(x, k))
    monkeypatch.delenv("VTOONIFY_OPS")
    # CPU tensors never reach the CUDA kernel; forcing it is a clear error, not a silent fallback.
    with pytest.raises(ValueError, match="CUDA tensor"):
        upfirdn2d(x, k, impl="cuda")
    with pytest.raises(ValueError, match="CUDA tensor"):
        fused_leaky_relu(x, impl="cuda")
    torch.testing.assert_close(fused_leaky_relu(x, impl="auto"), fused_leaky_relu_ref(x))


def test_ops_take_the_reference_path_inside_torch_compile():
    # The compiler cannot trace into the CUDA extension: under torch.compile every op uses the reference path
    # (whatever impl says), so a compiled model stays one graph. Seen here through impl="cuda", which outside
    # compile refuses a CPU tensor and inside compile quietly becomes the reference path.
    x, b, k = torch.randn(1, 2, 6, 6), torch.randn(2), torch.ones(3, 3) / 9

    def both(x, b):
        return fused_leaky_relu(x, b, impl="cuda"), upfirdn2d(x, k.to(x), up=2, pad=(1, 1), impl="cuda")

    compiled = torch.compile(both, backend="eager", fullgraph=True)
    act, up = compiled(x, b)
    torch.testing.assert_close(act, fused_leaky_relu_ref(x, b))
    torch.testing.assert_close(up, upfirdn2d_ref(x, k, up=2, pad=(1, 1)))
    with pytest.raises(ValueError, match="CUDA tensor"):
        both(x, b)


def test_conv2d_gradfix_matches_torch():
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(conv2d_gradfix.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1))
    wt = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: conv2d_gradfix.conv_transpose2d(a, b, stride=2), (x, wt))
    with conv2d_gradfix.no_weight_gradients():
        assert conv2d_gradfix.weight_gradients_disabled
    assert not conv2d_gradfix.weight_gradients_disabled
