"""``--engine`` beside style_transfer.py: the web demo (app.py), figures.py and evaluate.py, also as ``vtoonify demo /
figures / evaluate``; one declaration (:func:`common.options.add_engine_argument`), the pipeline cache keyed by engine.

The real runs take the session's ONNX exports (``exported`` in conftest.py: the same tiny files byte for byte) through
``$VTOONIFY_CACHE``, so nothing is exported here.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

import app
import evaluate
import figures
import style_transfer
import vtoonify_cli
from common.errors import OptionError
from common.options import ENGINE_HELP, ENGINES
from conftest import model_path, read_image
from pipeline import precision, registry

PAD = ["--padding", "64", "64", "64", "64"]


def _engine_action(parser: argparse.ArgumentParser) -> argparse.Action:
    """The ``--engine`` action of ``parser`` (figures.py: of its ``degree`` subcommand)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return _engine_action(action.choices["degree"])
        if "--engine" in action.option_strings:
            return action
    raise AssertionError("no --engine")


@pytest.mark.parametrize("script", [style_transfer, app, figures, evaluate])
def test_every_tool_declares_engine_alike(script):
    action = _engine_action(script.build_parser())
    assert tuple(action.choices) == ENGINES and action.default == "torch" and action.help == ENGINE_HELP


@pytest.mark.parametrize("argv", [["stylize"], ["demo"], ["figures", "degree", "--content", "x.jpg"],
                                  ["evaluate", "--content", "x.mp4"]])
