"""Figures (figures.py), evaluation (evaluate.py) and the metrics behind them.

The commands run offline on tiny fill-rule VToonify checkpoints (released structure, 32 channels), the
released-size fill-rule pSp encoder and face parser of the ``frozen_helpers`` fixture, the astronaut
portrait and a short synthetic video; their outputs are noise, so only files, sizes and finiteness are
checked. The metrics are checked on cases with known answers.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

import evaluate
import figures
from common.sheets import bar_chart, grid, inset, panel, placeholder
from conftest import read_image, write_tiny_checkpoints
from metrics.identity import SAME_PERSON_THRESHOLD, FaceEmbedder, identity_distance
from metrics.runtime import RuntimeMonitor
from metrics.temporal import consistency_mask, flicker_score, optical_flow, warping_error, warping_errors
from pipeline import registry
from pipeline.clips import PerFrameBaseline, crop_content_code, find_face_crop, mix_exstyle, read_frames
from pipeline.stylize import VToonifyPipeline
from pipeline.video import probe, synthesize_test_video

PANEL = 96
#: Small crops (64 px around the eyes, 128x128) keep the generator cheap; the panel height keeps sheets small.
COMMON = ["--device", "cpu", "--padding", "64", "64", "64", "64", "--panel", str(PANEL)]


@pytest.fixture(scope="module")
def models(tmp_path_factory, frozen_helpers) -> dict[str, Path]:
    """Tiny VToonify-D (also copied as a "colour" model) and VToonify-T in the released layout."""
    root = tmp_path_factory.mktemp("figure_models")
    paths = write_tiny_checkpoints(root, "test", 3)
    shutil.copytree(root / "vtoonify_d_test", root / "vtoonify_d_color")
    (root / "vtoonify_d_color" / "vtoonify_s_d.pt").rename(root / "vtoonify_d_color" / "vtoonify_s_d_c.pt")
    return {**paths, "color": root / "vtoonify_d_color" / "vtoonify_s_d_c.pt", **frozen_helpers}


def _helpers(models: dict[str, Path], panel: bool = True) -> list[str]:
    """Encoder, parser, device, crop padding (and panel height) options."""
    helpers = ["--style_encoder_path", str(models["encoder"]), "--faceparsing_path", str(models["faceparsing"]), *COMMON]
    return helpers if panel else helpers[:-2]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("figure_inputs")
    paths = [root / "astronaut.png", root / "mirrored.png"]
    cv2.imwrite(str(paths[0]), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(paths[1]), cv2.cvtColor(skdata.astronaut()[:, ::-1], cv2.COLOR_RGB2BGR))
    return paths


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("figure_video") / "pan.mp4"
    return synthesize_test_video(path, skdata.astronaut(), n_frames=4, fps=10, size=(384, 384), motion="pan")


# ------------------------------------------------------------------------------------------ figures
def _red_pixels(image_bgr: np.ndarray) -> int:
    b, g, r = (image_bgr[..., k].astype(int) for k in range(3))
    return int(((r > 235) & (g < 20) & (b < 20)).sum())


def test_figures_all(models, images, video, pipes, tmp_path, capsys, monkeypatch):
    panels: list[tuple[str, np.ndarray]] = []
    real_panel = figures.Layout.panel

    def recording(self, image, text):
        panels.append((text, np.array(image)))
        return real_panel(self, image, text)

    monkeypatch.setattr(figures.Layout, "panel", recording)
    loaded = []

    def loading(ckpt, _real=registry.VToonifyPipeline, **kwargs):
        loaded.append(Path(ckpt).name)
        return _real(ckpt, **kwargs)

    monkeypatch.setattr(registry, "VToonifyPipeline", loading)  # figures.py loads through the one pipeline cache
    out = tmp_path / "figures"
    exemplars = tmp_path / "exemplars"  # --style_dir: style2.jpg (its name in the exstyle file) is plain red
    exemplars.mkdir()
    cv2.imwrite(str(exemplars / "style2.jpg"), np.full((40, 40, 3), (0, 0, 255), np.uint8))
    code = figures.main(["all", "--image", str(images[0]), "--video", str(video), "--ckpt_d", str(models["d"]),
                         "--ckpt_color", str(models["color"]), "--ckpt_t", str(models["t"]), "--style_id", "1",
                         "--style_ids", "2", "--frames", "3", "--strip_frames", "1", "--output_dir", str(out),
                         "--style_dir", str(exemplars), *_helpers(models)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    expected = ["degree_astronaut.png", "styles_astronaut.png", "color_astronaut.png", "color_interp_astronaut.png",
                "backbones_astronaut.png", "video_pan_strip.png", "video_pan.gif", "video_pan.mp4", "baseline_pan.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    assert [line.split()[-1] for line in captured.out.splitlines()] == [str(out / name) for name in expected]
    # D for degree and styles, D-colour beside it, T replacing D-colour (two kept), then D again: three loads
    assert loaded == ["vtoonify_s_d.pt", "vtoonify_s_d_c.pt", "vtoonify.pt"]

    # one row of panels: caption band (18 px) + panel + a 6 px margin above and below
    row = PANEL + 18 + 12
    degree = read_image(out / "degree_astronaut.png")
    assert degree.shape[0] == row and degree.shape[1] > 7 * PANEL  # input + 6 degrees, crops wider than high
    styles = read_image(out / "styles_astronaut.png")
    assert styles.shape[0] == row
    # the exemplar inset in the styles sheet's output panel (a quarter of 96 px high), not in the degree sheet
    assert _red_pixels(degree) < 20 and _red_pixels(styles) > 18 * 18, (_red_pixels(degree), _red_pixels(styles))
    assert read_image(out / "color_astronaut.png").shape[1] > 3 * PANEL  # input, colour kept, colour transferred
    assert read_image(out / "color_interp_astronaut.png").shape[1] > 6 * PANEL  # input + 5 steps
    assert read_image(out / "backbones_astronaut.png").shape[0] == row
    assert read_image(out / "video_pan_strip.png").shape[0] == 2 * row - 6
    assert read_image(out / "baseline_pan.png").shape[0] == 4 * row - 18
    with Image.open(out / "video_pan.gif") as gif:
        assert gif.n_frames == 3 and gif.size[1] == PANEL
    info = probe(out / "video_pan.mp4")
    assert info.frame_count == 3 and info.height == PANEL and abs(info.fps - 10) < 1e-6
    for path in out.iterdir():
        assert path.stat().st_size > (2_000 if path.suffix == ".mp4" else 10_000), path

    # the degree sheet's panels are the pipeline's results at those degrees (same crop, same style code)
    degree_panels = {text: image for text, image in panels if text.startswith("degree ")}
    assert sorted(degree_panels) == sorted(f"degree {d:.2f}" for d in figures.DEGREES)
    rgb = skdata.astronaut()
    for d in figures.DEGREES:
        expected = pipes["d"].stylize_image(rgb, style_id=1, style_degree=d, scale_image=True, padding=(64,) * 4).output
        assert np.array_equal(degree_panels[f"degree {d:.2f}"], expected), d
    # and the sheet shows them: the last panel, scaled to the panel height, is in the saved PNG
    from common.sheets import fit_height

    last = fit_height(degree_panels[f"degree {figures.DEGREES[-1]:.2f}"], PANEL)
    sheet = cv2.cvtColor(degree, cv2.COLOR_BGR2RGB)
    best = cv2.minMaxLoc(cv2.matchTemplate(sheet, last, cv2.TM_SQDIFF))[0] / last.size
    assert best < 1, best  # mean squared difference (PNG is lossless: only the caption band could differ)


def test_figures_several_inputs_and_models(models, images, tmp_path):
    out = tmp_path / "figures"
    assert figures.main(["styles", "--content", *map(str, images), "--ckpt", str(models["d"]), "--style_ids", "0",
                         "--output_dir", str(out), "--name", "two", *_helpers(models)]) == 0
    assert read_image(out / "styles_two.png").shape[0] == 2 * (PANEL + 18) + 18  # one row per input
    assert figures.main(["backbones", "--content", str(images[0]), "--ckpt", str(models["t"]), "--ckpt", str(models["d"]),
                         "--label", "T", "--label", "D", "--style_id", "0", "--style_id", "2", "--output_dir", str(out),
                         *_helpers(models)]) == 0
    assert read_image(out / "backbones_astronaut.png").shape[1] > 3 * PANEL


def test_figure_errors(models, images, tmp_path, capsys):
    out = tmp_path / "figures"
    assert figures.main(["degree", "--content", str(images[0]), "--ckpt", str(models["t"]), "--output_dir", str(out),
                         *_helpers(models)]) == 1
    assert "needs a VToonify-D" in capsys.readouterr().err
    assert figures.main(["degree", "--content", str(images[0]), "--ckpt", str(tmp_path / "vtoonify_d_cartoon/vtoonify_s_d.pt"),
                         "--output_dir", str(out), *_helpers(models)]) == 1
    assert "Checkpoint not found" in capsys.readouterr().err
    coffee = tmp_path / "coffee.png"
    cv2.imwrite(str(coffee), skdata.coffee()[:, :, ::-1])
    assert figures.main(["degree", "--content", str(coffee), "--ckpt", str(models["d"]), "--output_dir", str(out),
                         *_helpers(models)]) == 1
    assert "no face" in capsys.readouterr().err
    assert not out.exists()


def test_inset_and_placeholder():
    image = np.zeros((400, 300, 3), np.uint8)
    small = np.full((50, 100, 3), 7, np.uint8)  # wider than high: 100 x 200 at a quarter of 400, cut to half of 300
    out = inset(image, small)
    assert out.shape == image.shape and not image.any()  # a copy
    assert (out[300:, 150:] == 7).all() and not out[:298].any() and not out[:, :148].any()
    assert (out[298:300, 148:] == 255).all() and (out[298:, 148:150] == 255).all()  # the white border (2 px)
    tile = placeholder("no face", 64)
    assert tile.shape == (64, 64, 3) and (tile[0, 0] == 200).all() and (tile.min(-1) < 100).any()  # grey, with text


# --------------------------------------------------------------------------------------- evaluation
@pytest.mark.filterwarnings("ignore:identity distance")  # fill-rule outputs are noise: no face in them
def test_evaluate(models, video, tmp_path, capsys, monkeypatch):
    runs = {}
    for name in ("run_vtoonify", "run_baseline"):
        def recording(*args, _real=getattr(evaluate, name), _name=name, **kwargs):
            runs[_name] = _real(*args, **kwargs)
            return runs[_name]

        monkeypatch.setattr(evaluate, name, recording)
    out = tmp_path / "eval"
    code = evaluate.main(["--content", str(video), "--ckpt", str(models["d"]), "--style_id", "1", "--max_frames", "3",
                          "--output_path", str(out), "--baseline_size", "128", *_helpers(models, panel=False)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith("| metric | VToonify | per-frame baseline |") and "| warping error |" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "metrics.json", "metrics.png"]
    result = json.loads((out / "metrics.json").read_text())
    assert result["settings"]["frames"] == 3 and result["settings"]["backbone"] == "dualstylegan"
    vt, base = result["methods"]["vtoonify"], result["methods"]["per_frame_baseline"]
    assert vt["output_size"] == [4 * s for s in vt["input_size"]]
    assert base["input_size"] == base["output_size"] == [128, 128]
    for summary in (vt, base):
        assert summary["frames"] == 3 and len(summary["per_frame"]["warping_error"]) == 2
        assert summary["warping_error"] >= 0 and summary["frame_difference"] >= 0
        assert summary["seconds_per_frame"] > 0 and summary["peak_rss_mib"] > 100
        assert len(summary["per_frame"]["seconds"]) == 3
    # the JSON's numbers are the metrics of the frames the methods produced
    for key, name in (("vtoonify", "run_vtoonify"), ("per_frame_baseline", "run_baseline")):
        run, summary = runs[name], result["methods"][key]
        errors = warping_errors(run.inputs, run.outputs)
        plain = warping_errors(run.inputs, run.outputs, compensate=False)
        assert summary["per_frame"]["warping_error"] == pytest.approx(errors.tolist(), nan_ok=True)
        assert summary["per_frame"]["frame_difference"] == pytest.approx(plain.tolist(), nan_ok=True)
        assert summary["warping_error"] == pytest.approx(float(np.nanmean(errors)))
        assert summary["frame_difference"] == pytest.approx(float(np.nanmean(plain)))
    assert summary["warping_error"] > 0 and result["methods"]["vtoonify"]["warping_error"] > 0
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("method,") and [line.split(",")[0] for line in lines[1:]] == ["vtoonify", "per_frame_baseline"]
    chart = read_image(out / "metrics.png")
    assert chart.shape[0] > 200 and chart.shape[1] > 1000


# ------------------------------------------------------------------------------------ style codes
@pytest.fixture(scope="module")
def pipes(models) -> dict[str, VToonifyPipeline]:
    kw = {"style_encoder_path": models["encoder"], "faceparsing_path": models["faceparsing"], "device": "cpu"}
    return {"d": VToonifyPipeline(models["d"], **kw), "t": VToonifyPipeline(models["t"], **kw)}


def test_split_style_code_matches_the_pipeline(pipes):
    pipe = pipes["d"]
    crop = find_face_crop(pipe.detector, [skdata.astronaut()])
    content = crop_content_code(pipe, crop)
    assert torch.equal(mix_exstyle(pipe, content, 2), pipe.style_code(crop.frame, 2, False, crop.landmarks))
    assert torch.equal(mix_exstyle(pipe, content, 2, color_transfer=True), pipe.exstyle(2))
    assert torch.equal(mix_exstyle(pipes["t"], content, 2), content)


@pytest.mark.parametrize("backbone", ["d", "t"])
def test_per_frame_baseline(pipes, backbone):
    baseline = PerFrameBaseline(pipes[backbone], size=64)
    result = baseline(skdata.astronaut(), style_id=1, style_degree=0.5)
    assert result.aligned.shape == result.output.shape == (64, 64, 3)
    assert result.output.std() > 0
    assert baseline(skdata.coffee()) is None


def test_read_frames(video):
    frames = read_frames(video, max_frames=2, start=1, stride=2)
    assert len(frames) == 2 and frames[0].shape == (384, 384, 3)
    with pytest.raises(ValueError, match="no frame"):
        read_frames(video, start=10)


# ------------------------------------------------------------------------------- temporal metrics
def _texture(shift: tuple[int, int] = (0, 0), size: int = 192) -> np.ndarray:
    """A window of the astronaut moved by ``shift`` = (dx, dy): content moves right/down by (dx, dy)."""
    dx, dy = shift
    return np.ascontiguousarray(skdata.astronaut()[150 - dy: 150 - dy + size, 150 - dx: 150 - dx + size])


def test_identical_frames_have_zero_warping_error():
    frame = _texture()
    big = cv2.resize(frame, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    assert warping_error(frame, frame, big, big) == 0.0
    assert np.array_equal(warping_errors([frame] * 3, [big] * 3), [0.0, 0.0])


def test_known_shift_is_compensated():
    a, b = _texture(), _texture((5, 3))
    flow = optical_flow(a, b)
    assert np.median(flow[..., 0]) == pytest.approx(5, abs=0.05) and np.median(flow[..., 1]) == pytest.approx(3, abs=0.05)
    compensated, plain = warping_error(a, b, a, b), warping_error(a, b, a, b, compensate=False)
    assert compensated < 1e-3 and plain > 30 * compensated
    # outputs at 2x their input: the flow is scaled to the output pixels
    a2, b2 = (cv2.resize(x, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC) for x in (a, b))
    assert warping_error(a, b, a2, b2) < 1e-3 < warping_error(a, b, a2, b2, compensate=False)


def test_missing_frames_and_occlusions():
    a = _texture()
    errors = warping_errors([a, None, a, a], [a, None, a, a])
    assert np.isnan(errors[:2]).all() and errors[2] == 0.0
    zero = np.zeros((8, 8, 2), np.float32)
    assert consistency_mask(zero, zero).all()
    forward = np.full((8, 8, 2), 2.0, np.float32)
    assert not consistency_mask(forward, forward).any()  # +2 then +2 again: inconsistent everywhere


def test_flicker_score_known_answers():
    still = _texture()
    assert flicker_score([still] * 4, [still] * 4).score == 0.0
    black, white = np.zeros_like(still), np.full_like(still, 255)
    flicker = flicker_score([still] * 4, [black, white, black, white])  # std of {0, 1, 0, 1} = 0.5
    assert flicker.score == pytest.approx(0.5) and flicker.static_fraction == 1.0
    moving = [_texture((4 * k, 0)) for k in range(3)]
    with pytest.warns(UserWarning, match="no static pixel"):
        assert math.isnan(flicker_score(moving, moving, threshold=0.0).score)


# -------------------------------------------------------------------------------- identity, runtime
@pytest.fixture(scope="module")
def embedder() -> FaceEmbedder:
    return FaceEmbedder()


def test_identity_distance(embedder):
    astronaut = skdata.astronaut()
    big = cv2.resize(astronaut, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # an "output" 4x its input
    same = identity_distance(astronaut, big, embedder)
    assert same < 0.1
    assert identity_distance(astronaut, big, embedder, output_landmarks="input") < 0.1
    cameraman = cv2.resize(np.repeat(skdata.camera()[:, :, None], 3, axis=2), (1024, 1024))
    other = identity_distance(cv2.resize(astronaut, (1024, 1024)), cameraman, embedder)
    assert other > SAME_PERSON_THRESHOLD > same
    with pytest.warns(UserWarning, match="no face found in the output"):
        assert math.isnan(identity_distance(astronaut, skdata.coffee(), embedder))


def _current_rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_runtime_monitor():
    monitor = RuntimeMonitor("cpu")
    with monitor:
        for size in (1, 20_000_000):
            with monitor.frame():
                time.sleep(0.01)
                block = np.ones(size)  # 153 MiB on the second frame
                during = _current_rss_mib()  # (freed memory of earlier tests may be reused, so compare with this)
                del block
    stats = monitor.stats()
    assert stats.frames == 2 and len(monitor.times) == 2 and min(monitor.times) >= 0.01
    assert stats.total_s == pytest.approx(sum(monitor.times))
    assert stats.peak_rss_reset and stats.cuda_peak_mib is None
    assert stats.peak_rss_mib >= during - 1 and during >= 150  # the peak saw the block


_PEAK_RESET_CHILD = """
import mmap, sys
from metrics import RuntimeMonitor
from metrics.runtime import peak_rss_bytes, reset_peak_rss
import numpy as np

