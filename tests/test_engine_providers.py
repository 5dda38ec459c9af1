"""ONNX Runtime on a CUDA GPU (pipeline/engines/providers.py), without a GPU: which providers and options the session
is asked for (``--engine onnxruntime`` on CUDA: the CUDA provider; ``--engine tensorrt``: the TensorRT provider with
fp16 and its engine cache), the errors for a device, a precision or a package the engine lacks (one line each,
before anything loads), and a provider that does not start.

``onnxruntime.InferenceSession`` is replaced by :class:`FakeSession`, which records its arguments and answers as a
VToonify-D file would; ``onnxruntime.get_available_providers`` and the ``tensorrt`` module are stand-ins too.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from common.errors import OptionError
from model.errors import UserError
from pipeline.engines import EngineNotInstalledError, OnnxEngine, get_engine
from pipeline.engines import providers as providers_module
from pipeline.engines.export import data_path
from pipeline.engines.providers import open_gpu_runner

ort = pytest.importorskip("onnxruntime")

GPU = "NVIDIA H100 80GB HBM3"
ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


class FakeSession:
    """Records ``InferenceSession(path, options, providers=...)``; starts the first provider asked for (or
    ``started``); has VToonify-D's inputs and returns a (B, 3, 4H, 4W) image of ones."""

    calls: list[dict] = []
    started: list[str] | None = None

    def __init__(self, path, options=None, providers=None, **kwargs):
        self.providers = providers
        self.feeds = None
        FakeSession.calls.append({"path": path, "options": options, "providers": providers, "session": self})

    def get_providers(self):
        if FakeSession.started is not None:
            return FakeSession.started
        return [p if isinstance(p, str) else p[0] for p in self.providers]

    def get_inputs(self):
        return [types.SimpleNamespace(name="x", shape=["batch", 22, "height", "width"]),
                types.SimpleNamespace(name="style", shape=["batch", 18, 512]),
                types.SimpleNamespace(name="d_s", shape=["batch"])]

    def get_outputs(self):
        return [types.SimpleNamespace(name="image")]

    def run(self, names, feeds):
        self.feeds = feeds
        b, _, h, w = feeds["x"].shape
        return [np.ones((b, 3, 4 * h, 4 * w), np.float32)]


@pytest.fixture
def gpu_ort(monkeypatch):
    """ONNX Runtime with every GPU provider listed, a TensorRT package and a GPU name; returns a setter of the
    listed providers."""
    FakeSession.calls, FakeSession.started = [], None
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    available = list(ALL)
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(available))
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.9.0.34"
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(providers_module, "gpu_name", lambda device: GPU)

    def set_available(names):
        available[:] = names
    return set_available


def _providers():
    return FakeSession.calls[-1]["providers"]


def test_onnxruntime_on_cuda_asks_for_the_cuda_provider(gpu_ort, tmp_path):
    engine = get_engine("onnxruntime", device="cuda:1", cache_dir=tmp_path, threads=3)
    assert isinstance(engine, OnnxEngine) and engine.device == torch.device("cuda:1")
    runner = engine._runner(tmp_path / "vtoonify-key.onnx")
    assert _providers() == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert FakeSession.calls[-1]["path"] == str(tmp_path / "vtoonify-key.onnx")
    assert FakeSession.calls[-1]["options"].intra_op_num_threads == 3
    assert (runner.engine, runner.precision) == ("onnxruntime", "f32")
    assert not (tmp_path / "tensorrt").exists()  # no TensorRT cache for the CUDA provider


