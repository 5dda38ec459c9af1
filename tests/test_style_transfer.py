"""End-to-end tests of style_transfer.py on fill-rule checkpoints, the astronaut portrait and a synthetic video."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

import smooth_parsing_map
from conftest import free_port, read_image, write_tiny_checkpoints
from pipeline.video import VideoWriter, probe, synthesize_test_video, synthetic_frames
from style_transfer import main

N_STYLES = 3
# The plumbing tests (frame counts, audio, threads, shards, given maps, options reaching the pipeline) stylise
# 192-px crops, --padding 96 on every side instead of the default 200: what they check does not depend on the
# crop size, and ~3.5x fewer pixels per frame keep the suite short. The default recipe is pinned by the image
# tests below and by tests/test_pipeline_golden.py.
PAD = [96, 96, 96, 96]
PAD_ARGS = ("--padding", *map(str, PAD))


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory, frozen_helpers) -> Path:
    """A checkpoint/ folder in the released layout, filled with deterministic weights."""
    root = tmp_path_factory.mktemp("checkpoint")
    write_tiny_checkpoints(root, "test", N_STYLES)
    for name in ("encoder", "faceparsing"):
        (root / frozen_helpers[name].name).symlink_to(frozen_helpers[name])
    return root


def model_path(ckpt: Path, backbone: str = "dualstylegan") -> Path:
    return ckpt / ("vtoonify_d_test/vtoonify_s_d.pt" if backbone == "dualstylegan" else "vtoonify_t_test/vtoonify.pt")


def run(ckpt: Path, out: Path, *extra: str, backbone: str = "dualstylegan") -> int:
    args = ["--ckpt", str(model_path(ckpt, backbone)), "--style_encoder_path", str(ckpt / "encoder.pt"), "--faceparsing_path",
            str(ckpt / "faceparsing.pth"), "--output_path", str(out), "--backbone", backbone, "--cpu", "--no_progress",
            "--style_id", "1", *extra]
    return main(args)


def make_pipeline(ckpt: Path, backbone: str = "dualstylegan", **kwargs):
    """The Python API on the same checkpoints as :func:`run` (CPU)."""
    from pipeline.stylize import VToonifyPipeline

    return VToonifyPipeline(model_path(ckpt, backbone), style_encoder_path=ckpt / "encoder.pt",
                            faceparsing_path=ckpt / "faceparsing.pth", device="cpu", **kwargs)


def record_writes(monkeypatch) -> dict[Path, list[np.ndarray]]:
    """Every frame handed to a VideoWriter (copied), by the writer's final path; the frames are still written."""
    from pipeline import video

    written: dict[Path, list[np.ndarray]] = {}
    original = video.VideoWriter.write

    def recording(self, frame):
        written.setdefault(self.path, []).append(np.array(frame))
        return original(self, frame)

    monkeypatch.setattr(video.VideoWriter, "write", recording)
    return written


def record_parsing(monkeypatch) -> list:
    """The parsing logits each ``stylize_tensor`` call is given (one (B, 19, H, W) float32 copy per call)."""
    from pipeline import stylize

    seen: list = []
    original = stylize.VToonifyPipeline.stylize_tensor

    def recording(self, x, style, style_degree=0.5, parsing=None):
        if parsing is None:
            parsing = self.parse(x)
        seen.append(parsing.float().clone())
        return original(self, x, style, style_degree, parsing)

    monkeypatch.setattr(stylize.VToonifyPipeline, "stylize_tensor", recording)
    return seen


def jpeg_bytes(rgb: np.ndarray, folder: Path, name: str = "expected.jpg") -> bytes:
    """The bytes style_transfer.py writes for the RGB image ``rgb`` (same writer, same encoder)."""
    from pipeline.stylize import atomic_imwrite

    folder.mkdir(parents=True, exist_ok=True)
    atomic_imwrite(folder / name, rgb)
    return (folder / name).read_bytes()


@pytest.fixture(scope="module")
def pipe_d(ckpt):
    """The Python API on the CLI's VToonify-D checkpoint (loaded once for the comparisons below)."""
    return make_pipeline(ckpt)


def compile_with(monkeypatch, backend) -> None:
    """Make torch.compile (as the pipeline calls it) use ``backend``, a fast stand-in for inductor."""
    import torch

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, **{**kw, "mode": None, "backend": backend}))
    torch._dynamo.reset()


@pytest.fixture(scope="session")
def astronaut_jpg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def astronaut_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "astro.mp4"
    return synthesize_test_video(path, skdata.astronaut(), n_frames=6, fps=10, size=(384, 384), motion="zoom")


