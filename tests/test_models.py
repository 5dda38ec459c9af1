"""Whole networks: exact state_dict layout, golden parity with the original, and behaviour contracts."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import GOLDEN, KEYS, assert_golden, golden_case, manifest
from model.dualstylegan import DualStyleGAN
from model.fill import fill_module
from model.stylegan.model import Generator
from model.vtoonify import ConditionalDiscriminator, VToonify

BACKBONES = {"D": "dualstylegan", "T": "toonify"}


@pytest.fixture(scope="module")
def filled():
    """Released-size VToonify-D / -T filled with the golden fill rule (built once per module)."""
    cache = {}

    def get(tag: str) -> VToonify:
        if tag not in cache:
            bb = BACKBONES[tag]
            cache[tag] = fill_module(VToonify(backbone=bb), GOLDEN / f"fill_vtoonify_{bb}.tsv").eval().requires_grad_(False)
        return cache[tag]

    return get


def _manifest_of(module: torch.nn.Module):
    params = {n for n, _ in module.named_parameters()}
    return [(k, tuple(t.shape), str(t.dtype).replace("torch.", ""), "param" if k in params else "buffer")
            for k, t in module.state_dict().items()]


MANIFESTS = {
    "vtoonify_dualstylegan": lambda: VToonify(backbone="dualstylegan"),
    "vtoonify_toonify": lambda: VToonify(backbone="toonify"),
    "dualstylegan_1024": lambda: DualStyleGAN(1024, 512, 8, 2, res_index=6),
    "stylegan2_generator_1024": lambda: Generator(1024, 512, 8, 2),
    "conditional_discriminator_d": lambda: ConditionalDiscriminator(256, use_condition=True, style_num=317),
    "conditional_discriminator_t": lambda: ConditionalDiscriminator(256),
}


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_state_dict_manifest(name):
    with torch.device("meta"):
        module = MANIFESTS[name]()
    assert _manifest_of(module) == manifest(name)


@pytest.mark.parametrize("name", ["vtoonify_dualstylegan", "vtoonify_toonify", "dualstylegan_1024"])
def test_parameter_counts(name):
    counts = {c["model"]: c for c in json.loads((KEYS / "param_counts.json").read_text())}[name]
    with torch.device("meta"):
        module = MANIFESTS[name]()
    assert sum(p.numel() for p in module.parameters()) == counts["params"]
    for prefix, n in counts["params_by_top_level"].items():
        assert sum(p.numel() for k, p in module.named_parameters() if k.split(".")[0] == prefix) == n, prefix


# --------------------------------------------------------------------------------------------- golden
def test_golden_tolerance_rule():
    # assert_golden: max|diff| <= 1e-4 * max(1, std) and an L2 bound relative to max(|ref|, sqrt(n) * max(1, std)).
    g = torch.Generator().manual_seed(0)
    dense = torch.randn(4096, generator=g, dtype=torch.float64)
    mask = torch.zeros(4096, dtype=torch.float64)
    mask[:40] = torch.rand(40, generator=g, dtype=torch.float64)  # 99% zeros, like the VToonify-D masks
    rounding = 3e-6 * torch.randn(4096, generator=g, dtype=torch.float64)  # float32 kernel-choice noise
    assert_golden(dense + rounding, dense)
    assert_golden(mask + rounding * (mask > 0), mask)
    assert_golden(mask + 3e-6 * (torch.arange(4096) < 400), mask)  # the CPU-dependent case: fine on a sparse ref
    with pytest.raises(AssertionError, match="max"):  # one element off by more than the tolerance
        assert_golden(dense + 2e-4 * (torch.arange(4096) == 7), dense)
    with pytest.raises(AssertionError, match="relative L2"):  # a small error everywhere: only the L2 bound sees it
        assert_golden(dense + 3e-5, dense)
    with pytest.raises(AssertionError, match="relative L2"):  # ... also on a sparse reference
        assert_golden(mask + 2e-5, mask)
    with pytest.raises(AssertionError, match="shape"):
        assert_golden(dense[:-1], dense)


@pytest.mark.parametrize("tag", ["D", "T"])
@torch.no_grad()
def test_vtoonify_golden(filled, tag):
    m, g = filled(tag), golden_case("models", f"vtoonify_{tag}")
    x, s = g["in.x"], g["in.style"]
    assert_golden(m(x, s, d_s=0.5), g["out.image_ds0.5"], "image d_s=0.5")
    feat, skip = m(x, s, d_s=0.5, return_feat=True)
    assert_golden(feat, g["out.feat"], "feat")
    assert_golden(skip, g["out.skip"], "skip")
    assert_golden(m.zplus2wplus(s), g["out.zplus2wplus"], "zplus2wplus")
    if tag == "D":
        image, masks = m(x, s, d_s=1.0, return_mask=True)
        assert_golden(image, g["out.image_ds1.0"], "image d_s=1")
        for i, mask in enumerate(masks):
            assert_golden(mask, g[f"out.mask{i}_ds1.0"], f"mask{i}")
        assert_golden(m(x, s, d_s=0.0), g["out.image_ds0.0"], "image d_s=0")
        assert_golden(m(x, s[:, 0], d_s=0.7), g["out.image_style2d_ds0.7"], "2-D style")


@torch.no_grad()
def test_dualstylegan_golden(filled):
    dsg = filled("D").generator
    g = golden_case("models", "dualstylegan")
    s = golden_case("models", "vtoonify_D")["in.style"]
    w = dsg.generator.style(g["in.z"])
    image, _ = dsg([w], s, input_is_latent=True, truncation=0.5, truncation_latent=0, use_res=True,
                   interp_weights=[0.6] * 7 + [1] * 11, randomize_noise=False)
    assert image.shape == (1, 3, 1024, 1024)
    assert_golden(F.adaptive_avg_pool2d(image, 64), g["out.image_avgpool64"], "DualStyleGAN image")


@torch.no_grad()
def test_dualstylegan_return_feat_is_the_32px_block_output(filled):
    # The golden feat32/skip32 of this case were produced with randomize_noise=True (the reference call
    # omits randomize_noise=False), so they depend on the original run's RNG state and cannot be reproduced.
    # What return_feat must return is the state after the 32x32 block of the very same forward pass:
    dsg = filled("D").generator
    w = torch.randn(1, 18, 512)
    s = golden_case("models", "vtoonify_D")["in.style"]
    kw = dict(input_is_latent=True, truncation=0.5, truncation_latent=0, use_res=True, interp_weights=[0.5] * 18,
              randomize_noise=False)
    captured = {}
    hook = dsg.generator.to_rgbs[2].register_forward_hook(lambda mod, inp, out: captured.update(feat=inp[0], skip=out))
    try:
        dsg([w], s, **kw)
    finally:
        hook.remove()
    feat, skip = dsg([w], s, return_feat=True, **kw)
    assert feat.shape == (1, 512, 32, 32) and skip.shape == (1, 3, 32, 32)
    torch.testing.assert_close(feat, captured["feat"], rtol=0, atol=0)
    torch.testing.assert_close(skip, captured["skip"], rtol=0, atol=0)
    # ... and its statistics agree with the (noisy) reference.
    ref = golden_case("models", "dualstylegan")["out.feat32"]
    w_ref = dsg.generator.style(golden_case("models", "dualstylegan")["in.z"]).unsqueeze(1).repeat(1, 18, 1)
    feat, _ = dsg([w_ref], s, return_feat=True, **kw)
    assert abs(feat.mean().item() - ref.mean().item()) < 0.1 * ref.std().item()
    assert abs(feat.std().item() / ref.std().item() - 1) < 0.1


@torch.no_grad()
def test_stylegan2_golden(filled):
    gen = filled("T").generator
    g = golden_case("models", "stylegan2")
    image, _ = gen([g["in.z"]], randomize_noise=False, truncation=0.7, truncation_latent=torch.zeros(1, 512))
    assert_golden(F.adaptive_avg_pool2d(image, 64), g["out.image_avgpool64"], "StyleGAN2 image")
    feat, skip = gen([g["in.z"]], randomize_noise=False, return_feature_ind=6)
    assert_golden(feat, g["out.feat32"], "feat32")
    assert_golden(skip, g["out.skip32"], "skip32")


@torch.no_grad()
def test_conditional_discriminator_golden():
    d = fill_module(ConditionalDiscriminator(256, use_condition=True, style_num=10), GOLDEN / "fill_cond_discriminator.tsv")
    x = torch.randn(4, 3, 256, 256, generator=torch.Generator().manual_seed(106))
    out = d(x, torch.full((4, 1), 0.4), torch.tensor([0, 3, 9, 3]))
    assert_golden(out, golden_case("models", "cond_disc")["out.0"], "ConditionalDiscriminator")


# ------------------------------------------------------------------------------------------ behaviour
def tiny(backbone: str) -> VToonify:
    """A ~1M-parameter VToonify with the released level structure (for fast tests)."""
    return VToonify(backbone=backbone, style_channels=32, channel_multiplier=1, channel_max=32)


@pytest.mark.parametrize("backbone", ["dualstylegan", "toonify"])
def test_tiny_forward_backward(backbone):
    m = tiny(backbone).train()
    x, s = torch.randn(2, 22, 48, 40), torch.randn(2, 18, 32)
    image, masks = m(x, s, d_s=0.5, return_mask=True)
    assert image.shape == (2, 3, 192, 160) and torch.isfinite(image).all()
    assert len(masks) == (4 if backbone == "dualstylegan" else 0)
    loss = image.square().mean() + sum(mk.mean() for mk in masks)
    trainable = [m.encoder, m.fusion_out, m.fusion_skip]
    loss.backward()
    for part in trainable:
        for name, p in part.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("backbone", ["dualstylegan", "toonify"])
@pytest.mark.parametrize("hw", [(8, 8), (16, 40), (56, 24)])
def test_output_is_4x_input(backbone, hw):
    m = tiny(backbone).eval()
    with torch.no_grad():
        out = m(torch.randn(1, 22, *hw), torch.randn(1, 32), d_s=1.0)
        feat, skip = m(torch.randn(1, 22, *hw), torch.randn(1, 32), d_s=1.0, return_feat=True)
    assert out.shape == (1, 3, 4 * hw[0], 4 * hw[1])
    assert feat.shape == (1, 32, hw[0] // 8, hw[1] // 8) and skip.shape == (1, 3, hw[0] // 8, hw[1] // 8)


@pytest.mark.parametrize("backbone", ["dualstylegan", "toonify"])
def test_prepared_styles_give_the_same_output(backbone):
    """A style prepared once (a video's) and expanded over the batch gives what the per-call styles give (the same
    values up to the float noise of a batch-1 against a batch-3 matrix product), and the same code."""
    m = tiny(backbone).eval()
    torch.manual_seed(1)
    x, s = torch.randn(3, 22, 16, 24), torch.randn(1, 18, 32)
    with torch.no_grad():
        prepared = m.prepare_styles(s)
        assert prepared.code is s and prepared.adastyles.shape[0] == 1
        direct = m(x, s.expand(3, -1, -1), d_s=0.6)
        reused = m(x, s, d_s=0.6, prepared=prepared)
    torch.testing.assert_close(reused, direct, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(m(x[:1], s, d_s=0.6, prepared=prepared), m(x[:1], s, d_s=0.6), rtol=0, atol=0)


def test_bad_inputs_raise_clear_errors():
    m = tiny("dualstylegan").eval()
    with pytest.raises(ValueError, match="multiples of 8"):
        m(torch.randn(1, 22, 30, 32), torch.randn(1, 32), d_s=0.5)
    with pytest.raises(ValueError, match="22"):
        m(torch.randn(1, 3, 32, 32), torch.randn(1, 32), d_s=0.5)
    with pytest.raises(ValueError, match="d_s"):
        m(torch.randn(1, 22, 32, 32), torch.randn(1, 32))
    with pytest.raises(ValueError, match="style"):
        m(torch.randn(1, 22, 32, 32), torch.randn(1, 17, 32), d_s=0.5)
    with pytest.raises(ValueError, match="backbone"):
        VToonify(backbone="stylegan3")
    with pytest.raises(ValueError, match="divisible"):
        ConditionalDiscriminator(64, channel_multiplier=1, channel_max=16)(torch.randn(6, 3, 64, 64))


def test_zero_degree_makes_modres_blocks_identities():
    m = tiny("dualstylegan").eval()
    seen = []
    hooks = [blk.register_forward_hook(lambda mod, inp, out: seen.append(out is inp[0])) for blk in m.res[1:]]
    with torch.no_grad():
        m(torch.randn(1, 22, 16, 16), torch.randn(1, 32), d_s=0.0)
    for h in hooks:
        h.remove()
    assert seen == [True] * 6
    with torch.no_grad():  # and they are not identities for d_s > 0
        seen.clear()
        hooks = [blk.register_forward_hook(lambda mod, inp, out: seen.append(torch.equal(out, inp[0]))) for blk in m.res[1:]]
        m(torch.randn(1, 22, 16, 16), torch.randn(1, 32), d_s=0.5)
        for h in hooks:
            h.remove()
    assert not any(seen)


def test_per_sample_degree_matches_scalar_degree():
    m = tiny("dualstylegan").eval()
    x, s = torch.randn(2, 22, 16, 16), torch.randn(2, 18, 32)
    with torch.no_grad():
        both = m(x, s, d_s=torch.tensor([0.2, 0.9]))
        torch.testing.assert_close(both[:1], m(x[:1], s[:1], d_s=0.2))
        torch.testing.assert_close(both[1:], m(x[1:], s[1:], d_s=0.9))


@pytest.mark.parametrize("tag", ["D", "T"])
@pytest.mark.parametrize("dtype,tol", [(torch.float16, 0.02), (torch.bfloat16, 0.1), (torch.float64, 1e-5)])
def test_reduced_and_double_precision(tag, dtype, tol):
    # The original built the degree label in the default dtype, so VToonify-D failed under .half()/.double().
    m = fill_module(VToonify(backbone=BACKBONES[tag]), GOLDEN / f"fill_vtoonify_{BACKBONES[tag]}.tsv").eval()
    x, s = torch.randn(1, 22, 16, 24) * 0.5, torch.randn(1, 18, 512)
    with torch.no_grad():
        ref = m(x, s, d_s=0.5)
        out = m.to(dtype)(x.to(dtype), s.to(dtype), d_s=0.5)
    assert out.dtype == dtype and torch.isfinite(out).all()
    err = (out.double() - ref.double()).abs().max().item() / ref.abs().max().item()
    assert err < tol, f"relative error {err:.3g}"


@pytest.mark.parametrize("batch,style_batch", [(1, 1), (3, 3), (3, 1)])
def test_channels_last_instance_norm_matches_plain_form(batch, style_batch):
    # AdaIN at CPU inference on channels-last maps takes a faster route (mean, centred copy, dot product);
    # it must give the maths of the plain two-pass form, keep channels-last, and be the route actually taken.
    from model.dualstylegan import AdaptiveInstanceNorm
    torch.manual_seed(0)
    norm = AdaptiveInstanceNorm(24, 16).eval()
    x = (torch.randn(batch, 24, 13, 11) * 3 + 5).contiguous(memory_format=torch.channels_last)  # mean >> std
    s = torch.randn(style_batch, 16)
    gamma, beta = norm.style(s).unsqueeze(2).unsqueeze(3).chunk(2, 1)
    var, mean = torch.var_mean(x.double(), dim=(2, 3), unbiased=False, keepdim=True)
    ref = (x.double() - mean) / torch.sqrt(var + norm.norm.eps) * gamma.double() + beta.double()
    with torch.no_grad():
        out = norm(x, s)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert out._base is not None  # the (B, H*W, C) buffer of the fast route, seen as NCHW
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=2e-5)
    # the autograd route (plain form) agrees and is differentiable
    xg = x.clone().requires_grad_(True)
    out_grad = norm(xg, s)
    assert out_grad._base is None
    torch.testing.assert_close(out_grad.detach(), out, rtol=0, atol=2e-5)
    out_grad.square().mean().backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0


def test_fusion_inference_buffer_matches_the_autograd_form():
    # At inference Fusion writes [f_G, |f_G - f_E|] and then [f_G, f_E * m_E] into one buffer; with autograd it
    # concatenates. Same values either way, and the gated features VToonify reuses are f_E * m_E.
    from model.vtoonify import Fusion
    torch.manual_seed(0)
    fusion = Fusion(8, 8, 8).eval()
    f_G = torch.randn(2, 8, 12, 10).contiguous(memory_format=torch.channels_last)
    f_E = torch.randn(2, 8, 12, 10).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fast = fusion.fuse(f_G, f_E, 0.3)
    slow = fusion.fuse(f_G, f_E, 0.3)  # parameters require grad: the concatenating form
    assert slow[0].requires_grad and not fast[0].requires_grad
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast[2], f_E * fast[1])
    out, mask = fusion(f_G, f_E, 0.3)
    torch.testing.assert_close(out.detach(), slow[0].detach(), rtol=1e-5, atol=1e-6)
