"""CUDA fast path of the custom ops: parity with the reference ops, gradients, and the build rules.

Tests marked ``requires_cuda`` run the compiled extensions and are skipped without a GPU. The other
tests run everywhere and check what can be checked without one: the kernel's index arithmetic
(ported loop for loop to Python), the adjoint pads used by the backward pass, the autograd
functions driven by a stand-in extension, and the build/fallback rules of ``_cuda_build`` (they
never build anything).
"""
from __future__ import annotations

import math
import types
from pathlib import Path

import pytest
import torch

from conftest import assert_golden, golden_case
from model.stylegan.op import _cuda_build, fused_act_cuda, upfirdn2d_cuda
from model.stylegan.op.fused_act import fused_leaky_relu_ref
from model.stylegan.op.upfirdn2d import upfirdn2d_ref

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

REPO = Path(__file__).resolve().parents[1]

# The golden cases of the original op (tests/data/golden/golden_ops.json).
GOLDEN_UPFIRDN = {
    "upfirdn_up2_sym": dict(up=2, down=1, pad=(2, 1)),
    "upfirdn_down2_sym": dict(up=1, down=2, pad=(1, 1)),
    "upfirdn_blur_pad22": dict(up=1, down=1, pad=(2, 2)),
    "upfirdn_asym_k_up2": dict(up=2, down=1, pad=(1, 2)),
    "upfirdn_asym_k_down2": dict(up=1, down=2, pad=(0, 1)),
    "upfirdn_negpad": dict(up=2, down=1, pad=(-1, 2)),
    "upfirdn_4pad_tuple": dict(up=(2, 1), down=(1, 2), pad=(1, 0, 2, -1)),
}

# (x shape, kernel shape, up, down, pad); every kernel is random, hence asymmetric.
UPFIRDN_CONFIGS = {
    "upsample": ((2, 3, 7, 9), (4, 4), 2, 1, (2, 1)),
    "blur_after_transposed_conv": ((2, 3, 15, 17), (4, 4), 1, 1, (1, 1)),
    "downsample": ((2, 3, 8, 10), (4, 4), 1, 2, (1, 1)),
    "up2_pad12": ((1, 2, 9, 11), (3, 3), 2, 1, (1, 2)),
    "down2_pad01": ((1, 2, 9, 11), (3, 3), 1, 2, (0, 1)),
    "negative_pad": ((1, 2, 9, 11), (3, 3), 2, 1, (-1, 2)),
    "per_axis": ((2, 3, 7, 9), (3, 3), (2, 1), (1, 2), (1, 0, 2, -1)),
    "up3_down2": ((1, 3, 6, 5), (5, 2), 3, 2, (3, -1, 0, 4)),
    "row_kernel": ((2, 1, 5, 8), (1, 6), (1, 4), (3, 1), (2, 3, -2, 5)),
    "kernel_larger_than_input": ((1, 2, 3, 3), (8, 8), 1, 1, (7, 7)),
    "crop_and_decimate": ((1, 1, 10, 12), (2, 3), (3, 2), (4, 3), (-3, -2, 4, 0)),
    "identity": ((1, 4, 6, 7), (1, 1), 1, 1, (0, 0)),
}

# (x shape, bias?, negative_slope, scale); the last ones exercise the pre-activation mask path.
FUSED_CONFIGS = {
    "nchw": ((2, 4, 6, 5), True, 0.2, math.sqrt(2)),
    "linear": ((3, 7), True, 0.2, math.sqrt(2)),
    "5d": ((2, 3, 4, 5, 6), True, 0.1, 1.0),
    "no_bias": ((2, 4, 6, 5), False, 0.2, math.sqrt(2)),
    "relu": ((2, 4, 3, 3), True, 0.0, 2.0),
    "negative_slope": ((2, 4, 3, 3), True, -0.5, 1.5),
    "negative_scale": ((2, 4, 3, 3), True, 0.2, -1.5),
    "negative_scale_no_bias": ((2, 4, 3, 3), False, 0.3, -0.7),
}


