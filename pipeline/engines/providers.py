"""ONNX Runtime on a CUDA GPU: the CUDA and TensorRT execution providers.

* ``--engine onnxruntime`` on a CUDA device runs the exported float32 file on ONNX Runtime's
  ``CUDAExecutionProvider``, in float32 only: the file is float32, and the CUDA provider computes in the file's
  types (a float16 run would need the file converted, which the export does not do).
* ``--engine tensorrt`` (CUDA only) runs it on ONNX Runtime's ``TensorrtExecutionProvider`` (the CUDA provider takes
  the nodes TensorRT does not), in float32 or, with ``--dtype float16``, float16 (``trt_fp16_enable``: TensorRT
  chooses float16 kernels where they are faster, on the same float32 file). TensorRT builds an engine for each new
  input shape range on first use (minutes for VToonify); the engines and TensorRT's timing cache are kept in
  ``<export cache>/tensorrt/<GPU>-trt<TensorRT version>-<precision>/`` and reused by later runs.

Both need ``onnxruntime-gpu`` (which replaces the CPU ``onnxruntime``: the two packages are the same module and
must not be installed together), the TensorRT engine also the ``tensorrt`` package (its libraries, loaded by
importing it before the session starts). What is missing is a one-line
:class:`pipeline.engines.runtimes.EngineNotInstalledError` naming what to install, raised by :func:`check_gpu_engine`
before anything loads; a provider that is listed but cannot start (its CUDA, cuDNN or TensorRT libraries not found:
ONNX Runtime then falls back to the CPU with a logged error) is the same error when the session opens.

Feeding: the stand-ins of :mod:`pipeline.engines.engine` hand numpy arrays from the CPU and get numpy arrays back
(two host-device copies a call); binding torch's CUDA tensors to the session (ONNX Runtime's IO binding) is a
later optimisation.

These engines are untested on a GPU until a device run measures them (``benchmarks/device_check.sh``); the tests
check the selection, the provider options and the errors on the CPU with a stand-in session.
"""
from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import torch

from common.errors import OptionError
from pipeline.engines.runtimes import EngineNotInstalledError, Runner, _OnnxRuntimeRunner

__all__ = ["CUDA_PROVIDER", "DEVICE_TYPES", "GPU_EXTRAS", "GPU_PRECISIONS", "TENSORRT_PROVIDER", "check_device",
           "check_gpu_engine", "gpu_name", "open_gpu_runner", "provider_chain", "tensorrt_cache_folder"]

CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

#: The device types each exported engine runs on.
DEVICE_TYPES = {"onnxruntime": ("cpu", "cuda"), "openvino": ("cpu",), "tensorrt": ("cuda",)}
#: The ONNX Runtime provider each engine asks for on a CUDA device, and the pyproject extra that installs it.
GPU_PROVIDERS = {"onnxruntime": CUDA_PROVIDER, "tensorrt": TENSORRT_PROVIDER}
GPU_EXTRAS = {"onnxruntime": "gpu", "tensorrt": "tensorrt"}
#: The precisions each engine computes in on a CUDA device, with the runner's name of each.
GPU_PRECISIONS = {"onnxruntime": {torch.float32: "f32"}, "tensorrt": {torch.float32: "f32", torch.float16: "f16"}}


def _install(engine: str) -> str:
    return f'pip uninstall -y onnxruntime; pip install -e ".[{GPU_EXTRAS[engine]}]"'


def check_device(engine: str, device: str | torch.device) -> torch.device:
    """``device`` if ``engine`` runs on its type, else a one-line :class:`OptionError` saying where it runs."""
    device = torch.device(device)
    if device.type in DEVICE_TYPES[engine]:
        return device
    if engine == "tensorrt":
        raise OptionError(f"--engine tensorrt runs on a CUDA GPU, not {device}: use --device cuda (or --engine "
                          "onnxruntime / openvino on the CPU)")
    where = " or ".join("the CPU" if t == "cpu" else "a CUDA GPU" for t in DEVICE_TYPES[engine])
    gpu = "; on a GPU use --engine tensorrt, onnxruntime or torch" if "cuda" not in DEVICE_TYPES[engine] else ""
    raise OptionError(f"--engine {engine} runs on {where}, not {device}: use --device cpu{gpu}")


def check_gpu_precision(engine: str, dtype: torch.dtype) -> str:
    """The runner's name of ``dtype`` for ``engine`` on a CUDA device, or a one-line :class:`OptionError`."""
    supported = GPU_PRECISIONS[engine]
    if dtype in supported:
        return supported[dtype]
    name = str(dtype).removeprefix("torch.")
    if engine == "onnxruntime":
        raise OptionError(f"--engine onnxruntime runs the exported float32 file in float32 on CUDA, not {name} (the "
                          "CUDA provider computes in the file's types and the file is not converted): use --engine "
                          "tensorrt --dtype float16, or --dtype float32")
    raise OptionError(f"--engine tensorrt runs in float32 or float16, not {name}")


