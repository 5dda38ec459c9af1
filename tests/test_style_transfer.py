"""End-to-end tests of style_transfer.py on fill-rule checkpoints, the astronaut portrait and a synthetic video."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata
from stylize_helpers import (  # noqa: F401
    N_STYLES,
    PAD,
    PAD_ARGS,
    _count_frames,
    jpeg_bytes,
    make_pipeline,
    model_path,
    record_parsing,
    record_writes,
    run,
)

import smooth_parsing_map
from conftest import read_image
from pipeline.video import VideoWriter, probe, synthesize_test_video, synthetic_frames
from style_transfer import main


# ------------------------------------------------------------------------------------------- images
def test_image_dualstylegan_scale_image(ckpt, astronaut_jpg, tmp_path):
    assert run(ckpt, tmp_path, "--content", str(astronaut_jpg), "--scale_image") == 0
    inp, out = read_image(tmp_path / "astronaut_input.jpg"), read_image(tmp_path / "astronaut_vtoonify_d.jpg")
    # eye distance 43.3 px -> 64 px: scale 1.477, 512 -> 756 px, crop 400 wide around the eyes, 352 high
    # (clipped at the top of the frame), both multiples of 8.
    assert inp.shape == (352, 400, 3)
    assert out.shape == (4 * 352, 4 * 400, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["astronaut_input.jpg", "astronaut_vtoonify_d.jpg"]
    # deterministic: a second run writes the same bytes
    again = tmp_path / "again"
    assert run(ckpt, again, "--content", str(astronaut_jpg), "--scale_image") == 0
    assert (again / "astronaut_vtoonify_d.jpg").read_bytes() == (tmp_path / "astronaut_vtoonify_d.jpg").read_bytes()


def test_style_options_change_the_result(ckpt, astronaut_jpg, pipe_d, tmp_path):
    """Each option reaches the pipeline with its value: the CLI writes exactly the pipeline's result for it."""
    rgb = skdata.astronaut()
    outs = {}
    for name, extra, kwargs in [("base", [], {}), ("deg", ["--style_degree", "0.9"], {"style_degree": 0.9}),
                                ("color", ["--color_transfer"], {"color_transfer": True}),
                                ("style", ["--style_id", "2"], {"style_id": 2})]:
        assert run(ckpt, tmp_path / name, "--content", str(astronaut_jpg), "--scale_image", *PAD_ARGS, *extra) == 0
        written = (tmp_path / name / "astronaut_vtoonify_d.jpg").read_bytes()
        expected = pipe_d.stylize_image(rgb, **{"style_id": 1, **kwargs}, scale_image=True, padding=PAD).output
        assert written == jpeg_bytes(expected, tmp_path / "expected", f"{name}.jpg"), name
        outs[name] = expected.astype(np.int16)
    # each option changes the result (so a CLI that dropped it would not write the pipeline's bytes): half the
    # mean differences measured on these fill-rule weights, 0.28 (degree 0.9), 50 (colour), 0.0072 (style 2:
    # its exemplar code moves this tiny model's output by at most one level, at ~12 000 of 1.8 M values)
    for name, least in (("deg", 0.14), ("color", 25), ("style", 0.0036)):
        assert np.abs(outs[name] - outs["base"]).mean() > least, name


def test_image_toonify(ckpt, astronaut_jpg, tmp_path):
    assert run(ckpt, tmp_path, "--content", str(astronaut_jpg), "--scale_image", backbone="toonify") == 0
    assert read_image(tmp_path / "astronaut_vtoonify_t.jpg").shape == (1408, 1600, 3)


def test_any_input_size_without_scale_image(ckpt, tmp_path):
    img = skdata.astronaut()[:301, 3:512]  # 509 x 301: not multiples of 8
    path = tmp_path / "odd.png"
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert run(ckpt, tmp_path / "out", "--content", str(path)) == 0
    assert read_image(tmp_path / "out" / "odd_input.jpg").shape == (301, 509, 3)
    assert read_image(tmp_path / "out" / "odd_vtoonify_d.jpg").shape == (4 * 301, 4 * 509, 3)