def _count_frames(path: Path) -> int:
    from pipeline.video import VideoReader

    with VideoReader(path) as r:
        return sum(1 for _ in r)


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
    assert not any(out.iterdir())  # neither final nor .partial files


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
    from pipeline import stylize

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
        key = next(k for k, v in stylize._STYLE_ENCODERS.items() if v is changed)
        del changed, alone
        gc.collect()
        assert key not in stylize._STYLE_ENCODERS  # nothing holds it: freed
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

    from pipeline import stylize

    monkeypatch.setattr(stylize, "align_face", aligning)
    fallback = pipe_d.style_code(crop, 1, lm=lm)
    assert len(seen) == 2 and seen[0] is None and seen[1] is lm
    # the mapped landmarks are within a pixel of the re-detected ones: nearly the same code
    assert (fallback - expected).abs().max() < 0.1 * expected.abs().max()
    with pytest.raises(NoFaceError, match="no face found for the style encoder"):
        pipe_d.style_code(crop, 1)


def test_video_split_across_two_processes(ckpt, astronaut_video, tmp_path):
    """torchrun, one contiguous frame range per process, joined without re-encoding and with the audio."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    model = ckpt / "vtoonify_d_test/vtoonify_s_d.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(root / "style_transfer.py"), "--content", str(astronaut_video), "--video", "--scale_image",
           "--ckpt", str(model),
           "--style_encoder_path", str(ckpt / "encoder.pt"), "--faceparsing_path", str(ckpt / "faceparsing.pth"),
           "--output_path", str(tmp_path / "split"), "--cpu", "--no_progress", "--style_id", "1", *PAD_ARGS]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["astro_input.mp4", "astro_vtoonify_d.mp4"]
    joined = probe(tmp_path / "split" / "astro_vtoonify_d.mp4")
    assert joined.frame_count == 6 and joined.has_audio and abs(joined.duration - 0.6) < 0.05
    # the same frames as a single-process run (H.264 at crf 18 on both sides: small differences only)
    assert run(ckpt, tmp_path / "single", "--content", str(astronaut_video), "--video", "--scale_image", *PAD_ARGS) == 0
    from pipeline.video import VideoReader

    split_video, single_video = tmp_path / "split" / "astro_vtoonify_d.mp4", tmp_path / "single" / "astro_vtoonify_d.mp4"
    with VideoReader(split_video) as a, VideoReader(single_video) as b:
        diffs = [np.abs(x.astype(np.int16) - y.astype(np.int16)).mean() for x, y in zip(a, b)]
    assert len(diffs) == 6 and max(diffs) < 3.0, diffs


def test_video_and_batches_follow_the_image_recipe(pipe_d, tmp_path, monkeypatch):
    """A video made of the image path's crop, repeated, is stylised frame by frame as the image path stylises that
    frame (same style code, same per-frame recipe); batches of 2 give the frames of batches of 1."""
    from pipeline.video import VideoReader

    crop = pipe_d.stylize_image(skdata.astronaut(), style_id=1, scale_image=True, padding=PAD).input
    path = tmp_path / "crop.mp4"
    with VideoWriter(path, 10, crop.shape[1], crop.shape[0]) as w:
        for _ in range(3):
            w.write(crop)
    written = record_writes(monkeypatch)
    outs = {}
    for batch in (1, 2):
        result = pipe_d.stylize_video(path, tmp_path / f"b{batch}", style_id=1, scale_image=False, batch_size=batch,
                                      progress=False)
        outs[batch] = written[result.output_path]
    with VideoReader(path) as reader:
        decoded = list(reader)
    assert all(np.array_equal(a, b) for a, b in zip(written[tmp_path / "b1" / "crop_input.mp4"], decoded))
    image = pipe_d.stylize_image(decoded[0], style_id=1)  # the image path on the first frame
    assert np.array_equal(outs[1][0], image.output)
    style = pipe_d.style_code(decoded[0], 1)
    for frame, out in zip(decoded[1:], outs[1][1:]):
        assert np.array_equal(out, pipe_d.stylize_frames([frame], style)[0])
    for a, b in zip(outs[1], outs[2]):
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.01  # batched convolutions may round differently


@pytest.fixture(scope="module")
def short_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "short.mp4"
    return synthesize_test_video(path, skdata.astronaut(), n_frames=3, fps=10, size=(384, 384), motion="zoom")


def _shard(pipe, video: Path, out: Path, world: int, votes=lambda rank, ok: ok, **kwargs):
    """The ranks of a sharded run one after another in this process (rank 0, which joins, last)."""
    from pipeline.stylize import stylize_video_sharded

    results = {}
    for rank in reversed(range(world)):
        results[rank] = stylize_video_sharded(pipe, video, out, rank, world, lambda ok: votes(rank, ok), style_id=1,
                                              progress=False, padding=PAD, **kwargs)
    return results


def test_sharded_video_with_more_processes_than_frames(pipe_d, short_video, tmp_path, monkeypatch):
    """4 processes for 3 frames (rank 0 gets none): the joined video has every frame, in order, with the source's
    fps and audio, and its frames are those of a single-process run."""
    from pipeline.stylize import shard_range

    assert [shard_range(3, r, 4) for r in range(4)] == [(0, 0), (0, 1), (1, 2), (2, 3)]
    written = record_writes(monkeypatch)
    results = _shard(pipe_d, short_video, tmp_path / "split", 4)
    assert results[1] is results[2] is results[3] is None and results[0].frames == 3
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["short_input.mp4", "short_vtoonify_d.mp4"]
    segments = sorted((p, f) for p, f in written.items() if ".seg" in p.name and "vtoonify" in p.name)
    sharded = [frame for _, frames in segments for frame in frames]
    written.clear()
    single = pipe_d.stylize_video(short_video, tmp_path / "single", style_id=1, progress=False, padding=PAD)
    assert len(sharded) == 3 and all(np.array_equal(a, b) for a, b in zip(sharded, written[single.output_path]))
    src, joined = probe(short_video), probe(tmp_path / "split" / "short_vtoonify_d.mp4")
    assert joined.frame_count == 3 and joined.fps == pytest.approx(src.fps) and joined.duration == pytest.approx(0.3, abs=0.02)
    assert joined.has_audio and joined.audio_duration == pytest.approx(src.audio_duration, abs=0.03)
    assert joined.audio_duration == pytest.approx(joined.duration, abs=0.05)  # audio and video stay in step
    from pipeline.video import VideoReader

    with VideoReader(tmp_path / "split" / "short_vtoonify_d.mp4") as reader:
        decoded = list(reader)
    assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(decoded, sharded)) < 3


@pytest.mark.parametrize("failing", ["this process", "another process"])
def test_sharded_video_failure_leaves_nothing(pipe_d, short_video, tmp_path, monkeypatch, failing):
    """One rank fails: every rank raises, the segments the others wrote are removed, no final file appears."""
    from pipeline import stylize

    if failing == "this process":  # rank 0's own stylisation fails after rank 1 wrote its segments
        original = stylize.VToonifyPipeline.stylize_video

        def failing_on_rank0(self, *a, frame_range=None, **k):
            if frame_range[0] == 0:
                raise RuntimeError("simulated failure on rank 0")
            return original(self, *a, frame_range=frame_range, **k)

        monkeypatch.setattr(stylize.VToonifyPipeline, "stylize_video", failing_on_rank0)
        votes, match = (lambda rank, ok: ok), "simulated failure on rank 0"
    else:  # rank 0 succeeds, but the vote says another process failed
        votes, match = (lambda rank, ok: ok and rank != 0), "another process failed"
    out = tmp_path / "split"
    with pytest.raises(RuntimeError, match=match):
        _shard(pipe_d, short_video, out, 2, votes)
    assert not [p.name for p in out.iterdir()]


def test_overlapped_io_gives_the_same_video(ckpt, astronaut_video, tmp_path, monkeypatch):
    """Decoding ahead and encoding behind in threads (the default) hands the encoders exactly the frames, in the
    same order, that the serial loop does. (The frames handed over are compared: libx264's frame threads may
    make different but equally faithful choices from run to run.)"""
    from pipeline import video

    written = record_writes(monkeypatch)
    pipe = make_pipeline(ckpt)
    runs = []
    for overlap in (True, False):
        written.clear()
        result = pipe.stylize_video(astronaut_video, tmp_path / str(overlap), style_id=1, progress=False, batch_size=2,
                                    overlap=overlap, padding=PAD)
        runs.append({path.name: frames for path, frames in written.items()})
        assert result.frames == 6
        for path in (result.input_path, result.output_path):
            with video.VideoReader(path) as reader:
                decoded = list(reader)
            sent = written[path]
            assert len(decoded) == len(sent) == 6
            assert max(np.abs(d.astype(int) - s.astype(int)).mean() for d, s in zip(decoded, sent)) < 3
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) == 2
    for name in runs[0]:
        assert all(np.array_equal(a, b) for a, b in zip(runs[0][name], runs[1][name]))


def test_encoder_failure_in_the_write_thread_leaves_no_output(ckpt, astronaut_video, tmp_path, monkeypatch):
    from pipeline import video

    original, calls = video.VideoWriter.write, {"n": 0}

    def failing(self, frame):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("No space left on device")
        return original(self, frame)

    monkeypatch.setattr(video.VideoWriter, "write", failing)
    out = tmp_path / "out"
    assert run(ckpt, out, "--content", str(astronaut_video), "--video", "--scale_image", *PAD_ARGS) == 1
    assert calls["n"] == 5
    assert not any(out.iterdir())


def test_compiled_pipeline_traces_whole_and_compiles_once_per_video(ckpt, short_video, tmp_path, monkeypatch):
    """--compile: the VToonify step is one graph (fullgraph=True, no breaks), the short last batch is padded so it
    reuses that graph, and the frames match the eager pipeline. torch.compile is run with a counting eager
    backend here (inductor's C++ build takes minutes on CI); on a machine with a compiler use the real one."""
    import torch

    from pipeline import stylize
    from style_transfer import build_parser

    assert build_parser().parse_args(["--compile"]).compile == "default"
    assert tuple(build_parser()._option_string_actions["--compile"].choices) == stylize.COMPILE_MODES
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append([tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor)])
        return gm.forward

    compile_with(monkeypatch, counting_backend)
    written = record_writes(monkeypatch)
    with pytest.raises(ValueError, match="compile must be"):
        make_pipeline(ckpt, compile="fastest")
    compiled, eager = make_pipeline(ckpt, compile="default"), make_pipeline(ckpt)
    results = [pipe.stylize_video(short_video, tmp_path / name, style_id=1, progress=False, batch_size=2, padding=PAD)
               for name, pipe in (("compiled", compiled), ("eager", eager))]
    assert [r.frames for r in results] == [3, 3]
    assert len(graphs) == 1 and graphs[0][0][0] == 2  # 3 frames = a batch of 2 + a batch of 1 padded to 2
    a, b = (written[r.output_path] for r in results)
    assert len(a) == len(b) == 3
    assert max(np.abs(x.astype(int) - y.astype(int)).max() for x, y in zip(a, b)) <= 1
    # other style degrees reuse the graph (the degree is a tensor input, not a constant baked into it)
    frames = written[results[1].input_path][:2]  # two crops: the graph's shape
    style = eager.exstyle(1)
    for degree in (0.2, 0.9):
        torch.testing.assert_close(compiled.stylize_frames(frames, style, degree)[0].astype(np.float32),
                                   eager.stylize_frames(frames, style, degree)[0].astype(np.float32), rtol=0, atol=1)
    assert len(graphs) == 1
    assert not np.array_equal(*(compiled.stylize_frames(frames, style, d)[0] for d in (0.2, 0.9)))
    torch._dynamo.reset()


