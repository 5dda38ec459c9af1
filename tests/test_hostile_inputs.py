"""Hostile inputs to style_transfer.py and the pipeline: damaged photos, bad paths, out-of-range options,
huge frames, malicious checkpoints, output names, no network, and the first-run download (faked)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data

import style_transfer
from common.errors import InputError, OptionError
from common.images import read_image_file
from common.options import RANGES
from hub import fetching, first_run
from pipeline.memory import MemoryLimitError, check_memory, estimate_bytes
from pipeline.stylize import VToonifyPipeline


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def main(argv, capsys) -> tuple[int, str]:
    code = style_transfer.main(argv)
    return code, capsys.readouterr().err


# ------------------------------------------------------------------------------------------ damaged photo
def test_truncated_jpeg_is_refused_in_our_words(photo, tmp_path, capsys):
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.jpg: the image file is truncated"):
        read_image_file(cut)
    assert read_image_file(photo).shape == (512, 512, 3)  # a whole file reads as before
    # on the command line: one line, before any checkpoint is looked at, nothing written
    code, err = main(["--content", str(cut), "--output_path", str(tmp_path / "out"), "--ckpt", "missing.pt"], capsys)
    assert code == 1 and err.count("\n") == 1 and "the image file is truncated" in err and "missing.pt" not in err
    assert not (tmp_path / "out").exists()


def test_truncated_png_is_refused(tmp_path):
    path = tmp_path / "p.png"
    cv2.imwrite(str(path), data.astronaut())
    path.write_bytes(path.read_bytes()[:20_000])
    with pytest.raises(InputError, match=r"p\.png: the image file is (truncated|damaged)"):
        read_image_file(path)


def test_folder_as_content_and_file_as_output_path(photo, tmp_path, capsys):
    code, err = main(["--content", str(tmp_path)], capsys)
    assert code == 1 and f"--content {tmp_path} is a folder" in err
    taken = tmp_path / "taken"
    taken.write_text("")
    code, err = main(["--content", str(photo), "--output_path", str(taken)], capsys)
    assert code == 1 and f"--output_path {taken} is a file" in err and "Errno" not in err


# ----------------------------------------------------------------------------------------- option ranges
@pytest.mark.parametrize("argv, expected", [
    (["--style_degree", "1.5"], "argument --style_degree: must be in [0, 1]"),
    (["--style_degree", "-0.2"], "argument --style_degree: must be in [0, 1]"),
    (["--style_degree", "nan"], "argument --style_degree: must be in [0, 1]"),
    (["--batch_size", "0"], "argument --batch_size: must be an integer in [1, 1024]"),
    (["--padding", "200", "200", "-1", "200"], "argument --padding: must be an integer in [0, 10000]"),
    (["--style_id", "-1"], "argument --style_id: must be an integer >= 0"),
    (["--smooth_parsing", "-2"], "argument --smooth_parsing: must be an integer in [0, 64]"),
    (["--max_side", "4"], "argument --max_side: must be an integer in [8, 100000]"),
])
def test_out_of_range_options_are_usage_errors_that_state_the_range(argv, expected, capsys):
    with pytest.raises(SystemExit) as info:
        style_transfer.build_parser().parse_args(argv)
    assert info.value.code == 2
    assert expected in capsys.readouterr().err


def bare_pipeline(backbone: str = "dualstylegan") -> VToonifyPipeline:
    """A pipeline object without networks: enough for the checks that run before any work."""
    pipe = VToonifyPipeline.__new__(VToonifyPipeline)
    pipe.backbone, pipe.device, pipe.dtype, pipe._width_scale = backbone, torch.device("cpu"), torch.float32, 1.0

    class NoDetector:
        def detect(self, image):
            raise AssertionError("the check must come before any work")

    pipe.detector = NoDetector()
    return pipe


@pytest.mark.parametrize("kwargs, expected", [
    ({"style_degree": 1.5}, r"style_degree must be in \[0, 1\]"),
    ({"padding": (200, -5, 200, 200)}, r"padding must be an integer in \[0, 10000\]"),
    ({"max_side": 0}, r"max_side must be an integer in \[8, 100000\]"),
])
def test_python_api_checks_the_same_ranges(kwargs, expected):
    with pytest.raises(OptionError, match=expected):
        bare_pipeline().stylize_image(np.zeros((64, 64, 3), np.uint8), **kwargs)


@pytest.mark.parametrize("kwargs, expected", [
    ({"style_degree": -0.2}, r"style_degree must be in \[0, 1\]"),
    ({"batch_size": 0}, r"batch_size must be an integer in \[1, 1024\]"),
    ({"smooth_parsing": -1}, r"smooth_parsing must be an integer in \[0, 64\]"),
])
def test_python_api_checks_video_options_before_reading(kwargs, expected, tmp_path):
    with pytest.raises(OptionError, match=expected):
        bare_pipeline().stylize_video(tmp_path / "not_read.mp4", tmp_path, **kwargs)


def test_demo_sliders_use_the_same_ranges():
    import app

    assert app.RANGES is RANGES  # the page's style-degree slider is built from this table
    assert (RANGES["style_degree"].low, RANGES["style_degree"].high) == (0.0, 1.0)


# ---------------------------------------------------------------------------------------------- memory
def test_memory_estimate_refuses_a_huge_photo_with_the_number_and_the_fix(monkeypatch):
    monkeypatch.setenv("VTOONIFY_MAX_MEMORY", "8G")
    need = estimate_bytes((8000, 6000), "dualstylegan")
    assert need > 100 * 2**30  # the 4x result alone is 24000x32000 RGB
    with pytest.raises(MemoryLimitError) as info:
        check_memory((8000, 6000), "dualstylegan")
    message = str(info.value)
    assert f"about {need / 2**30:.1f} GiB" in message and "8.0 GiB are available" in message
    assert "--scale_image" in message
    side = int(message.split("--max_side ")[1].split()[0])
    fitted = (side, side * 6000 // 8000)
    assert estimate_bytes(fitted, "dualstylegan") <= 8 * 2**30 < estimate_bytes((side + 64, side + 48), "dualstylegan")
    check_memory((400, 400), "dualstylegan")  # a cropped face fits


def test_pipeline_refuses_before_any_work_without_allocating(monkeypatch):
    monkeypatch.setenv("VTOONIFY_MAX_MEMORY", "4G")
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (8000, 6000, 3))  # no 144 MB array either
    with pytest.raises(MemoryLimitError, match="--max_side"):
        bare_pipeline().stylize_image(huge)
    with pytest.raises(AssertionError, match="before any work"):  # with --max_side it fits and goes on
        bare_pipeline().stylize_image(huge, max_side=512)


# -------------------------------------------------------------------------------------------- messages
def test_malicious_checkpoint_refusal_is_our_only_message(tmp_path, capsys, recwarn):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    folder = tmp_path / "vtoonify_d_evil"
    folder.mkdir()
    torch.save({"g_ema": Evil()}, folder / "vtoonify_s_d.pt")
    for name in ("exstyle_code.npy", "encoder.pt", "faceparsing.pth"):
        (folder / name).touch()
    photo = tmp_path / "a.jpg"
    cv2.imwrite(str(photo), data.astronaut())
    code, err = main(["--content", str(photo), "--ckpt", str(folder / "vtoonify_s_d.pt"), "--cpu",
                      "--style_encoder_path", str(folder / "encoder.pt"), "--faceparsing_path",
                      str(folder / "faceparsing.pth"), "--output_path", str(tmp_path / "out")], capsys)
    assert code == 1
    assert err.count("\n") == 1 and "refusing to load" in err and "posix.system" in err
    assert "weights_only" not in err and "will likely succeed" not in err
    assert not [w for w in recwarn if "weights_only" in str(w.message)]


def test_whole_stem_names_the_outputs():
    assert style_transfer._output_name("photos/IMG_1.edit.jpg") == "IMG_1.edit"
    assert style_transfer._output_name("photos/IMG_1.jpg") == "IMG_1"
    assert style_transfer._output_name("clip.final.mp4") == "clip.final"


def test_download_fails_fast_when_the_host_does_not_resolve(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # huggingface_hub itself would retry for ~20 s
    with pytest.raises(fetching.DownloadError, match="cannot resolve huggingface.co") as info:
        fetching.fetch(["encoder.pt"], dest=tmp_path, progress=False)
    assert "python -m hub.download" in str(info.value)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------- first-run download
class FakeHub:
    def __init__(self):
        self.filenames: list[str] = []

    def __call__(self, repo_id, filename, *, revision=None, local_dir=None):
        self.filenames.append(filename)
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"not a real checkpoint")
        return str(out)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    hub = FakeHub()
    monkeypatch.delenv("VTOONIFY_NO_DOWNLOAD", raising=False)
    monkeypatch.setattr(fetching, "hub_download", hub)
    monkeypatch.setattr(first_run, "remote_sizes", lambda rels, *a, **k: {rel: 250_000_000 for rel in rels})
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("a.jpg", data.astronaut())
    return hub


DEFAULT_FILES = ["models/encoder.pt", "models/faceparsing.pth", "models/vtoonify_d_cartoon/vtoonify_s_d.pt",
                 "models/vtoonify_d_cartoon/exstyle_code.npy"]


def test_first_run_fetches_the_missing_default_files(fake_hub, capsys):
    code, err = main(["--content", "a.jpg", "--cpu", "--no_progress"], capsys)
    assert sorted(fake_hub.filenames) == sorted(DEFAULT_FILES)
    assert "first run: downloading 4 missing file(s), 1.0 GB" in err
    assert all(Path("checkpoint", f.removeprefix("models/")).is_file() for f in DEFAULT_FILES)
    assert code == 1 and "checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt: " in err  # the fake files are not checkpoints
    fake_hub.filenames.clear()
    main(["--content", "a.jpg", "--cpu", "--no_progress"], capsys)
    assert fake_hub.filenames == []  # present now: not fetched again


@pytest.mark.parametrize("how", ["flag", "env"])
def test_no_download_flag_and_env_keep_the_old_message(fake_hub, capsys, monkeypatch, how):
    argv = ["--content", "a.jpg", "--cpu"]
    if how == "flag":
        argv.append("--no_download")
    else:
        monkeypatch.setenv("VTOONIFY_NO_DOWNLOAD", "1")
    code, err = main(argv, capsys)
    assert code == 1 and fake_hub.filenames == []
    assert "Checkpoint not found" in err and "python -m hub.download" in err


def test_explicit_paths_are_never_downloaded(fake_hub, capsys):
    code, err = main(["--content", "a.jpg", "--cpu", "--ckpt", "mine/vtoonify_d_cartoon/vtoonify_s_d.pt",
                      "--style_encoder_path", "mine/encoder.pt"], capsys)
    assert fake_hub.filenames == ["models/faceparsing.pth"]  # the one default path still missing
    assert code == 1 and "Checkpoint not found: mine/vtoonify_d_cartoon/vtoonify_s_d.pt" in err
    assert not Path("mine").exists()


def test_demo_fetches_its_default_model(fake_hub):
    import app

    app.fetch_default_model(app.build_parser().parse_args(["--ckpt_dir", "ckpt"]))
    assert sorted(fake_hub.filenames) == sorted(DEFAULT_FILES)
    assert [m.label for m in app.discover_models("ckpt")] == ["VToonify-D cartoon (vtoonify_s_d.pt)"]
    fake_hub.filenames.clear()
    app.fetch_default_model(app.build_parser().parse_args(["--ckpt_dir", "ckpt", "--no_download"]))
    assert fake_hub.filenames == []