# ------------------------------------------------------------------------------------------- videos
def test_video_without_scale_image_keeps_the_frames(ckpt, astronaut_video, tmp_path, monkeypatch):
    """Without --scale_image the frames go in uncropped (the input copy is the decoded source) and come out 4x."""
    from pipeline.video import VideoReader

    written = record_writes(monkeypatch)
    assert run(ckpt, tmp_path, "--content", str(astronaut_video), "--video") == 0
    with VideoReader(astronaut_video) as reader:
        source = list(reader)
    inputs, outputs = written[tmp_path / "astro_input.mp4"], written[tmp_path / "astro_vtoonify_d.mp4"]
    assert len(inputs) == len(outputs) == len(source) == 6
    assert all(np.array_equal(a, b) for a, b in zip(inputs, source))
    assert {o.shape for o in outputs} == {(4 * 384, 4 * 384, 3)}
    assert (probe(tmp_path / "astro_vtoonify_d.mp4").width, probe(tmp_path / "astro_vtoonify_d.mp4").height) == (1536, 1536)


def test_video_keeps_every_frame_and_audio(ckpt, astronaut_video, tmp_path):
    assert run(ckpt, tmp_path, "--content", str(astronaut_video), "--video", "--scale_image", *PAD_ARGS) == 0
    src = probe(astronaut_video)
    out = probe(tmp_path / "astro_vtoonify_d.mp4")
    inp = probe(tmp_path / "astro_input.mp4")
    assert out.has_audio and inp.has_audio
    assert out.frame_count == inp.frame_count == src.frame_count == 6
    assert abs(out.fps - src.fps) < 1e-3
    assert (out.width, out.height) == (4 * inp.width, 4 * inp.height)
    assert inp.width % 8 == 0 and inp.height % 8 == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_video_frames_before_the_first_face_are_kept(ckpt, tmp_path, monkeypatch):
    """Frames before the first face are cropped with that face's crop and stylised with its style code."""
    from pipeline.faces import apply_crop, crop_parameters, select_face
    from pipeline.video import VideoReader

    face_frames = list(synthetic_frames(skdata.astronaut(), n_frames=3, size=(384, 384), motion="static"))
    lead = [np.ascontiguousarray(np.roll(skdata.coffee()[:384, :384], 40 * i, axis=1)) for i in range(2)]  # no face
    path = tmp_path / "late.mp4"
    with VideoWriter(path, 10, 384, 384) as w:
        for frame in lead + face_frames:
            w.write(frame)
    written = record_writes(monkeypatch)
    assert run(ckpt, tmp_path / "out", "--content", str(path), "--video", "--scale_image", "--batch_size", "2", *PAD_ARGS) == 0
    assert _count_frames(tmp_path / "out" / "late_vtoonify_d.mp4") == 5  # the original wrote 3
    with VideoReader(path) as reader:
        decoded = list(reader)
    pipe = make_pipeline(ckpt)
    face = select_face(pipe.detector.detect(decoded[2]))
    assert select_face(pipe.detector.detect(decoded[0])) is None and face is not None
    params = crop_parameters(decoded[2], face.landmarks, PAD)
    crops = written[tmp_path / "out" / "late_input.mp4"]
    for i in range(5):
        assert np.array_equal(crops[i], apply_crop(decoded[i], params)), i
    style = pipe.style_code(crops[2], 1)
    outputs = written[tmp_path / "out" / "late_vtoonify_d.mp4"]
    alone = pipe.stylize_frames([crops[0], crops[1]], style)  # the CLI's batch of 2
    for i in (0, 1):  # a uint8 level of float rounding allowed (the convolution algorithm may differ by batch)
        diff = np.abs(outputs[i].astype(np.int16) - alone[i].astype(np.int16))
        assert diff.max() <= 2 and diff.mean() < 0.05, (i, diff.max(), diff.mean())


def _shift(a: np.ndarray, b: np.ndarray) -> float:
    """How far (pixels) the content of ``b`` moved against ``a`` (phase correlation of the grey images)."""
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float64) for f in (a, b)]
    (dx, dy), _ = cv2.phaseCorrelate(*grey)
    return float(np.hypot(dx, dy))


def _temporal_variance(maps: list) -> float:
    return float(np.stack([m[0].numpy() for m in maps]).var(axis=0).mean())


