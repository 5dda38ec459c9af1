"""LPIPS (v0.1, VGG16 'net-lin'): parameter layout, weight loading, metric properties and the formula.

No real weights are used: the VGG16 and lin weights are random or fake files written here.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

import model.stylegan.lpips.lpips as lpips_module
from model.checkpoint import CheckpointError, CheckpointMismatchError
from model.stylegan.lpips import LPIPS, PerceptualLoss, VGG16Features, load_lpips_weights, load_vgg16_weights

# VGG16 ("D") configuration, written out independently of the implementation.
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
LIN_CHANNELS = [64, 128, 256, 512, 512]


def expected_vgg_manifest() -> list[tuple[str, tuple[int, ...]]]:
    """torchvision ``vgg16().features`` keys and shapes: conv i -> ``features.<i>``, then ReLU; 'M' -> pool."""
    rows, idx, in_ch = [], 0, 3
    for entry in CFG:
        if entry == "M":
            idx += 1
            continue
        rows.append((f"features.{idx}.weight", (entry, in_ch, 3, 3)))
        rows.append((f"features.{idx}.bias", (entry,)))
        idx += 2
        in_ch = entry
    return rows


def test_expected_manifest_is_torchvision_layout():
    """Sanity check of the hand-written helper against torchvision's known conv indices."""
    conv_idx = sorted({int(k.split(".")[1]) for k, _ in expected_vgg_manifest()})
    assert conv_idx == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def test_vgg16_features_state_dict_manifest():
    m = VGG16Features()
    got = [(k, tuple(v.shape)) for k, v in m.state_dict().items()]
    assert got == expected_vgg_manifest()
    assert len(m.features) == 31  # indices 0..30, like torchvision (final max-pool at 30)
    assert sum(v.numel() for v in m.parameters()) == 14_714_688  # VGG16 conv parameters


def test_lpips_state_dict_manifest():
    m = LPIPS()
    sd = m.state_dict()
    lin = [(k, tuple(v.shape)) for k, v in sd.items() if k.startswith("lin")]
    assert lin == [(f"lin{i}.model.1.weight", (1, c, 1, 1)) for i, c in enumerate(LIN_CHANNELS)]
    net = [(k[len("net."):], tuple(v.shape)) for k, v in sd.items() if k.startswith("net.")]
    assert net == expected_vgg_manifest()
    assert set(sd) == {k for k, _ in lin} | {"net." + k for k, _ in net}
    assert isinstance(m.lin0.model[0], torch.nn.Dropout)
    assert not m.training


