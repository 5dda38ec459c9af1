"""The mixed-precision (bfloat16) path: which parts stay float32, its accuracy, and the CPU tip."""
from __future__ import annotations

import cv2
import pytest
import torch
from skimage import data as skdata
from torch import nn

import model.dualstylegan as dualstylegan
from model.fill import FillRow, default_fill_table, fill_module
from model.stylegan.model import ModulatedConv2d, ToRGB
from model.vtoonify import VToonify
from pipeline import precision

BACKBONES = ("dualstylegan", "toonify")


def small_model(backbone: str, channel_max: int = 32) -> VToonify:
    """A small VToonify (64 -> 256) whose output shows its input: the plain conv/linear weights are doubled.

    (Default-initialised ``nn.Conv2d`` weights shrink the signal at every level, so the output would be
    nearly flat and every error small.)
    """
    torch.manual_seed(0)
    m = VToonify(in_size=64, out_size=256, backbone=backbone, channel_max=channel_max,
                 num_res_layers=2 if backbone == "dualstylegan" else 6)
    plain = {name + ".weight" for name, mod in m.named_modules() if type(mod) in (nn.Conv2d, nn.Linear)}
    rows = [FillRow(r.key, r.shape, r.mode, r.mean, 2 * r.std) if r.key in plain else r for r in default_fill_table(m)]
    return fill_module(m, rows).eval().requires_grad_(False)