def _args(config):
    x_shape, k_shape, up, down, pad = config
    return x_shape, k_shape, dict(up=up, down=down, pad=pad)


def _away_from_kink(x_shape, bias, dtype, device):
    """Random x whose pre-activation x + bias stays at least 0.1 away from 0 (for finite differences)."""
    x = torch.randn(x_shape, dtype=dtype, device=device)
    if bias is None:
        return x + 0.1 * torch.sign(x)
    b = bias.view(1, -1, *([1] * (len(x_shape) - 2)))
    pre = x + b
    return pre + 0.1 * torch.sign(pre) - b


# --------------------------------------------------------------------------------------------------
# Stand-in extension: the CUDA kernels' loops ported to Python, for the CPU tests.
# --------------------------------------------------------------------------------------------------


def _c_floor_div(a: int, b: int) -> int:
    """floor_div() of upfirdn2d_kernel.cu, built on C's truncating division like the original."""
    q = int(a / b)
    r = a - q * b
    return q - 1 if (r != 0 and a < 0) else q


def _axis_taps(o, n, up, down, pad0, k):
    """axis_taps() of upfirdn2d_kernel.cu: input samples [begin, end) and the kernel index of ``begin``."""
    q0 = o * down - pad0
    begin = max(-_c_floor_div(-q0, up), 0)
    end = min(_c_floor_div(q0 + k - 1, up) + 1, n)
    return begin, end, k - 1 - (begin * up - q0)


def _kernel_port_upfirdn2d(x, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1):
    """upfirdn2d as computed by upfirdn2d_kernel.cu (same loops and index arithmetic), all planes at once."""
    n, c, in_h, in_w = x.shape
    kernel_h, kernel_w = kernel.shape
    span_h = in_h * up_y + pad_y0 + pad_y1 - kernel_h
    span_w = in_w * up_x + pad_x0 + pad_x1 - kernel_w
    if span_h < 0 or span_w < 0:
        raise RuntimeError("upfirdn2d: empty output")
    out_h, out_w = span_h // down_y + 1, span_w // down_x + 1
    planes = x.reshape(n * c, in_h, in_w).to(kernel.dtype)
    y = planes.new_zeros(n * c, out_h, out_w)
    for oy in range(out_h):
        sy_begin, sy_end, ky_first = _axis_taps(oy, in_h, up_y, down_y, pad_y0, kernel_h)
        for ox in range(out_w):
            sx_begin, sx_end, kx_first = _axis_taps(ox, in_w, up_x, down_x, pad_x0, kernel_w)
            acc = planes.new_zeros(n * c)
            for iy, sy in enumerate(range(sy_begin, sy_end)):
                for ix, sx in enumerate(range(sx_begin, sx_end)):
                    acc += planes[:, sy, sx] * kernel[ky_first - iy * up_y, kx_first - ix * up_x]
            y[:, oy, ox] = acc
    return y.reshape(n, c, out_h, out_w).to(x.dtype)


def _fake_upfirdn2d(x, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1):
    assert x.dim() == 4 and x.is_contiguous()
    assert kernel.is_contiguous() and kernel.device == x.device
    assert kernel.dtype == (torch.float64 if x.dtype == torch.float64 else torch.float32)
    return _kernel_port_upfirdn2d(x, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1)


def _fake_fused_bias_act(x, bias, negative_slope, scale):
    assert x.is_contiguous()
    if bias.numel() == 0:
        pre = x
    else:
        assert bias.is_contiguous() and bias.dtype == x.dtype and bias.shape == (x.shape[1],)
        pre = x + bias.view(1, -1, *([1] * (x.dim() - 2)))
    return torch.where(pre > 0, pre, pre * negative_slope) * scale