def test_vgg16_forward_shapes_and_taps():
    m = VGG16Features()
    x = torch.randn(2, 3, 64, 48)
    outs = m(x)
    assert [tuple(o.shape) for o in outs] == [
        (2, 64, 64, 48), (2, 128, 32, 24), (2, 256, 16, 12), (2, 512, 8, 6), (2, 512, 4, 3)
    ]
    # Each output is the ReLU at torchvision index 3, 8, 15, 22, 29.
    y, ref = x, []
    for i, layer in enumerate(m.features[:30]):
        y = layer(y.clone())
        if i in (3, 8, 15, 22, 29):
            ref.append(y)
    for o, r in zip(outs, ref):
        torch.testing.assert_close(o, r, rtol=0, atol=0)
        assert (o >= 0).all()


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
def fake_torchvision_vgg16(seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """A torchvision-format VGG16 state_dict: real ``features.*`` shapes, small stand-in ``classifier.*``
    tensors (the loader ignores the classifier, whose real tensors would make a ~500 MB file)."""
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict((k, torch.randn(shape, generator=g) * 0.05) for k, shape in expected_vgg_manifest())
    for i in (0, 3, 6):
        sd[f"classifier.{i}.weight"] = torch.randn(4, 3, generator=g)
        sd[f"classifier.{i}.bias"] = torch.randn(4, generator=g)
    return sd


def fake_lin_weights(seed: int = 1) -> OrderedDict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((f"lin{i}.model.1.weight", torch.rand(1, c, 1, 1, generator=g)) for i, c in enumerate(LIN_CHANNELS))


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lpips_weights")
    vgg, lin = fake_torchvision_vgg16(), fake_lin_weights()
    torch.save(vgg, d / "vgg16-397923af.pth")
    torch.save(lin, d / "vgg.pth")
    return d / "vgg16-397923af.pth", d / "vgg.pth", vgg, lin


def test_load_vgg16_file_ignores_classifier(weight_files):
    vgg_path, _, vgg_sd, _ = weight_files
    m = VGG16Features()
    load_vgg16_weights(m, vgg_path)
    for k, v in m.state_dict().items():
        assert torch.equal(v, vgg_sd[k]), k


def test_load_lpips_file(weight_files):
    _, lin_path, _, lin_sd = weight_files
    m = LPIPS()
    load_lpips_weights(m, lin_path)
    for k, v in lin_sd.items():
        assert torch.equal(m.state_dict()[k], v), k


def test_perceptual_loss_loads_paths_and_state_dicts(weight_files):
    vgg_path, lin_path, vgg_sd, lin_sd = weight_files
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no random-weights warning when both are given
        a = PerceptualLoss(vgg_path=vgg_path, lpips_path=lin_path)
        b = PerceptualLoss(model="net-lin", net="vgg", use_gpu=False, vgg_path=vgg_sd, lpips_path=lin_sd)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(sa["model.net.features.28.weight"], vgg_sd["features.28.weight"])
    assert torch.equal(sa["model.lin4.model.1.weight"], lin_sd["lin4.model.1.weight"])


def test_load_vgg16_missing_key_is_named(tmp_path):
    sd = fake_torchvision_vgg16()
    del sd["features.12.weight"]
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError, match=r"features\.12\.weight") as e:
        load_vgg16_weights(VGG16Features(), path)
    assert e.value.missing == ["features.12.weight"]


