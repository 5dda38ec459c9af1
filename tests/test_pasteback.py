"""``paste_back`` (pipeline/pasteback.py): the stylised crop blended back into the input's full frame, on the
fill-rule models (near-flat stylised crops, so the face region differs from the photo by far more than rounding).

Pixels outside the crop's box must be the input's exactly (or the documented resize of it at ``output_scale``
!= 1); inside, the pasted face is the 4x result brought back to the crop's scale and place.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata
from stylize_helpers import PAD, make_pipeline, record_writes
from test_multiface import group_photo

from common.errors import OptionError
from pipeline.faces import CropParams
from pipeline.pasteback import paste_back, paste_faces

STYLE = 1


@pytest.fixture(scope="module")
def pipe(ckpt):
    return make_pipeline(ckpt)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def photo_runs(pipe, photo) -> dict:
    options = dict(style_id=STYLE, scale_image=True, padding=PAD)
    return {"plain": pipe.stylize_image(photo, **options), "pasted": pipe.stylize_image(photo, paste_back=True, **options)}


def _box(params, shape, margin: int = 2) -> tuple[slice, slice]:
    """The frame pixels of the crop ``params`` (``margin`` pixels wider), as slices (rows, columns)."""
    height, width = shape
    sy, sx = params.h / height, params.w / width
    top, bottom = int(params.top / sy) - margin, int(np.ceil(params.bottom / sy)) + margin
    left, right = int(params.left / sx) - margin, int(np.ceil(params.right / sx)) + margin
    return slice(max(top, 0), bottom), slice(max(left, 0), right)


def _outside(shape, *boxes) -> np.ndarray:
    keep = np.ones(shape, bool)
    for rows, cols in boxes:
        keep[rows, cols] = False
    return keep


def _face_centre(params, shape, size: int = 8) -> tuple[slice, slice]:
    """A ``2 size`` square of frame pixels around the crop's eye centre (the padded crop's centre)."""
    height, width = shape
    cx = (params.left + PAD[0]) * width / params.w
    cy = (params.top + PAD[2]) * height / params.h
    return slice(int(cy) - size, int(cy) + size), slice(int(cx) - size, int(cx) + size)


def test_photo_full_frame_input_outside_and_stylised_face(pipe, photo, photo_runs):
    plain, pasted = photo_runs["plain"], photo_runs["pasted"]
    shape = photo.shape[:2]
    assert pasted.output.shape == photo.shape and pasted.output.dtype == np.uint8
    assert np.array_equal(pasted.input, plain.input) and pasted.crop == plain.crop  # input = what the model was fed
    outside = _outside(shape, _box(plain.crop, shape))
    assert outside.mean() > 0.8
    assert np.array_equal(pasted.output[outside], photo[outside])
    # at the face the paste is the stylised crop brought back to the frame's scale (area shrink of the 4x result)
    rows, cols = _box(plain.crop, shape, margin=0)
    back = cv2.resize(plain.output, (cols.stop - cols.start, rows.stop - rows.start), interpolation=cv2.INTER_AREA)
    face = _face_centre(plain.crop, shape)
    inner = (slice(face[0].start - rows.start, face[0].stop - rows.start),
             slice(face[1].start - cols.start, face[1].stop - cols.start))
    got, want = pasted.output[face].astype(int), back[inner].astype(int)
    assert np.abs(got - want).mean() < 3, np.abs(got - want).mean()
    assert np.abs(got - photo[face].astype(int)).mean() > 20  # stylised: not the photo
    # the API's paste is paste_back() on the crop's parsing; output_scale 2 doubles the frame
    parsing = pipe.parse(_tensor(pipe, plain.input))[0]
    assert np.array_equal(paste_back(photo, plain.crop, plain.output, parsing), pasted.output)
    double = paste_back(photo, plain.crop, plain.output, parsing, 2.0)
    assert double.shape == (2 * shape[0], 2 * shape[1], 3)
    big = np.repeat(np.repeat(outside, 2, 0), 2, 1)
    expected = cv2.resize(photo, (2 * shape[1], 2 * shape[0]), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(double[big], expected[big])
    shrunk = cv2.resize(double, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(shrunk[face] - pasted.output[face].astype(int)).mean() < 3


def _tensor(pipe, rgb):
    from pipeline.tensors import frames_to_tensor, pad_to_multiple

    return frames_to_tensor([pad_to_multiple(rgb)], pipe.device, pipe.dtype)


def test_without_scale_image_the_4x_result_is_resized(pipe, photo):
    small = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
    options = dict(style_id=STYLE, scale_image=False, max_side=128)  # the model sees 128x128: its result is 512
    plain = pipe.stylize_image(small, **options)
    at2 = pipe.stylize_image(small, paste_back=True, output_scale=2, **options)
    assert plain.output.shape == (512, 512, 3) and np.array_equal(at2.output, plain.output)
    at1 = paste_back(small, None, plain.output, None)
    assert np.array_equal(at1, cv2.resize(plain.output, (256, 256), interpolation=cv2.INTER_AREA))


def test_output_scale_needs_paste_back_and_its_range(pipe, photo):
    for kwargs, message in ((dict(output_scale=2), "--paste_back"), (dict(paste_back=True, output_scale=5), "[1, 4]"),
                            (dict(paste_back=True, output_scale=0.5), "[1, 4]")):
        with pytest.raises(OptionError, match=message.replace("[", r"\[").replace("]", r"\]")):
            pipe.stylize_image(photo, style_id=STYLE, **kwargs)


def test_every_face_pasted_back(pipe):
    group = group_photo()
    result = pipe.stylize_image(group, style_id=STYLE, scale_image=True, padding=PAD, faces="all", paste_back=True)
    shape = group.shape[:2]
    assert result.output.shape == group.shape
    assert result.faces, "the second face must be rendered"
    outside = _outside(shape, _box(result.crop, shape))
    assert outside.mean() > 0.3
    assert np.array_equal(result.output[outside], group[outside])
    for params in [result.main_crop] + [r.params for r in result.faces]:
        face = _face_centre(params, shape, size=4)
        assert np.abs(result.output[face].astype(int) - group[face].astype(int)).mean() > 20, params


def test_paste_faces_adds_each_extra_face_weight():
    """Known answer: a flat frame (100), a flat result (200), a parsing that sees no face, and one extra face's
    weight of 1 on a square of the result: only that square (mapped to the frame) takes the result."""
    frame = np.full((96, 128, 3), 100, np.uint8)
    params = CropParams(h=96, w=128, top=16, bottom=80, left=16, right=112, scale=1.0, blur_count=0)  # 96x64 crop
    output = np.full((256, 384, 3), 200, np.uint8)
    parsing = torch.zeros(19, 64, 96)
    parsing[0] = 20  # background everywhere
    alpha = np.zeros((256, 384), np.float32)
    alpha[96:160, 160:224] = 1  # crop rows 24-40, columns 40-56: frame rows 40-56, columns 56-72
    assert np.array_equal(paste_faces(frame, params, output, parsing, []), frame)
    out = paste_faces(frame, params, output, parsing, [alpha])
    assert (out[42:54, 58:70] == 200).all()
    changed = np.argwhere((out != 100).any(-1))
    assert changed.min(0).tolist() >= [38, 54] and changed.max(0).tolist() <= [57, 73]


@pytest.fixture(scope="module")
def video_run(pipe, tmp_path_factory, monkeypatch_module) -> dict:
    from pipeline.video import synthesize_test_video

    root = tmp_path_factory.mktemp("pasteback_video")
    path = synthesize_test_video(root / "zoom.mp4", skdata.astronaut(), n_frames=4, fps=10, size=(256, 256),
                                 motion="zoom")
    written = record_writes(monkeypatch_module)
    result = pipe.stylize_video(path, root / "out", style_id=STYLE, padding=PAD, track=True, paste_back=True,
                                output_scale=1.5, progress=False)
    return {"path": path, "result": result, "written": written}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _frames_and_times(path):
    from pipeline.video import VideoReader

    frames, times = [], []
    with VideoReader(path) as reader:
        for frame in reader:
            frames.append(frame)
            times.append(reader.frame_time)
    return frames, times


def test_video_full_frame_audio_timing_and_tracked_face(video_run):
    from pipeline.video import probe

    result, path = video_run["result"], video_run["path"]
    frames, times = _frames_and_times(path)
    info, out_info = probe(path), probe(result.output_path)
    assert (out_info.width, out_info.height) == (384, 384)
    assert out_info.frame_count == info.frame_count == len(frames) == result.frames == 4
    assert out_info.has_audio and info.has_audio
    assert _frames_and_times(result.output_path)[1] == times
    assert probe(result.input_path).width == result.crop.right - result.crop.left  # the input copy: the crop
    outs = video_run["written"][result.output_path]
    assert len(outs) == 4
    changed = []
    for frame, out in zip(frames, outs):
        expected = cv2.resize(frame, (384, 384), interpolation=cv2.INTER_CUBIC)
        diff = np.abs(out.astype(int) - expected).max(-1) > 0
        assert diff.mean() < 0.5  # far from the face: the input frame's, resized
        assert not diff[:8].any() and not diff[-8:].any() and not diff[:, :8].any() and not diff[:, -8:].any()
        face = _face_centre(result.crop, frame.shape[:2], size=4)
        big = tuple(slice(int(1.5 * s.start), int(1.5 * s.stop)) for s in face)
        assert np.abs(out[big].astype(int) - expected[big]).mean() > 20  # stylised face
        rows, cols = np.nonzero(diff)
        changed.append((rows.min(), rows.max(), cols.min(), cols.max()))
    assert changed[0] != changed[-1], changed  # with track the pasted crop follows the zooming face