def face_input(n_latent: int, size=(64, 72)) -> tuple[torch.Tensor, torch.Tensor]:
    """The astronaut's face (RGB in [-1, 1]) with 19 smooth pseudo-parsing channels, and a W+ code."""
    face = cv2.resize(skdata.astronaut()[40:220, 120:320], (size[1], size[0]), interpolation=cv2.INTER_AREA)
    rgb = torch.from_numpy(face).permute(2, 0, 1).float().div(127.5).sub(1)[None]
    g = torch.Generator().manual_seed(1)
    parsing = nn.functional.interpolate(torch.randn(1, 19, size[0] // 8, size[1] // 8, generator=g), size=size,
                                        mode="bilinear")
    return torch.cat([rgb, parsing], 1), torch.randn(1, n_latent, 512, generator=g)


# ---------------------------------------------------------------------------------------- float32-kept parts
@pytest.mark.parametrize("backbone", BACKBONES)
def test_mixed_precision_casts_only_the_big_convolutions(backbone):
    m = small_model(backbone).to_mixed_precision(torch.bfloat16)
    low = {id(p) for mod in m.low_precision_modules() for p in mod.parameters()}
    assert low, "no module was cast"
    for name, p in m.named_parameters():
        assert p.dtype == (torch.bfloat16 if id(p) in low else torch.float32), name
    kinds = {type(mod) for mod in m.low_precision_modules() for mod in mod.modules()}
    assert not kinds & {nn.Linear, ModulatedConv2d, ToRGB}, "affine maps / modulated convolutions must stay float32"
    assert m.encoder[5].weight.dtype == torch.float32 and all(c.weight.dtype == torch.float32 for c in m.fusion_skip)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_mixed_precision_dtypes_in_the_forward(backbone, monkeypatch):
    m = small_model(backbone).to_mixed_precision(torch.bfloat16)
    x, s = face_input(m.stylegan().n_latent)
    seen: dict[str, set] = {}

    def record(key):
        return lambda mod, inputs, out: seen.setdefault(key, set()).add(
            (inputs[0].dtype, (out[0] if isinstance(out, tuple) else out).dtype))

    hooks = []
    for mod in m.low_precision_modules():  # the big convolutions run in bfloat16 (that is the speed)
        hooks.append(mod.register_forward_hook(record("bf16 conv")))
    for mod in m.modules():
        if isinstance(mod, ModulatedConv2d):
            hooks.append(mod.modulation.register_forward_hook(record("style affine")))
        if isinstance(mod, ToRGB):
            hooks.append(mod.register_forward_hook(record("ToRGB")))
        if isinstance(mod, dualstylegan.AdaptiveInstanceNorm):
            hooks.append(mod.style.register_forward_hook(record("AdaIN affine")))
    if backbone == "dualstylegan":  # the extrinsic style mapping of the ModRes codes
        hooks += [m.generator.style.register_forward_hook(record("mapping"))]
    hooks += [c.register_forward_hook(record("skip conv")) for c in [m.encoder[5], *m.fusion_skip]]

    stats = []
    real = dualstylegan._instance_norm_affine_low_precision
    monkeypatch.setattr(dualstylegan, "_instance_norm_affine_low_precision",
                        lambda x, g, b, eps: stats.append((x.dtype, g.dtype)) or real(x, g, b, eps))
    # demodulation coefficients: the weights that meet the activations come from float32 maths
    rsqrt_dtypes = []
    real_rsqrt = torch.rsqrt
    monkeypatch.setattr(torch, "rsqrt", lambda t: rsqrt_dtypes.append(t.dtype) or real_rsqrt(t))
    with torch.no_grad():
        out = m(x, s, d_s=0.5)
    for h in hooks:
        h.remove()
    bf, f32 = torch.bfloat16, torch.float32
    assert out.dtype == f32
    assert seen["bf16 conv"] == {(bf, bf)}
    assert seen["style affine"] == {(f32, f32)}
    assert seen["ToRGB"] == {(bf, f32)}  # bfloat16 features in, float32 RGB (skip accumulation) out
    assert seen["skip conv"] == {(f32, f32)}
    assert rsqrt_dtypes and set(rsqrt_dtypes) == {f32}
    if backbone == "dualstylegan":
        assert seen["AdaIN affine"] == {(f32, f32)} and seen["mapping"] == {(f32, f32)}
        assert stats and set(stats) == {(bf, f32)}  # bfloat16 maps take the float32-statistics route
    else:
        assert not stats


def test_instance_norm_of_a_bf16_map_has_float32_statistics():
    # A map whose mean is 50x its spread: rounding the mean to bfloat16 (8-bit mantissa) would shift each
    # channel by up to 50 * 2**-9 ~ 0.1 of its spread; with float32 statistics the only error is the rounding
    # of the input and of the output (each <= 2**-9 relative).
    g = torch.Generator().manual_seed(0)
    x = (50 + torch.randn(2, 16, 24, 20, generator=g)).contiguous(memory_format=torch.channels_last).bfloat16()
    gamma, beta = 1 + torch.rand(2, 16, 1, 1, generator=g), torch.randn(1, 16, 1, 1, generator=g)
    ref = dualstylegan._instance_norm_affine(x.double(), gamma.double(), beta.double(), 1e-5)
    out = dualstylegan._instance_norm_affine(x, gamma, beta, 1e-5)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    # |out| <= ~2 * 4 + 3: output rounding <= 2**-9 * 11 ~ 0.02
    assert (out.double() - ref).abs().max().item() < 0.03
    x_nchw = x.contiguous()
    assert (dualstylegan._instance_norm_affine(x_nchw, gamma, beta, 1e-5).double() - ref).abs().max().item() < 0.03


def test_float32_is_unchanged_by_to_mixed_precision():
    m = small_model("dualstylegan")
    x, s = face_input(m.stylegan().n_latent)
    with torch.no_grad():
        ref = m(x, s, d_s=0.5)
        out = m.to_mixed_precision(torch.float32)(x, s, d_s=0.5)
    assert all(p.dtype == torch.float32 for p in m.parameters())
    assert torch.equal(out, ref)


# ---------------------------------------------------------------------------------------- accuracy
# bfloat16 keeps 8 significant bits: a rounding has a relative error of at most u = 2**-8 ~ 3.9e-3 (round to
# nearest: |error| <= u / 2 of the value's binade top, RMS ~ u / sqrt(12) ~ 1.1e-3 of the value). The references
# below are float64 on the same bfloat16 inputs; the bounds sit between the error of what is kept in float32
# and the error the same part has in bfloat16, each several times away, and do not depend on the order in
# which a CPU accumulates (that moves only the last float32 bits of each sum).
def _rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_demodulation_in_float32_keeps_channel_gains(upsample):
    """Per output channel, the gain of the bfloat16 convolution against float64 on the same input.

    float32 modulation + demodulation (the mixed path): only the weights and the output are rounded, element by
    element, so a channel's gain is off by ~u / sqrt(12 * fan_in) (fan_in 576: ~5e-5 RMS, max over 64 channels
    and the upsampling blur < 1e-3 measured 4e-4 / 8e-4). With the modulation scale and the demodulation
    coefficient rounded to bfloat16 every pixel of a channel shares their rounding: gains off by up to
    ~u / 2 + u / 2 (measured 4.7e-3 / 5.6e-3). Bound 2e-3.
    """
    conv = ModulatedConv2d(64, 64, 3, 512, upsample=upsample).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 64, 20, 18, generator=g).bfloat16().contiguous(memory_format=torch.channels_last)
    s = torch.randn(1, 512, generator=g)
    ref = conv.double()(x.double(), s.double())
    out = conv.float()(x, s)
    assert out.dtype == torch.bfloat16
    o, r = out.double().transpose(0, 1).reshape(64, -1), ref.transpose(0, 1).reshape(64, -1)
    gain_error = ((o * r).sum(1) / (r * r).sum(1) - 1).abs().max().item()
    assert gain_error < 2e-3, f"channel gain error {gain_error:.3g}"


