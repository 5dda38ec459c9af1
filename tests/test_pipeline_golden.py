"""The whole per-image recipe against the original implementation, stage by stage, on two photos.

Each case is one photo run through the original ``style_transfer.py`` (``--scale_image --style_id 5``, defaults
otherwise) with released-size checkpoints whose weights follow the fill rule of ``model/fill.py``, its stages
recorded (see ``tests/data/pipeline_golden.md`` and ``tests/data/pipeline_golden/README.md``). The checkpoints are
rebuilt here from key names alone.

* ``astronaut``: the top 320 rows of scikit-image's astronaut (public domain): photo, crop, stages and final image
  are in ``tests/data/pipeline_golden/``, so every stage is tested in every clone.
* ``077436``: ``077436.jpg`` from the original repository's samples, under a non-commercial licence and not part
  of this repository: its stages and final image are in ``tests/data/pipeline_golden.npz`` / ``..._vtoonify_d.png``,
  but the stages that need the photo read it from ``../shared/samples`` (its crop from ``../shared/golden/pipeline``)
  and skip where those folders are absent. Its stages that start from stored codes run everywhere.

On the full 512x512 astronaut the original fails (it keeps dlib's last box, the mission patch on the suit); this
project takes the largest face (``test_full_astronaut_uses_the_face_not_the_patch``).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DATA, GOLDEN, assert_golden, read_image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ASTRONAUT = DATA / "pipeline_golden"
STYLE_ID = 5
FULL_PAD = (96, 96, 96, 96)
N_EXSTYLES = 40


@dataclass(frozen=True)
class Case:
    npz: Path  # the stages (landmarks, crop, codes, logits, output before clamp)
    photo: Path  # the input photo
    crop: Path  # the rescaled crop the original fed to VToonify (lossless)
    final: Path  # the original's result (lossless, as OpenCV writes it)
    boxes: tuple | None = None  # dlib's ((box, score) on the photo, (box, score) on the crop), where recorded


CASES = {
    "077436": Case(DATA / "pipeline_golden.npz", SHARED / "samples" / "077436.jpg",
                   SHARED / "golden" / "pipeline" / "case1_077436_input.png", DATA / "pipeline_golden_vtoonify_d.png"),
    "astronaut": Case(ASTRONAUT / "case2_intermediates.npz", ASTRONAUT / "case2_astronaut.png",
                      ASTRONAUT / "case2_astronaut_input.png", ASTRONAUT / "case2_astronaut_vtoonify_d.png",
                      boxes=(((175, 76, 265, 166), 1.161), ((139, 125, 268, 254), 1.493))),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request) -> Case:
    return CASES[request.param]


@pytest.fixture(scope="module")
def ref(case) -> dict[str, np.ndarray]:
    with np.load(case.npz) as f:
        return {k: f[k] for k in f.files}


def _seeded(shape, name: str) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(zlib.crc32(name.encode())))


@pytest.fixture(scope="module")
def golden_ckpt(tmp_path_factory, frozen_helpers) -> dict[str, Path]:
    """The checkpoints the golden runs used, in the released layout, rebuilt from the fill tables (the pSp weights
    are the session's ``frozen_helpers`` encoder, filled from the same table, saved with the golden run's opts and
    latent_avg)."""
    from model.bisenet.model import BiSeNet
    from model.fill import fill_module
    from model.vtoonify import VToonify
    from pipeline.styles import save_exstyle_codes

    root = tmp_path_factory.mktemp("pipeline_golden")
    paths = {"ckpt": root / "vtoonify_d" / "vtoonify_s_d.pt", "encoder": root / "encoder.pt",
             "faceparsing": root / "faceparsing.pth"}
    paths["ckpt"].parent.mkdir()
    model = fill_module(VToonify(backbone="dualstylegan"), GOLDEN / "fill_vtoonify_dualstylegan.tsv")
    torch.save({"g_ema": model.state_dict()}, paths["ckpt"])
    del model
    names = [f"style_{i:03d}.jpg" for i in range(N_EXSTYLES)]
    save_exstyle_codes(paths["ckpt"].parent / "exstyle_code.npy", {n: _seeded((1, 18, 512), n).numpy() for n in names})
    encoder_sd = torch.load(frozen_helpers["encoder"], map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    opts = {"encoder_type": "GradualStyleEncoder", "input_nc": 3, "label_nc": 0, "output_size": 1024, "n_styles": 18,
            "start_from_latent_avg": True, "learn_in_w": False, "dataset_type": "ffhq_encode"}
    torch.save({"opts": opts, "state_dict": encoder_sd, "latent_avg": _seeded((18, 512), "latent_avg")}, paths["encoder"])
    del encoder_sd
    torch.save(fill_module(BiSeNet(19), GOLDEN / "fill_bisenet.tsv").state_dict(), paths["faceparsing"])
    return paths


@pytest.fixture(scope="module")
def pipe(golden_ckpt):
    from pipeline.stylize import VToonifyPipeline

    return VToonifyPipeline(golden_ckpt["ckpt"], style_encoder_path=golden_ckpt["encoder"],
                            faceparsing_path=golden_ckpt["faceparsing"], device="cpu")


def assert_within_float16_step(got: torch.Tensor | np.ndarray, stored: np.ndarray, what: str) -> float:
    """``got`` against the original's values stored in float16: within one float16 step of the stored value (its
    rounding takes up to half a step, ~1e-3 relative) plus 1e-5 for float noise where the values are near zero
    (the original's own re-runs differ by < 2e-6). Returns the largest excess over one step."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == stored.shape, f"{what}: shape {got.shape} != reference {stored.shape}"
    step = np.spacing(np.abs(stored)).astype(np.float64)
    excess = float((np.abs(got - stored.astype(np.float64)) - step).max())
    assert excess <= 1e-5, f"{what}: {excess:.3g} beyond one float16 step (max|diff| " \
                           f"{np.abs(got - stored.astype(np.float64)).max():.3g})"
    return excess


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


# ------------------------------------------------------------------------- stages that need no photo
def test_exemplar_w_plus(pipe, ref):
    """style_005.jpg's Z+ code through the mapping network (the exemplar's W+)."""
    assert list(pipe.exstyles)[STYLE_ID] == f"style_{STYLE_ID:03d}.jpg"
    assert_golden(pipe.exstyle(STYLE_ID), ref["zplus2wplus_call0"], "exemplar W+")


def test_content_w_plus(pipe, ref):
    with torch.inference_mode():
        w = pipe.vtoonify.zplus2wplus(torch.from_numpy(ref["psp_zplus_with_latent_avg"]))
    assert_golden(w, ref["zplus2wplus_call1"], "content W+")


class _StoredCode(torch.nn.Module):
    """Stands in for the pSp encoder: returns the golden Z+ code whatever face it is given."""

    def __init__(self, code: np.ndarray):
        super().__init__()
        self.code = torch.from_numpy(code)

    def forward(self, x):
        return self.code.expand(x.shape[0], -1, -1)


def test_style_code_mixes_exemplar_structure_with_content_colour(pipe, ref, monkeypatch):
    """The code VToonify-D is driven with: exemplar rows 0-6, content rows 7-17 (here the content code is the
    golden pSp output, so any face that aligns will do)."""
    from skimage import data as skdata

    monkeypatch.setattr(pipe, "_pspencoder", _StoredCode(ref["psp_zplus_with_latent_avg"]))
    code = pipe.style_code(skdata.astronaut(), STYLE_ID)
    assert_golden(code, ref["vtoonify_style"], "style code")
    # with colour transfer the exemplar's code is used as it is
    assert_golden(pipe.style_code(skdata.astronaut(), STYLE_ID, color_transfer=True), ref["zplus2wplus_call0"],
                  "style code, colour transfer")


def test_astronaut_case_is_scikit_images_photo():
    """The committed photo is the top 320 rows of ``skimage.data.astronaut()`` (public domain), as written."""
    from skimage import data as skdata

    np.testing.assert_array_equal(read_image(CASES["astronaut"].photo)[:, :, ::-1], skdata.astronaut()[:320])


# ------------------------------------------------------------------------------- the photo, end to end
@pytest.fixture(scope="module")
def photo_run(pipe, case):
    """One ``stylize_image`` call on the case's photo, recording what each network was given and returned."""
    import cv2

    if not (case.photo.is_file() and case.crop.is_file()):
        pytest.skip(f"needs the photo {case.photo} and its crop {case.crop} (non-commercial licence: not in the "
                    "repository)")
    rgb = cv2.cvtColor(read_image(case.photo), cv2.COLOR_BGR2RGB)  # as the original's style_transfer.py reads it
    seen: dict[str, object] = {"wplus": []}
    encoder, vtoonify = pipe.pspencoder, pipe.vtoonify

    def psp_in(module, args):
        seen["psp_input"] = args[0].detach().clone()

    def psp_out(module, args, output):
        seen["zplus"] = output.detach().clone()

    def vt_in(module, args, kwargs):
        seen["vt_input"], seen["vt_style"] = args[0].detach().clone(), args[1].detach().clone()
        seen["vt_d_s"] = kwargs.get("d_s", args[2] if len(args) > 2 else None)

    def vt_out(module, args, kwargs, output):
        seen["preclamp"] = output.detach().clone()  # the pipeline clamps in place afterwards

    mapping = vtoonify.zplus2wplus

    def recording_mapping(zplus):
        w = mapping(zplus)
        seen["wplus"].append((zplus.detach().clone(), w.detach().clone()))
        return w

    handles = [encoder.register_forward_pre_hook(psp_in), encoder.register_forward_hook(psp_out),
               vtoonify.register_forward_pre_hook(vt_in, with_kwargs=True),
               vtoonify.register_forward_hook(vt_out, with_kwargs=True)]
    vtoonify.zplus2wplus = recording_mapping
    try:
        result = pipe.stylize_image(rgb, style_id=STYLE_ID, style_degree=0.5, scale_image=True)
    finally:
        for h in handles:
            h.remove()
        del vtoonify.zplus2wplus
    seen.update(result=result, rgb=rgb, faces=pipe.detector.detect(rgb))
    return seen


def test_landmarks_and_crop_box(photo_run, pipe, case, ref):
    from pipeline.faces import select_face

    rgb = photo_run["rgb"]
    assert rgb.shape == tuple(ref["landmarks_call0_image_shape"])
    face = select_face(photo_run["faces"])
    np.testing.assert_array_equal(face.landmarks, ref["landmarks_call0"])
    crop = photo_run["result"].crop
    assert crop.as_tuple()[:6] == tuple(int(v) for v in ref["crop_h_w_top_bottom_left_right"])
    assert crop.scale == pytest.approx(float(ref["crop_scale"]), rel=1e-12)
    # the rescaled crop itself, pixel for pixel
    inp = photo_run["result"].input
    np.testing.assert_array_equal(inp, read_image(case.crop)[:, :, ::-1])
    # landmarks found again in the crop (they drive the FFHQ alignment for the style encoder)
    assert inp.shape == tuple(ref["landmarks_call1_image_shape"])
    faces_in_crop = pipe.detector.detect(inp)
    np.testing.assert_array_equal(select_face(faces_in_crop).landmarks, ref["landmarks_call1"])
    if case.boxes is not None:  # dlib's boxes, as the original found them (one face on the photo, one on the crop)
        for faces, (box, score) in zip((photo_run["faces"], faces_in_crop), case.boxes):
            assert [f.box for f in faces] == [box]
            assert faces[0].score == pytest.approx(score, abs=5e-4)


def test_style_encoder_input_and_zplus(photo_run, ref):
    x = photo_run["psp_input"].double()
    assert tuple(x.shape) == (1, 3, 256, 256)
    aligned = (x * 0.5 + 0.5) * 255  # the aligned uint8 face, back from the [-1, 1] tensor
    assert (aligned - aligned.round()).abs().max() < 1e-4
    # population std's, as stored
    np.testing.assert_allclose([aligned.mean().item(), aligned.std(correction=0).item()],
                               ref["aligned_face_256_rgb_uint8_mean_std"], rtol=1e-6)
    np.testing.assert_allclose([x.mean().item(), x.std(correction=0).item()], ref["psp_input_mean_std"], rtol=1e-6)
    assert_golden(photo_run["zplus"], ref["psp_zplus_with_latent_avg"], "pSp Z+")


def test_w_plus_codes_and_the_style_code_fed_to_vtoonify(photo_run, ref):
    by_input = {}
    for zplus, w in photo_run["wplus"]:
        kind = "content" if torch.allclose(zplus, photo_run["zplus"]) else "exemplar"
        by_input[kind] = w
    assert set(by_input) == {"content", "exemplar"}
    assert_golden(by_input["exemplar"], ref["zplus2wplus_call0"], "exemplar W+")
    assert_golden(by_input["content"], ref["zplus2wplus_call1"], "content W+")
    assert_golden(photo_run["vt_style"], ref["vtoonify_style"], "style code fed to VToonify")
    assert photo_run["vt_d_s"] == pytest.approx(float(ref["vtoonify_d_s"]))


def test_parsing_logits(photo_run, ref):
    """Channels 3.. of VToonify's input are the BiSeNet logits (run at 2x) divided by 16."""
    vt_input = photo_run["vt_input"]
    h, w = ref["landmarks_call1_image_shape"][:2]
    assert tuple(vt_input.shape) == (1, 22, h, w)
    logits = (vt_input[:, 3:] * 16).double().numpy()
    assert_within_float16_step(logits[:, :, ::2, ::2], ref["parsing_xp_half"], "parsing logits")
    wrong = int((logits.argmax(1) != ref["parsing_xp_argmax"]).sum())
    assert wrong <= 4, f"{wrong} pixels of the parsing argmax differ"
    # the image channels are the crop in [-1, 1]
    crop = torch.from_numpy(photo_run["result"].input).permute(2, 0, 1)[None].double() / 127.5 - 1
    torch.testing.assert_close(vt_input[:, :3].double(), crop, rtol=0, atol=1e-6)


def test_vtoonify_output_before_clamp(photo_run, ref):
    out = photo_run["preclamp"].double().numpy()
    h, w = ref["landmarks_call1_image_shape"][:2]
    assert out.shape == (1, 3, 4 * h, 4 * w)
    assert_within_float16_step(out[:, :, ::4, ::4], ref["vtoonify_output_preclamp_q4"], "output before clamp")


def test_final_image(photo_run, case):
    import cv2

    want = cv2.cvtColor(read_image(case.final), cv2.COLOR_BGR2RGB)
    got = photo_run["result"].output
    assert got.shape == want.shape and got.dtype == np.uint8
    score = psnr(got, want)
    # measured 83.2-88.5 dB (077436) and 85.0-89.6 dB (astronaut) with 1 or 2 threads, oneDNN up to AVX2 or AVX-512;
    # the original's own re-runs give 85-90 dB, rounding instead of truncating to uint8 ~55 dB, a crop 1 px off ~72 dB
    assert score >= 80, f"PSNR {score:.2f} dB"


# --------------------------------------------------------------------- the full astronaut (original fails)
def test_full_astronaut_uses_the_face_not_the_patch(pipe):
    """On the whole 512x512 astronaut dlib also finds the mission patch on the suit, after the face. The original
    keeps the last box (the patch), finds no face in its crop and dies; this project takes the largest face."""
    from skimage import data as skdata

    from pipeline.faces import apply_crop, crop_parameters, select_face

    with np.load(ASTRONAUT / "case2_full512_intermediates.npz") as f:
        ref = {k: f[k] for k in f.files}
    image = skdata.astronaut()
    assert image.shape == tuple(ref["landmarks_call0_image_shape"])
    faces = pipe.detector.detect(image)
    face_box, patch_box = (175, 76, 265, 166), (126, 335, 215, 425)
    assert [f.box for f in faces] == [tuple(b) for b in ref["dlib_call0_boxes_ltrb"].tolist()] == [face_box, patch_box]
    np.testing.assert_allclose([f.score for f in faces], ref["dlib_call0_scores"], rtol=1e-6)
    # the original's choice (the last box) gives its crop, in which there is no face to align
    patch = select_face(faces, "last")
    np.testing.assert_array_equal(patch.landmarks, ref["landmarks_call0"])
    patch_params = crop_parameters(image, patch.landmarks)
    assert patch_params.as_tuple()[:6] == tuple(int(v) for v in ref["crop_h_w_top_bottom_left_right"])
    assert patch_params.scale == pytest.approx(float(ref["crop_scale"]), rel=1e-12)
    patch_crop = apply_crop(image, patch_params)
    assert patch_crop.shape == tuple(ref["landmarks_call1_image_shape"])
    assert pipe.detector.detect(patch_crop) == [] == ref["dlib_call1_boxes_ltrb"].tolist()
    # this project's choice: the face, whose landmarks the original computed and discarded
    face = select_face(faces)
    assert face.box == face_box
    np.testing.assert_array_equal(face.landmarks, ref["landmarks_call0_box0_discarded"])
    # stylised with a narrower crop than the default (192x192 instead of 400x400: ~4x cheaper; the default recipe
    # is pinned by the astronaut case above, whose face and crop are nearly this one's)
    result = pipe.stylize_image(image, style_id=STYLE_ID, style_degree=0.5, scale_image=True, padding=FULL_PAD)
    assert result.crop == crop_parameters(image, face.landmarks, FULL_PAD)
    assert result.crop.as_tuple()[:6] == (756, 756, 56, 248, 232, 424)
    h, w = result.input.shape[:2]
    assert (h, w) == (result.crop.bottom - result.crop.top, result.crop.right - result.crop.left)
    assert result.output.shape == (4 * h, 4 * w, 3) and result.output.dtype == np.uint8
    assert result.output.std() > 1  # an image, not a constant