def test_video_tracking_and_smoothing(ckpt, tmp_path, monkeypatch):
    """--track: the crop follows the panning face (its content moves much less than a fixed crop's);
    --smooth_parsing: the same crops, and VToonify is given the smoothed maps (on this tracked, nearly static
    crop with fill-rule weights the smoothing does not lower the maps' temporal variance measurably)."""
    path = synthesize_test_video(tmp_path / "pan.mp4", skdata.astronaut(), n_frames=5, fps=10, size=(384, 384), motion="pan")
    written, parsing = record_writes(monkeypatch), record_parsing(monkeypatch)
    runs = {}
    for name, extra in [("fixed", []), ("tracked", ["--track"]), ("smoothed", ["--track", "--smooth_parsing", "1"])]:
        written.clear()
        parsing.clear()
        assert run(ckpt, tmp_path / name, "--content", str(path), "--video", "--scale_image", *PAD_ARGS, *extra,
                   backbone="toonify") == 0
        info = probe(tmp_path / name / "pan_vtoonify_t.mp4")
        assert info.frame_count == 5 and info.has_audio
        runs[name] = (list(written[tmp_path / name / "pan_input.mp4"]), list(parsing))
    fixed, tracked = (_shift(runs[k][0][0], runs[k][0][-1]) for k in ("fixed", "tracked"))
    assert fixed > 20 and tracked < 0.75 * fixed, (fixed, tracked)
    assert all(np.array_equal(a, b) for a, b in zip(runs["tracked"][0], runs["smoothed"][0]))
    raw, smoothed = _temporal_variance(runs["tracked"][1]), _temporal_variance(runs["smoothed"][1])
    assert smoothed != raw  # the smoothed maps are the ones VToonify gets


def test_video_with_precomputed_parsing_maps(ckpt, astronaut_video, pipe_d, tmp_path, monkeypatch, capsys):
    """smooth_parsing_map.py writes the maps --smooth_parsing computes; --parsing_map_path feeds exactly those."""
    assert run(ckpt, tmp_path / "a", "--content", str(astronaut_video), "--video", "--scale_image", *PAD_ARGS) == 0
    cropped = tmp_path / "a" / "astro_input.mp4"
    w, h = probe(cropped).width, probe(cropped).height
    # the original two-step flow: smooth the parsing maps of the cropped video, then stylise with them
    assert smooth_parsing_map.main(["--video_path", str(cropped), "--faceparsing_path", str(ckpt / "faceparsing.pth"),
                                    "--output_path", str(tmp_path / "maps"), "--window_size", "1", "--device", "cpu",
                                    "--no_progress"]) == 0
    smoothed = np.load(tmp_path / "maps" / "astro_input_parsingmap.npy")
    assert smoothed.shape == (6, 19, h, w) and np.isfinite(smoothed).all() and smoothed.std() > 0
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["astro_input_parsingmap.npy"]
    parsing = record_parsing(monkeypatch)
    # the same maps as --smooth_parsing on those frames (the cropped video, taken as it is)
    pipe_d.stylize_video(cropped, tmp_path / "on_the_fly", style_id=1, scale_image=False, smooth_parsing=1, progress=False)
    on_the_fly = np.concatenate([p.numpy() for p in parsing])
    np.testing.assert_allclose(on_the_fly, smoothed, rtol=1e-5, atol=1e-5 * np.abs(smoothed).max())
    parsing.clear()
    assert run(ckpt, tmp_path / "b", "--content", str(astronaut_video), "--video", "--scale_image", *PAD_ARGS,
               "--parsing_map_path", str(tmp_path / "maps" / "astro_input_parsingmap.npy")) == 0
    used = np.concatenate([p.numpy() for p in parsing])
    assert np.array_equal(used, smoothed)  # the given maps, frame by frame, instead of the parser's
    maps = tmp_path / "maps.npy"
    np.save(maps, np.zeros((6, 19, h + 8, w), np.float32))
    capsys.readouterr()
    assert run(ckpt, tmp_path / "c", "--content", str(astronaut_video), "--video", "--scale_image", *PAD_ARGS,
               "--parsing_map_path", str(maps)) == 1
    err = capsys.readouterr().err
    assert f"parsing maps are {(h + 8, w)}" in err and f"the cropped frames are {(h, w)}" in err, err
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


# --------------------------------------------------------------------------------------- bad inputs
def _assert_failed_cleanly(code: int, capsys, out_dir: Path, *needles: str) -> None:
    err = capsys.readouterr().err
    assert code == 1, err
    for needle in needles:
        assert needle in err, err
    assert "Traceback" not in err
    assert not out_dir.exists() or not any(out_dir.iterdir()), list(out_dir.iterdir())