def test_to_rgb_accumulates_the_skip_in_float32():
    """ToRGB on bfloat16 features adds its RGB (|rgb| <~ 1) to a float32 skip (|skip| ~ 12): the result is float32
    and off only by the rounding of the RGB part (<~ 1 * u -> measured ~3e-3). Accumulated in bfloat16, each sum is
    rounded at the skip's magnitude (up to 16 * u / 2 ~ 0.03). Bound 0.01."""
    rgb = ToRGB(32, 512).eval().requires_grad_(False)
    with torch.no_grad():
        rgb.conv.weight.mul_(0.1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 32, 40, 36, generator=g).bfloat16().contiguous(memory_format=torch.channels_last)
    s = torch.randn(1, 512, generator=g)
    skip = 12 + torch.randn(1, 3, 20, 18, generator=g)
    ref = rgb.double()(x.double(), s.double(), skip.double())
    out = rgb.float()(x, s, skip)
    assert out.dtype == torch.float32
    err = (out.double() - ref).abs().max().item()
    assert err < 0.01, f"max error {err:.3g}"


@pytest.mark.parametrize("backbone,bound", [("dualstylegan", 0.06), ("toonify", 0.02)])
def test_mixed_bf16_model_accuracy_against_float64(backbone, bound):
    """The whole small model in mixed precision against float64 (relative RMS error of the output).

    Each bfloat16 convolution adds ~1.6e-3 relative RMS error (its rounded weights and inputs, ~u / sqrt(12)
    each, and its rounded output); VToonify-D has ~30 of them between input and output (encoder, ModRes,
    fusion, StyleGAN blocks) and its doubled-weight layers amplify what comes in, VToonify-T fewer. Measured:
    0.036 (D) and 0.0067 (T); the bounds leave ~1.7x / 3x for other CPUs. This checks the path end to end
    (every layer in the dtype it should have: a float16 or unrounded layer, a wrong cast, would move it);
    the tests above pin down the float32-kept parts one by one, where their effect is not buried under the
    convolutions' own rounding.
    """
    m = small_model(backbone).double()
    x, s = face_input(m.stylegan().n_latent)
    with torch.no_grad():
        ref = m(x.double(), s.double(), d_s=0.5)
        mixed = m.to_mixed_precision(torch.bfloat16)(x, s, d_s=0.5)
    err = _rel_rms(mixed, ref)
    assert err < bound, f"mixed bf16 relative RMS error {err:.3g} >= {bound}"


