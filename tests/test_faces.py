"""Face front-end (pipeline.faces), the original's align_all_parallel names, and util helpers.

Real detections on scikit-image's public-domain astronaut portrait; coffee/chelsea have no face.
"""
from __future__ import annotations

import math

import cv2
import dlib  # required by the project: a failed import must fail these tests, not skip them
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skimage_data

import util
from conftest import ScriptedDetector
from model.encoder import align_all_parallel
from pipeline import faces
from pipeline.faces import CropParams, Face, FaceDetector

# Where dlib finds the astronaut's face (NOTES.md) and her eye centres.
ASTRONAUT_BOX = (175, 76, 265, 166)
ASTRONAUT_EYES = ((203.0, 102.0), (247.0, 104.0))
BLUR_KERNEL = np.array([[1.0], [3.0], [3.0], [1.0]]) / 8


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    img = skimage_data.astronaut()
    img.setflags(write=False)
    return img


@pytest.fixture(scope="module")
def astronaut_faces(detector, astronaut) -> list[Face]:
    return detector.detect(astronaut)


@pytest.fixture(scope="module")
def astronaut_lm(astronaut_faces) -> np.ndarray:
    return faces.select_face(astronaut_faces).landmarks


def _eyes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)


def _face(box, score) -> Face:
    return Face(box=box, score=score, landmarks=np.zeros((68, 2)))


# --------------------------------------------------------------------------------------------------
# Landmark model and detection
# --------------------------------------------------------------------------------------------------

def test_landmark_model_path(monkeypatch, tmp_path):
    monkeypatch.delenv(faces.LANDMARKS_ENV, raising=False)
    path = faces.landmark_model_path()
    assert path.is_file() and path.name == faces.LANDMARKS_FILENAME

    override = tmp_path / "my_landmarks.dat"
    override.write_bytes(b"x")
    assert faces.landmark_model_path(override) == override
    monkeypatch.setenv(faces.LANDMARKS_ENV, str(override))
    assert faces.landmark_model_path() == override
    monkeypatch.setenv(faces.LANDMARKS_ENV, str(tmp_path / "missing.dat"))
    with pytest.raises(FileNotFoundError, match="missing.dat"):
        faces.landmark_model_path()


def test_detect_astronaut(astronaut_faces):
    face = faces.select_face(astronaut_faces)
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float64
    assert np.abs(np.array(face.box) - ASTRONAUT_BOX).max() <= 3
    assert face.score > 0.5
    left_eye, right_eye = face.eye_centres
    assert np.abs(left_eye - ASTRONAUT_EYES[0]).max() <= 3
    assert np.abs(right_eye - ASTRONAUT_EYES[1]).max() <= 3
    # dlib orders detections by decreasing score.
    scores = [f.score for f in astronaut_faces]
    assert scores == sorted(scores, reverse=True)


def test_largest_vs_last(astronaut, astronaut_faces, detector):
    # dlib also reports a weak false positive on the astronaut's suit (NOTES.md); the original's "last
    # detection" rule picks it, our default "largest" rule picks the face.
    assert len(astronaut_faces) >= 2
    last = faces.select_face(astronaut_faces, "last")
    largest = faces.select_face(astronaut_faces, "largest")
    assert last is astronaut_faces[-1]
    assert np.abs(np.array(largest.box) - ASTRONAUT_BOX).max() <= 3
    assert last is not largest
    lm_last = faces.landmarks(astronaut, detector, which="last")
    np.testing.assert_array_equal(lm_last, last.landmarks)
    with pytest.raises(ValueError):
        faces.select_face(astronaut_faces, "first")


def test_select_face_synthetic():
    small = _face((0, 0, 9, 9), 2.0)          # 100 px, most confident
    big = _face((0, 0, 19, 19), 0.3)          # 400 px
    big_better = _face((50, 50, 69, 69), 0.8)  # 400 px, higher score
    assert faces.select_face([]) is None
    assert faces.select_face([small, big]) is big
    assert faces.select_face([small, big, big_better]) is big_better
    assert faces.select_face([big_better, big, small], "last") is small
    assert big.area == 400


def test_non_contiguous_input(detector, astronaut, astronaut_lm):
    canvas = np.zeros((512, 700, 3), np.uint8)
    canvas[:, 100:612] = astronaut
    view = canvas[:, 100:612]
    assert not view.flags["C_CONTIGUOUS"]
    face = faces.select_face(detector.detect(view))
    np.testing.assert_array_equal(face.landmarks, astronaut_lm)
    # A channel-reversed view (e.g. BGR->RGB by slicing) is non-contiguous as well.
    rgb_view = np.ascontiguousarray(astronaut[:, :, ::-1])[:, :, ::-1]
    np.testing.assert_array_equal(faces.landmarks(rgb_view, detector), astronaut_lm)