def test_compile_failure_falls_back_to_eager_with_a_warning(ckpt, astronaut_jpg, monkeypatch):
    """No C++ compiler (CPU) or no Triton (GPU): --compile warns once and the job finishes uncompiled."""
    import torch

    def broken_backend(gm, example_inputs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    compile_with(monkeypatch, broken_backend)
    compiled = make_pipeline(ckpt, "toonify", compile="default")
    rgb = skdata.astronaut()
    with pytest.warns(RuntimeWarning, match="compile='default' failed .*C\\+\\+ compiler.*running without compilation"):
        a = compiled.stylize_image(rgb, scale_image=True, padding=PAD)
    assert compiled.compile is None
    b = make_pipeline(ckpt, "toonify").stylize_image(rgb, scale_image=True, padding=PAD)
    assert np.array_equal(a.output, b.output)
    torch._dynamo.reset()


def _cxx_compiler() -> str | None:
    import os
    import shutil

    return next((shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c and shutil.which(c)), None)


@pytest.mark.skipif(_cxx_compiler() is None, reason="torch.compile (inductor) needs a C++ compiler on CPU; none found")
def test_real_compile_matches_eager():
    """One real inductor compile (as --compile runs it: fullgraph, static shapes) of a small StyleGAN block with the
    project's custom ops (modulated conv, upfirdn2d blur, fused bias + leaky ReLU), compared with eager."""
    import torch

    from model.stylegan.model import StyledConv, ToRGB

    torch._dynamo.reset()

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = StyledConv(8, 8, 3, 16, upsample=True)
            self.rgb = ToRGB(8, 16)

        def forward(self, x, style, noise):
            return self.rgb(self.conv(x, style, noise=noise), style)

    block = Block().eval()
    g = torch.Generator().manual_seed(0)
    x, style, noise = (torch.randn(2, 8, 8, 8, generator=g), torch.randn(2, 16, generator=g),
                       torch.randn(2, 1, 16, 16, generator=g))
    with torch.inference_mode():
        eager = block(x, style, noise)
        compiled = torch.compile(block, mode="default", fullgraph=True, dynamic=False)
        out = compiled(x, style, noise)
        again = compiled(x * 2, style, noise)  # same shapes: the same compiled code
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(again, block(x * 2, style, noise), rtol=1e-5, atol=1e-5)
    assert not torch.equal(out, again)
    torch._dynamo.reset()