# ---------------------------------------------------------------------------------------- CPU detection and tip
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse sse2 avx2 avx512f avx512bw {extra}
"""


def test_cpu_flags_and_model_name_from_cpuinfo_text():
    text = CPUINFO.format(extra="avx512_bf16")
    assert {"avx512f", "avx512_bf16"} <= precision.cpu_flags(text)
    assert precision.cpu_model_name(text) == "AMD EPYC 9R14 96-Core Processor"
    assert precision.cpu_flags("processor : 0\n") == set()


@pytest.mark.parametrize("extra,native",
                         [("avx512_bf16", True), ("amx_bf16 amx_tile", True), ("avx512_vnni", False), ("", False)])
def test_native_bf16_from_flags(extra, native):
    flags = precision.cpu_flags(CPUINFO.format(extra=extra))
    assert precision.native_bf16(flags, mkldnn=True) is native
    assert precision.native_bf16(flags, mkldnn=False) is False  # no oneDNN: no native bf16 convolutions


def test_native_bf16_without_cpuinfo_uses_torch_probe(monkeypatch):
    monkeypatch.setattr(precision, "_read_cpuinfo", lambda *a: None)
    monkeypatch.setattr(precision, "_torch_reports_bf16", lambda: True)
    assert precision.native_bf16(mkldnn=True) is True
    monkeypatch.setattr(precision, "_torch_reports_bf16", lambda: None)
    assert precision.native_bf16(mkldnn=True) is False


def test_tip_only_for_float32_on_a_native_bf16_cpu():
    native, slow = {"avx512_bf16"}, {"avx512f"}
    tip = precision.bf16_tip("cpu", None, flags=native, mkldnn=True)
    assert tip is not None and "\n" not in tip
    assert "--dtype bfloat16" in tip and f"{precision.BF16_SPEEDUP:.1f}x" in tip
    assert precision.bf16_tip("cpu", "float32", flags=native, mkldnn=True) == tip
    assert precision.bf16_tip("cpu", "bfloat16", flags=native, mkldnn=True) is None  # already on
    assert precision.bf16_tip("cpu", None, flags=slow, mkldnn=True) is None  # bf16 would be slow here
    assert precision.bf16_tip("cpu", None, flags=native, mkldnn=False) is None
    if not torch.cuda.is_available():
        assert precision.bf16_tip("cuda", None, flags=native, mkldnn=True) is None
    assert precision.fast_mode_available("cpu", None, flags=native, mkldnn=True)
    assert not precision.fast_mode_available("cpu", None, flags=slow, mkldnn=True)


def test_speed_tip_names_the_fastest_measured_path(monkeypatch):
    native, slow = {"avx512_bf16"}, {"avx512f"}
    best, torch_bf16 = precision.FAST_PATHS[True][:2]
    assert best.speedup > torch_bf16.speedup >= 1.15  # the table is fastest first
    monkeypatch.setattr(precision, "_installed", lambda engine: True)
    tip = precision.speed_tip("cpu", None, "torch", flags=native, mkldnn=True)
    assert tip is not None and "\n" not in tip and "pip install" not in tip
    assert f"is {best.flags}:" in tip and f"about {best.speedup:.1f}x faster than the float32 default" in tip
    assert best.flags == "--engine openvino --dtype bfloat16"
    # from torch bfloat16 the gain is the ratio of the two measured paths
    tip = precision.speed_tip("cpu", "bfloat16", "torch", flags=native, mkldnn=True)
    assert f"about {best.speedup / torch_bf16.speedup:.1f}x faster than this run" in tip
    assert precision.speed_tip("cpu", "bfloat16", best.engine, flags=native, mkldnn=True) is None  # already the fastest
    # from an OpenVINO float32 run, the gain over that run's own measured speed
    tip = precision.speed_tip("cpu", "float32", "openvino", flags=native, mkldnn=True)
    own = precision.MEASURED_SPEEDUPS[("openvino", "float32")]
    assert own > 1 and f"about {best.speedup / own:.1f}x faster than this run" in tip
    assert precision.speed_tip("cpu", None, "torch", flags=slow, mkldnn=True) is None  # nothing measured faster there
    if not torch.cuda.is_available():
        assert precision.speed_tip("cuda", None, "torch", flags=native, mkldnn=True) is None
    # an engine that is not installed comes with its install command; limited to torch, the tip is --dtype bfloat16
    monkeypatch.setattr(precision, "_installed", lambda engine: engine == "torch")
    tip = precision.speed_tip("cpu", None, "torch", flags=native, mkldnn=True)
    assert tip.endswith('pip install -e ".[openvino]")')
    tip = precision.speed_tip("cpu", None, "torch", flags=native, mkldnn=True, engines=("torch",))
    assert tip.startswith("tip: a faster path measured") and "is --dtype bfloat16:" in tip
    assert tip == precision.bf16_tip("cpu", None, flags=native, mkldnn=True)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, frozen_helpers):
    from conftest import write_tiny_checkpoints

    root = tmp_path_factory.mktemp("precision_ckpt")
    paths = write_tiny_checkpoints(root, "p", 2)
    return paths["t"], frozen_helpers


@pytest.mark.parametrize("native", [True, False])
def test_cli_prints_the_tip_only_on_native_bf16(native, tiny_ckpt, tmp_path, monkeypatch, capsys):
    from style_transfer import main

    ckpt, helpers = tiny_ckpt
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    monkeypatch.setattr(precision, "native_bf16", lambda *a, **k: native)
    code = main(["--content", str(photo), "--ckpt", str(ckpt), "--backbone", "toonify", "--cpu", "--scale_image",
                 "--style_encoder_path", str(helpers["encoder"]), "--faceparsing_path", str(helpers["faceparsing"]),
                 "--output_path", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0
    tips = [line for line in err.splitlines() if line.startswith("tip:")]
    assert tips == ([precision.speed_tip("cpu", None)] if native else [])


def test_app_fast_toggle_loads_a_bfloat16_pipeline(tmp_path, monkeypatch):
    import app
    from pipeline import registry

    made = []

    class FakePipeline:
        def __init__(self, ckpt, **kwargs):
            made.append(kwargs["dtype"])

    monkeypatch.setattr(registry, "VToonifyPipeline", FakePipeline)
    ckpt = tmp_path / "vtoonify_t_x" / "vtoonify.pt"
    ckpt.parent.mkdir()
    for path in (ckpt, tmp_path / "encoder.pt", tmp_path / "faceparsing.pth"):  # checked before a load
        path.touch()
    config = app.AppConfig((app.ModelEntry("T", ckpt),), tmp_path / "encoder.pt", tmp_path / "faceparsing.pth", device="cpu")
    state = app.AppState(config)
    try:
        plain, fast = state.pipeline("T"), state.pipeline("T", fast=True)
        assert plain is not fast and state.pipeline("T", fast=True) is fast  # cached apart
        assert made == [None, precision.FAST_DTYPE] and state.loaded == ["T", "T (fast)"]
    finally:
        state.close()
    shown = app.build_app(config, state)  # the toggle exists; visible only where bf16 is native on this CPU
    toggles = [b for b in shown.blocks.values() if getattr(b, "elem_id", None) == "fast"]
    assert len(toggles) == 1 and toggles[0].visible == precision.fast_mode_available("cpu", None)