size = 320 * 2**20
block = mmap.mmap(-1, size)  # fresh anonymous pages, not an allocator's reused ones
for i in range(0, size, mmap.PAGESIZE):
    block[i] = 1
block.close()  # unmapped: the pages leave the process
before = peak_rss_bytes() / 2**20
monitor = RuntimeMonitor("cpu")
with monitor:
    with monitor.frame():
        small = np.ones(1000)
        del small
stats = monitor.stats()
print(before, stats.peak_rss_mib, stats.peak_rss_reset)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists() or "VmHWM:" not in Path("/proc/self/status").read_text(),
                    reason="needs Linux /proc/self/clear_refs and the VmHWM line of /proc/self/status")
def test_runtime_monitor_resets_the_peak():
    """Entering the monitor resets the high-water mark: a block freed before it does not count.

    Run in a fresh interpreter: the test process's own history (gigabytes of freed tensors, thread exits)
    must not decide whether a 320 MiB block shows in its peak.
    """
    out = subprocess.run([sys.executable, "-c", _PEAK_RESET_CHILD], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120)
    before, after, reset = out.stdout.split()
    assert reset == "True"
    assert float(before) >= 320, out.stdout  # the block was counted before the monitor ...
    assert float(after) < float(before) - 250, out.stdout  # ... and not after it reset the mark


def test_sheets():
    tile = np.zeros((50, 100, 3), np.uint8)
    sheet = grid([[panel(tile, "a", 40), panel(tile, "a much longer caption than fits", 40)], [panel(tile, "b", 40)]], gap=4)
    assert sheet.shape == (4 + 58 + 4 + 58 + 4, 4 + 80 + 4 + 80 + 4, 3)
    chart = bar_chart({"m1": {"x": 1.0, "y": float("nan")}, "m2": {"x": 0.0, "y": 2.0}}, "title")
    assert chart.ndim == 3 and chart.shape[1] == 2 * 260 + 12
