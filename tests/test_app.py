"""The web demo (app.py): its handlers on fill-rule checkpoints, and the page in a real (headless) browser.

The browser test starts ``python app.py`` on 127.0.0.1 and drives Debian's Chromium (``/usr/bin/chromium``)
with Playwright; it is skipped, with the reason, only where that browser or the ``playwright`` package is
missing (no browser is ever downloaded). With ``VTOONIFY_SCREENSHOT=path.png`` it also saves a screenshot of
the page after a successful run (``docs/app_screenshot.png`` is made that way).
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

import app
import pipeline.registry
from conftest import free_port, write_tiny_checkpoints
from pipeline.video import probe, synthesize_test_video

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
N_STYLES = 3
D_MODEL = "VToonify-D fillrule (vtoonify_s_d.pt)"
T_MODEL = "VToonify-T fillrule (vtoonify.pt)"


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, frozen_helpers) -> Path:
    """A checkpoint folder in the released layout with fill-rule VToonify-D and -T models."""
    root = tmp_path_factory.mktemp("app_checkpoint")
    write_tiny_checkpoints(root, "fillrule", N_STYLES)
    (root / "encoder.pt").symlink_to(frozen_helpers["encoder"])
    (root / "faceparsing.pth").symlink_to(frozen_helpers["faceparsing"])
    return root


@pytest.fixture(scope="module")
def config(checkpoint_dir) -> app.AppConfig:
    return app.AppConfig.from_checkpoint_dir(checkpoint_dir, device="cpu", max_loaded_models=2)


@pytest.fixture(scope="module")
def loads():
    """``VToonifyPipeline`` as the app's pipeline cache (:mod:`pipeline.registry`) loads it, for the module: each
    checkpoint is built once and handed out again (so that tests can each have their own app state without paying
    for the models again); every load the app asks for is recorded by label-independent key (checkpoint, exstyle
    file, dtype)."""
    real, built, calls = pipeline.registry.VToonifyPipeline, {}, []

    def loading(ckpt, **kwargs):
        key = (str(ckpt), str(kwargs.get("exstyle_path")), str(kwargs.get("dtype")))
        calls.append(key)
        if key not in built:
            built[key] = real(ckpt, **kwargs)
        return built[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline.registry, "VToonifyPipeline", loading)
        yield calls


@pytest.fixture
def state(config, loads):
    """A fresh app state per test (empty model list, caches and work folder); the models themselves are shared."""
    state = app.AppState(config)
    yield state
    state.close()
    assert not state.workdir.exists()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("app_inputs")
    paths = {"astronaut": folder / "astronaut.png", "coffee": folder / "coffee.png"}
    cv2.imwrite(str(paths["astronaut"]), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(paths["coffee"]), cv2.cvtColor(skdata.coffee(), cv2.COLOR_RGB2BGR))
    paths["text"] = folder / "photo.png"
    paths["text"].write_text("this is not an image")
    paths["fake_video"] = folder / "clip.mp4"
    paths["fake_video"].write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing else")
    paths["video"] = synthesize_test_video(folder / "astro.mp4", skdata.astronaut(), n_frames=3, fps=10, size=(384, 384),
                                           motion="static")
    return paths


class Recorder:
    """A stand-in for ``gr.Progress``: records ``(fraction, desc)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def __call__(self, fraction: float, desc: str | None = None) -> None:
        self.calls.append((fraction, desc))