def test_load_vgg16_unexpected_and_shape_errors():
    sd = fake_torchvision_vgg16()
    sd["features.30.weight"] = torch.zeros(1)  # e.g. a VGG19 / BN variant
    with pytest.raises(CheckpointMismatchError, match=r"features\.30\.weight"):
        load_vgg16_weights(VGG16Features(), sd)
    sd = fake_torchvision_vgg16()
    sd["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    with pytest.raises(CheckpointMismatchError, match=r"features\.0\.weight"):
        load_vgg16_weights(VGG16Features(), sd)


def test_load_lpips_strict_errors():
    sd = fake_lin_weights()
    del sd["lin3.model.1.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"lin3\.model\.1\.weight"):
        load_lpips_weights(LPIPS(), sd)
    sd = fake_lin_weights()
    sd["lin5.model.1.weight"] = torch.zeros(1, 8, 1, 1)
    with pytest.raises(CheckpointMismatchError, match=r"lin5"):
        load_lpips_weights(LPIPS(), sd)
    sd = fake_lin_weights()
    sd["lin0.model.1.weight"] = torch.zeros(1, 32, 1, 1)
    with pytest.raises(CheckpointMismatchError, match=r"lin0\.model\.1\.weight"):
        load_lpips_weights(LPIPS(), sd)


def test_swapped_files_and_missing_file_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="LPIPS linear-layer file"):
        load_vgg16_weights(VGG16Features(), fake_lin_weights())
    with pytest.raises(CheckpointError, match="VGG16 weights file"):
        load_lpips_weights(LPIPS(), fake_torchvision_vgg16())
    with pytest.raises(CheckpointError, match="not found"):
        load_vgg16_weights(VGG16Features(), tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="not found"):
        PerceptualLoss(lpips_path=tmp_path / "nope.pth")


def test_unsupported_variants_rejected():
    with pytest.raises(ValueError, match="net"):
        PerceptualLoss(net="alex")
    with pytest.raises(ValueError, match="model"):
        PerceptualLoss(model="net")


def test_random_weights_warning_once(monkeypatch):
    monkeypatch.setattr(lpips_module, "_warned_random_weights", False)
    with pytest.warns(RuntimeWarning, match="meaningless"):
        PerceptualLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PerceptualLoss()  # second time: silent


# --------------------------------------------------------------------------------------------------
# Behaviour (random weights)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loss() -> PerceptualLoss:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = PerceptualLoss(lpips_path=fake_lin_weights())
    return m


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.rand(2, 3, 64, 64, generator=g) * 2 - 1, torch.rand(2, 3, 64, 64, generator=g) * 2 - 1


def test_metric_properties(loss, images):
    x, y = images
    dxy, dyx, dxx = loss(x, y), loss(y, x), loss(x, x)
    assert dxy.shape == (2, 1, 1, 1)
    assert torch.equal(dxx, torch.zeros_like(dxx))
    assert torch.equal(dxy, dyx)
    assert (dxy > 0).all()
    # A small perturbation is closer than an unrelated image.
    assert (loss(x, (x + 0.05 * torch.randn_like(x)).clamp(-1, 1)) < dxy).all()
    # Batch entries are independent.
    torch.testing.assert_close(loss(x[1:], y[1:]), dxy[1:])


def test_frozen_but_differentiable(loss, images):
    x, y = images
    assert all(not p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.training and not any(m.training for m in loss.modules())
    x = x.clone().requires_grad_(True)
    loss(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())


def test_normalize_flag(loss, images):
    x, y = images
    x01, y01 = (x + 1) / 2, (y + 1) / 2
    torch.testing.assert_close(loss(x01, y01, normalize=True), loss(2 * x01 - 1, 2 * y01 - 1), rtol=0, atol=0)


def test_spatial_map(images):
    x, y = images
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = PerceptualLoss(spatial=True)
    d = m(x, y)
    assert d.shape == (2, 1, 64, 64)
    assert (d >= 0).all() and (d.flatten(1).sum(1) > 0).all()
    assert torch.equal(m(x, x), torch.zeros_like(d))


# --------------------------------------------------------------------------------------------------
# The formula, re-derived independently in float64
# --------------------------------------------------------------------------------------------------
def direct_lpips(sd: dict[str, torch.Tensor], x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 from the raw weights: VGG16 run from CFG with F.conv2d, taps after the last conv of each block."""
    # The module stores the constants as float32 buffers (then cast by .double()): round them the same way.
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float32).double().view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float32).double().view(1, 3, 1, 1)

    def feats(x: torch.Tensor) -> list[torch.Tensor]:
        h, out, idx = (x - shift) / scale, [], 0
        for j, entry in enumerate(CFG):
            if entry == "M":
                if j == len(CFG) - 1:
                    break
                h = F.max_pool2d(h, 2)
                idx += 1
                continue
            h = F.relu(F.conv2d(h, sd[f"net.features.{idx}.weight"], sd[f"net.features.{idx}.bias"], padding=1))
            idx += 2
            if CFG[j + 1] == "M":
                out.append(h)
        return out

    total = torch.zeros(x0.shape[0], dtype=torch.float64)
    for layer, (a, b) in enumerate(zip(feats(x0), feats(x1))):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        w = sd[f"lin{layer}.model.1.weight"].view(1, -1, 1, 1)
        total += ((a - b) ** 2 * w).sum(1).mean(dim=(1, 2))
    return total.view(-1, 1, 1, 1)


def test_formula_matches_direct_computation(images):
    torch.manual_seed(5)
    m = LPIPS()
    load_lpips_weights(m, fake_lin_weights(seed=7))
    m = m.double()
    x, y = (t.double() for t in images)
    sd = {k: v.detach() for k, v in m.state_dict().items()}
    got, per_layer = m(x, y, ret_per_layer=True)
    assert len(per_layer) == 5
    torch.testing.assert_close(got, direct_lpips(sd, x, y), rtol=1e-12, atol=1e-14)
