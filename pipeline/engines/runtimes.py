"""The inference runtimes an exported ONNX file runs on: which exist, what a missing one tells the user, and a runner
that feeds numpy arrays by input name and returns the outputs as numpy arrays.

Both runtimes run on the CPU with ``threads`` intra-op threads (default: ``torch.get_num_threads()``, so they share
the cores as the torch path does). Precision: ONNX Runtime's CPU provider computes in float32 only (it has no
bfloat16 kernels for these convolutions); OpenVINO takes float32 or bfloat16 as its ``INFERENCE_PRECISION_HINT``.
OpenVINO's own default on a CPU with native bfloat16 arithmetic is bfloat16, so float32 is always asked for
explicitly. OpenVINO's bfloat16 keeps the style branch and the RGB skip path float32, as the torch path's mixed
precision does (:mod:`pipeline.engines.openvino_precision`).

ONNX Runtime on a CUDA GPU (its CUDA and TensorRT providers): :mod:`pipeline.engines.providers`.
"""
from __future__ import annotations

import importlib
import os
import threading
from typing import Any

import numpy as np
import torch

from common.errors import OptionError
from common.options import ENGINES  # the engine names of --engine; torch runs the PyTorch modules themselves
from model.errors import UserError

__all__ = ["ENGINES", "EXTRAS", "EngineNotInstalledError", "Runner", "check_engine_name", "check_precision", "import_runtime",
           "open_runner"]


#: The pyproject extra that installs each exported engine (and the exporter: onnx, onnxscript).
EXTRAS = {"onnxruntime": "onnxruntime", "openvino": "openvino"}

#: How many input shapes an OpenVINO runner keeps compiled (a video has one; each keeps its own weights and buffers).
OPENVINO_SHAPES = 2

# The precisions each runtime computes in on the CPU, with OpenVINO's hint name.
_PRECISIONS = {"onnxruntime": {torch.float32: "f32"}, "openvino": {torch.float32: "f32", torch.bfloat16: "bf16"}}


class EngineNotInstalledError(UserError, ImportError):
    """The runtime of the requested engine (or the exporter it needs) is not installed."""


def _install_hint(engine: str) -> str:
    return f'pip install -e ".[{EXTRAS[engine]}]"'


def check_engine_name(engine: str) -> str:
    """``engine`` if it is one of :data:`ENGINES`, else :class:`OptionError`."""
    if engine not in ENGINES:
        raise OptionError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return engine


def import_runtime(engine: str, module: str | None = None) -> Any:
    """Import the runtime of ``engine`` (or ``module``, a package its extra installs) or raise a one-line
    :class:`EngineNotInstalledError` that names the extra to install."""
    check_engine_name(engine)
    name = module or engine
    try:
        return importlib.import_module(name)
    except ImportError:
        raise EngineNotInstalledError(f"--engine {engine} needs the Python package {name.split('.')[0]!r}, which is not "
                                      f"installed: {_install_hint(engine)}") from None


def check_precision(engine: str, dtype: torch.dtype) -> str:
    """The runtime's name of ``dtype`` for ``engine``, or :class:`OptionError` saying what it supports."""
    if engine not in _PRECISIONS:
        raise OptionError(f"engine must be one of {', '.join(_PRECISIONS)} to run an ONNX file, got {engine!r}")
    supported = _PRECISIONS[engine]
    if dtype not in supported:
        names = " or ".join(str(d).removeprefix("torch.") for d in supported)
        extra = " (ONNX Runtime has no bfloat16 on the CPU: use --engine openvino --dtype bfloat16)" \
            if engine == "onnxruntime" and dtype == torch.bfloat16 else ""
        raise OptionError(f"--engine {engine} runs in {names} on the CPU, not {str(dtype).removeprefix('torch.')}{extra}")
    return supported[dtype]


class Runner:
    """One loaded ONNX file on one runtime: ``runner(feeds) -> list of output arrays``.

    Attributes: ``engine``, ``precision`` (the runtime's name: ``f32``, ``bf16``), ``input_shapes``
    (input name -> shape, ``None`` for a dynamic dimension), ``output_names``.
    """

    engine: str
    precision: str
    input_shapes: dict[str, tuple[int | None, ...]]
    output_names: list[str]

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