def test_no_face(ckpt, tmp_path, capsys):
    path = tmp_path / "coffee.png"
    cv2.imwrite(str(path), skdata.coffee()[:, :, ::-1])
    _assert_failed_cleanly(run(ckpt, tmp_path / "out", "--content", str(path), "--scale_image"),
                           capsys, tmp_path / "out", "no face")
    video = synthesize_test_video(tmp_path / "cat.mp4", skdata.chelsea(), n_frames=3, fps=5, size=(256, 192))
    _assert_failed_cleanly(run(ckpt, tmp_path / "out", "--content", str(video), "--video", "--scale_image"),
                           capsys, tmp_path / "out", "no face found in any frame")


@pytest.mark.parametrize("content", ["text", "empty", "missing"])
def test_unreadable_content(ckpt, tmp_path, capsys, content):
    path = tmp_path / "input.jpg"
    if content == "text":
        path.write_text("not an image")
    elif content == "empty":
        path.write_bytes(b"")
    code = run(ckpt, tmp_path / "out", "--content", str(path))
    _assert_failed_cleanly(code, capsys, tmp_path / "out", "not found" if content == "missing" else "cannot read")
    if content != "missing":
        code = run(ckpt, tmp_path / "out", "--content", str(path), "--video")
        _assert_failed_cleanly(code, capsys, tmp_path / "out", str(path))


def test_image_given_as_video(ckpt, astronaut_jpg, tmp_path, capsys):
    _assert_failed_cleanly(run(ckpt, tmp_path / "out", "--content", str(astronaut_jpg), "--video"), capsys, tmp_path / "out",
                           "astronaut.png")


def test_checkpoint_errors(ckpt, astronaut_jpg, tmp_path, capsys):
    out = tmp_path / "out"
    # a VToonify-T file with the default VToonify-D backbone
    code = main(["--content", str(astronaut_jpg), "--ckpt", str(ckpt / "vtoonify_t_test/vtoonify.pt"), "--exstyle_path",
                 str(ckpt / "vtoonify_d_test/exstyle_code.npy"), "--style_encoder_path", str(ckpt / "encoder.pt"),
                 "--faceparsing_path", str(ckpt / "faceparsing.pth"), "--output_path", str(out), "--cpu"])
    _assert_failed_cleanly(code, capsys, out, "VToonify-T checkpoint", "--backbone toonify")
    # a missing model names the file and the command that fetches it
    code = main(["--content", str(astronaut_jpg), "--ckpt", str(tmp_path / "vtoonify_d_cartoon/vtoonify_s_d.pt"),
                 "--output_path", str(out), "--cpu"])
    _assert_failed_cleanly(code, capsys, out, "vtoonify_s_d.pt", "python -m hub.download")


def test_style_errors(ckpt, astronaut_jpg, tmp_path, capsys):
    out = tmp_path / "out"
    _assert_failed_cleanly(run(ckpt, out, "--content", str(astronaut_jpg), "--style_id", str(N_STYLES)), capsys, out,
                           f"--style_id {N_STYLES} is out of range")
    bad = tmp_path / "bad_exstyle.npy"
    np.save(bad, np.zeros((3, 18, 512), np.float32))
    _assert_failed_cleanly(run(ckpt, out, "--content", str(astronaut_jpg), "--exstyle_path", str(bad)), capsys, out,
                           "dict of style codes")


def test_no_partial_output_on_failure_midway(ckpt, astronaut_video, tmp_path, monkeypatch):
    from pipeline import stylize

    calls = {"n": 0}
    original = stylize.VToonifyPipeline.stylize_tensor

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated failure in the middle of the video")
        return original(self, *a, **k)

    monkeypatch.setattr(stylize.VToonifyPipeline, "stylize_tensor", failing)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated failure"):  # a bug, not a user error: it keeps its traceback
        run(ckpt, out, "--content", str(astronaut_video), "--video", "--scale_image", *PAD_ARGS)
    assert calls["n"] == 3
    assert not out.exists()  # neither final nor .partial files, nor the (empty) folder the run created