def _fake_fused_bias_act_grad(grad_y, ref, negative_slope, scale):
    assert grad_y.is_contiguous() and ref.is_contiguous()
    assert ref.shape == grad_y.shape and ref.dtype == grad_y.dtype
    return grad_y * torch.where(ref > 0, scale, scale * negative_slope)


_FAKE_EXTENSIONS = {
    "upfirdn2d": types.SimpleNamespace(upfirdn2d=_fake_upfirdn2d),
    "fused_bias_act": types.SimpleNamespace(
        fused_bias_act=_fake_fused_bias_act, fused_bias_act_grad=_fake_fused_bias_act_grad
    ),
}


@pytest.fixture
def fake_extensions(monkeypatch):
    """Route the CUDA wrappers to the Python stand-ins above."""
    monkeypatch.setattr(_cuda_build, "get_extension", _FAKE_EXTENSIONS.__getitem__)


# --------------------------------------------------------------------------------------------------
# CPU: index arithmetic, adjoint pads and autograd functions
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(GOLDEN_UPFIRDN))
def test_kernel_port_matches_golden(case, fake_extensions):
    g = golden_case("ops", case)
    assert_golden(upfirdn2d_cuda.upfirdn2d_cuda(g["in.x"], g["in.kernel"], **GOLDEN_UPFIRDN[case]), g["out.0"], case)


@pytest.mark.parametrize("name", sorted(UPFIRDN_CONFIGS))
def test_kernel_port_matches_reference(name, fake_extensions):
    x_shape, k_shape, kwargs = _args(UPFIRDN_CONFIGS[name])
    x = torch.randn(x_shape, dtype=torch.float64)
    k = torch.randn(k_shape, dtype=torch.float64)
    out = upfirdn2d_cuda.upfirdn2d_cuda(x, k, **kwargs)
    torch.testing.assert_close(out, upfirdn2d_ref(x, k, **kwargs), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(UPFIRDN_CONFIGS))
def test_gradient_pads_give_the_adjoint(name):
    """The backward's upfirdn2d (flipped kernel, up/down swapped, derived pads) is the exact gradient."""
    x_shape, k_shape, kwargs = _args(UPFIRDN_CONFIGS[name])
    x = torch.randn(x_shape, dtype=torch.float64, requires_grad=True)
    k = torch.randn(k_shape, dtype=torch.float64)
    y = upfirdn2d_ref(x, k, **kwargs)
    g = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, g)

    (ux, uy), (dx, dy) = upfirdn2d_cuda._pair(kwargs["up"], "up"), upfirdn2d_cuda._pair(kwargs["down"], "down")
    px0, _, py0, _ = upfirdn2d_cuda._pads(kwargs["pad"])
    pads = upfirdn2d_cuda._gradient_pads(x_shape[3], y.shape[3], k_shape[1], ux, dx, px0) + upfirdn2d_cuda._gradient_pads(
        x_shape[2], y.shape[2], k_shape[0], uy, dy, py0
    )
    adjoint = upfirdn2d_ref(g, k.flip(0, 1), up=(dx, dy), down=(ux, uy), pad=pads)
    assert adjoint.shape == x.shape
    torch.testing.assert_close(adjoint, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["upsample", "downsample", "negative_pad", "per_axis", "up3_down2", "row_kernel"])
def test_upfirdn2d_function_gradients(name, fake_extensions):
    """First and second derivatives of the autograd function (CPU, through the kernel port)."""
    _, k_shape, kwargs = _args(UPFIRDN_CONFIGS[name])
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    k = torch.randn(k_shape, dtype=torch.float64)

    def f(t):
        return upfirdn2d_cuda.upfirdn2d_cuda(t, k, **kwargs)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_upfirdn2d_cuda_rejects_a_kernel_that_requires_grad():
    x = torch.randn(1, 1, 4, 4)
    k = torch.ones(2, 2, requires_grad=True)
    with pytest.raises(NotImplementedError, match="kernel"):
        upfirdn2d_cuda.upfirdn2d_cuda(x, k)