def test_accepts_paths_and_dlib_predictor(tmp_path, astronaut, astronaut_lm):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    predictor = dlib.shape_predictor(str(faces.landmark_model_path()))
    np.testing.assert_array_equal(align_all_parallel.get_landmark(str(path), predictor), astronaut_lm)
    np.testing.assert_array_equal(align_all_parallel.get_landmark(astronaut, predictor), astronaut_lm)
    with pytest.raises(TypeError):
        faces.landmarks(astronaut, "not a predictor")
    with pytest.raises(TypeError):
        faces.load_rgb(astronaut.astype(np.float32))


def test_detectors_share_the_dlib_models_per_file(tmp_path, astronaut, astronaut_lm):
    """Every FaceDetector of the process uses one dlib detector and one landmark model per file (loaded once);
    a different file, or the same path with a new modification time, gets its own; threads find the same faces."""
    import os
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    a, b = faces.FaceDetector(), faces.FaceDetector()
    assert a._load()[0] is b._load()[0] and a._load()[1] is b._load()[1]
    copy = tmp_path / "landmarks.dat"
    shutil.copyfile(faces.landmark_model_path(), copy)
    c = faces.FaceDetector(copy)
    assert c._load()[1] is not a._load()[1] and faces.FaceDetector(copy)._load()[1] is c._load()[1]
    os.utime(copy, ns=(0, copy.stat().st_mtime_ns + 10**9))  # the file changed on disk: loaded again
    assert faces.FaceDetector(copy)._load()[1] is not c._load()[1]
    np.testing.assert_array_equal(faces.select_face(c.detect(astronaut)).landmarks, astronaut_lm)
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda d: faces.select_face(d.detect(astronaut)).landmarks, [faces.FaceDetector()] * 8))
    for lm in found:
        np.testing.assert_array_equal(lm, astronaut_lm)


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_no_face(detector, name):
    img = getattr(skimage_data, name)()
    assert detector.detect(img) == []
    assert faces.landmarks(img, detector) is None
    assert faces.get_video_crop_parameter(img, detector) is None
    assert util.get_video_crop_parameter(img, detector) is None
    assert faces.align_face(img, detector) is None
    assert align_all_parallel.align_face(img, detector) is None


# --------------------------------------------------------------------------------------------------
# Rescale / crop
# --------------------------------------------------------------------------------------------------

def _expected_params(shape, lm, padding):
    """The spec §5.3 formula, written out independently."""
    lx = sum(lm[i, 0] for i in range(36, 42)) / 6
    ly = sum(lm[i, 1] for i in range(36, 42)) / 6
    rx = sum(lm[i, 0] for i in range(42, 48)) / 6
    ry = sum(lm[i, 1] for i in range(42, 48)) / 6
    scale = 64 / (rx - lx)
    cx, cy = (lx + rx) / 2 * scale, (ly + ry) / 2 * scale
    h, w = round(shape[0] * scale), round(shape[1] * scale)
    left = max(round(cx - padding[0]), 0) // 8 * 8
    right = min(round(cx + padding[1]), w) // 8 * 8
    top = max(round(cy - padding[2]), 0) // 8 * 8
    bottom = min(round(cy + padding[3]), h) // 8 * 8
    return h, w, top, bottom, left, right, scale


def test_crop_parameters_by_hand(detector, astronaut, astronaut_lm):
    params = faces.crop_parameters(astronaut, astronaut_lm)
    expected = _expected_params(astronaut.shape, astronaut_lm, (200, 200, 200, 200))
    assert params.as_tuple()[:6] == expected[:6]
    assert params.scale == pytest.approx(expected[6], rel=1e-12)
    assert params.blur_count == 0  # scale ~1.48: the astronaut is enlarged
    assert (params.h, params.w) == (round(512 * params.scale),) * 2
    width, height = params.crop_size
    assert width % 8 == 0 and height % 8 == 0
    assert 392 <= width <= 400 and params.top == 0  # the face is near the top: the crop is clamped there
    # The compatible function returns the original's tuple order.
    assert faces.get_video_crop_parameter(astronaut, detector) == params.as_tuple()
    assert util.get_video_crop_parameter(astronaut, detector) == params.as_tuple()

    # Far from the borders the default padding gives a ~400x400 crop; other paddings follow.
    lm_far = astronaut_lm + 1000
    params = faces.crop_parameters((3000, 3000), lm_far)
    assert all(392 <= s <= 400 for s in params.crop_size)
    params = faces.crop_parameters((3000, 3000), lm_far, padding=(250, 250, 150, 300))
    assert params.as_tuple() == pytest.approx(_expected_params((3000, 3000), lm_far, (250, 250, 150, 300)))
    assert all(s % 8 == 0 for s in params.crop_size)


