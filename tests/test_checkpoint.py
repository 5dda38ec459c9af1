"""Checkpoint loading: strict, safe, config inferred from keys, readable errors for common mistakes."""
from __future__ import annotations

import argparse
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from model.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    detect_checkpoint_kind,
    extract_state_dict,
    infer_backbone,
    load_dualstylegan,
    load_state_dict_strict,
    load_stylegan2,
    load_vtoonify,
    safe_load,
)
from model.dualstylegan import DualStyleGAN
from model.fill import fill_module
from model.stylegan.model import Generator
from model.vtoonify import VToonify


def tiny(backbone: str) -> VToonify:
    return fill_module(VToonify(backbone=backbone, style_channels=32, channel_multiplier=1, channel_max=32)).eval()


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    return {bb: tiny(bb) for bb in ("dualstylegan", "toonify")}


def _same_output(a: VToonify, b: VToonify):
    x, s = torch.randn(1, 22, 16, 24), torch.randn(1, 18, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(x, s, d_s=0.3), b(x, s, d_s=0.3), rtol=0, atol=0)


@pytest.mark.parametrize("backbone", ["dualstylegan", "toonify"])
@pytest.mark.parametrize("wrap", ["g_ema", "bare"])
def test_load_vtoonify_round_trip(tmp_path, tiny_models, backbone, wrap):
    model = tiny_models[backbone]
    sd = model.state_dict()
    path = tmp_path / "vtoonify.pt"
    torch.save({"g_ema": sd} if wrap == "g_ema" else sd, path)
    loaded = load_vtoonify(path)  # backbone and sizes inferred from the keys
    assert loaded.backbone == backbone and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    assert loaded.state_dict().keys() == sd.keys()
    _same_output(model, loaded)