@pytest.mark.parametrize("name", sorted(FUSED_CONFIGS))
def test_fused_function_forward_and_gradients(name, fake_extensions):
    """Forward, first and second derivatives of the autograd function (CPU, through the stand-in kernels)."""
    x_shape, has_bias, negative_slope, scale = FUSED_CONFIGS[name]
    bias = torch.randn(x_shape[1], dtype=torch.float64) if has_bias else None
    x = _away_from_kink(x_shape, bias, torch.float64, "cpu").requires_grad_()
    torch.testing.assert_close(
        fused_act_cuda.fused_bias_act_cuda(x, bias, negative_slope, scale),
        fused_leaky_relu_ref(x, bias, negative_slope, scale),
    )
    inputs = (x,) if bias is None else (x, bias.requires_grad_())

    def f(*args):
        return fused_act_cuda.fused_bias_act_cuda(args[0], args[1] if len(args) > 1 else None, negative_slope, scale)

    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


class _PretendCuda(torch.Tensor):
    """A CPU tensor that reports ``is_cuda``: lets a CPU test see which path the dispatcher takes."""

    @property
    def is_cuda(self):
        return True


def test_dispatch_takes_the_kernel_path_for_cuda_tensors(monkeypatch):
    """``upfirdn2d`` / ``fused_leaky_relu`` send CUDA tensors to the extension (here the kernel port, a separate
    implementation, so the results are compared across implementations), unless ``impl='ref'`` or
    ``$VTOONIFY_OPS=ref`` say otherwise; CPU tensors always take the reference path."""
    from model.stylegan.op import fused_leaky_relu, upfirdn2d

    calls = []

    def spying(name):
        ext = _FAKE_EXTENSIONS[name]
        return types.SimpleNamespace(**{f: (lambda *a, _f=getattr(ext, f), _n=f: calls.append(_n) or _f(*a))
                                        for f in vars(ext)})

    monkeypatch.setattr(_cuda_build, "get_extension", spying)
    monkeypatch.setattr(_cuda_build, "cuda_ops_available", lambda name: True)
    monkeypatch.delenv("VTOONIFY_OPS", raising=False)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    k, b = torch.randn(3, 3, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    cuda_x = x.as_subclass(_PretendCuda)

    up = upfirdn2d(cuda_x, k, up=2, pad=(1, 2))
    act = fused_leaky_relu(cuda_x, b)
    assert calls == ["upfirdn2d", "fused_bias_act"]
    torch.testing.assert_close(up.as_subclass(torch.Tensor), upfirdn2d_ref(x, k, up=2, pad=(1, 2)), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(act.as_subclass(torch.Tensor), fused_leaky_relu_ref(x, b), rtol=1e-12, atol=1e-12)

    calls.clear()
    upfirdn2d(cuda_x, k, impl="ref")
    fused_leaky_relu(cuda_x, b, impl="ref")
    upfirdn2d(x, k)  # a CPU tensor
    fused_leaky_relu(x, b)
    monkeypatch.setenv("VTOONIFY_OPS", "ref")
    upfirdn2d(cuda_x, k)
    fused_leaky_relu(cuda_x, b)
    assert calls == []


# --------------------------------------------------------------------------------------------------
# CUDA: the compiled kernels against the reference implementation
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuda_extensions():
    """Both extensions, built (or loaded from the cache); a failed build fails the CUDA tests."""
    if _cuda_build._disabled_by_env():
        pytest.skip(f"{_cuda_build.OPS_ENV}=ref disables the CUDA extensions")
    for name in ("upfirdn2d", "fused_bias_act"):
        if _cuda_build.get_extension(name) is None:
            pytest.fail(f"the CUDA extension {name!r} failed to build (see the RuntimeWarning)")


def _half_tolerance(dtype, ref):
    """Half types: output rounding of a float32 accumulation, relative to the largest value."""
    return 2 * torch.finfo(dtype).eps * max(1.0, ref.abs().max().item())


@requires_cuda
@pytest.mark.parametrize("case", sorted(GOLDEN_UPFIRDN))
def test_cuda_upfirdn2d_golden(case, cuda_extensions):
    g = golden_case("ops", case)
    out = upfirdn2d_cuda.upfirdn2d_cuda(g["in.x"].cuda(), g["in.kernel"].cuda(), **GOLDEN_UPFIRDN[case])
    assert_golden(out, g["out.0"], case)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(UPFIRDN_CONFIGS))
def test_cuda_upfirdn2d_matches_reference(name, dtype, cuda_extensions):
    x_shape, k_shape, kwargs = _args(UPFIRDN_CONFIGS[name])
    x = torch.randn(x_shape, dtype=dtype, device="cuda")
    k = torch.randn(k_shape, dtype=dtype, device="cuda")
    out = upfirdn2d_cuda.upfirdn2d_cuda(x, k, **kwargs)
    ref = upfirdn2d_ref(x.double(), k.double(), **kwargs)
    assert out.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(UPFIRDN_CONFIGS))