@pytest.mark.parametrize("dtype, precision", [(torch.float16, "f16"), (torch.float32, "f32")])
def test_tensorrt_asks_for_fp16_and_an_engine_cache_beside_the_onnx_file(gpu_ort, tmp_path, dtype, precision):
    onnx = tmp_path / "cache" / "vtoonify_s_d-key.onnx"
    runner = get_engine("tensorrt", dtype, cache_dir=tmp_path / "cache", device="cuda")._runner(onnx)
    folder = tmp_path / "cache" / "tensorrt" / f"NVIDIA-H100-80GB-HBM3-trt10.9.0.34-{precision}"
    assert folder.is_dir()
    assert _providers() == [
        ("TensorrtExecutionProvider", {"device_id": 0, "trt_fp16_enable": dtype == torch.float16,
                                       "trt_engine_cache_enable": True, "trt_engine_cache_path": str(folder),
                                       "trt_timing_cache_enable": True, "trt_timing_cache_path": str(folder)}),
        ("CUDAExecutionProvider", {"device_id": 0}),
        "CPUExecutionProvider"]
    assert (runner.engine, runner.precision) == ("tensorrt", precision)


def test_a_gpu_engine_exports_checked_on_the_cpu_and_runs_the_stand_in(gpu_ort, tmp_path):
    engine = get_engine("tensorrt", torch.float16, cache_dir=tmp_path, device="cuda")
    asked = []

    entry = tmp_path / "vtoonify_s_d-key.onnx"
    for path in (entry, data_path(entry)):  # a whole entry, as the cache's open() checks
        path.write_bytes(b"")

    def cache_get(ckpt, check):
        asked.append((ckpt, check))
        return entry

    engine.cache.get = cache_get
    stand_in = engine.vtoonify("vtoonify_s_d.pt", backbone="dualstylegan")
    assert asked == [("vtoonify_s_d.pt", "onnxruntime")]  # the export is checked on ONNX Runtime's CPU provider
    assert (stand_in.engine, stand_in.precision, stand_in.backbone) == ("tensorrt", "f16", "dualstylegan")
    x = torch.zeros(2, 22, 16, 24)
    y = stand_in(x, torch.zeros(1, 18, 512), d_s=0.5)
    feeds = FakeSession.calls[-1]["session"].feeds
    assert {k: (v.dtype, v.shape) for k, v in feeds.items()} == {
        "x": (np.float32, (2, 22, 16, 24)), "style": (np.float32, (2, 18, 512)), "d_s": (np.float32, (2,))}
    assert y.shape == (2, 3, 64, 96) and y.dtype == torch.float32 and y.device == x.device
    assert torch.equal(y, torch.ones_like(y))


def test_the_cpu_keeps_the_cpu_provider(gpu_ort, tmp_path):
    runner = get_engine("onnxruntime", cache_dir=tmp_path)._runner(tmp_path / "m.onnx")
    assert _providers() == ["CPUExecutionProvider"] and runner.engine == "onnxruntime"


