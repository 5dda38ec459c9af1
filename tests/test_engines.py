"""The engines out of PyTorch (pipeline/engines): ONNX export round trips on ONNX Runtime and OpenVINO, engine
selection and its errors, and the exported file
run by a plain onnxruntime outside the project.

Tiny fill-rule models; each checkpoint is exported once per session (``exported``, in conftest.py), ~20 s each on
2 cores.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import OptionError
from model.checkpoint import CheckpointError, load_bisenet, load_vtoonify
from model.errors import UserError
from pipeline import engines
from pipeline.engines import EngineNotInstalledError, get_engine
from pipeline.engines import export as export_module
from pipeline.engines.export import data_path

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("onnxruntime", "openvino")
# float32 runtimes differ from torch by ~1e-6 here (their own convolution kernels); 100x margin
TOL = 1e-4


def _assert_close(actual: torch.Tensor, ref: torch.Tensor, what: str) -> float:
    assert actual.shape == ref.shape and actual.dtype == torch.float32, (what, actual.shape, ref.shape, actual.dtype)
    diff = (actual - ref).abs().max().item()
    assert diff <= TOL * max(1.0, ref.abs().max().item()), f"{what}: max |diff| {diff:.3g}"
    return diff


@pytest.fixture(scope="session")
def torch_models(exported):
    c = exported["ckpt"]
    return {"d": load_vtoonify(c["d"]), "t": load_vtoonify(c["t"]), "parser": load_bisenet(c["parser"])}


def test_exports_ran_once_each_with_a_notice_and_a_check(exported):
    status, printed = exported["cli"]
    assert status == 0 and printed.count("\n") == 1, printed
    assert "max |diff| against torch" in printed and "(openvino, float32)" in printed, printed
    assert float(printed.rsplit(": ", 1)[1]) < 1e-4
    assert exported["cache"].exports == 2  # D and T; the parser's entry was the command line's file
    assert len(exported["notices"]) == 2 and all("\n" not in n and " s" in n and "max |diff|" in n
                                                   for n in exported["notices"])
    for path in exported["onnx"].values():
        assert path.is_file() and data_path(path).stat().st_size > path.stat().st_size  # the weights are external


# --------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("key", ["d", "t"])
def test_vtoonify_round_trip(exported, torch_models, runtime, key):
    engine = get_engine(runtime, cache_dir=exported["cache"].folder)
    vt = engine.vtoonify(exported["ckpt"][key])
    assert engine.cache.exports == 0 and vt.path == exported["onnx"][key]  # the session's file, not a new export
    assert vt.backbone == torch_models[key].backbone and (vt.n_latent, vt.style_channels) == (18, 512)
    g = torch.Generator().manual_seed(3)
    with torch.inference_mode():
        # one file, two sizes and two batch sizes; a (1, 18, 512) style for a batch, per-sample degrees
        for batch, (h, w) in ((1, (64, 64)), (2, (40, 72))):
            x = torch.randn(batch, 22, h, w, generator=g).clamp(-1, 1)
            style = torch.randn(1, 18, 512, generator=g)
            d_s = torch.tensor([0.3, 0.9][:batch])
            ref = torch_models[key](x, style.expand(batch, -1, -1), d_s=d_s.view(-1, 1))
            _assert_close(vt(x, style, d_s=d_s), ref, f"{runtime} {key} {batch}x{h}x{w}")
        if key == "d":  # the degree is an input: another degree, another image
            assert (vt(x, style, d_s=0.0) - vt(x, style, d_s=1.0)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="multiples of 8"):
        vt(torch.zeros(1, 22, 60, 64), style)
    with pytest.raises(OptionError, match="--engine torch"):
        vt(x, style, d_s=0.5, return_mask=True)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_parser_round_trip(exported, torch_models, runtime):
    parser = get_engine(runtime, cache_dir=exported["cache"].folder).parser(exported["ckpt"]["parser"])
    g = torch.Generator().manual_seed(4)
    with torch.inference_mode():
        for batch, (h, w) in ((1, (64, 64)), (2, (48, 80))):
            x = torch.randn(batch, 3, h, w, generator=g)
            ref = torch_models["parser"]
            _assert_close(parser.parse_logits(x, every=2), ref.parse_logits(x, every=2), f"{runtime} parse_logits {h}x{w}")
            _assert_close(parser(x)[0], ref(x)[0], f"{runtime} forward {h}x{w}")


def test_openvino_bfloat16_is_the_precision_hint(exported, torch_models):
    from pipeline.precision import native_bf16

    vt = get_engine("openvino", torch.bfloat16, cache_dir=exported["cache"].folder).vtoonify(exported["ckpt"]["d"])
    assert vt.precision == ("bf16" if native_bf16() else "f32")
    g = torch.Generator().manual_seed(5)
    x, style = torch.randn(1, 22, 64, 64, generator=g).clamp(-1, 1), torch.randn(1, 18, 512, generator=g)
    with torch.inference_mode():
        ref, out = torch_models["d"](x, style, d_s=0.5), vt(x, style, d_s=0.5)
    assert out.dtype == torch.float32
    psnr = 10 * torch.log10(4 / (out - ref).pow(2).mean()).item()  # images in [-1, 1]
    assert psnr > 30, psnr


@pytest.mark.parametrize("key", ["d", "t"])
def test_openvino_bfloat16_keeps_the_style_branch_and_the_rgb_path_float32(exported, torch_models, key):
    """OpenVINO bfloat16 as mixed precision (pipeline/engines/openvino_precision.py): the style branch (mapping MLPs,
    affine maps, demodulation) is a float32 model of its own, the image model runs its convolutions in bfloat16
    except the 3-channel RGB skip path; and the output is closer to torch float32 than whole-graph bfloat16."""
    from pipeline.engines.openvino_precision import float32_nodes
    from pipeline.engines.runtimes import open_runner
    from pipeline.precision import native_bf16

    if not native_bf16():
        pytest.skip("this CPU has no bfloat16 arithmetic: OpenVINO runs float32")
    ov = pytest.importorskip("openvino")
    runner = open_runner(exported["onnx"][key], "openvino", torch.bfloat16, threads=2)
    g = torch.Generator().manual_seed(6)
    x, style = torch.randn(1, 22, 64, 64, generator=g).clamp(-1, 1), torch.randn(1, 18, 512, generator=g)
    feeds = {"x": x.numpy(), "style": style.numpy(), "d_s": np.full((1,), 0.5, np.float32)}
    feeds = {k: v for k, v in feeds.items() if k in runner.input_shapes}
    mixed = runner(feeds)[0]
    compiled = runner.last_used  # the model compiled for this input shape
    assert runner.precision == "bf16" and compiled.style is not None
    assert compiled.style.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    style_nodes = float32_nodes(compiled.style)
    assert len(style_nodes["FullyConnected"]) >= 8, style_nodes  # at least the 8-layer mapping
    image_graph = compiled.image.get_runtime_model()
    assert "FullyConnected" not in {n.get_rt_info()["layerType"].astype(str) for n in image_graph.get_ops()}
    convs = {"f32": [], "bf16": []}
    for node in image_graph.get_ops():
        info = node.get_rt_info()
        if info["layerType"].astype(str) in ("Convolution", "Deconvolution"):
            rgb = node.get_output_partial_shape(0)[1].get_length() == 3
            convs[info["runtimePrecision"].astype(str)].append((node.get_friendly_name(), rgb))
    assert convs["f32"] and all(rgb for _, rgb in convs["f32"]), convs  # ToRGB, fusion skip, skip upsampling
    assert len(convs["bf16"]) > len(convs["f32"]) and not any(rgb for _, rgb in convs["bf16"]), convs

    whole = ov.Core().compile_model(str(exported["onnx"][key]), "CPU", {"INFERENCE_PRECISION_HINT": "bf16",
                                                                         "INFERENCE_NUM_THREADS": 2})
    with torch.inference_mode():
        ref = torch_models[key](x, style, d_s=0.5).numpy()
    mixed_err = np.abs(mixed - ref).mean()
    whole_err = np.abs(whole(feeds)[whole.outputs[0]] - ref).mean()
    assert mixed_err < 0.7 * whole_err, (mixed_err, whole_err)


def test_instance_norms_export_as_one_recognisable_node(exported):
    """VToonify-D's AdaIN instance norms are exported in the textbook form (no transposes to the (B, H*W, C) view the
    eager CPU path uses), which OpenVINO fuses into its MVN node."""
    onnx = pytest.importorskip("onnx")
    ov = pytest.importorskip("openvino")
    graph = onnx.load(str(exported["onnx"]["d"]), load_external_data=False).graph
    perms = [tuple(a.ints) for n in graph.node if n.op_type == "Transpose" for a in n.attribute if a.name == "perm"]
    assert (0, 2, 3, 1) not in perms and (0, 3, 1, 2) not in perms, perms
    compiled = ov.Core().compile_model(str(exported["onnx"]["d"]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    types = [n.get_rt_info()["layerType"].astype(str) for n in compiled.get_runtime_model().get_ops()]
    n_norms = 2 * (len(load_vtoonify(exported["ckpt"]["d"]).res) - 1) + 4  # AdaResBlocks' two, the fusions' one
    assert types.count("MVN") == n_norms, types.count("MVN")


def test_openvino_compiles_each_shape_once_and_keeps_the_last_few(exported, torch_models, monkeypatch):
    """The OpenVINO runner runs each input shape on a model compiled for that static shape (the plugin fuses more,
    and needs less memory, than with dynamic shapes), reuses it, and keeps only the last OPENVINO_SHAPES."""
    from pipeline.engines import runtimes

    pytest.importorskip("openvino")
    monkeypatch.setattr(runtimes, "OPENVINO_SHAPES", 2)
    runner = runtimes.open_runner(exported["onnx"]["t"], "openvino", threads=2)
    compiled = []
    monkeypatch.setattr(runner, "_compile", lambda key, compile=runner._compile: compiled.append(dict(key)["x"][2:])
                        or compile(key))
    g = torch.Generator().manual_seed(7)
    style = torch.randn(1, 18, 512, generator=g)
    used = []
    for h, w in ((32, 32), (40, 48), (32, 32), (32, 32), (56, 32), (56, 32), (40, 48)):
        x = torch.randn(1, 22, h, w, generator=g).clamp(-1, 1)
        out = runner({"x": x.numpy(), "style": style.numpy()})[0]
        with torch.inference_mode():
            _assert_close(torch.from_numpy(out), torch_models["t"](x, style), f"openvino {h}x{w}")
        used.append(runner.last_used)
    # 32x32 reused while kept; 40x48, dropped when 56x32 came (32x32 had been used more recently), compiled again
    assert compiled == [(32, 32), (40, 48), (56, 32), (40, 48)], compiled
    assert used[2] is used[0] and used[3] is used[0] and used[5] is used[4] and used[6] is not used[1]
    assert all(p.get_partial_shape().is_static for m in used for p in m.image.inputs)
    kept = [dict(key)["x"][2:] for key in runner._compiled]
    assert kept == [(56, 32), (40, 48)], kept  # 32x32, the least recently used, was dropped


# --------------------------------------------------------------------------------------- engine selection
def test_torch_engine_is_the_identity(exported, torch_models):
    engine = get_engine("torch")
    assert engine.vtoonify(exported["ckpt"]["d"], model=torch_models["d"]) is torch_models["d"]
    assert engine.parser(exported["ckpt"]["parser"], model=torch_models["parser"]) is torch_models["parser"]
    assert engines.ENGINES == ("torch", "onnxruntime", "openvino", "tensorrt")


@pytest.mark.parametrize("name, dtype, message", [
    ("tvm", torch.float32, "engine must be one of torch, onnxruntime, openvino, tensorrt, got 'tvm'"),
    ("onnxruntime", torch.bfloat16, "use --engine openvino --dtype bfloat16"),
    ("openvino", torch.float16, "runs in float32 or bfloat16 on the CPU, not float16"),
])
def test_engine_errors_are_one_line(name, dtype, message):
    with pytest.raises(OptionError) as e:
        get_engine(name, dtype)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_engine_not_installed_names_the_extra(runtime, monkeypatch, capsys):
    from pipeline.cli import run_cli

    monkeypatch.setitem(sys.modules, runtime, None)  # `import runtime` now raises ImportError
    with pytest.raises(EngineNotInstalledError) as e:
        get_engine(runtime)
    assert isinstance(e.value, UserError) and f'pip install -e ".[{runtime}]"' in str(e.value)
    assert run_cli(lambda: get_engine(runtime)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --engine {runtime} needs"), err


def test_export_refuses_other_checkpoints(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a VToonify or BiSeNet checkpoint"):
        export_module.export_onnx(tmp_path / "other.pt", tmp_path / "other.onnx")
    assert not list(tmp_path.glob("*.onnx*"))


# ------------------------------------------------------------------------------------- outside the project
_PLAIN = textwrap.dedent("""
    import sys
    import numpy as np
    import onnxruntime
    session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    feeds = dict(np.load(sys.argv[2]))
    image = session.run(["image"], {i.name: feeds[i.name] for i in session.get_inputs()})[0]
    print(np.abs(image - feeds["reference"]).max(), image.shape)
    assert not {"torch", "model", "pipeline"} & {m.split(".")[0] for m in sys.modules}