def test_cuda_upfirdn2d_half_precision(name, dtype, cuda_extensions):
    x_shape, k_shape, kwargs = _args(UPFIRDN_CONFIGS[name])
    x = torch.randn(x_shape, device="cuda").to(dtype)
    k = torch.randn(k_shape, device="cuda")
    out = upfirdn2d_cuda.upfirdn2d_cuda(x, k, **kwargs)
    ref = upfirdn2d_ref(x.double(), k.double(), **kwargs)
    assert out.dtype == dtype
    tol = _half_tolerance(dtype, ref)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=tol)


@requires_cuda
@pytest.mark.parametrize("name", sorted(UPFIRDN_CONFIGS))
def test_cuda_upfirdn2d_backward_matches_reference(name, cuda_extensions):
    x_shape, k_shape, kwargs = _args(UPFIRDN_CONFIGS[name])
    x = torch.randn(x_shape, dtype=torch.float64, device="cuda", requires_grad=True)
    k = torch.randn(k_shape, dtype=torch.float64, device="cuda")
    out = upfirdn2d_cuda.upfirdn2d_cuda(x, k, **kwargs)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, g)
    (expected,) = torch.autograd.grad(upfirdn2d_ref(x, k, **kwargs), x, g)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)


@requires_cuda
@pytest.mark.parametrize("name", ["upsample", "downsample", "negative_pad", "per_axis", "up3_down2", "row_kernel"])
def test_cuda_upfirdn2d_gradcheck(name, cuda_extensions):
    _, k_shape, kwargs = _args(UPFIRDN_CONFIGS[name])
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, device="cuda", requires_grad=True)
    k = torch.randn(k_shape, dtype=torch.float64, device="cuda")

    def f(t):
        return upfirdn2d_cuda.upfirdn2d_cuda(t, k, **kwargs)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@requires_cuda
def test_cuda_upfirdn2d_large_and_non_contiguous(cuda_extensions):
    """Several grid-stride iterations per thread, a channels-last input and a kernel given on the CPU."""
    x = torch.randn(4, 32, 128, 128, device="cuda").to(memory_format=torch.channels_last)
    k = torch.randn(4, 4)
    out = upfirdn2d_cuda.upfirdn2d_cuda(x, k, up=2, pad=(2, 1))
    assert out.shape == (4, 32, 256, 256)
    torch.testing.assert_close(out, upfirdn2d_ref(x, k.cuda(), up=2, pad=(2, 1)), rtol=1e-5, atol=1e-5)


