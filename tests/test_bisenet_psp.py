"""Tests of the two frozen helper networks: the BiSeNet face parser and the pSp style encoder.

* state_dict manifests (key, shape, dtype, param/buffer) equal those of the official classes;
* golden parity: filled with the deterministic fill rule, both networks reproduce the reference outputs
  computed with the official code (``tests/data/golden``);
* BiSeNet handles sizes that are not multiples of 32; the pSp encoder rejects non-256 inputs clearly;
* ``load_psp_standalone`` round trip (dict and Namespace opts) and its error messages.
"""
from __future__ import annotations

import argparse
import ast
import csv
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_golden
from model.bisenet.model import BiSeNet
from model.checkpoint import CheckpointError, CheckpointMismatchError
from model.encoder.encoders.psp_encoders import GradualStyleEncoder
from model.encoder.psp import load_psp_standalone
from model.fill import fill_module, fill_tensor

DATA = Path(__file__).parent / "data"
KEYS = DATA / "keys"
GOLDEN = DATA / "golden"


# ----------------------------------------------------------------------------------------------- helpers
def read_manifest(name: str) -> list[tuple[str, tuple[int, ...], str, str]]:
    with open(KEYS / name, newline="") as f:
        return [
            (r["name"], tuple(ast.literal_eval(r["shape"])), r["dtype"], r["kind"])
            for r in csv.DictReader(f, delimiter="\t")
        ]


def manifest_of(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...], str, str]]:
    params = {name for name, _ in module.named_parameters()}
    return [
        (k, tuple(v.shape), str(v.dtype).removeprefix("torch."), "param" if k in params else "buffer")
        for k, v in module.state_dict().items()
    ]


def param_count(model: str) -> int:
    entries = json.loads((KEYS / "param_counts.json").read_text())
    return next(e["params"] for e in entries if e["model"] == model)


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    with np.load(GOLDEN / "golden_models.npz") as npz:
        return {k: torch.from_numpy(npz[k]) for k in npz.files if k.startswith(("psp/", "bisenet/"))}


# ----------------------------------------------------------------------------------------------- BiSeNet
@pytest.fixture(scope="module")
def bisenet() -> BiSeNet:
    return fill_module(BiSeNet(n_classes=19), GOLDEN / "fill_bisenet.tsv").eval()


def test_bisenet_manifest() -> None:
    net = BiSeNet(n_classes=19)
    assert manifest_of(net) == read_manifest("keys_bisenet_19.tsv")
    assert sum(p.numel() for p in net.parameters()) == param_count("bisenet_19")


def test_bisenet_constructor_downloads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("BiSeNet() tried to download something")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    BiSeNet(n_classes=19)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_bisenet_golden(bisenet: BiSeNet, golden: dict[str, torch.Tensor], index: int) -> None:
    with torch.no_grad():
        outs = bisenet(golden["bisenet/in.x"])
    assert len(outs) == 3
    assert_golden(outs[index], golden[f"bisenet/out.{index}"], f"bisenet out.{index}")