@pytest.mark.parametrize("factor, blur_count", [(1, 0), (2, 1), (3, 1), (4, 2), (5, 2)])
def test_blur_count_rule(astronaut_lm, factor, blur_count):
    # Upscaling the photo by `factor` divides the rescale factor by it: ~1.48, 0.74, 0.49, 0.37, 0.30.
    params = faces.crop_parameters((512 * factor, 512 * factor), astronaut_lm * factor)
    assert params.blur_count == int(params.scale <= 0.75) + int(params.scale <= 0.375) == blur_count


def _manual_crop(frame, params: CropParams):
    out = frame
    for _ in range(params.blur_count):
        out = cv2.sepFilter2D(out, -1, BLUR_KERNEL, BLUR_KERNEL)
    return cv2.resize(out, (params.w, params.h))[params.top:params.bottom, params.left:params.right]


def test_apply_crop(astronaut, astronaut_lm):
    params = faces.crop_parameters(astronaut, astronaut_lm)
    out = faces.apply_crop(astronaut, params)
    assert out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert out.shape == (params.bottom - params.top, params.right - params.left, 3)
    np.testing.assert_array_equal(out, _manual_crop(astronaut, params))


def test_apply_crop_upscaled_with_blur(detector, astronaut):
    # Real detection on a 2x photo: rescale ~0.74 -> one blur pass; the eye distance comes back to 64 px.
    big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    lm = faces.landmarks(big, detector)
    params = faces.crop_parameters(big, lm)
    assert params.blur_count == 1
    out = faces.apply_crop(big, params)
    np.testing.assert_array_equal(out, _manual_crop(big, params))
    lm_out = faces.landmarks(out, detector)
    left_eye, right_eye = _eyes(lm_out)
    assert right_eye[0] - left_eye[0] == pytest.approx(64, abs=4)

    # Two passes for a 4x photo (landmarks scaled instead of re-detected), uint8 kept after each pass.
    huge = np.repeat(np.repeat(astronaut, 4, axis=0), 4, axis=1)
    params = faces.crop_parameters(huge, lm * 2)
    assert params.blur_count == 2
    out = faces.apply_crop(huge, params)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, _manual_crop(huge, params))


def test_empty_or_degenerate_crop(astronaut_lm):
    with pytest.raises(ValueError, match="empty crop"):
        faces.crop_parameters((512, 512), astronaut_lm, padding=(-100, -100, 200, 200))
    swapped = astronaut_lm.copy()
    swapped[36:42], swapped[42:48] = astronaut_lm[42:48], astronaut_lm[36:42]
    with pytest.raises(ValueError, match="eye distance"):
        faces.crop_parameters((512, 512), swapped)


# --------------------------------------------------------------------------------------------------
# FFHQ alignment
# --------------------------------------------------------------------------------------------------

def _check_aligned(img: Image.Image, detector) -> tuple[np.ndarray, np.ndarray]:
    assert isinstance(img, Image.Image) and img.size == (256, 256) and img.mode == "RGB"
    lm = faces.landmarks(np.asarray(img), detector)
    assert lm is not None
    left_eye, right_eye = _eyes(lm)
    # The quad is 4x the eye distance wide (when 2|eye-eye| >= 1.8|eye-mouth|) and centred 0.1 of
    # the eye-to-mouth vector below the eyes: eyes ~64 px apart, symmetric about x=128, at
    # y ~ 128 - 0.1 * 64 ~ 121 (about 0.47 of the height).
    assert right_eye[0] - left_eye[0] == pytest.approx(64, abs=6)
    assert (left_eye[0] + right_eye[0]) / 2 == pytest.approx(128, abs=8)
    assert (left_eye[1] + right_eye[1]) / 2 == pytest.approx(121, abs=8)
    assert abs(left_eye[1] - right_eye[1]) <= 4
    return left_eye, right_eye


def test_align_face(detector, astronaut, astronaut_lm, tmp_path):
    aligned = faces.align_face(astronaut, detector)
    _check_aligned(aligned, detector)
    # Same result through the original names, from a path, and with precomputed landmarks.
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    via_path = align_all_parallel.align_face(str(path), detector)
    np.testing.assert_array_equal(np.asarray(via_path), np.asarray(aligned))
    np.testing.assert_array_equal(np.asarray(faces.align_face(astronaut, lm=astronaut_lm)), np.asarray(aligned))


def test_align_face_shrink_path(detector, astronaut, astronaut_lm):
    # A 6x photo makes the quad > 1024 px: the image is first shrunk 3x with LANCZOS.
    big = np.repeat(np.repeat(astronaut, 6, axis=0), 6, axis=1)
    aligned = faces.align_face(big, lm=astronaut_lm * 6 + 2.5)
    _check_aligned(aligned, detector)
    reference = np.asarray(faces.align_face(astronaut, lm=astronaut_lm), dtype=np.float64)
    assert np.abs(np.asarray(aligned, dtype=np.float64) - reference).mean() < 6


