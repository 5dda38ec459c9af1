"""Engines: what runs VToonify and the face parser (``--engine torch|onnxruntime|openvino|tensorrt``).

:func:`get_engine` checks the name, the device (OpenVINO: CPU; ONNX Runtime: CPU or CUDA; TensorRT: CUDA), that the
runtime (on CUDA: ONNX Runtime's provider, :mod:`pipeline.engines.providers`) is installed and that it computes in
the requested precision (each a one-line :class:`model.errors.UserError`), before anything is loaded. The engine
then gives stand-ins for the two modules the pipeline calls:

* ``engine.vtoonify(ckpt, model=None, backbone=None)``: called as VToonify is, ``(x, style, d_s=...) -> image``;
* ``engine.parser(path, model=None)``: BiSeNet's ``parse_logits(x, every)`` and ``forward(x)[0]``.

The ``torch`` engine gives the PyTorch modules themselves (``model`` when given, else loaded from the file). The
ONNX engines export the checkpoint on first use into the :class:`pipeline.engines.cache.ExportCache` and run the
file; their stand-ins take and return torch tensors (fed as numpy arrays from the CPU to the runtime, which computes
on the engine's device; returned on the input's device), and return float32 whatever the precision inside, as the
mixed-precision torch model does.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import OptionError
from model.checkpoint import CheckpointError
from model.vtoonify import degree_tensor
from pipeline.engines.cache import ExportCache
from pipeline.engines.providers import check_device, check_gpu_engine, open_gpu_runner
from pipeline.engines.runtimes import Runner, check_engine_name, check_precision, import_runtime, open_runner

__all__ = ["Engine", "OnnxEngine", "ParserEngine", "VToonifyEngine", "get_engine"]


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def _check_image(x: torch.Tensor, channels: int, what: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{what} must be (B, {channels}, H, W), got {tuple(x.shape)}")
    if x.shape[2] % 8 or x.shape[3] % 8:
        raise ValueError(f"{what} needs H and W to be multiples of 8, got {x.shape[2]}x{x.shape[3]}")


class VToonifyEngine:
    """An exported VToonify on a runtime, called as :class:`model.vtoonify.VToonify` is.

    Attributes: ``backbone``, ``n_latent``, ``style_channels``, ``in_channels``, ``engine``, ``precision`` (the
    runtime's: ``f32``, ``bf16``), ``path`` (the ONNX file).
    """

    def __init__(self, runner: Runner, path: str | os.PathLike | None = None):
        self.runner, self.path = runner, Path(path) if path is not None else None
        self.engine, self.precision = runner.engine, runner.precision
        self.backbone = "dualstylegan" if "d_s" in runner.input_shapes else "toonify"
        _, self.in_channels, *_ = runner.input_shapes["x"]
        _, self.n_latent, self.style_channels = runner.input_shapes["style"]

    def __call__(self, x: torch.Tensor, style: torch.Tensor, d_s=None, return_mask: bool = False,
                 return_feat: bool = False) -> torch.Tensor:
        """``x`` (B, 22, H, W), ``style`` (B or 1, 18, 512) or (B or 1, 512), ``d_s`` a number or a (B,) / (B, 1)
        tensor (VToonify-D) -> the (B, 3, 4H, 4W) float32 image. The masks and features are not exported."""
        if return_mask or return_feat:
            raise OptionError(f"--engine {self.engine} computes the image only (no fusion masks or encoder features): "
                              f"use --engine torch")
        _check_image(x, self.in_channels, "x")
        batch = x.shape[0]
        if style.dim() == 2:
            style = style.unsqueeze(1).expand(-1, self.n_latent, -1)
        if style.dim() != 3 or style.shape[1:] != (self.n_latent, self.style_channels) or style.shape[0] not in (1, batch):
            raise ValueError(f"style must be (B, {self.style_channels}) or (B, {self.n_latent}, {self.style_channels}) "
                             f"with B = 1 or {batch}, got {tuple(style.shape)}")
        feeds = {"x": _numpy(x), "style": _numpy(style.expand(batch, -1, -1))}
        if self.backbone == "dualstylegan":
            if d_s is None:
                raise ValueError("VToonify-D needs a style degree d_s (0 = no style ... 1 = full style)")
            feeds["d_s"] = _numpy(degree_tensor(d_s, batch, torch.empty(0)).reshape(-1))
        return torch.from_numpy(self.runner(feeds)[0]).to(x.device)

    forward = __call__


class ParserEngine:
    """An exported BiSeNet on a runtime: :meth:`parse_logits` and ``forward(x)[0]`` as the torch module's."""

    def __init__(self, runner: Runner, path: str | os.PathLike | None = None):
        self.runner, self.path = runner, Path(path) if path is not None else None
        self.engine, self.precision = runner.engine, runner.precision

    def head_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The main head's float32 logits on the 1/8 grid of ``x`` ((B, 3, H, W), H and W multiples of 8)."""
        _check_image(x, 3, "BiSeNet's input")
        return torch.from_numpy(self.runner({"image": _numpy(x)})[0]).to(x.device)

    def parse_logits(self, x: torch.Tensor, every: int = 1) -> torch.Tensor:
        """As :meth:`model.bisenet.model.BiSeNet.parse_logits`."""
        from model.bisenet.model import resize_logits

        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        return resize_logits(self.head_logits(x), x.shape[2:], every)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        """``(logits,)``: the main output of BiSeNet's forward at the input size (the auxiliary heads, used in
        training only, are not exported)."""
        return (F.interpolate(self.head_logits(x), size=x.shape[2:], mode="bilinear", align_corners=True),)

    forward = __call__


class Engine:
    """The ``torch`` engine: the PyTorch modules themselves, in ``dtype``."""

    name = "torch"

    def __init__(self, dtype: torch.dtype = torch.float32):
        self.dtype = dtype

    def vtoonify(self, ckpt: str | os.PathLike, model: nn.Module | None = None, backbone: str | None = None):
        """What runs VToonify: ``model`` itself when given (its precision is the caller's), else the checkpoint
        loaded and cast to ``dtype`` (:meth:`VToonify.to_mixed_precision`)."""
        if model is not None:
            return model
        from model.checkpoint import load_vtoonify

        return load_vtoonify(ckpt, backbone=backbone).to_mixed_precision(self.dtype)

    def parser(self, path: str | os.PathLike, model: nn.Module | None = None):
        """What runs BiSeNet: ``model`` itself when given, else the checkpoint loaded in ``dtype``."""
        if model is not None:
            return model
        from model.checkpoint import load_bisenet

        return load_bisenet(path).to(dtype=self.dtype)


class OnnxEngine(Engine):
    """An ONNX engine (``'onnxruntime'``, ``'openvino'`` or ``'tensorrt'``): checkpoints exported on first use
    (``cache``) and run on the runtime on ``device`` (CPU, or CUDA through ONNX Runtime's CUDA or TensorRT provider)
    in ``dtype`` with ``threads`` threads (default ``torch.get_num_threads()`` at load time)."""

    def __init__(self, name: str, dtype: torch.dtype = torch.float32, cache: ExportCache | None = None,
                 threads: int | None = None, device: str | torch.device = "cpu"):
        super().__init__(dtype)
        self.name, self.threads, self.device = name, threads, torch.device(device)
        self.cache = cache if cache is not None else ExportCache()
        # the runtime that checks a new export against PyTorch (on the CPU: the GPU engines are ONNX Runtime's)
        self.check = "openvino" if name == "openvino" else "onnxruntime"

    def _runner(self, path: Path) -> Runner:
        if self.device.type == "cuda":  # the TensorRT engines are cached beside the ONNX file
            return open_gpu_runner(path, self.name, self.dtype, self.device, path.parent, self.threads)
        return open_runner(path, self.name, self.dtype, self.threads)

    def vtoonify(self, ckpt: str | os.PathLike, model: nn.Module | None = None, backbone: str | None = None) -> VToonifyEngine:
        """A :class:`VToonifyEngine` of ``ckpt`` (``model`` is not used: the export reads the file, whose content keys
        the cache); ``backbone``, when given, must be the file's."""
        with self.cache.open(ckpt, check=self.check) as path:  # held while the runtime loads it: never pruned meanwhile
            engine = VToonifyEngine(self._runner(path), path)
        if backbone is not None and backbone != engine.backbone:
            raise CheckpointError(f"{ckpt} is a VToonify checkpoint with backbone '{engine.backbone}' but backbone "
                                  f"'{backbone}' was requested; use --backbone {engine.backbone}")
        return engine

    def parser(self, path: str | os.PathLike, model: nn.Module | None = None) -> ParserEngine:
        """A :class:`ParserEngine` of the BiSeNet checkpoint ``path`` (``model`` is not used)."""
        with self.cache.open(path, check=self.check) as onnx_path:
            return ParserEngine(self._runner(onnx_path), onnx_path)


def get_engine(name: str = "torch", dtype: torch.dtype = torch.float32, cache_dir: str | os.PathLike | None = None,
               threads: int | None = None, device: str | torch.device = "cpu") -> Engine:
    """The engine ``name`` (``'torch'``, ``'onnxruntime'``, ``'openvino'`` or ``'tensorrt'``) computing in ``dtype``
    on ``device`` (the torch engine's modules are placed by the caller).

    Raises (one line each): :class:`common.errors.OptionError` for an unknown name, a device the engine does not run
    on (OpenVINO: CPU; ONNX Runtime: CPU, CUDA; TensorRT: CUDA) or a precision it does not compute in there (ONNX
    Runtime: float32 only; OpenVINO: float32, bfloat16; TensorRT: float32, float16);
    :class:`pipeline.engines.runtimes.EngineNotInstalledError` when its runtime (on CUDA: ONNX Runtime's CUDA or
    TensorRT provider, TensorRT's package) is not installed (it names the extra: ``pip install -e ".[openvino]"``,
    ``".[gpu]"``, ``".[tensorrt]"``). ``cache_dir``: the export cache folder (default
    :func:`pipeline.engines.cache.default_cache_dir`).
    """
    if check_engine_name(name) == "torch":
        return Engine(dtype)
    device = check_device(name, device)
    if device.type == "cuda":
        check_gpu_engine(name, dtype, device)
    else:
        import_runtime(name)
        check_precision(name, dtype)
    return OnnxEngine(name, dtype, ExportCache(cache_dir), threads, device)