def test_wrong_backbone_is_named(tmp_path, tiny_models):
    path = tmp_path / "vtoonify_t.pt"
    torch.save({"g_ema": tiny_models["toonify"].state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"VToonify-T checkpoint.*--backbone toonify"):
        load_vtoonify(path, backbone="dualstylegan")
    # Strict loading into the wrong model lists keys and says what the file is.
    with pytest.raises(CheckpointMismatchError) as err:
        load_state_dict_strict(tiny("dualstylegan"), tiny_models["toonify"].state_dict(),
                               expected_kind="vtoonify_dualstylegan")
    msg = str(err.value)
    assert "VToonify-T checkpoint" in msg and "missing keys" in msg and "generator.generator." in msg
    assert err.value.missing and err.value.unexpected


def test_pretrain_file_is_recognised(tmp_path, tiny_models):
    path = tmp_path / "pretrain.pt"
    torch.save({"g_ema": tiny_models["dualstylegan"].encoder.state_dict()}, path)
    assert detect_checkpoint_kind(extract_state_dict(safe_load(path))[0]) == "vtoonify_encoder"
    with pytest.raises(CheckpointError, match="pretrain.pt from training stage 1"):
        load_vtoonify(path)


def test_shape_mismatch_is_reported(tiny_models):
    sd = OrderedDict(tiny_models["toonify"].state_dict())
    sd["encoder.5.bias"] = torch.zeros(4)
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatches \(1\): encoder.5.bias"):
        load_state_dict_strict(tiny("toonify"), sd)


def test_ddp_prefix_is_stripped(tmp_path, tiny_models):
    sd = {"module." + k: v for k, v in tiny_models["toonify"].state_dict().items()}
    out, remaps = extract_state_dict({"g_ema": sd})
    assert remaps == ["took checkpoint['g_ema']", "stripped DistributedDataParallel prefix 'module.'"]
    assert infer_backbone(out) == "toonify"


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_safe_load_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {"w": torch.zeros(1)}, "payload": _Evil(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        safe_load(path)
    assert not marker.exists()


def _mapped_files() -> str:
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux)")
    return maps.read_text()


def test_safe_load_mmap_maps_the_file_until_its_tensors_are_freed(tmp_path):
    import gc

    path = tmp_path / "weights.pt"
    torch.save({"w": torch.arange(4096.0)}, path)
    sd = safe_load(path, mmap=True)
    assert str(path) in _mapped_files() and torch.equal(sd["w"], torch.arange(4096.0))
    del sd
    gc.collect()
    assert str(path) not in _mapped_files()
    assert str(path) not in (safe_load(path), _mapped_files())[1]  # without mmap the bytes are read
    legacy = tmp_path / "legacy.pt"  # the pre-1.6 format cannot be mapped: it is read as usual
    torch.save({"w": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(safe_load(legacy, mmap=True)["w"], torch.ones(3)) and str(legacy) not in _mapped_files()


def test_safe_load_allows_plain_option_objects(tmp_path):
    path = tmp_path / "enc.pt"
    torch.save({"opts": argparse.Namespace(input_nc=3), "latent_avg": torch.zeros(18, 512)}, path)
    assert safe_load(path)["opts"].input_nc == 3


def test_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        safe_load(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        safe_load(bad)
    torch.save([1, 2, 3], bad)
    with pytest.raises(CheckpointError, match="expected a dict"):
        extract_state_dict(safe_load(bad))


def test_teachers_load_with_inferred_architecture(tmp_path):
    gen = fill_module(Generator(64, 32, 3, channel_multiplier=1, channel_max=32)).eval()
    torch.save({"g_ema": gen.state_dict(), "latent_avg": torch.zeros(32)}, tmp_path / "ffhq.pt")
    loaded = load_stylegan2(tmp_path / "ffhq.pt")
    assert (loaded.size, loaded.style_dim, len(loaded.style) - 1) == (64, 32, 3)
    z = torch.randn(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded([z], randomize_noise=False)[0], gen([z], randomize_noise=False)[0])

    dsg = fill_module(DualStyleGAN(256, 32, 8, 1, channel_max=32)).eval()
    torch.save({"g_ema": dsg.state_dict()}, tmp_path / "generator.pt")
    loaded = load_dualstylegan(tmp_path / "generator.pt")
    assert loaded.res_index == 6 and loaded.generator.size == 256
    with pytest.raises(CheckpointError, match="StyleGAN2 generator"):
        load_dualstylegan(tmp_path / "ffhq.pt")


@pytest.mark.parametrize("tag,backbone", [("D", "dualstylegan"), ("T", "toonify")])
def test_released_format_file_gives_golden_output(tmp_path, tag, backbone):
    """A full-size file in the released format ({'g_ema': state_dict}) loads unchanged and reproduces
    the original implementation's output."""
    from conftest import GOLDEN, assert_golden, golden_case

    src = fill_module(VToonify(backbone=backbone), GOLDEN / f"fill_vtoonify_{backbone}.tsv")
    path = tmp_path / "vtoonify.pt"
    torch.save({"g_ema": src.state_dict()}, path)
    del src
    model = load_vtoonify(path, backbone=backbone)
    g = golden_case("models", f"vtoonify_{tag}")
    with torch.no_grad():
        assert_golden(model(g["in.x"], g["in.style"], d_s=0.5), g["out.image_ds0.5"], f"VToonify-{tag} from file")


# --------------------------------------------------------------------------------------------------
# Exemplar style codes: a restricted unpickler, never np.load(allow_pickle=True)
# --------------------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this runs ``exec`` (what a crafted exstyle_code.npy could do): it writes a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


@pytest.mark.parametrize("where", ["top", "value", "nested"])
def test_exstyle_file_with_a_code_payload_is_refused(tmp_path, where):
    import numpy as np

    from pipeline.styles import StyleCodeError, load_exstyle_codes

    marker = tmp_path / "marker"
    code = np.zeros((1, 18, 512), np.float32)
    obj = {"top": _Payload(marker), "value": {"a.jpg": code, "b.jpg": _Payload(marker)},
           "nested": {"a.jpg": [code, {"x": _Payload(marker)}]}}[where]
    path = tmp_path / "exstyle_code.npy"
    np.save(path, np.array(obj, dtype=object), allow_pickle=True)
    assert not marker.exists()
    with pytest.raises(StyleCodeError, match="forbidden object builtins.exec"):
        load_exstyle_codes(path)
    assert not marker.exists()  # the payload never ran
    # the same file through numpy's own unpickler does run it: the payload is real
    np.load(path, allow_pickle=True)
    assert marker.read_text() == "pwned"


def test_exstyle_file_round_trip(tmp_path):
    import numpy as np

    from pipeline.styles import load_exstyle_codes, save_exstyle_codes

    codes = {f"s{i}.jpg": np.full((1, 18, 512), i, np.float32) for i in (3, 1, 2)}
    save_exstyle_codes(tmp_path / "c.npy", codes)
    loaded = load_exstyle_codes(tmp_path / "c.npy")
    assert list(loaded) == ["s3.jpg", "s1.jpg", "s2.jpg"]  # insertion order = style id
    assert all(np.array_equal(loaded[k], codes[k]) for k in codes)