@pytest.mark.parametrize("size", [(96, 160), (72, 100), (33, 47)])
def test_bisenet_any_size(bisenet: BiSeNet, size: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outs = bisenet(x)
    assert len(outs) == 3
    for o in outs:
        assert o.shape == (2, 19, *size)
        assert torch.isfinite(o).all()
    # batch elements are processed independently (eval mode)
    with torch.no_grad():
        single = bisenet(x[1:])[0]
    torch.testing.assert_close(single, outs[0][1:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size,every", [((96, 160), 2), ((72, 100), 1), ((33, 47), 2), ((64, 64), 4), ((40, 8), 3)])
def test_bisenet_parse_logits_is_the_decimated_main_output(bisenet: BiSeNet, size: tuple[int, int], every: int) -> None:
    # What the pipeline uses: the main head only, computed at the kept pixels of the nearest decimation.
    import torch.nn.functional as F

    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = bisenet(x)[0][:, :, ::every, ::every]
        out = bisenet.parse_logits(x, every=every)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-6 * max(1.0, ref.abs().max().item()))
    if size[0] % every == 0 and size[1] % every == 0:  # what F.interpolate(scale_factor=1/every) keeps
        torch.testing.assert_close(ref, F.interpolate(bisenet(x)[0], scale_factor=1 / every).detach())
    with pytest.raises(ValueError, match="every"):
        bisenet.parse_logits(x, every=0)


def test_bisenet_rejects_wrong_channels(bisenet: BiSeNet) -> None:
    with pytest.raises(ValueError, match="3, H, W"):
        bisenet(torch.zeros(1, 4, 64, 64))


# ----------------------------------------------------------------------------------------------- pSp


@pytest.fixture(scope="module")
def psp(golden: dict[str, torch.Tensor]) -> tuple[torch.nn.Module, torch.Tensor]:
    """The fill-rule pSp encoder and its output on the golden input (computed once: ~267M parameters)."""
    enc = fill_module(GradualStyleEncoder(50, "ir_se"), GOLDEN / "fill_psp_encoder.tsv").eval()
    with torch.no_grad():
        codes = enc(golden["psp/in.x"])
    return enc, codes


def test_psp_manifest() -> None:
    with torch.device("meta"):  # shapes only, no 1 GiB allocation
        enc = GradualStyleEncoder(50, "ir_se", {"input_nc": 3, "n_styles": 18})
    assert manifest_of(enc) == read_manifest("keys_psp_gradual_style_encoder.tsv")
    assert sum(p.numel() for p in enc.parameters()) == param_count("psp_gradual_style_encoder")


def test_psp_options() -> None:
    with torch.device("meta"):
        ns = GradualStyleEncoder(50, "ir_se", argparse.Namespace(input_nc=4, n_styles=10))
        ir = GradualStyleEncoder(50, "ir")
        default = GradualStyleEncoder()
        with pytest.raises(ValueError, match="num_layers"):
            GradualStyleEncoder(100, "ir_se")
        with pytest.raises(ValueError, match="mode"):
            GradualStyleEncoder(50, "se")
    assert ns.input_layer[0].weight.shape[1] == 4 and len(ns.styles) == 10
    assert len(default.styles) == 18 and default.input_layer[0].weight.shape[1] == 3
    assert not any(".res_layer.5." in k for k in ir.state_dict())  # no SE modules in 'ir' mode
    assert len(ir.body) == len(default.body) == 24


def test_psp_golden(psp, golden: dict[str, torch.Tensor]) -> None:
    _, codes = psp
    assert codes.shape == (1, 18, 512)
    assert_golden(codes, golden["psp/out.codes_without_latent_avg"], "pSp codes")


@pytest.mark.parametrize("shape", [(1, 3, 128, 128), (1, 3, 256, 320), (1, 1, 256, 256), (3, 256, 256)])
def test_psp_rejects_bad_input(psp, shape: tuple[int, ...]) -> None:
    enc, _ = psp
    with pytest.raises(ValueError, match="256"):
        enc(torch.zeros(shape))


def _latent_avg(n_styles: int) -> torch.Tensor:
    return fill_tensor("latent_avg", (n_styles, 512), "normal", 0.0, 1.0)


def test_load_psp_standalone_round_trip(psp, golden: dict[str, torch.Tensor], tmp_path: Path) -> None:
    enc, codes = psp
    path = tmp_path / "encoder.pt"
    state = {"encoder." + k: v for k, v in enc.state_dict().items()}
    state["decoder.dummy"] = torch.ones(3)  # decoder entries are ignored
    torch.save({"opts": {"input_nc": 3, "output_size": 1024}, "state_dict": state, "latent_avg": _latent_avg(18)}, path)
    del state

    loaded = load_psp_standalone(path, device="cpu")
    assert not loaded.training
    assert "latent_avg" not in loaded.state_dict()  # state_dict stays the official manifest
    assert isinstance(loaded, GradualStyleEncoder) and not loaded._forward_hooks  # latent_avg is added in forward
    with torch.no_grad():
        out = loaded(golden["psp/in.x"])
    assert out.shape == (1, 18, 512)
    torch.testing.assert_close(out, codes + _latent_avg(18), rtol=0, atol=1e-6)


def test_load_psp_standalone_namespace_opts(psp, tmp_path: Path) -> None:
    """Namespace opts load; n_styles follows output_size (8 -> 4 rows: 3 coarse + 1 middle)."""
    enc, codes = psp
    keep = ("input_layer.", "body.", "latlayer", "styles.0.", "styles.1.", "styles.2.", "styles.3.")
    state = {"encoder." + k: v for k, v in enc.state_dict().items() if k.startswith(keep)}
    path = tmp_path / "encoder_ns.pt"
    opts = argparse.Namespace(input_nc=3, output_size=8, start_from_latent_avg=True)
    torch.save({"opts": opts, "state_dict": state, "latent_avg": _latent_avg(4)}, path)
    del state

    loaded = load_psp_standalone(str(path))
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(7)).clamp(-1, 1)
    with torch.no_grad():
        out = loaded(x)
        ref = enc(x)[:, :4] + _latent_avg(4)
    assert out.shape == (2, 4, 512)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "ckpt, message",
    [
        ({"opts": {"input_nc": 3}, "state_dict": {"encoder.a": torch.zeros(1)}}, "latent_avg"),
        ({"opts": {"input_nc": 3}, "latent_avg": torch.zeros(18, 512)}, "state_dict"),
        ({"state_dict": {"encoder.a": torch.zeros(1)}, "latent_avg": torch.zeros(18, 512)}, "opts"),
        ({"opts": {"output_size": 1024}, "state_dict": {}, "latent_avg": torch.zeros(18, 512)}, "input_nc"),
        ({"opts": {"input_nc": 3}, "state_dict": {"encoder.a": torch.zeros(1)}, "latent_avg": torch.zeros(7, 512)},
         "latent_avg"),
    ],
)
def test_load_psp_standalone_bad_file(tmp_path: Path, ckpt: dict, message: str) -> None:
    path = tmp_path / "bad.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=message):
        load_psp_standalone(path)


def test_load_psp_standalone_key_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "partial.pt"
    state = {"encoder.input_layer.0.weight": torch.zeros(64, 3, 3, 3), "encoder.bogus": torch.zeros(1)}
    torch.save({"opts": {"input_nc": 3}, "state_dict": state, "latent_avg": torch.zeros(18, 512)}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_psp_standalone(path)
    assert "bogus" in info.value.unexpected
    assert "latlayer1.weight" in info.value.missing