def _import(engine: str, module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EngineNotInstalledError(f"--engine {engine} on a CUDA GPU needs the Python package {module!r}, which is "
                                      f"not installed: {_install(engine)}") from None


def check_gpu_engine(engine: str, dtype: torch.dtype, device: str | torch.device):
    """Check, before anything loads, that ``engine`` can run on the CUDA ``device`` in ``dtype``: the precision
    (:class:`OptionError`), ``onnxruntime`` with the engine's provider and, for TensorRT, the ``tensorrt`` package
    (:class:`EngineNotInstalledError`, naming what to install). Returns the ``onnxruntime`` module."""
    check_device(engine, device)
    check_gpu_precision(engine, dtype)
    ort = _import(engine, "onnxruntime")
    available = list(ort.get_available_providers())
    wanted = [GPU_PROVIDERS[engine]] + ([CUDA_PROVIDER] if engine == "tensorrt" else [])
    missing = [p for p in wanted if p not in available]
    if missing:
        raise EngineNotInstalledError(
            f"--engine {engine} on a CUDA GPU needs ONNX Runtime's {' and '.join(missing)}, which the installed "
            f"onnxruntime {getattr(ort, '__version__', '?')} lacks (it has {', '.join(available) or 'none'}): "
            f"{_install(engine)}")
    if engine == "tensorrt":
        _import(engine, "tensorrt")  # loads TensorRT's libraries, which ONNX Runtime's provider then finds
    return ort


def gpu_name(device: torch.device) -> str:
    """The CUDA device's name (part of the TensorRT cache folder: an engine is built for one GPU model)."""
    return torch.cuda.get_device_name(device)


def tensorrt_cache_folder(cache_folder: str | os.PathLike, device: torch.device, precision: str) -> Path:
    """``<cache_folder>/tensorrt/<GPU name>-trt<TensorRT version>-<precision>``: TensorRT's engines and timing cache
    hold for one GPU model, one TensorRT version and one precision."""
    trt = importlib.import_module("tensorrt")
    name = re.sub(r"[^A-Za-z0-9.]+", "-", f"{gpu_name(device)}-trt{getattr(trt, '__version__', 'unknown')}-{precision}")
    return Path(cache_folder) / "tensorrt" / name.strip("-")


def provider_chain(engine: str, device: torch.device, precision: str, trt_folder: Path | None = None) -> list:
    """The ``providers`` argument of ``InferenceSession`` for ``engine`` on the CUDA ``device``: the engine's
    provider with its options, then the fallbacks (CUDA for the nodes TensorRT leaves, then the CPU)."""
    cuda = (CUDA_PROVIDER, {"device_id": device.index or 0})
    if engine == "onnxruntime":
        return [cuda, CPU_PROVIDER]
    folder = os.fspath(trt_folder)
    return [(TENSORRT_PROVIDER, {"device_id": device.index or 0, "trt_fp16_enable": precision == "f16",
                                 "trt_engine_cache_enable": True, "trt_engine_cache_path": folder,
                                 "trt_timing_cache_enable": True, "trt_timing_cache_path": folder}),
            cuda, CPU_PROVIDER]


def open_gpu_runner(path: str | os.PathLike, engine: str, dtype: torch.dtype, device: str | torch.device,
                    cache_folder: str | os.PathLike, threads: int | None = None) -> Runner:
    """The ONNX file ``path`` on ONNX Runtime's provider for ``engine`` on the CUDA ``device`` (see the module
    docstring); ``cache_folder``: the export cache's folder (the TensorRT engines go under it)."""
    device = torch.device(device)
    check_gpu_engine(engine, dtype, device)
    precision = GPU_PRECISIONS[engine][dtype]
    trt_folder = None
    if engine == "tensorrt":
        trt_folder = tensorrt_cache_folder(cache_folder, device, precision)
        trt_folder.mkdir(parents=True, exist_ok=True)
    runner = _OnnxRuntimeRunner(path, precision, threads or torch.get_num_threads(),
                                providers=provider_chain(engine, device, precision, trt_folder), engine=engine)
    started = list(runner.session.get_providers())
    if not started or started[0] != GPU_PROVIDERS[engine]:
        raise EngineNotInstalledError(
            f"ONNX Runtime could not start its {GPU_PROVIDERS[engine]} for --engine {engine} (it started "
            f"{', '.join(started) or 'none'}; see its log above): the CUDA/cuDNN{'/TensorRT' if trt_folder else ''} "
            "libraries must match onnxruntime-gpu's CUDA version (import torch of the same CUDA major first, as the "
            "pipeline does)")
    return runner