def test_gaussian_blur_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    img = (np.random.default_rng(0).random((60, 45, 3)) * 255).astype(np.float32)
    for sigma in (0.6, 3.3, 9.0):
        ours = faces._gaussian_blur(img, sigma)
        np.testing.assert_allclose(ours, ndimage.gaussian_filter(img, (sigma, sigma, 0)), atol=1e-3)


# --------------------------------------------------------------------------------------------------
# util
# --------------------------------------------------------------------------------------------------

def test_util_round_trip(astronaut, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(astronaut).save(src)
    x = util.load_image(src)
    assert x.shape == (1, 3, 512, 512) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(x, util.to_tensor_normalized(astronaut))
    dst = tmp_path / "out.png"
    util.save_image(x[0], dst)
    back = cv2.cvtColor(cv2.imread(str(dst)), cv2.COLOR_BGR2RGB)
    assert np.abs(back.astype(int) - astronaut).max() <= 1
    bgr = util.tensor2cv2(x[0])
    assert bgr.dtype == np.uint8 and bgr.shape == (512, 512, 3)
    np.testing.assert_array_equal(bgr, back[:, :, ::-1])


def test_util_conversions():
    rgb = np.array([[[0, 128, 255]]], np.uint8)
    x = util.to_tensor_normalized(rgb)
    torch.testing.assert_close(x.flatten(), torch.tensor([-1.0, 128 / 127.5 - 1, 1.0]))
    # (x + 1) * 127.5 is truncated, and out-of-range values saturate.
    t = torch.tensor([-1.0, 0.0, 1.0, 3.0, -3.0]).view(1, 1, 5).expand(3, 1, 5)
    np.testing.assert_array_equal(util.tensor2cv2(t)[0, :, 0], [0, 127, 255, 255, 0])


def test_util_visualize(astronaut):
    x = util.to_tensor_normalized(astronaut)[0]
    try:
        import matplotlib
    except ImportError:
        with pytest.raises(ImportError, match="pip install matplotlib"):
            util.visualize(x)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert util.visualize(x, ax) is ax
    plt.close(fig)


def test_util_exports():
    from model.encoder.psp import load_psp_standalone

    assert util.load_psp_standalone is load_psp_standalone
    assert math.isclose(util.to_tensor_normalized(np.zeros((8, 8, 3), np.uint8)).mean().item(), -1.0)


# --------------------------------------------------------------------------------------------------
# FaceTracker (pipeline.stylize): the crop follows the eyes, smoothed, clamped, size fixed
# --------------------------------------------------------------------------------------------------
def test_face_tracker_follows_the_eyes():
    from pipeline.stylize import FaceTracker

    # a 600x400 rescaled frame (scale 2 from 300x200), crop 200x200 at (200, 100): centre (300, 200)
    params = CropParams(h=400, w=600, top=100, bottom=300, left=200, right=400, scale=2.0, blur_count=0)
    frame = np.zeros((200, 300, 3), np.uint8)
    # eyes in frame pixels; x2 in the rescaled frame. The first detection fixes the offset crop centre - eyes.
    detector = ScriptedDetector([(100, 60), (110, 60), None, (110, 70), (300, 60), (300, -200)])
    tracker = FaceTracker(params, detector, alpha=0.5)
    boxes = [tracker.update(frame) for _ in range(6)]
    # offset (300, 200) - (200, 120) = (100, 80). Then centre += 0.5 * (eyes * 2 + offset - centre):
    #   (310, 200) -> no face: stays -> (315, 210) -> (507.5, 205): left clamped to 600 - 200
    #   -> (603.75, -57.5): top clamped to 0
    assert [(b.left, b.top) for b in boxes] == [(200, 100), (210, 100), (210, 100), (215, 110), (400, 105), (400, 0)]
    for b in boxes:
        assert b.crop_size == params.crop_size and (b.h, b.w, b.scale, b.blur_count) == (400, 600, 2.0, 0)
    for alpha in (0, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            FaceTracker(params, detector, alpha=alpha)


def test_face_tracker_without_a_first_detection_keeps_the_crop():
    from pipeline.stylize import FaceTracker

    params = CropParams(h=400, w=600, top=96, bottom=296, left=200, right=400, scale=2.0, blur_count=0)
    tracker = FaceTracker(params, ScriptedDetector([None, None]))
    frame = np.zeros((200, 300, 3), np.uint8)
    assert [tracker.update(frame) for _ in range(2)] == [params, params]