def test_pipeline_is_reusable(ckpt, astronaut_jpg, pipe_d, tmp_path):
    """Load once, stylise many: the Python API gives the CLI's result."""
    rgb = skdata.astronaut()
    a = pipe_d.stylize_image(rgb, style_id=1, scale_image=True)
    b = pipe_d.stylize_image(rgb, style_id=1, scale_image=True)
    assert a.output.shape == (1408, 1600, 3) and np.array_equal(a.output, b.output)
    assert a.crop.as_tuple()[:6] == (756, 756, 0, 352, 128, 528)
    assert pipe_d.num_styles == N_STYLES
    assert run(ckpt, tmp_path / "cli", "--content", str(astronaut_jpg), "--scale_image") == 0
    assert (tmp_path / "cli" / "astronaut_vtoonify_d.jpg").read_bytes() == jpeg_bytes(a.output, tmp_path / "api")
    assert (tmp_path / "cli" / "astronaut_input.jpg").read_bytes() == jpeg_bytes(a.input, tmp_path / "api", "input.jpg")


def test_pipelines_share_one_style_encoder(ckpt, pipe_d, tmp_path):
    """Every pipeline of the process uses one copy of a pSp file (~1 GiB released), held weakly: a pipeline made
    while another holds it gets the same module; once none holds it, or after the file changed, it is loaded anew."""
    import gc
    import os

    from model.checkpoint import CheckpointError
    from pipeline import models, stylize

    other = make_pipeline(ckpt, "toonify")
    assert other.pspencoder is pipe_d.pspencoder
    lazy = make_pipeline(ckpt, keep_style_encoder=False)  # loads on first use, drops it after each code
    assert lazy._pspencoder is None and lazy.pspencoder is pipe_d.pspencoder
    path = (ckpt / "encoder.pt").resolve()
    os.symlink(path, tmp_path / "link.pt")
    alone = stylize.shared_style_encoder(tmp_path / "link.pt")
    assert alone is pipe_d.pspencoder  # the same file under another name
    held = id(pipe_d.pspencoder)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file changed on disk
    try:
        changed = stylize.shared_style_encoder(ckpt / "encoder.pt")
        assert changed is not pipe_d.pspencoder and stylize.shared_style_encoder(ckpt / "encoder.pt") is changed
        key = next(k for k, v in models._STYLE_ENCODERS.items() if v is changed)
        del changed, alone
        gc.collect()
        assert key not in models._STYLE_ENCODERS  # nothing holds it: freed
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert id(pipe_d.pspencoder) == held and stylize.shared_style_encoder(ckpt / "encoder.pt") is pipe_d.pspencoder
    with pytest.raises(CheckpointError, match="not found"):
        stylize.shared_style_encoder(tmp_path / "missing.pt")


def test_float32_weights_are_mapped_from_the_file_and_cast_ones_are_not(ckpt, tmp_path):
    """A float32 pipeline maps its VToonify and BiSeNet files (the pages go back to the system with the model); a
    bfloat16 one maps its VToonify until the model is first used (the cast comes after the style code, so the pSp
    pass does not run beside the cast copies) and then holds no mapping, since the float32 weights it casts would
    otherwise stay mapped beside their copies."""
    import gc
    import shutil

    from pipeline.stylize import VToonifyPipeline

    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux)")
    for dtype, mapped in (("float32", True), ("bfloat16", False)):
        model = tmp_path / dtype / "vtoonify_d_test" / "vtoonify_s_d.pt"
        shutil.copytree(model_path(ckpt).parent, model.parent)
        parser = shutil.copyfile(ckpt / "faceparsing.pth", tmp_path / dtype / "faceparsing.pth")
        pipe = VToonifyPipeline(model, style_encoder_path=ckpt / "encoder.pt", faceparsing_path=parser,
                                device="cpu", dtype=dtype, keep_style_encoder=False)
        assert str(model) in maps.read_text() and (str(parser) in maps.read_text()) == mapped, dtype
        pipe.exstyle(0)  # the style mapping: no cast
        assert str(model) in maps.read_text(), dtype
        pipe.vtoonify  # noqa: B018 - first use: the cast
        assert (str(model) in maps.read_text()) == mapped and (str(parser) in maps.read_text()) == mapped, dtype
        del pipe
        gc.collect()
        assert str(model) not in maps.read_text() and str(parser) not in maps.read_text()