""")


def test_exported_file_runs_in_a_plain_onnxruntime(exported, torch_models, tmp_path):
    """The file and its data, moved elsewhere, run without the project or torch (a deployment's view)."""
    for name in (exported["onnx"]["d"], data_path(exported["onnx"]["d"])):
        shutil.copyfile(name, tmp_path / name.name)
    g = torch.Generator().manual_seed(6)
    x, style, d_s = torch.randn(2, 22, 48, 56, generator=g).clamp(-1, 1), torch.randn(2, 18, 512, generator=g), \
        torch.tensor([0.2, 0.7])
    with torch.inference_mode():
        ref = torch_models["d"](x, style, d_s=d_s.view(-1, 1))
    np.savez(tmp_path / "feeds.npz", x=x.numpy(), style=style.numpy(), d_s=d_s.numpy(), reference=ref.numpy())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", _PLAIN, exported["onnx"]["d"].name, "feeds.npz"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    diff, shape = run.stdout.split(" ", 1)
    assert float(diff) <= TOL * max(1.0, ref.abs().max().item()) and shape.strip() == "(2, 3, 192, 224)"


# ------------------------------------------------------------------------------------------ in the pipeline
@pytest.fixture(scope="module")
def engine_pipes(ckpt, exported):
    """The end-to-end tests' checkpoints through each engine (the session's export cache: the tiny models are the
    same files, byte for byte, so nothing is exported again)."""
    from stylize_helpers import make_pipeline

    pipes = {name: make_pipeline(ckpt, engine=name, engine_cache=exported["cache"].folder) for name in ("torch", *RUNTIMES)}
    return pipes


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_engine_runs_the_whole_recipe(engine_pipes, exported, runtime):
    """A photo through --engine onnxruntime / openvino: the same crop, and the result within float noise of torch's
    (float32 runtimes; their own kernels)."""
    from skimage import data as skdata
    from stylize_helpers import PAD

    ref = engine_pipes["torch"].stylize_image(skdata.astronaut(), style_id=1, scale_image=True, padding=PAD)
    got = engine_pipes[runtime].stylize_image(skdata.astronaut(), style_id=1, scale_image=True, padding=PAD)
    assert got.crop == ref.crop and got.output.shape == ref.output.shape
    diff = np.abs(got.output.astype(int) - ref.output.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())
    assert engine_pipes[runtime].engine.cache.exports <= 2  # at most the tiny model and the parser, once each


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_video_through_an_engine(engine_pipes, astronaut_video, tmp_path, runtime):
    """A video (tracked crop) through each ONNX engine gives the torch engine's frames (decoded; both sides coded
    with the same crf, so a few levels of coder noise at most)."""
    from stylize_helpers import PAD

    from pipeline.video import VideoReader, probe

    frames = {}
    for name in ("torch", runtime):
        result = engine_pipes[name].stylize_video(astronaut_video, tmp_path / name, style_id=1, padding=PAD,
                                                  track=True, progress=False)
        assert result.frames == 6 and probe(result.output_path).frame_count == 6
        with VideoReader(result.output_path) as reader:
            frames[name] = np.stack(list(reader)).astype(np.float64)
    assert frames[runtime].shape == frames["torch"].shape
    assert np.abs(frames[runtime] - frames["torch"]).mean() < 0.5


def test_engine_options_are_checked_before_loading(ckpt):
    from stylize_helpers import make_pipeline

    with pytest.raises(OptionError, match="--compile is for the torch engine"):
        make_pipeline(ckpt, engine="onnxruntime", compile="default")
    with pytest.raises(OptionError, match="onnxruntime"):
        make_pipeline(ckpt, engine="onnxruntime", dtype="bfloat16")
    from style_transfer import build_parser

    assert build_parser().parse_args(["--engine", "openvino"]).engine == "openvino"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--engine", "tvm"])
