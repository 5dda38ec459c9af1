"""Block-level parity with the original implementation (``golden_ops.npz``)."""
from __future__ import annotations

import pytest
import torch

from conftest import assert_golden, golden_case
from model.dualstylegan import AdaptiveInstanceNorm, AdaResBlock
from model.stylegan.model import (
    ConvLayer,
    Downsample,
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    PixelNorm,
    ResBlock,
    StyledConv,
    ToRGB,
    Upsample,
)
from model.vtoonify import Fusion, VToonifyResBlock

# case -> (constructor, call(module, inputs) -> tuple of outputs)
CASES = {
    "Upsample": (lambda: Upsample([1, 3, 3, 1]), lambda m, i: (m(i["x"]),)),
    "Downsample": (lambda: Downsample([1, 3, 3, 1]), lambda m, i: (m(i["x"]),)),
    "EqualLinear_lrmul_act": (lambda: EqualLinear(8, 6, lr_mul=0.01, activation="fused_lrelu"), lambda m, i: (m(i["x"]),)),
    "EqualLinear_plain": (lambda: EqualLinear(8, 6), lambda m, i: (m(i["x"]),)),
    "EqualConv2d_dil2": (lambda: EqualConv2d(3, 5, 3, padding=2, dilation=2), lambda m, i: (m(i["x"]),)),
    "StyledConv_up": (lambda: StyledConv(3, 5, 3, 8, upsample=True), lambda m, i: (m(i["x"], i["style"], noise=i["noise"]),)),
    "ToRGB_skip": (lambda: ToRGB(5, 8), lambda m, i: (m(i["x"], i["style"], i["skip"]),)),
    "ConvLayer_down": (lambda: ConvLayer(3, 6, 3, downsample=True), lambda m, i: (m(i["x"]),)),
    "ResBlock": (lambda: ResBlock(3, 6), lambda m, i: (m(i["x"]),)),
    "AdaIN": (lambda: AdaptiveInstanceNorm(6, style_dim=8), lambda m, i: (m(i["x"], i["style"]),)),
    "AdaResBlock_dil2": (lambda: AdaResBlock(6, 8, dilation=2),
                         lambda m, i: (m(i["x"], i["style"], 0.6), m(i["x"], i["style"], 0))),
    "Fusion": (lambda: Fusion(4, 4, 4), lambda m, i: m(i["f_G"], i["f_E"], 0.3)),
    "VToonifyResBlock": (lambda: VToonifyResBlock(4), lambda m, i: (m(i["x"]),)),
    "PixelNorm": (lambda: PixelNorm(), lambda m, i: (m(i["x"]),)),
}
for _up in (0, 1):
    for _demod in (0, 1):
        CASES[f"ModulatedConv2d_up{_up}_demod{_demod}"] = (
            lambda up=_up, demod=_demod: ModulatedConv2d(3, 5, 3, style_dim=8, demodulate=bool(demod), upsample=bool(up)),
            lambda m, i: (m(i["x"], i["style"]),),
        )


def _load(case: str):
    make, call = CASES[case]
    g = golden_case("ops", case)
    module = make()
    module.load_state_dict({k[3:]: v for k, v in g.items() if k.startswith("sd.")}, strict=True)
    inputs = {k[3:]: v for k, v in g.items() if k.startswith("in.")}
    return module.eval(), call, inputs, g


@pytest.mark.parametrize("case", sorted(CASES))
@torch.no_grad()
def test_block_golden(case):
    module, call, inputs, g = _load(case)
    outs = call(module, inputs)
    refs = sorted(k for k in g if k.startswith("out.") and k != "out.nonfused")
    assert len(outs) == len(refs)
    for i, out in enumerate(outs):
        assert_golden(out, g[f"out.{i}"], f"{case} out.{i}")


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("ModulatedConv2d")])
@torch.no_grad()
def test_modulated_conv_nonfused_path(case):
    module, call, inputs, g = _load(case)
    module.fused = False
    assert_golden(call(module, inputs)[0], g["out.nonfused"], case + " nonfused")
    assert_golden(call(module, inputs)[0], g["out.0"], case + " nonfused vs fused")


def test_adaresblock_zero_weight_is_identity():
    module, _, inputs, _ = _load("AdaResBlock_dil2")
    assert module(inputs["x"], inputs["style"], 0) is inputs["x"]
    # a per-sample weight tensor broadcasts like a number
    w = torch.tensor([0.6, 0.6])
    torch.testing.assert_close(module(inputs["x"], inputs["style"], w), module(inputs["x"], inputs["style"], 0.6))