@pytest.mark.parametrize("name, dtype, device, message", [
    ("tensorrt", torch.float32, "cpu", "--engine tensorrt runs on a CUDA GPU, not cpu: use --device cuda"),
    ("openvino", torch.float32, "cuda", "--engine openvino runs on the CPU, not cuda: use --device cpu; on a GPU use "
                                        "--engine tensorrt"),
    ("onnxruntime", torch.float32, "mps", "--engine onnxruntime runs on the CPU or a CUDA GPU, not mps"),
    ("onnxruntime", torch.float16, "cuda", "float32 on CUDA, not float16 (the CUDA provider computes in the file's "
                                           "types and the file is not converted): use --engine tensorrt --dtype float16"),
    ("tensorrt", torch.bfloat16, "cuda", "--engine tensorrt runs in float32 or float16, not bfloat16"),
])
def test_device_and_precision_errors_are_one_line_and_come_first(gpu_ort, monkeypatch, name, dtype, device, message):
    monkeypatch.setattr(ort, "get_available_providers", lambda: pytest.fail("providers asked before the checks"))
    with pytest.raises(OptionError) as e:
        get_engine(name, dtype, device=device)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name, available, needs, extra", [
    ("onnxruntime", ["AzureExecutionProvider", "CPUExecutionProvider"], "CUDAExecutionProvider", "gpu"),
    ("tensorrt", ["AzureExecutionProvider", "CPUExecutionProvider"], "TensorrtExecutionProvider and CUDAExecutionProvider",
     "tensorrt"),
    ("tensorrt", ["CUDAExecutionProvider", "CPUExecutionProvider"], "TensorrtExecutionProvider", "tensorrt"),
])
def test_a_missing_provider_names_what_to_install_before_loading(gpu_ort, capsys, name, available, needs, extra):
    from pipeline.cli import run_cli

    gpu_ort(available)
    with pytest.raises(EngineNotInstalledError) as e:
        get_engine(name, device="cuda")
    text = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in text
    assert f"needs ONNX Runtime's {needs}, which the installed onnxruntime" in text
    assert f'pip uninstall -y onnxruntime; pip install -e ".[{extra}]"' in text
    assert FakeSession.calls == []  # nothing loaded
    assert run_cli(lambda: get_engine(name, device="cuda")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --engine {name} on a CUDA GPU needs"), err


@pytest.mark.parametrize("name, module, extra", [("tensorrt", "tensorrt", "tensorrt"), ("onnxruntime", "onnxruntime", "gpu"),
                                                 ("tensorrt", "onnxruntime", "tensorrt")])
def test_a_missing_package_names_the_extra(gpu_ort, monkeypatch, name, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(EngineNotInstalledError) as e:
        get_engine(name, device="cuda")
    assert str(e.value) == (f"--engine {name} on a CUDA GPU needs the Python package {module!r}, which is not installed: "
                            f'pip uninstall -y onnxruntime; pip install -e ".[{extra}]"')


@pytest.mark.parametrize("name, provider", [("onnxruntime", "CUDAExecutionProvider"),
                                            ("tensorrt", "TensorrtExecutionProvider")])
def test_a_provider_that_does_not_start_is_an_error_not_a_silent_cpu_run(gpu_ort, tmp_path, name, provider):
    FakeSession.started = ["CUDAExecutionProvider", "CPUExecutionProvider"] if name == "tensorrt" else ["CPUExecutionProvider"]
    with pytest.raises(EngineNotInstalledError) as e:
        open_gpu_runner(tmp_path / "m.onnx", name, torch.float32, "cuda", tmp_path)
    assert f"ONNX Runtime could not start its {provider} for --engine {name}" in str(e.value)
    assert "\n" not in str(e.value)


def test_the_pipeline_checks_the_engine_device_before_loading(tmp_path):
    from conftest import make_pipeline  # its files need not exist: the check comes first

    with pytest.raises(OptionError, match="--engine tensorrt runs on a CUDA GPU, not cpu"):
        make_pipeline(tmp_path, engine="tensorrt")
    with pytest.raises(OptionError, match="--compile is for the torch engine"):
        make_pipeline(tmp_path, engine="onnxruntime", compile="default")
    from style_transfer import build_parser

    assert build_parser().parse_args(["--engine", "tensorrt"]).engine == "tensorrt"


def test_engine_names_have_one_home():
    from common.options import ENGINES
    from pipeline.engines.providers import DEVICE_TYPES

    assert ENGINES == ("torch", "onnxruntime", "openvino", "tensorrt")
    assert set(DEVICE_TYPES) == set(ENGINES) - {"torch"}


def test_tensorrt_pads_a_short_last_batch_as_a_compiled_model_does():
    """TensorRT builds an engine for each new shape range: a video's short last batch is padded to the full batch."""
    from pipeline.models import PipelineModels

    pads = PipelineModels.pads_batches.fget
    for compile, engine, expected in ((None, "tensorrt", True), ("default", "torch", True), (None, "torch", False),
                                      (None, "onnxruntime", False), (None, "openvino", False)):
        assert pads(types.SimpleNamespace(compile=compile, engine=types.SimpleNamespace(name=engine))) is expected