class _OnnxRuntimeRunner(Runner):
    """``providers``: the session's providers (default the CPU's; :mod:`pipeline.engines.providers` gives those of
    a CUDA device); ``engine``: the engine name it runs for (``'onnxruntime'`` or ``'tensorrt'``)."""

    def __init__(self, path: os.PathLike, precision: str, threads: int, providers: list | None = None,
                 engine: str = "onnxruntime"):
        ort = import_runtime("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no per-node warnings on stderr
        self.session = ort.InferenceSession(os.fspath(path), options, providers=providers or ["CPUExecutionProvider"])
        self.engine, self.precision = engine, precision
        self.input_shapes = {i.name: tuple(d if isinstance(d, int) else None for d in i.shape)
                             for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, {name: feeds[name] for name in self.input_shapes})  # thread-safe


class _OpenVINOModel:
    """One input shape's compiled model(s): ``image`` and, for mixed precision, the float32 ``style`` branch."""

    def __init__(self, ov: Any, core: Any, model: Any, config: dict, mixed: bool):
        self.style = None
        if mixed:
            from pipeline.engines.openvino_precision import prepare_bf16

            split = prepare_bf16(ov, model)
            if split.style is not None:
                self.style = core.compile_model(split.style, "CPU", {**config, "INFERENCE_PRECISION_HINT": "f32"})
                self._style_request = self.style.create_infer_request()
                model = split.image
        self.image = core.compile_model(model, "CPU", config)
        self._request = self.image.create_infer_request()

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.style is not None:
            styles = self._style_request.infer({p.get_any_name(): feeds[p.get_any_name()] for p in self.style.inputs})
            feeds = {**feeds, **{p.get_any_name(): styles[p] for p in self.style.outputs}}
        result = self._request.infer({p.get_any_name(): feeds[p.get_any_name()] for p in self.image.inputs},
                                     share_outputs=False)
        return [result[port] for port in self.image.outputs]


class _OpenVINORunner(Runner):
    """Each input shape runs on a model compiled for that static shape (the last :data:`OPENVINO_SHAPES` kept; a
    compile takes ~0.6 s): with static shapes the CPU plugin fuses each StyleGAN layer's demodulation, bias,
    activation and next modulation into its convolution, which with dynamic height and width it runs as a separate
    channels-first elementwise node between two layout reorders. Measured on VToonify-D at 360x392 (float32,
    2 threads): a static compile plus its first run 3.2 s against 4.0 s for the dynamic-shape model, later runs
    2.2 s against 2.8 s, and 1.7 GiB of memory against 3.4 GiB; so even a shape met once (a photo) is compiled.

    bfloat16 on a CPU with bfloat16 arithmetic runs as mixed precision (:mod:`pipeline.engines.openvino_precision`):
    the style branch is a float32 model of its own whose outputs feed the bfloat16 image model, and the RGB skip path
    is marked float32."""

    def __init__(self, path: os.PathLike, precision: str, threads: int):
        self._ov = import_runtime("openvino")
        self._core = self._ov.Core()
        self._config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
                        "PERFORMANCE_HINT": "LATENCY"}
        self._model = self._core.read_model(os.fspath(path))
        self.input_shapes = {p.get_any_name(): tuple(None if d.is_dynamic else d.get_length() for d in p.get_partial_shape())
                             for p in self._model.inputs}
        self.output_names = [p.get_any_name() for p in self._model.outputs]
        # what the CPU plugin computes in: a CPU without bfloat16 arithmetic runs float32
        native = "BF16" in self._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        self.engine, self.precision = "openvino", precision if precision != "bf16" or native else "f32"
        self._compiled: dict[tuple, _OpenVINOModel] = {}  # static input shapes -> compiled, least recently used first
        self.last_used: _OpenVINOModel | None = None  # what the last call ran on
        self._lock = threading.Lock()  # one infer request per model, one caller at a time

    def _compile(self, shapes: tuple) -> _OpenVINOModel:
        model = self._model.clone()
        model.reshape({name: list(shape) for name, shape in shapes})
        return _OpenVINOModel(self._ov, self._core, model, self._config, self.precision == "bf16")

    def _model_for(self, feeds: dict[str, np.ndarray]) -> _OpenVINOModel:
        """The model compiled for the shapes of ``feeds`` (compiled now if it is not among the kept ones; the least
        recently used is dropped first, so that two compiled models never sit beside a third being built)."""
        key = tuple((name, tuple(feeds[name].shape)) for name in self.input_shapes)
        if key in self._compiled:
            self._compiled[key] = self._compiled.pop(key)  # most recently used last
            return self._compiled[key]
        while len(self._compiled) >= OPENVINO_SHAPES:
            del self._compiled[next(iter(self._compiled))]
        self._compiled[key] = self._compile(key)
        return self._compiled[key]

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            self.last_used = self._model_for(feeds)
            return self.last_used({name: feeds[name] for name in self.input_shapes})


_RUNNERS = {"onnxruntime": _OnnxRuntimeRunner, "openvino": _OpenVINORunner}


def open_runner(path: str | os.PathLike, engine: str, dtype: torch.dtype = torch.float32,
                threads: int | None = None) -> Runner:
    """Load the ONNX file ``path`` on ``engine`` (``'onnxruntime'`` or ``'openvino'``) computing in ``dtype``."""
    precision = check_precision(engine, dtype)
    return _RUNNERS[engine](path, precision, threads or torch.get_num_threads())