@requires_cuda
def test_cuda_upfirdn2d_argument_checks(cuda_extensions):
    extension = _cuda_build.get_extension("upfirdn2d")
    x = torch.randn(1, 1, 4, 4, device="cuda")
    k = torch.ones(2, 2, device="cuda")
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        extension.upfirdn2d(x.cpu(), k.cpu(), 1, 1, 1, 1, 0, 0, 0, 0)
    with pytest.raises(RuntimeError, match="kernel must be"):
        extension.upfirdn2d(x, k.double(), 1, 1, 1, 1, 0, 0, 0, 0)
    with pytest.raises(RuntimeError, match="empty output"):
        extension.upfirdn2d(x, k, 1, 1, 1, 1, -2, -2, 0, 0)
    with pytest.raises(RuntimeError, match="must be >= 1"):
        extension.upfirdn2d(x, k, 0, 1, 1, 1, 0, 0, 0, 0)


@requires_cuda
def test_cuda_fused_golden(cuda_extensions):
    g = golden_case("ops", "fused_lrelu")
    out = fused_act_cuda.fused_bias_act_cuda(g["in.x"].cuda(), g["in.bias"].cuda())
    assert_golden(out, g["out.0"], "fused_lrelu")


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(FUSED_CONFIGS))
def test_cuda_fused_matches_reference(name, dtype, cuda_extensions):
    x_shape, has_bias, negative_slope, scale = FUSED_CONFIGS[name]
    x = torch.randn(x_shape, device="cuda").to(dtype)
    bias = torch.randn(x_shape[1], device="cuda").to(dtype) if has_bias else None
    out = fused_act_cuda.fused_bias_act_cuda(x, bias, negative_slope, scale)
    ref = fused_leaky_relu_ref(x.double(), None if bias is None else bias.double(), negative_slope, scale)
    assert out.dtype == dtype
    if dtype in (torch.float16, torch.bfloat16):
        torch.testing.assert_close(out.double(), ref, rtol=0, atol=_half_tolerance(dtype, ref))
    else:
        tol = 1e-12 if dtype == torch.float64 else 1e-6
        torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(FUSED_CONFIGS))
def test_cuda_fused_backward_matches_reference(name, dtype, cuda_extensions):
    x_shape, has_bias, negative_slope, scale = FUSED_CONFIGS[name]
    bias = torch.randn(x_shape[1], dtype=dtype, device="cuda", requires_grad=True) if has_bias else None
    x = _away_from_kink(x_shape, bias.detach() if has_bias else None, dtype, "cuda").requires_grad_()
    inputs = [x] if bias is None else [x, bias]
    out = fused_act_cuda.fused_bias_act_cuda(x, bias, negative_slope, scale)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, g)
    expected = torch.autograd.grad(fused_leaky_relu_ref(x, bias, negative_slope, scale), inputs, g)
    for grad, ref in zip(grads, expected):
        torch.testing.assert_close(grad, ref)


@requires_cuda
@pytest.mark.parametrize("name", sorted(FUSED_CONFIGS))
def test_cuda_fused_gradcheck(name, cuda_extensions):
    x_shape, has_bias, negative_slope, scale = FUSED_CONFIGS[name]
    bias = torch.randn(x_shape[1], dtype=torch.float64, device="cuda") if has_bias else None
    x = _away_from_kink(x_shape, bias, torch.float64, "cuda").requires_grad_()
    inputs = (x,) if bias is None else (x, bias.requires_grad_())

    def f(*args):
        return fused_act_cuda.fused_bias_act_cuda(args[0], args[1] if len(args) > 1 else None, negative_slope, scale)

    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


@requires_cuda
def test_cuda_fused_argument_checks(cuda_extensions):
    extension = _cuda_build.get_extension("fused_bias_act")
    x = torch.randn(2, 3, 4, device="cuda")
    with pytest.raises(RuntimeError, match="bias must have shape"):
        extension.fused_bias_act(x, torch.zeros(4, device="cuda"), 0.2, 1.0)
    with pytest.raises(RuntimeError, match="dtype"):
        extension.fused_bias_act(x, torch.zeros(3, device="cuda", dtype=torch.float64), 0.2, 1.0)
    with pytest.raises(RuntimeError, match="contiguous"):
        extension.fused_bias_act(x.transpose(1, 2), torch.empty(0, device="cuda"), 0.2, 1.0)
