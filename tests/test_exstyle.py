"""Any picture as a VToonify-D exemplar (pipeline/exstyle.py, ``--style_image``, ``python -m pipeline.exstyle add``)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata
from stylize_helpers import N_STYLES


@pytest.fixture(scope="module")
def pipe(ckpt):
    from pipeline.stylize import VToonifyPipeline

    return VToonifyPipeline(ckpt / "vtoonify_d_test" / "vtoonify_s_d.pt", style_encoder_path=ckpt / "encoder.pt",
                            faceparsing_path=ckpt / "faceparsing.pth", device="cpu")


@pytest.fixture(scope="module")
def aligned_astronaut() -> np.ndarray:
    from pipeline.faces import FaceDetector, align_face

    return np.asarray(align_face(skdata.astronaut(), FaceDetector()))


def _png(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _psp_zplus(pipe, aligned: np.ndarray) -> np.ndarray:
    """The reference: the pSp encoder (with latent_avg) applied to the aligned face in [-1, 1]."""
    x = torch.from_numpy(aligned.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        return pipe.pspencoder(x).numpy()


class TinyEncoder(torch.nn.Module):
    """A fast stand-in for the pSp encoder: (B, 3, 256, 256) in [-1, 1] -> (B, 18, 512)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 18 * 512))

    def forward(self, x):
        return self.net(x).view(-1, 18, 512)


def small_dualstylegan():
    """A 256 px DualStyleGAN (14 W+ rows) with narrow layers, for fast refinement."""
    from model.dualstylegan import DualStyleGAN

    torch.manual_seed(3)
    return DualStyleGAN(256, 512, 8, channel_multiplier=1, channel_max=32).eval().requires_grad_(False)


