"""Every numeric option of every entry point is ranged by the one table (common.options.RANGES); a mistake is one
line before any work; a flag that would do nothing says so (issue 24, causes 4 and 7)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
from stylize_helpers import PAD_ARGS, run

import app
import evaluate
import figures
import smooth_parsing_map
import style_transfer
from common.errors import DeviceError, InputError, OptionError
from common.options import RANGES
from conftest import make_pipeline, model_path
from hub import download
from pipeline import exstyle, memory
from pipeline.preflight import ignored_flags

PARSERS = {"style_transfer.py": style_transfer.build_parser, "smooth_parsing_map.py": smooth_parsing_map.build_parser,
           "evaluate.py": evaluate.build_parser, "figures.py": figures.build_parser, "app.py": app.build_parser,
           "python -m pipeline.exstyle": exstyle.build_parser, "python -m hub.download": download._parser}


def _actions(parser: argparse.ArgumentParser, where: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{where} {name}")
        else:
            yield where, action


def unranged_options() -> list[str]:
    """Every numeric option of the entry points whose type is not a RANGES parser."""
    tables = [id(r) for r in RANGES.values()]
    bad = []
    for name, build in PARSERS.items():
        for where, action in _actions(build(), name):
            if not action.option_strings or action.nargs == 0:  # positionals (file names), flags
                continue
            numeric_default = isinstance(action.default, (int, float)) and not isinstance(action.default, bool)
            if action.type in (int, float) or (action.type is None and numeric_default):
                bad.append(f"{where} {action.option_strings[0]} (type {getattr(action.type, '__name__', None)})")
            elif hasattr(action.type, "range") and id(action.type.range) not in tables:
                bad.append(f"{where} {action.option_strings[0]} (a range outside RANGES)")
    return bad


def test_every_numeric_option_of_every_entry_point_is_ranged_by_the_one_table():
    assert unranged_options() == []


def test_the_walk_finds_an_unranged_option(monkeypatch):
    """The walk above is not vacuous: a plain int option (in a figures subcommand) is reported."""
    build = figures.build_parser

    def with_bad_option():
        p = build()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["video"].add_argument("--bad", type=int, default=3)
        return p

    monkeypatch.setitem(PARSERS, "figures.py", with_bad_option)
    assert unranged_options() == ["figures.py video --bad (type int)"]


@pytest.mark.parametrize("argv, message", [
    (["evaluate.py", "--content", "x.mp4", "--style_degree", "5"], "--style_degree: must be in [0, 1]"),
    (["evaluate.py", "--content", "x.mp4", "--padding", "200", "-1", "200", "200"], "--padding: must be an integer in"),
    (["smooth_parsing_map.py", "--video_path", "x.mp4", "--window_size", "-2"], "--window_size: must be an integer in"),
    (["figures.py", "degree", "--content", "x.jpg", "--degrees", "2.0", "-1.0"], "--degrees: must be in [0, 1]"),
    (["figures.py", "video", "--content", "x.mp4", "--strip_frames", "0"], "--strip_frames: must be an integer in"),
    (["figures.py", "styles", "--content", "x.jpg", "--panel", "0"], "--panel: must be an integer in"),
    (["figures.py", "baseline", "--content", "x.mp4", "--padding", "-5", "0", "0", "0"], "--padding: must be"),
    (["style_transfer.py", "--style_refine", "-1"], "--style_refine: must be an integer"),
    (["app.py", "--port", "0"], "--port: must be an integer in [1, 65535]"),
    (["python -m pipeline.exstyle", "add", "a.jpg", "--to", "b.npy", "--style_refine", "-3"], "--style_refine: must be"),
])
def test_out_of_range_values_are_usage_errors_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        PARSERS[argv[0]]().parse_args(argv[1:])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "Traceback" not in err, err
    return err


def test_style_transfer_padding_zero_with_scale_image_is_one_line_before_loading(tmp_path, astronaut_jpg, capsys):
    """Refused by the options check before any model is looked for (the checkpoint does not even exist)."""
    status = style_transfer.main(["--content", str(astronaut_jpg), "--scale_image", "--padding", "0", "0", "0", "0",
                                  "--ckpt", str(tmp_path / "missing.pt"), "--output_path", str(tmp_path / "out")])
    assert status == 1
    assert "padding [0, 0, 0, 0] leaves a crop under 8 pixels" in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()
    assert evaluate.main(["--content", str(astronaut_jpg), "--padding", "0", "0", "0", "0",
                          "--ckpt", str(tmp_path / "missing.pt"), "--output_path", str(tmp_path / "eval")]) == 1
    assert "padding [0, 0, 0, 0] leaves a crop under 8 pixels" in _one_error_line(capsys)


@pytest.mark.parametrize("device", ["tpu", "cuda:x"])
def test_unknown_device_is_one_line_in_every_script(device, ckpt, tmp_path, astronaut_jpg, astronaut_video, capsys):
    """style_transfer.py checks it before anything loads; smooth_parsing_map.py and pipeline.exstyle go through
    resolve_device; evaluate.py, figures.py, app.py and the API through VToonifyPipeline (resolve_device too)."""
    status = style_transfer.main(["--content", str(astronaut_jpg), "--device", device,
                                  "--ckpt", str(tmp_path / "missing.pt"), "--output_path", str(tmp_path / "out")])
    assert status == 1 and f"{device!r}" in _one_error_line(capsys)
    assert smooth_parsing_map.main(["--video_path", str(astronaut_video), "--device", device,
                                    "--output_path", str(tmp_path / "maps")]) == 1
    assert f"{device!r}" in _one_error_line(capsys)
    assert exstyle.main(["add", str(astronaut_jpg), "--to", str(tmp_path / "bank.npy"), "--device", device]) == 1
    assert f"{device!r}" in _one_error_line(capsys)
    from pipeline.stylize import VToonifyPipeline

    with pytest.raises(DeviceError, match=repr(device)):
        VToonifyPipeline(model_path(ckpt), style_encoder_path=ckpt / "encoder.pt",
                         faceparsing_path=ckpt / "faceparsing.pth", device=device)


def test_landmark_path_that_is_not_a_dlib_model_is_one_line(ckpt, tmp_path, astronaut_jpg, capsys):
    bad = tmp_path / "landmarks.dat"
    bad.write_bytes(b"not a dlib model at all" * 10)
    assert run(ckpt, tmp_path / "out", "--content", str(astronaut_jpg), "--scale_image", *PAD_ARGS,
               "--landmark_path", str(bad)) == 1
    err = _one_error_line(capsys)
    assert f"{bad} is not a dlib landmark model" in err, err


# --------------------------------------------------------------------------------------- cause 7: idle flags
def _args(*argv: str) -> argparse.Namespace:
    return style_transfer.build_parser().parse_args(list(argv))


@pytest.mark.parametrize("argv, note", [
    (["--track"], "--track is for videos"),
    (["--smooth_parsing", "2"], "--smooth_parsing is for videos"),
    (["--batch_size", "8"], "--batch_size is for videos"),
    (["--video", "--track"], "without --scale_image there is no crop"),
    (["--cpu", "--device", "tpu"], "--device tpu is ignored"),
    (["--max_faces", "3"], "--max_faces is for --faces all"),
])
def test_flags_that_do_nothing_say_so(argv, note):
    notes = ignored_flags(_args(*argv))
    assert len(notes) == 1 and note in notes[0], notes


def test_no_warning_for_flags_that_act():
    assert ignored_flags(_args("--video", "--scale_image", "--track", "--smooth_parsing", "2", "--batch_size", "2",
                               "--cpu", "--device", "cpu", "--faces", "all", "--max_faces", "2")) == []


def test_style_transfer_prints_the_warning_once_on_stderr(ckpt, tmp_path, astronaut_jpg, capsys):
    assert run(ckpt, tmp_path / "out", "--content", str(astronaut_jpg), "--scale_image", *PAD_ARGS, "--track") == 0
    err = capsys.readouterr().err
    assert err.count("warning: --track is for videos") == 1, err


def test_memory_estimate_uses_the_frames_batched_and_suggests_only_what_is_not_given(ckpt, tmp_path,
                                                                                    astronaut_video, monkeypatch):
    assert memory.frames_batched(64, 3) == 3 and memory.frames_batched(4, 100) == 4 and memory.frames_batched(8, 0) == 8
    seen = []
    original = memory.check_memory

    class Seen(Exception):
        pass

    def spy(size, backbone, batch=1, *args, **kwargs):
        seen.append(batch)
        raise Seen  # the estimate is all this test needs

    monkeypatch.setattr(memory, "check_memory", spy)
    pipe = make_pipeline(ckpt)
    from pipeline.api import stylize_video

    for scale_image in (False, True):
        with pytest.raises(Seen):
            stylize_video(pipe, astronaut_video, tmp_path, style_id=1, padding=(96, 96, 96, 96), batch_size=64,
                          scale_image=scale_image, progress=False)
    assert seen == [6, 6]  # a 6-frame video holds 6 frames per batch, not 64

    monkeypatch.setenv(memory.MAX_MEMORY_ENV, "1M")
    with pytest.raises(memory.MemoryLimitError) as e:
        original((400, 400), "dualstylegan", 2, scale_image=True, max_side=400)
    text = str(e.value)
    assert "--scale_image" not in text and "lower --max_side to" in text and "--batch_size under 2" in text, text
    with pytest.raises(memory.MemoryLimitError) as e:
        original((400, 400), "dualstylegan", 1)
    assert "use --scale_image" in str(e.value) and "--max_side 8 to shrink" in str(e.value)
    assert "--batch_size" not in str(e.value)


@pytest.mark.parametrize("style_id", [1.5, True, "1", np.float32(1.0)])
def test_api_style_id_must_be_an_integer(pipe_d, astronaut_jpg, style_id):
    from common.images import read_rgb

    with pytest.raises(OptionError, match="style_id must be an integer"):
        pipe_d.stylize_image(read_rgb(astronaut_jpg), style_id=style_id, scale_image=True, padding=(96, 96, 96, 96))
    with pytest.raises((OptionError, InputError), match="style_id"):
        pipe_d.exstyle(style_id)


def test_api_integer_style_ids_of_numpy_are_accepted(pipe_d):
    assert pipe_d.exstyle(np.int64(1)) is not None