# ------------------------------------------------------------------------------------- configuration
def test_discover_models(tmp_path):
    files = ["vtoonify_d_arcane/vtoonify_s_d.pt", "vtoonify_d_arcane/vtoonify_s_d_c.pt", "vtoonify_d_arcane/exstyle_code.npy",
             "vtoonify_d_arcane/vtoonify_s026_d0.5.pt",  # fixed style and degree: not offered
             "vtoonify_d_cartoon/vtoonify_s_d.pt", "vtoonify_d_cartoon/exstyle_code.npy",
             "vtoonify_d_comic/vtoonify_s_d.pt",  # no exstyle_code.npy: skipped
             "vtoonify_t_pixar/vtoonify.pt", "elsewhere/mine.pt"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    models = app.discover_models(tmp_path)
    assert [m.label for m in models] == ["VToonify-D cartoon (vtoonify_s_d.pt)", "VToonify-D arcane (vtoonify_s_d.pt)",
                                         "VToonify-D arcane (vtoonify_s_d_c.pt)", "VToonify-T pixar (vtoonify.pt)"]
    assert [m.color_transfer_model for m in models] == [False, False, True, False]

    # explicit checkpoints come first (the first is the default); one already discovered is not repeated
    config = app.AppConfig.from_checkpoint_dir(tmp_path, [tmp_path / "elsewhere/mine.pt",
                                                          tmp_path / "vtoonify_t_pixar/vtoonify.pt"])
    assert config.labels == [str(tmp_path / "elsewhere/mine.pt"), "VToonify-T pixar (vtoonify.pt)",
                             "VToonify-D cartoon (vtoonify_s_d.pt)", "VToonify-D arcane (vtoonify_s_d.pt)",
                             "VToonify-D arcane (vtoonify_s_d_c.pt)"]
    assert config.style_encoder_path == tmp_path / "encoder.pt"
    assert config.missing_files() == [tmp_path / "encoder.pt", tmp_path / "faceparsing.pth"]
    with pytest.raises(ValueError, match="unknown model"):
        config.model("VToonify-D nothing")


def test_main_explains_missing_files(tmp_path, capsys):
    assert app.main(["--ckpt_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no VToonify model found" in err and "python -m hub.download" in err
    (tmp_path / "vtoonify_t_cartoon").mkdir()
    (tmp_path / "vtoonify_t_cartoon" / "vtoonify.pt").touch()
    assert app.main(["--ckpt_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "encoder.pt" in err and "faceparsing.pth" in err and "Traceback" not in err


NO_GRADIO = """
import importlib.abc, sys
from pathlib import Path

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "gradio":
            raise ImportError("gradio is blocked")

sys.meta_path.insert(0, Block())
import demo.config, demo.handlers, demo.state
assert not [n for n in sys.modules if n.split(".")[0] == "gradio"]
config = demo.config.AppConfig((demo.config.ModelEntry("T", Path("t.pt")),), Path("e.pt"), Path("p.pth"))
state = demo.state.AppState(config)
print(demo.handlers.toonify_video(state, None, "T")[1])
state.close()
try:
    import demo.page
except ImportError as e:
    print(e)
"""


def test_handlers_work_without_gradio():
    """The config, the state and the handlers import (and run) with Gradio unavailable; only the page needs it."""
    proc = subprocess.run([sys.executable, "-c", NO_GRADIO], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["Upload a video first (or press 'Use the sample video').", "gradio is blocked"]


# --------------------------------------------------------------------------------------------- photos
def test_toonify_image(state):
    progress = Recorder()
    out, message = app.toonify_image(state, skdata.astronaut(), D_MODEL, style_id=1, style_degree=0.5, progress=progress)
    # eye distance 43.3 px -> 64 px, crop 400x352 around the face, result 4x
    assert out is not None and out.dtype == np.uint8 and out.shape == (1408, 1600, 3), message
    assert "400x352" in message and "1600x1408" in message
    assert [desc for _, desc in progress.calls] == ["Loading the model", "Stylising"]
    assert state.loaded == [D_MODEL]


def test_image_errors_are_messages(state, inputs):
    out, message = app.toonify_image(state, str(inputs["coffee"]), D_MODEL, style_id=0)
    assert out is None and message.startswith("No face found in this photo")
    out, message = app.toonify_image(state, str(inputs["text"]), D_MODEL, style_id=0)
    # the words are common.images.read_rgb's; the page shows them in one line, with the file's name only
    assert out is None and message.startswith("Unsupported file: ") and "photo.png" in message, message
    assert str(inputs["text"].parent) not in message and "\n" not in message
    out, message = app.toonify_image(state, None, D_MODEL)
    assert out is None and "Upload a photo first" in message
    out, message = app.toonify_image(state, skdata.astronaut(), D_MODEL, style_id=N_STYLES)
    assert out is None and message == "Error: style id 3 is out of range: this model has 3 styles (0 .. 2)"
    big = np.zeros((1200, 800, 3), np.uint8)
    out, message = app.toonify_image(state, big, D_MODEL, style_id=0, scale_image=False)
    assert out is None and "3200x4800" in message and "Crop around the face" in message


def test_photo_handler_gives_the_pipeline_result(state):
    rgb = skdata.astronaut()
    out, message = app.toonify_image(state, rgb, D_MODEL, style_id=2, style_degree=0.3, color_transfer=True)
    assert out is not None, message
    expected = state.pipeline(D_MODEL).stylize_image(rgb, style_id=2, style_degree=0.3, color_transfer=True,
                                                     scale_image=True).output
    assert np.array_equal(out, expected)
    out, _ = app.toonify_image(state, rgb[:256, 128:384], D_MODEL, style_id=0, scale_image=False)
    assert np.array_equal(out, state.pipeline(D_MODEL).stylize_image(rgb[:256, 128:384], style_id=0).output)


def test_models_are_evicted_least_recently_used_first(config, loads):
    state = app.AppState(replace(config, max_loaded_models=2))
    try:
        before = len(loads)
        state.pipeline(D_MODEL)
        state.pipeline(T_MODEL)
        assert state.loaded == [D_MODEL, T_MODEL] and len(loads) == before + 2
        state.pipeline(D_MODEL)  # already loaded: used again, not reloaded
        assert state.loaded == [T_MODEL, D_MODEL] and len(loads) == before + 2
    finally:
        state.close()
    state = app.AppState(replace(config, max_loaded_models=1))
    try:
        before = len(loads)
        state.pipeline(D_MODEL)
        state.pipeline(T_MODEL)
        assert state.loaded == [T_MODEL]  # D was dropped to make room
        state.pipeline(D_MODEL)
        assert state.loaded == [D_MODEL] and len(loads) == before + 3  # and had to be loaded again
        assert loads[-1] == loads[-3]
    finally:
        state.close()


def test_old_job_folders_expire(state):
    old, recent = state.new_job_dir(), state.new_job_dir()
    (old / "result.mp4").write_bytes(b"x")
    stale = time.time() - app.RESULT_MAX_AGE - 60
    os.utime(old, (stale, stale))
    new = state.new_job_dir()
    assert not old.exists() and recent.is_dir() and new.is_dir() and new.parent == state.workdir
    assert len({old, recent, new}) == 3


# --------------------------------------------------------------------------------------------- videos
def test_video_errors_are_messages(state, inputs):
    for handler_result in (app.toonify_video(state, str(inputs["fake_video"]), D_MODEL, style_id=0),
                           (None, app.describe_video(state, str(inputs["fake_video"])))):
        out, message = handler_result
        assert out is None and message.startswith("Unsupported file: clip.mp4: ")
        assert str(inputs["fake_video"].parent) not in message  # the temporary upload folder is not shown
    out, message = app.toonify_video(state, str(inputs["astronaut"]), D_MODEL, style_id=0)
    assert out is None and "still image" in message
    out, message = app.toonify_video(state, None, D_MODEL)
    assert out is None and "Upload a video first" in message


def test_video_limits_are_checked_before_any_work(config, tmp_path):
    video = synthesize_test_video(tmp_path / "long.mp4", skdata.astronaut(), n_frames=12, fps=8, size=(64, 64),
                                  with_audio=False)
    state = app.AppState(replace(config, max_video_seconds=1.0))
    try:
        out, message = app.toonify_video(state, str(video), D_MODEL, style_id=0)
        assert out is None and "1.5 s long" in message and "up to 1 s" in message and "--max_video_seconds" in message
        assert app.describe_video(state, str(video)) == message
        assert state.loaded == []  # refused before a model was even loaded
    finally:
        state.close()
    state = app.AppState(replace(config, max_video_seconds=None, max_video_frames=10))
    try:
        out, message = app.toonify_video(state, str(video), D_MODEL, style_id=0)
        assert out is None and "12 frames" in message and "--max_video_frames" in message
    finally:
        state.close()


def test_toonify_video_keeps_audio(state, tmp_path):
    video = synthesize_test_video(tmp_path / "astro.mp4", skdata.astronaut(), n_frames=3, fps=10, size=(384, 384),
                                  motion="static")
    assert app.describe_video(state, str(video)) == "astro.mp4: 384x384, 0.3 s, 3 frames at 10 fps, with audio."
    progress = Recorder()
    out, message = app.toonify_video(state, str(video), D_MODEL, style_id=2, progress=progress)
    assert out is not None, message
    info = probe(out)
    assert Path(out).name == "astro_vtoonify_d.mp4" and Path(out).is_relative_to(state.workdir)
    # the face fills the frame as in the photo test: the same 400x352 crop, 4x larger in the result
    assert (info.width, info.height, info.frame_count) == (1600, 1408, 3) and info.has_audio
    assert "3 frames at 10 fps, audio kept" in message
    assert os.listdir(Path(out).parent) == [Path(out).name]  # the cropped input copy is not kept
    assert [desc for _, desc in progress.calls] == ["Checking the video", "Loading the model", "Finding the face"]


def test_sample_video(state):
    path = state.sample_video()
    assert path == state.sample_video() and path.is_relative_to(state.workdir)
    info = probe(path)
    assert info.has_audio and info.frame_count == 16 and info.duration <= state.config.max_video_seconds


# ------------------------------------------------------------------------------------------- styles
def test_style_thumbnail(state):
    image, caption = app.style_thumbnail(state, D_MODEL, 1)
    assert image.shape == (app.THUMBNAIL_SIZE, app.THUMBNAIL_SIZE, 3) and image.dtype == np.uint8
    assert caption.startswith("Style 1 of 3 (exemplar style1.jpg)")
    assert app.style_thumbnail(state, D_MODEL, 1)[0] is image  # cached
    other, _ = app.style_thumbnail(state, D_MODEL, 2)
    assert np.abs(other.astype(int) - image).mean() > 1

    image, caption = app.style_thumbnail(state, D_MODEL, N_STYLES)
    assert image is None and "out of range" in caption
    image, caption = app.style_thumbnail(state, T_MODEL, 0)
    assert image is None and "VToonify-T has no exemplar styles" in caption
    info = state.model_info(T_MODEL)
    assert not info.is_dual and info.style_names == ()
    assert state.model_info(D_MODEL).default_style_id == 0  # 26 (the original's default) needs 27 styles


def test_build_app(state):
    demo = app.build_app(state.config, state)
    assert isinstance(demo, gr.Blocks)
    ids = {block.elem_id for block in demo.blocks.values()}
    assert {"model", "style-id", "style-thumbnail", "photo-input", "photo-sample", "run-photo", "photo-output",
            "photo-status", "video-input", "video-sample", "run-video", "video-output", "video-status"} <= ids


# ------------------------------------------------------------------------------------------ browser
def _wait_until_serving(url: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the app exited with code {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"the app did not answer at {url} within {timeout} s:\n{log.read_text()}")


@pytest.fixture
def playwright_api():
    """Playwright's sync API, or a skip where the browser test cannot run (checked before the app starts)."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture
def app_url(checkpoint_dir, tmp_path):
    """``python app.py`` serving the fill-rule checkpoints on 127.0.0.1 (terminated afterwards)."""
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "app.py", "--ckpt_dir", str(checkpoint_dir), "--device", "cpu",
                                   "--host", "127.0.0.1", "--port", str(port)],
                                  cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_serving(url, server, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)


_RESULT_SIZE = """() => {
    const img = document.querySelector('#photo-output img');
    return img && img.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight] : null;
}"""


def _upload_photo(page, path: Path, decodable: bool = True) -> None:
    """Upload ``path`` into the photo input and wait until the page shows it (or its broken preview)."""
    preview = page.locator("#photo-input img")
    before = preview.get_attribute("src") if preview.count() else None
    page.locator("#photo-input input[type=file]").set_input_files(str(path))
    page.wait_for_function("([before, decodable]) => { const img = document.querySelector('#photo-input img');"
                           " return img && img.src !== before && (!decodable || (img.complete && img.naturalWidth > 0)); }",
                           arg=[before, decodable])


def _save_screenshot(page, path: Path) -> None:
    """The page as a 256-colour PNG (a third of the size of the screenshot as taken, for the docs)."""
    screenshot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    screenshot.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def test_browser_end_to_end(playwright_api, app_url, inputs):
    expect, wait = playwright_api.expect, 60_000
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(wait)
            page.goto(app_url)
            expect(page.locator("#style-note")).to_contain_text("Style 0 of 3", timeout=wait)  # the model is ready

            _upload_photo(page, inputs["astronaut"])
            page.click("#run-photo")
            size = page.wait_for_function(_RESULT_SIZE, timeout=180_000).json_value()
            assert size == [1600, 1408]
            expect(page.locator("#photo-status")).to_contain_text("result 1600x1408", timeout=wait)
            if os.environ.get("VTOONIFY_SCREENSHOT"):
                _save_screenshot(page, Path(os.environ["VTOONIFY_SCREENSHOT"]))

            _upload_photo(page, inputs["coffee"])
            page.click("#run-photo")
            expect(page.locator("#photo-status")).to_contain_text("No face found in this photo", timeout=wait)
            expect(page.locator("#photo-output img")).to_have_count(0, timeout=wait)

            _upload_photo(page, inputs["text"], decodable=False)  # an image type by name, not by content
            page.click("#run-photo")
            expect(page.locator("#photo-status")).to_contain_text("Unsupported file: ", timeout=wait)
            expect(page.locator("#photo-status")).to_contain_text("photo.png", timeout=wait)

            # the video tab: a short clip comes back stylised, with its audio
            page.get_by_role("tab", name="Video").click()
            page.locator("#video-input input[type=file]").set_input_files(str(inputs["video"]))
            expect(page.locator("#video-status")).to_contain_text("3 frames at 10 fps, with audio", timeout=wait)
            page.click("#run-video")
            expect(page.locator("#video-status")).to_contain_text("3 frames at 10 fps, audio kept", timeout=180_000)
            expect(page.locator("#video-output video")).to_have_count(1, timeout=wait)
            src = page.locator("#video-output video").get_attribute("src")
            assert src and "astro_vtoonify_d" in src, src

            # VToonify-T: no exemplar styles, and the style controls are disabled
            page.locator("#model input").click()
            page.get_by_role("option", name=T_MODEL).click()
            expect(page.locator("#style-note")).to_contain_text("VToonify-T has no exemplar styles", timeout=wait)
            expect(page.locator("#style-id input[type=range]")).to_be_disabled(timeout=wait)
        finally:
            browser.close()