@pytest.mark.parametrize("backbone", ["dualstylegan", "toonify"])
def test_the_deferred_cast_changes_no_result(ckpt, backbone):
    """A bfloat16 pipeline casts its model on first use: the style code computed before the cast and the frames
    stylised after it are bit for bit those of a pipeline cast before anything ran."""
    import torch

    later, first = (make_pipeline(ckpt, backbone=backbone, dtype="bfloat16") for _ in range(2))
    first.vtoonify  # noqa: B018 - cast now
    assert later._cast_pending and not first._cast_pending
    rgb = skdata.astronaut()
    a, b = (p.stylize_image(rgb, style_id=1, scale_image=True, padding=PAD) for p in (later, first))
    assert not later._cast_pending and np.array_equal(a.output, b.output)
    assert {t.dtype for t in later.vtoonify.parameters()} == {torch.bfloat16, torch.float32}
    assert all(torch.equal(x, y) for x, y in zip(later.vtoonify.state_dict().values(), first.vtoonify.state_dict().values()))


def test_dtype_through_the_cli(ckpt, astronaut_jpg, tmp_path):
    """--dtype bfloat16 runs VToonify and the parser in bfloat16: the CLI writes the bfloat16 pipeline's result."""
    import torch

    assert run(ckpt, tmp_path / "bf16", "--content", str(astronaut_jpg), "--scale_image", "--dtype", "bfloat16",
               *PAD_ARGS) == 0
    pipe = make_pipeline(ckpt, dtype="bfloat16")
    dtypes = {p.dtype for p in pipe.vtoonify.parameters()}  # mixed precision: big convolutions bf16, the rest fp32
    assert dtypes == {torch.bfloat16, torch.float32}, dtypes
    assert next(pipe.parser.parameters()).dtype == torch.bfloat16
    rgb = skdata.astronaut()
    low = pipe.stylize_image(rgb, style_id=1, scale_image=True, padding=PAD).output
    assert (tmp_path / "bf16" / "astronaut_vtoonify_d.jpg").read_bytes() == jpeg_bytes(low, tmp_path / "api")
    full = make_pipeline(ckpt).stylize_image(rgb, style_id=1, scale_image=True, padding=PAD).output
    diff = np.abs(low.astype(np.int16) - full).mean()
    assert 0 < diff < 20, diff  # close to float32, not identical


def test_landmark_fallback_when_the_crop_is_not_redetected(pipe_d, monkeypatch):
    """When dlib misses the face in the rescaled crop, the landmarks found before cropping (mapped into the crop)
    are used for the style encoder's alignment; without them it is a NoFaceError."""
    from pipeline.faces import align_face, apply_crop, crop_parameters, landmarks_in_crop, select_face
    from pipeline.stylize import NoFaceError

    rgb = skdata.astronaut()
    face = select_face(pipe_d.detector.detect(rgb))
    params = crop_parameters(rgb, face.landmarks)
    crop = apply_crop(rgb, params)
    lm = landmarks_in_crop(face.landmarks, rgb, params)
    expected = pipe_d.style_code(crop, 1, lm=None)  # found again in the crop
    seen = []

    def aligning(frame, detector, lm=None, **kw):
        seen.append(lm)
        return None if lm is None else align_face(frame, detector, lm=lm, **kw)

    from pipeline import models

    monkeypatch.setattr(models, "align_face", aligning)
    fallback = pipe_d.style_code(crop, 1, lm=lm)
    assert len(seen) == 2 and seen[0] is None and seen[1] is lm
    # the mapped landmarks are within a pixel of the re-detected ones: nearly the same code
    assert (fallback - expected).abs().max() < 0.1 * expected.abs().max()
    with pytest.raises(NoFaceError, match="no face found for the style encoder"):
        pipe_d.style_code(crop, 1)


def test_the_same_zplus_code_gives_the_same_w_plus_whatever_its_source(ckpt):
    """Under --dtype bfloat16 an exemplar's Z+ code from --style_image went through the float32 mapping after a
    rounding to bfloat16, the same code from --style_id without it: one style, two W+ codes. Both map the float32
    code now."""
    import torch

    pipe = make_pipeline(ckpt, dtype="bfloat16")
    content = pipe.exstyle(0)  # any W+ code of the right shape
    zplus = list(pipe.exstyles.values())[1]
    by_id = pipe.mix_style(content, style_id=1)
    by_image = pipe.mix_style(content, exemplar=torch.from_numpy(zplus))
    torch.testing.assert_close(by_image, by_id, rtol=0, atol=0)
    assert by_id.dtype == torch.float32