class TinyPerceptual(torch.nn.Module):
    """A fast stand-in for LPIPS: L1 distance of the features of a fixed random conv net, shape (B, 1, 1, 1)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, 4), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(8, 8, 4, 4))
        self.requires_grad_(False)

    def forward(self, a, b):
        return (self.net(a) - self.net(b)).abs().mean((1, 2, 3), keepdim=True)


def _perceptual():
    return TinyPerceptual()


def test_code_is_psp_zplus_of_aligned_exemplar(pipe, aligned_astronaut, tmp_path):
    expected = _psp_zplus(pipe, aligned_astronaut)
    code = pipe.exemplar_code(skdata.astronaut(), cache_dir=False, progress=False)
    assert code.dtype == np.float32 and code.shape == (1, 18, 512)
    np.testing.assert_allclose(code, expected, rtol=0, atol=1e-5 * max(1.0, np.abs(expected).max()))
    # an already-aligned exemplar (here at 1024 px, as DualStyleGAN's style images are) skips dlib
    big = cv2.resize(aligned_astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    code_big = pipe.exemplar_code(big, aligned=True, cache_dir=False, progress=False)
    assert np.abs(code_big - expected).mean() < 0.1 * np.abs(expected - expected.mean()).mean()


def test_style_image_drives_the_pipeline_like_a_bank_entry(pipe, ckpt, tmp_path, monkeypatch):
    """stylize_image(style_image=...) hands VToonify the W+ code a model gets from its bank entry at --style_id
    (rows 0-6 from the exemplar, the rest from the content; all 18 with colour transfer)."""
    from pipeline.styles import load_exstyle_codes

    code = np.random.default_rng(5).standard_normal((1, 18, 512)).astype(np.float32)  # any Z+ code
    monkeypatch.setattr(pipe, "_pspencoder", TinyEncoder())  # the content's code: a fast stand-in
    seen = []
    monkeypatch.setattr(pipe, "stylize_frames", lambda frames, style, *a, **k: seen.append(style.clone()) or [frames[0]])
    content = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    for color_transfer in (False, True):
        pipe.stylize_image(content, style_image=code, color_transfer=color_transfer)
        pipe.stylize_image(content, style_id=0, color_transfer=color_transfer)
        saved = dict(pipe.exstyles)
        try:
            pipe.exstyles["mine.png"] = code
            pipe.stylize_image(content, style_id=N_STYLES, color_transfer=color_transfer)
        finally:
            pipe.exstyles.clear()
            pipe.exstyles.update(saved)
    mine, bank0, banked, mine_c, bank0_c, banked_c = seen
    torch.testing.assert_close(mine, banked, rtol=0, atol=0)
    torch.testing.assert_close(mine_c, banked_c, rtol=0, atol=0)
    wplus = pipe.vtoonify.zplus2wplus(torch.from_numpy(code))
    torch.testing.assert_close(mine_c, wplus, rtol=0, atol=1e-6)
    torch.testing.assert_close(mine[:, :7], wplus[:, :7], rtol=0, atol=1e-6)
    torch.testing.assert_close(mine[:, 7:], bank0[:, 7:], rtol=0, atol=0)  # the content's own colour rows
    assert (mine[:, :7] - bank0[:, :7]).abs().max() > 1e-2
    assert len(load_exstyle_codes(ckpt / "vtoonify_d_test" / "exstyle_code.npy")) == N_STYLES


def test_refinement_lowers_reconstruction_loss(aligned_astronaut):
    from pipeline.exstyle import ExemplarEncoder, _to_tensor, reconstruction_loss

    generator = small_dualstylegan()
    enc = ExemplarEncoder(TinyEncoder(), None, generator, _perceptual, cache_dir=False)
    assert enc.n_latent == 14
    z0 = enc.encode(aligned_astronaut)
    z = torch.from_numpy(enc.code(aligned_astronaut, aligned=True, refine=5, progress=False))
    assert z.shape == (1, 14, 512)
    target = _to_tensor(aligned_astronaut, torch.device("cpu"))
    with torch.no_grad():
        before = reconstruction_loss(generator, enc.perceptual, target, z0, z0).item()
        after = reconstruction_loss(generator, enc.perceptual, target, z0, z).item()
    assert (z - z0).abs().max() > 1e-3
    assert after < 0.98 * before, (before, after)


def test_cache_is_hit_on_the_second_run(aligned_astronaut, tmp_path):
    from pipeline.exstyle import ExemplarEncoder
    from pipeline.faces import FaceDetector

    detector = FaceDetector()
    calls = []
    encoder = TinyEncoder()
    handle = encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        enc = ExemplarEncoder(encoder, detector, cache_dir=tmp_path / "cache")
        first = enc.code(skdata.astronaut())
        assert len(calls) == 1 and enc.cache_hits == 0
        assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
        again = ExemplarEncoder(encoder, detector, cache_dir=tmp_path / "cache")
        second = again.code(skdata.astronaut())
        assert len(calls) == 1 and again.cache_hits == 1  # no pSp run
        np.testing.assert_array_equal(first, second)
        # another picture, or the same one declared aligned, is another entry
        again.code(aligned_astronaut, aligned=True)
        assert len(calls) == 2 and len(list((tmp_path / "cache").glob("*.npy"))) == 2
        assert not list((tmp_path / "cache").glob(".*partial*"))  # no temporary files left
        # other weights are other codes: a changed encoder misses the cache
        with torch.no_grad():
            encoder.net[2].bias.add_(1.0)
        third = ExemplarEncoder(encoder, detector, cache_dir=tmp_path / "cache").code(skdata.astronaut())
        assert len(calls) == 3 and np.abs(third - first).min() > 0.5
    finally:
        handle.remove()


def test_bad_exemplars_give_one_line_errors(pipe, tmp_path, capsys):
    from pipeline.exstyle import ExemplarError

    with pytest.raises(ExemplarError, match="--style_aligned") as no_face:
        pipe.exemplar_code(skdata.chelsea(), cache_dir=False)
    assert "\n" not in str(no_face.value) and "no face" in str(no_face.value)
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    with pytest.raises(ExemplarError, match="not an image") as not_image:
        pipe.exemplar_code(text, cache_dir=False)
    assert "\n" not in str(not_image.value) and "notes.png" in str(not_image.value)
    with pytest.raises(ExemplarError, match="square"):
        pipe.exemplar_code(skdata.chelsea(), aligned=True, cache_dir=False)


def test_style_transfer_cli_reports_a_bad_exemplar_in_one_line(ckpt, tmp_path, capsys):
    from style_transfer import main

    content = _png(tmp_path / "astronaut.png", skdata.astronaut())
    cat = _png(tmp_path / "cat.png", skdata.chelsea())
    rc = main(["--ckpt", str(ckpt / "vtoonify_d_test" / "vtoonify_s_d.pt"), "--style_encoder_path", str(ckpt / "encoder.pt"),
               "--faceparsing_path", str(ckpt / "faceparsing.pth"), "--output_path", str(tmp_path / "out"), "--cpu",
               "--no_progress", "--content", str(content), "--style_image", str(cat)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0 and err.startswith("error: ") and "--style_aligned" in err
    assert not (tmp_path / "out" / "astronaut_vtoonify_d.jpg").exists()


def test_add_writes_a_bank_the_original_loader_reads(pipe, ckpt, aligned_astronaut, tmp_path, capsys):
    from pipeline.exstyle import main

    bank = tmp_path / "exstyle_code.npy"
    bank.write_bytes((ckpt / "vtoonify_d_test" / "exstyle_code.npy").read_bytes())
    a = _png(tmp_path / "a.png", aligned_astronaut)
    b = _png(tmp_path / "b.png", np.ascontiguousarray(aligned_astronaut[:, ::-1]))
    args = ["add", str(a), str(b), "--to", str(bank), "--style_aligned", "--style_encoder_path", str(ckpt / "encoder.pt"),
            "--cache_dir", str(tmp_path / "cache"), "--device", "cpu", "--no_progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"--style_id {N_STYLES}: a.png" in out and f"--style_id {N_STYLES + 1}: b.png" in out
    loaded = np.load(bank, allow_pickle=True).item()  # how the original reads an exstyle file
    assert isinstance(loaded, dict) and list(loaded)[:N_STYLES] == [f"style{i}.jpg" for i in range(N_STYLES)]
    assert list(loaded)[N_STYLES:] == ["a.png", "b.png"]
    for name in ("a.png", "b.png"):
        assert loaded[name].dtype == np.float32 and loaded[name].shape == (1, 18, 512)
    expected = pipe.exemplar_code(aligned_astronaut, aligned=True, cache_dir=False, progress=False)
    np.testing.assert_allclose(loaded["a.png"], expected, rtol=0, atol=1e-5 * max(1.0, np.abs(expected).max()))
    assert np.abs(loaded["a.png"] - loaded["b.png"]).max() > 1e-3
    # adding a name that is already there fails in one line and leaves the bank as it was
    before = bank.read_bytes()
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already has a style named 'a.png'" in err
    assert bank.read_bytes() == before


def test_two_processes_adding_to_one_bank_keep_both_styles(ckpt, aligned_astronaut, tmp_path):
    """Two ``python -m pipeline.exstyle add`` runs into one bank at the same time: both styles are kept, each with the
    id its run printed (before the lock, the later write dropped the other run's style and both printed the same id)."""
    import os
    import re
    import subprocess
    import sys

    bank = tmp_path / "exstyle_code.npy"
    bank.write_bytes((ckpt / "vtoonify_d_test" / "exstyle_code.npy").read_bytes())
    pictures = [_png(tmp_path / "one.png", aligned_astronaut),
                _png(tmp_path / "two.png", np.ascontiguousarray(aligned_astronaut[:, ::-1]))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-m", "pipeline.exstyle", "add", str(p), "--to", str(bank), "--style_aligned",
                              "--style_encoder_path", str(ckpt / "encoder.pt"), "--cache_dir", str(tmp_path / f"cache{i}"),
                              "--device", "cpu", "--no_progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, cwd=Path(__file__).resolve().parents[1]) for i, p in enumerate(pictures)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    printed = {}
    for out, _ in outputs:
        printed.update({name: int(i) for i, name in re.findall(r"--style_id (\d+): (\S+)", out)})
    codes = list(np.load(bank, allow_pickle=True).item())
    assert len(codes) == N_STYLES + 2 and set(codes[N_STYLES:]) == {"one.png", "two.png"}
    assert printed == {"one.png": codes.index("one.png"), "two.png": codes.index("two.png")}
    assert not list(tmp_path.glob("*.partial*"))