def test_an_unknown_engine_is_one_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        vtoonify_cli.main([*argv, "--engine", "tvm"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("error: ") == 1 and "Traceback" not in err, err
    assert "argument --engine: invalid choice: 'tvm'" in err


@pytest.fixture
def engine_cache(exported, tmp_path, monkeypatch) -> Path:
    """``$VTOONIFY_CACHE`` whose ``engines`` folder is the session's export cache; returns that folder."""
    (tmp_path / "vtoonify_cache").mkdir()
    (tmp_path / "vtoonify_cache" / "engines").symlink_to(exported["cache"].folder)
    monkeypatch.setenv("VTOONIFY_CACHE", str(tmp_path / "vtoonify_cache"))
    return exported["cache"].folder


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith((".onnx", ".data"))}


def _recording(monkeypatch, module) -> list[dict]:
    """Record the arguments of every ``VToonifyPipeline`` that ``module`` builds (and build it)."""
    real, made = module.VToonifyPipeline, []

    def build(ckpt, **kwargs):
        made.append(kwargs)
        return real(ckpt, **kwargs)

    monkeypatch.setattr(module, "VToonifyPipeline", build)
    return made


def test_figures_engine(ckpt, astronaut_jpg, engine_cache, tmp_path, monkeypatch, capsys):
    """``vtoonify figures degree --engine onnxruntime``: the pipelines run on ONNX Runtime (the session's files) and the
    sheet is torch's within float noise."""
    made = _recording(monkeypatch, registry)
    before = _entries(engine_cache)
    sheets = {}
    for engine in ("torch", "onnxruntime"):
        out = tmp_path / engine
        argv = ["figures", "degree", "--content", str(astronaut_jpg), "--ckpt", str(model_path(ckpt)),
                "--style_encoder_path", str(ckpt / "encoder.pt"), "--faceparsing_path", str(ckpt / "faceparsing.pth"),
                "--device", "cpu", *PAD, "--panel", "96", "--style_id", "1", "--output_dir", str(out), "--engine", engine]
        assert vtoonify_cli.main(argv) == 0, capsys.readouterr().err
        (sheet,) = out.iterdir()
        sheets[engine] = read_image(sheet).astype(int)
    assert [kwargs["engine"] for kwargs in made] == ["torch", "onnxruntime"]
    assert _entries(engine_cache) == before  # nothing exported
    assert sheets["torch"].shape == sheets["onnxruntime"].shape
    diff = np.abs(sheets["torch"] - sheets["onnxruntime"])
    assert diff.max() <= 3 and diff.mean() < 0.05, (diff.max(), diff.mean())
    # `figures all` hands the engine on to each figure it makes
    args = figures.build_parser().parse_args(["all", "--image", "a.jpg", "--video", "v.mp4", "--engine", "openvino"])
    seen = []
    monkeypatch.setitem(figures._COMMANDS, "degree", lambda sub, cache: seen.append(sub.engine) or [])
    for name in ("styles", "color", "backbones", "video", "baseline"):
        monkeypatch.setitem(figures._COMMANDS, name, lambda sub, cache: seen.append(sub.engine) or [])
    figures._cmd_all(args, None)
    assert seen == ["openvino"] * 6


@pytest.mark.filterwarnings("ignore:identity distance")  # fill-rule outputs are noise: no face in them
def test_evaluate_engine_and_precision(ckpt, astronaut_video, engine_cache, tmp_path, monkeypatch, capsys):
    """``vtoonify evaluate --engine openvino --dtype bfloat16``: the engine computes in bfloat16 (as style_transfer.py
    maps --dtype), and the settings record the engine and its precision."""
    made = _recording(monkeypatch, evaluate)
    out = tmp_path / "eval"
    argv = ["evaluate", "--content", str(astronaut_video), "--ckpt", str(model_path(ckpt)), "--style_id", "1",
            "--max_frames", "2", "--skip_baseline", "--output_path", str(out), "--style_encoder_path",
            str(ckpt / "encoder.pt"), "--faceparsing_path", str(ckpt / "faceparsing.pth"), "--device", "cpu", *PAD,
            "--engine", "openvino", "--dtype", "bfloat16"]
    assert vtoonify_cli.main(argv) == 0, capsys.readouterr().err
    assert [(kwargs["engine"], kwargs["dtype"]) for kwargs in made] == [("openvino", "bfloat16")]
    settings = json.loads((out / "metrics.json").read_text())["settings"]
    assert settings["engine"] == "openvino" and settings["dtype"] == "bfloat16" and settings["frames"] == 2


def test_demo_engine(ckpt, astronaut_jpg, engine_cache, monkeypatch):
    """The demo's pipelines run on the engine of --engine, keyed by it in the pipeline cache; the result is torch's
    within float noise; its "fast" (bfloat16) toggle is hidden where the engine has no bfloat16."""
    results, states = {}, []
    for engine in ("torch", "onnxruntime"):
        config = app.AppConfig.from_checkpoint_dir(ckpt, device="cpu", engine=engine)
        state = app.AppState(config)
        states.append(state)
        label = config.labels[0]
        results[engine], message = app.toonify_image(state, str(astronaut_jpg), label, style_id=1)
        assert results[engine] is not None, message
        assert state.pipeline(label).engine.name == engine and [k.engine for k in state.pipelines.keys()] == [engine]
    for state in states:
        state.close()
    diff = np.abs(results["torch"].astype(int) - results["onnxruntime"].astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())
    native = ["avx512_bf16"]
    assert precision.fast_mode_available("cpu", None, flags=native, mkldnn=True, engine="openvino")
    assert not precision.fast_mode_available("cpu", None, flags=native, mkldnn=True, engine="onnxruntime")
    assert precision.bf16_tip("cpu", None, flags=native, mkldnn=True, engine="onnxruntime") is None
    with pytest.raises(OptionError, match="engine must be one of torch, onnxruntime, openvino, tensorrt, got 'tvm'") as e:
        app.AppConfig.from_checkpoint_dir(ckpt, engine="tvm")
    assert "\n" not in str(e.value)


def test_vtoonify_demo_hands_the_engine_to_the_config(ckpt, monkeypatch, capsys):
    seen = []

    class Stop:
        def __init__(self, config):
            seen.append(config)

        def pipeline(self, label):
            raise OptionError("stopped before loading")

    monkeypatch.setattr(app, "AppState", Stop)
    assert vtoonify_cli.main(["demo", "--ckpt_dir", str(ckpt), "--engine", "openvino", "--no_download"]) == 1
    assert capsys.readouterr().err == "error: stopped before loading\n"
    assert [config.engine for config in seen] == ["openvino"]
