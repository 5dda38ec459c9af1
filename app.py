"""A local web demo of VToonify: toonify a portrait photo or a short video in the browser.

    python app.py                                   # models found under ./checkpoint, http://127.0.0.1:7860
    python app.py --ckpt_dir /data/vtoonify --device cuda --max_video_seconds 30

The page offers every model found in the checkpoint folder (``vtoonify_d_<style>/vtoonify_s_d*.pt`` with
its ``exstyle_code.npy``, ``vtoonify_t_<style>/vtoonify.pt``) and any given with ``--ckpt``; the exemplar
style (with a thumbnail of it), the style degree and colour transfer for VToonify-D; cropping around the
face; a photo or a video upload, or the bundled public-domain samples (scikit-image's astronaut, and a
short clip panning over it, with a tone as its audio track). Results appear with a progress bar; videos keep
their audio and can be downloaded.

The work is done by :class:`pipeline.stylize.VToonifyPipeline`: each model is loaded once, on first use
(the first one at start-up), and kept warm (``--max_loaded_models`` at a time). Requests go through
Gradio's queue and run one at a time, so a long video never freezes the page; it shows its progress and
its place in the queue. Bad inputs (no face, a file that is not an image or a video, a video over the
length limit) get a message on the page. The handlers are plain functions of an :class:`AppState`
(:func:`toonify_image`, :func:`toonify_video`, :func:`describe_video`, :func:`style_thumbnail`), usable
and tested without a browser; :func:`build_app` wires them to the page.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from common.errors import USER_ERRORS, InputError, OptionError
from common.options import RANGES
from hub.released import BACKBONE_FILES, DEFAULT_STYLE, SHARED_FILES, files_for, model_folder
from pipeline.precision import FAST_DTYPE, FAST_TOGGLE_INFO, fast_mode_available
from pipeline.samples import sample_photo, synthesize_test_video
from pipeline.styles import StyleCodeError
from pipeline.stylize import NoFaceError, VToonifyPipeline, resolve_device, tensor_to_frames
from pipeline.videoio import VideoError, probe

__all__ = [
    "AppConfig",
    "AppState",
    "ModelEntry",
    "build_app",
    "describe_video",
    "discover_models",
    "main",
    "read_image",
    "sample_photo",
    "style_thumbnail",
    "toonify_image",
    "toonify_video",
]

log = logging.getLogger("vtoonify.app")

#: Style shown first for VToonify-D models that have it (the original script's default).
DEFAULT_STYLE_ID = 26
#: Side of the style thumbnails, in pixels.
THUMBNAIL_SIZE = 128
#: Without cropping, inputs are stylised at full size into a 4x larger result; beyond this side that is
#: too heavy for a demo (a 4000x3000 photo would become 16000x12000).
MAX_UNCROPPED_SIDE = 1024
#: Thumbnails kept in memory (about 50 KB each).
MAX_CACHED_THUMBNAILS = 512
#: Seconds after which result files are deleted (Gradio serves its own copies, pruned after the same time).
RESULT_MAX_AGE = 3600

#: ``progress(fraction, desc=...)``: ``gr.Progress`` or any callable with that signature.
Progress = Callable[..., Any]
ImageInput = np.ndarray | str | os.PathLike | None

# Failures that are the user's input or the user's files, reported on the page in words (anything else is
# reported as unexpected, with its traceback on the console).
_EXPECTED_ERRORS = USER_ERRORS
_NO_FACE_TIP = "Try a portrait where the face is frontal, well lit and not too small."


# ------------------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class ModelEntry:
    """One VToonify checkpoint offered on the page.

    ``exstyle_path`` defaults to ``exstyle_code.npy`` next to ``ckpt`` (VToonify-D); VToonify-T needs none.
    """

    label: str
    ckpt: Path
    exstyle_path: Path | None = None

    @property
    def color_transfer_model(self) -> bool:
        """Whether the file is named as trained with colour transfer (``vtoonify_s_d_c.pt``, ``..._c_02000.pt``)."""
        return re.search(r"_c(_\d+)?$", self.ckpt.stem) is not None


def _label(path: Path) -> str:
    """``VToonify-D cartoon (vtoonify_s_d.pt)`` for a file in a released-layout folder, else the path."""
    found = model_folder(path.parent.name, released_only=False)
    if found is None:
        return str(path)
    backbone, style = found
    return f"VToonify-{BACKBONE_FILES[backbone].kind.upper()} {style} ({path.name})"


def discover_models(ckpt_dir: str | os.PathLike) -> list[ModelEntry]:
    """The models of a checkpoint folder in the released layout (:data:`hub.released.BACKBONE_FILES`).

    VToonify-D: ``vtoonify_d_<style>/vtoonify_s_d*.pt`` (adjustable style and degree; fixed-style files
    ``vtoonify_sNNN_dD.D.pt`` are left out), only where the folder has its ``exstyle_code.npy``.
    VToonify-T: ``vtoonify_t_<style>/vtoonify.pt``. VToonify-D comes first, the cartoon style (the
    original's default) first among them; any style name is accepted (user-trained models too).
    """
    root = Path(ckpt_dir)

    def order(path: Path) -> tuple:
        return path.parent.name.split("_", 2)[2] != DEFAULT_STYLE, path.parent.name, path.name

    entries = []
    for table in BACKBONE_FILES.values():
        found = []
        for path in root.glob(f"{table.folder_prefix}*/{table.model_glob}"):
            missing = [name for name in table.companions if not (path.parent / name).is_file()]
            if missing:
                log.warning("skipping %s: no %s next to it", path, " or ".join(missing))
                continue
            found.append(path)
        entries += [ModelEntry(_label(p), p) for p in sorted(found, key=order)]
    return entries


@dataclass(frozen=True)
class AppConfig:
    """What the app serves and how (see ``python app.py --help``)."""

    models: tuple[ModelEntry, ...]
    style_encoder_path: Path
    faceparsing_path: Path
    device: str = "auto"
    dtype: str | None = None
    max_video_seconds: float | None = 10.0  # None: no limit
    max_video_frames: int | None = None  # None: no limit
    max_loaded_models: int = 2

    def __post_init__(self) -> None:
        if not self.models:
            raise OptionError("no VToonify model to serve")
        labels = [m.label for m in self.models]
        if len(set(labels)) != len(labels):
            raise OptionError(f"model labels must be unique, got {labels}")
        if self.max_loaded_models < 1:
            raise OptionError(f"max_loaded_models must be at least 1, got {self.max_loaded_models}")

    @classmethod
    def from_checkpoint_dir(cls, ckpt_dir: str | os.PathLike, ckpts: Sequence[str | os.PathLike] = (),
                            style_encoder_path: str | os.PathLike | None = None,
                            faceparsing_path: str | os.PathLike | None = None, **options: Any) -> AppConfig:
        """The models given in ``ckpts`` (first) and those found in ``ckpt_dir``; the helper networks
        default to ``<ckpt_dir>/encoder.pt`` and ``<ckpt_dir>/faceparsing.pth``."""
        root = Path(ckpt_dir)
        paths: list[Path] = []
        for path in [Path(p) for p in ckpts] + [m.ckpt for m in discover_models(root)]:
            if all(path.resolve() != known.resolve() for known in paths):
                paths.append(path)
        if not paths:
            from hub.download_hints import download_command

            raise OptionError(f"no VToonify model found in {root} (looked for vtoonify_d_*/vtoonify_s_d*.pt with "
                             f"exstyle_code.npy, and vtoonify_t_*/vtoonify.pt); download one with "
                             f"`{download_command()}`, or pass --ckpt PATH")
        labels = [_label(p) for p in paths]
        models = [ModelEntry(label if labels.count(label) == 1 else str(p), p) for label, p in zip(labels, paths)]
        return cls(models=tuple(models),
                   style_encoder_path=Path(style_encoder_path) if style_encoder_path else root / "encoder.pt",
                   faceparsing_path=Path(faceparsing_path) if faceparsing_path else root / "faceparsing.pth",
                   **options)

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.models]

    def model(self, label: str) -> ModelEntry:
        for entry in self.models:
            if entry.label == label:
                return entry
        raise OptionError(f"unknown model {label!r}; choose one of: {', '.join(self.labels)}")

    def missing_files(self) -> list[Path]:
        """Files the configuration names that do not exist."""
        needed = [self.style_encoder_path, self.faceparsing_path] + [m.ckpt for m in self.models]
        return [p for p in needed if not p.is_file()]


@dataclass(frozen=True)
class ModelInfo:
    """What the page needs to know about a loaded model."""

    backbone: str  # "dualstylegan" (VToonify-D) or "toonify" (VToonify-T)
    style_names: tuple[str, ...]  # exemplar names in style-id order; empty for VToonify-T
    color_transfer_model: bool

    @property
    def is_dual(self) -> bool:
        return self.backbone == "dualstylegan"

    @property
    def default_style_id(self) -> int:
        return DEFAULT_STYLE_ID if DEFAULT_STYLE_ID < len(self.style_names) else 0


class AppState:
    """The app's models and files: pipelines loaded on first use and kept warm, thumbnails, a work folder.

    At most ``config.max_loaded_models`` pipelines stay loaded (the least recently used one is dropped
    to make room). Results are written under a private temporary folder, removed by :meth:`close` or
    when the process exits. Safe to use from Gradio's worker threads.
    """

    def __init__(self, config: AppConfig):
        self.config = config
        self.workdir = Path(tempfile.mkdtemp(prefix="vtoonify_app_"))
        self._remove_workdir = weakref.finalize(self, shutil.rmtree, self.workdir, ignore_errors=True)
        self._pipelines: OrderedDict[str, VToonifyPipeline] = OrderedDict()
        self._thumbnails: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # guards both caches; held while a model loads
        self._sample_video: Path | None = None

    @property
    def loaded(self) -> list[str]:
        """Labels of the models in memory, least recently used first."""
        with self._lock:
            return list(self._pipelines)

    def pipeline(self, label: str, fast: bool = False) -> VToonifyPipeline:
        """The pipeline of model ``label``, loading it if needed; ``fast``: in bfloat16 (the page's "fast" toggle)."""
        entry = self.config.model(label)
        dtype, key = (FAST_DTYPE, f"{label} (fast)") if fast else (self.config.dtype, label)
        with self._lock:
            if key in self._pipelines:
                self._pipelines.move_to_end(key)
                return self._pipelines[key]
            while len(self._pipelines) >= self.config.max_loaded_models:
                dropped, _ = self._pipelines.popitem(last=False)
                log.info("unloading %s", dropped)
            log.info("loading %s", key)
            pipe = VToonifyPipeline(entry.ckpt, style_encoder_path=self.config.style_encoder_path,
                                    faceparsing_path=self.config.faceparsing_path, exstyle_path=entry.exstyle_path,
                                    device=self.config.device, dtype=dtype)
            self._pipelines[key] = pipe
            return pipe

    def model_info(self, label: str) -> ModelInfo:
        """Backbone and exemplar styles of model ``label`` (loads it)."""
        pipe = self.pipeline(label)
        return ModelInfo(pipe.backbone, tuple(pipe.exstyles), self.config.model(label).color_transfer_model)

    def thumbnail(self, label: str, style_id: int) -> np.ndarray:
        """The style thumbnail of exemplar ``style_id`` of a VToonify-D model (cached), see :func:`style_thumbnail`."""
        key = (label, style_id)
        with self._lock:
            if key in self._thumbnails:
                self._thumbnails.move_to_end(key)
                return self._thumbnails[key]
        image = render_exemplar(self.pipeline(label), style_id)
        with self._lock:
            self._thumbnails[key] = image
            while len(self._thumbnails) > MAX_CACHED_THUMBNAILS:
                self._thumbnails.popitem(last=False)
        return image

    def new_job_dir(self) -> Path:
        """A fresh folder for one request's files; those of requests older than ``RESULT_MAX_AGE`` are removed."""
        cutoff = time.time() - RESULT_MAX_AGE
        for old in self.workdir.glob("job_*"):
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix="job_", dir=self.workdir))

    def sample_video(self) -> Path:
        """The bundled sample clip (made on first use): 2 s panning over the astronaut, with a tone as audio."""
        with self._lock:
            if self._sample_video is None:
                self._sample_video = synthesize_test_video(self.workdir / "astronaut_sample.mp4", sample_photo(),
                                                           n_frames=16, fps=8, size=(384, 384), motion="pan")
            return self._sample_video

    def close(self) -> None:
        """Drop the models and remove the work folder."""
        with self._lock:
            self._pipelines.clear()
            self._thumbnails.clear()
        self._remove_workdir()


# ------------------------------------------------------------------------------------------- handlers
def read_image(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    """An RGB ``uint8`` array from an array or an image file (EXIF orientation applied).

    Raises ``ValueError`` for a file Pillow cannot read as an image.
    """
    if isinstance(image, np.ndarray):
        from pipeline.faces import load_rgb

        return load_rgb(image)
    name = Path(image).name
    try:
        with Image.open(image) as pil:
            return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(pil).convert("RGB")))
    except Image.DecompressionBombError as e:
        raise InputError(f"{name} is too large an image ({e})") from e
    except (OSError, SyntaxError) as e:  # UnidentifiedImageError is an OSError; truncated files too
        raise InputError(f"{name} is not an image this app can read (JPEG, PNG, WebP, ...)") from e


def _report(progress: Progress | None, fraction: float, desc: str) -> None:
    if progress is not None:
        progress(fraction, desc=desc)


def _error_message(error: BaseException, path: str | os.PathLike | None = None) -> str:
    """A one-line message for the page; the temporary upload path is shortened to the file name."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if path is not None:
        text = text.replace(os.fspath(path), Path(path).name)
    if isinstance(error, VideoError):
        return f"Unsupported file: {text}"
    return f"Error: {text}"


def _check_style_id(pipe: VToonifyPipeline, style_id: int) -> None:
    """Raise :class:`StyleCodeError` for a style id the model does not have, before any work (VToonify-D)."""
    if pipe.backbone == "dualstylegan" and not 0 <= style_id < pipe.num_styles:
        raise StyleCodeError(f"style id {style_id} is out of range: this model has {pipe.num_styles} styles "
                             f"(0 .. {pipe.num_styles - 1})")


def _too_large(width: int, height: int, scale_image: bool) -> str | None:
    if scale_image or max(width, height) <= MAX_UNCROPPED_SIDE:
        return None
    return (f"This input is {width}x{height}: without cropping the result would be {4 * width}x{4 * height}. "
            f"Turn on 'Crop around the face', or use an input at most {MAX_UNCROPPED_SIDE} px on its longer side.")


def toonify_image(state: AppState, image: ImageInput, model: str, style_id: int = DEFAULT_STYLE_ID,
                  style_degree: float = 0.5, color_transfer: bool = False, scale_image: bool = True,
                  progress: Progress | None = None, fast: bool = False, style_image: str | os.PathLike | None = None,
                  style_aligned: bool = False, faces: str = "largest") -> tuple[np.ndarray | None, str]:
    """Toonify a photo: ``(result RGB uint8 or None, message for the page)``; ``fast``: bfloat16.

    ``image`` is an RGB array or the path of an uploaded file; with ``scale_image`` the photo is rescaled
    so that the eyes are 64 px apart and cropped around the face (the result is 4x the crop). ``style_image``
    (an uploaded picture; ``style_aligned``: already an aligned face square) replaces the exemplar ``style_id``;
    ``faces='all'`` stylises every face at its own scale (:mod:`pipeline.multiface`).
    """
    if image is None:
        return None, "Upload a photo first (or press 'Use the sample photo')."
    start = time.perf_counter()
    try:
        rgb = read_image(image)
    except ValueError as e:
        return None, f"Unsupported file: {e}"
    if (message := _too_large(rgb.shape[1], rgb.shape[0], scale_image)) is not None:
        return None, message
    try:
        _report(progress, 0.0, "Loading the model")
        pipe = state.pipeline(model, fast=bool(fast))
        _check_style_id(pipe, int(style_id))
        code = _exemplar(pipe, style_image, style_aligned)
        _report(progress, 0.2, "Stylising")
        result = pipe.stylize_image(rgb, style_id=int(style_id), style_degree=float(style_degree),
                                    color_transfer=bool(color_transfer), scale_image=bool(scale_image), style_image=code,
                                    faces=faces)
    except NoFaceError:
        return None, f"No face found in this photo. {_NO_FACE_TIP}"
    except _EXPECTED_ERRORS as e:
        return None, _error_message(e, image if not isinstance(image, np.ndarray) else None)
    except Exception as e:  # the page gets a message, the console the traceback
        log.exception("toonify_image failed")
        return None, f"Unexpected error ({type(e).__name__}: {e}); see the console for details."
    (h, w), (oh, ow) = result.input.shape[:2], result.output.shape[:2]
    what = f"cropped around the face to {w}x{h}" if result.crop is not None else f"{w}x{h}"
    return result.output, f"Done in {time.perf_counter() - start:.1f} s: input {what}, result {ow}x{oh}."


def _exemplar(pipe: VToonifyPipeline, style_image: str | os.PathLike | None, aligned: bool) -> np.ndarray | None:
    """The Z+ code of an uploaded exemplar (VToonify-D; cached by :mod:`pipeline.exstyle`), or None.

    ``style_image`` is a file path, or Gradio's description of an upload (``{'path': ...}``) when the
    handler runs without preprocessing."""
    if isinstance(style_image, dict):
        style_image = style_image.get("path")
    return None if not style_image else pipe.exemplar_code(style_image, aligned=bool(aligned), progress=False)


def _over_limits(config: AppConfig, duration: float, frames: int) -> str | None:
    if config.max_video_seconds is not None and duration > config.max_video_seconds:
        return (f"This video is {duration:.1f} s long; this app takes videos up to {config.max_video_seconds:g} s "
                f"(start it with --max_video_seconds to change the limit). Trim the video and upload it again.")
    if config.max_video_frames is not None and frames > config.max_video_frames:
        return (f"This video has {frames} frames; this app takes videos up to {config.max_video_frames} frames "
                f"(start it with --max_video_frames to change the limit). Trim the video and upload it again.")
    return None


def describe_video(state: AppState, video: str | os.PathLike | None) -> str:
    """A line about an uploaded video, or why it will be refused (not a video, over the limits)."""
    if video is None:
        return ""
    try:
        info = probe(video)
    except VideoError as e:
        return _error_message(e, video)
    if (message := _over_limits(state.config, info.duration, info.frame_count)) is not None:
        return message
    audio = "with audio" if info.has_audio else "no audio"
    return (f"{Path(video).name}: {info.width}x{info.height}, {info.duration:.1f} s, "
            f"{info.frame_count} frames at {info.fps:g} fps, {audio}.")


def toonify_video(state: AppState, video: str | os.PathLike | None, model: str, style_id: int = DEFAULT_STYLE_ID,
                  style_degree: float = 0.5, color_transfer: bool = False, scale_image: bool = True,
                  track: bool = False, smooth_parsing: int = 0,
                  progress: Progress | None = None, fast: bool = False, style_image: str | os.PathLike | None = None,
                  style_aligned: bool = False, faces: str = "largest") -> tuple[str | None, str]:
    """Toonify a video: ``(path of the result MP4 or None, message for the page)``; ``fast``: bfloat16.

    The video is checked against the limits before any model runs. The result is H.264 with the input's
    audio, every frame kept. With ``progress`` (``gr.Progress(track_tqdm=True)`` in the app) the stages are
    reported and the pipeline's per-frame progress bar is shown; ``track`` and ``smooth_parsing`` are the
    pipeline's options (follow a moving face; smooth the parsing maps over ±N frames against flicker).
    """
    if video is None:
        return None, "Upload a video first (or press 'Use the sample video')."
    start = time.perf_counter()
    _report(progress, 0.0, "Checking the video")
    try:
        info = probe(video)
    except VideoError as e:
        return None, _error_message(e, video)
    if (message := _over_limits(state.config, info.duration, info.frame_count)) is not None:
        return None, message
    if (message := _too_large(info.width, info.height, scale_image)) is not None:
        return None, message
    try:
        _report(progress, 0.02, "Loading the model")
        pipe = state.pipeline(model, fast=bool(fast))
        _check_style_id(pipe, int(style_id))
        code = _exemplar(pipe, style_image, style_aligned)
        _report(progress, 0.05, "Finding the face")
        result = pipe.stylize_video(video, state.new_job_dir(), style_id=int(style_id), style_degree=float(style_degree),
                                    color_transfer=bool(color_transfer), scale_image=bool(scale_image), track=bool(track),
                                    smooth_parsing=int(smooth_parsing), progress=progress is not None,
                                    name=Path(video).stem, style_image=code, faces=faces)
    except NoFaceError:
        return None, f"No face found in any frame of this video. {_NO_FACE_TIP}"
    except _EXPECTED_ERRORS as e:
        return None, _error_message(e, video)
    except Exception as e:  # the page gets a message, the console the traceback
        log.exception("toonify_video failed")
        return None, f"Unexpected error ({type(e).__name__}: {e}); see the console for details."
    result.input_path.unlink(missing_ok=True)  # the cropped input: not offered on the page
    audio = "audio kept" if info.has_audio else "no audio in the input"
    return str(result.output_path), (f"Done in {time.perf_counter() - start:.0f} s: {result.frames} frames at "
                                     f"{result.fps:g} fps, {audio}. Download it with the button on the video.")


@torch.inference_mode()
def render_exemplar(pipe: VToonifyPipeline, style_id: int, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """The exemplar's style code rendered by the DualStyleGAN inside a VToonify-D model, ``size`` px RGB uint8.

    The W+ code of exemplar ``style_id`` is both the intrinsic (structure) and the extrinsic (style) input,
    with full extrinsic weight and fixed noise: DualStyleGAN's reconstruction of the exemplar portrait,
    i.e. a face in that style. Rendered at the generator's resolution, then area-downscaled.
    """
    code = pipe.exstyle(style_id)
    generator = pipe.vtoonify.generator
    image, _ = generator([code], code, input_is_latent=True, use_res=True, interp_weights=[1] * generator.n_latent,
                         randomize_noise=False)
    return tensor_to_frames(F.interpolate(image.float(), size=(size, size), mode="area"))[0]


def style_thumbnail(state: AppState, model: str, style_id: int) -> tuple[np.ndarray | None, str]:
    """``(thumbnail or None, caption)`` of exemplar ``style_id`` of ``model`` (see :func:`render_exemplar`)."""
    try:
        info = state.model_info(model)
        if not info.is_dual:
            return None, ("VToonify-T has no exemplar styles: the style is fixed by the model "
                          "(style id, degree and colour transfer do not apply).")
        style_id = int(style_id)
        _check_style_id(state.pipeline(model), style_id)
        image = state.thumbnail(model, style_id)
    except _EXPECTED_ERRORS as e:
        return None, _error_message(e)
    name = info.style_names[style_id]
    return image, f"Style {style_id} of {len(info.style_names)} (exemplar {name}), as the model's DualStyleGAN renders it."


# ---------------------------------------------------------------------------------------------- page
def _intro(config: AppConfig) -> str:
    limits = []
    if config.max_video_seconds is not None:
        limits.append(f"{config.max_video_seconds:g} s")
    if config.max_video_frames is not None:
        limits.append(f"{config.max_video_frames} frames")
    videos = f"Videos up to {' and '.join(limits)}" if limits else "Videos of any length"
    return (
        "# VToonify\n"
        "Toonify a portrait photo or a short video with the VToonify models on this machine "
        f"(running on {resolve_device(config.device).type.upper()}). Pick a model and a style, upload a photo or "
        "a video (or use a sample) and press *Toonify*. "
        f"{videos}; they keep their audio. The thumbnail next to the style id is the exemplar's style code "
        "as the model's DualStyleGAN renders it."
    )


def build_app(config: AppConfig, state: AppState | None = None) -> gr.Blocks:
    """The page; ``state`` (default: a new :class:`AppState` of ``config``) holds the models."""
    state = state if state is not None else AppState(config)

    def on_model(label: str, current: float) -> tuple[Any, Any, Any]:
        """Fit the style controls to the chosen model (loading it)."""
        try:
            info = state.model_info(label)
        except _EXPECTED_ERRORS:  # reported by the thumbnail step that follows
            return gr.update(), gr.update(), gr.update()
        if not info.is_dual:
            return gr.update(interactive=False), gr.update(interactive=False), gr.update(value=False, interactive=False)
        n = len(info.style_names)
        style = int(current) if 0 <= current < n else info.default_style_id
        return (gr.update(minimum=0, maximum=n - 1, value=style, interactive=True), gr.update(interactive=True),
                gr.update(value=info.color_transfer_model, interactive=True))

    def show_style(label: str, style: float) -> tuple[np.ndarray | None, str]:
        return style_thumbnail(state, label, int(style))

    # Gradio recognises a handler's progress tracker by its default value, hence the calls in the defaults.
    def run_photo(upload: dict[str, Any] | None, label: str, style: float, degree: float, color: bool, crop: bool,
                  fast_on: bool, exemplar: str | None, aligned: bool, which: str = "largest",
                  progress: gr.Progress = gr.Progress()) -> tuple[np.ndarray | None, str]:  # noqa: B008
        """Runs without Gradio's preprocessing: ``upload`` is the uploaded file's description, and the file
        is decoded by :func:`toonify_image`, which says what is wrong with one Pillow cannot read (Gradio's
        own decoding would fail before the handler, with a bare "Error" on the page)."""
        path = upload.get("path") if upload else None
        return toonify_image(state, path, label, int(style), degree, color, crop, progress=progress, fast=fast_on,
                             style_image=exemplar, style_aligned=aligned, faces=which)

    def run_video(video: str | None, label: str, style: float, degree: float, color: bool, crop: bool, fast_on: bool,
                  track: bool, smooth: float, exemplar: str | None, aligned: bool, which: str = "largest",
                  progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[str | None, str]:  # noqa: B008
        return toonify_video(state, video, label, int(style), degree, color, crop, track, int(smooth), progress=progress,
                             fast=fast_on, style_image=exemplar, style_aligned=aligned, faces=which)

    def check_video(video: str | None) -> str:
        return describe_video(state, video)

    def use_sample_video() -> tuple[str, str]:
        path = state.sample_video()
        return str(path), describe_video(state, path)

    with gr.Blocks(title="VToonify", analytics_enabled=False, delete_cache=(RESULT_MAX_AGE, RESULT_MAX_AGE)) as demo:
        gr.Markdown(_intro(config))
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320):
                model = gr.Dropdown(config.labels, value=config.labels[0], label="Model", elem_id="model")
                style_id = gr.Slider(0, 1, value=0, step=1, label="Style id", info="the exemplar style (VToonify-D)",
                                     elem_id="style-id")
                with gr.Row(equal_height=True):
                    thumbnail = gr.Image(label="Style", height=THUMBNAIL_SIZE, width=THUMBNAIL_SIZE, interactive=False,
                                         buttons=[], show_label=False, scale=0, min_width=THUMBNAIL_SIZE,
                                         elem_id="style-thumbnail")
                    style_note = gr.Markdown(elem_id="style-note")
                degree = gr.Slider(RANGES["style_degree"].low, RANGES["style_degree"].high, value=0.5, step=0.05,
                                   label="Style degree",
                                   info="0: the face as it is ... 1: the full style", elem_id="style-degree")
                color_transfer = gr.Checkbox(False, label="Colour transfer", elem_id="color-transfer",
                                             info="use the exemplar's colours too "
                                                  "(what the vtoonify_s_d_c.pt models are trained for)")
                crop = gr.Checkbox(True, label="Crop around the face", elem_id="crop",
                                   info="rescale so that the eyes are 64 px apart and crop; the result is 4x the input")
                fast = gr.Checkbox(False, label="Fast (bfloat16)", elem_id="fast", info=FAST_TOGGLE_INFO,
                                   visible=fast_mode_available(config.device, config.dtype))
                with gr.Accordion("Your own exemplar (VToonify-D)", open=False):
                    exemplar = gr.Image(label="Style image", type="filepath", sources=["upload", "clipboard"],
                                        elem_id="style-image")
                    exemplar_aligned = gr.Checkbox(False, label="Already an aligned face", elem_id="style-aligned",
                                                   info="a square face crop (drawings where no face is found)")
                faces = gr.Radio(["largest", "all"], value="largest", label="Faces", elem_id="faces",
                                 info="largest: one face sets the scale and style; all: every face at its own scale "
                                      "(one more model pass per face)")
            with gr.Column(scale=3), gr.Tabs():
                with gr.Tab("Photo", id="photo"):
                    with gr.Row():
                        photo = gr.Image(label="Photo", format="png", sources=["upload", "webcam", "clipboard"],
                                         elem_id="photo-input")
                        photo_result = gr.Image(label="Result", format="png", interactive=False,
                                                buttons=["download", "fullscreen"], elem_id="photo-output")
                    with gr.Row():
                        photo_sample = gr.Button("Use the sample photo", elem_id="photo-sample")
                        photo_run = gr.Button("Toonify photo", variant="primary", elem_id="run-photo")
                    photo_status = gr.Markdown(elem_id="photo-status")
                with gr.Tab("Video", id="video"):
                    with gr.Row():
                        video = gr.Video(label="Video", sources=["upload"], include_audio=True, elem_id="video-input")
                        video_result = gr.Video(label="Result", interactive=False, buttons=["download"],
                                                elem_id="video-output")
                    with gr.Accordion("Video options", open=False):
                        track = gr.Checkbox(False, label="Follow the face", elem_id="track",
                                            info="move the crop with a moving face (smoothed); the size stays fixed")
                        smooth = gr.Slider(0, 4, value=0, step=1, label="Reduce flicker", elem_id="smooth-parsing",
                                           info="smooth the face-parsing maps over ±N frames (0: off, 2 is typical)")
                    with gr.Row():
                        video_sample = gr.Button("Use the sample video", elem_id="video-sample")
                        video_run = gr.Button("Toonify video", variant="primary", elem_id="run-video")
                    video_status = gr.Markdown(elem_id="video-status")

        style_inputs, style_outputs = [model, style_id], [thumbnail, style_note]
        gr.on([demo.load, model.change], on_model, [model, style_id], [style_id, degree, color_transfer]) \
            .then(show_style, style_inputs, style_outputs, concurrency_id="thumbnail")
        style_id.input(show_style, style_inputs, style_outputs, trigger_mode="always_last", concurrency_id="thumbnail")

        photo_sample.click(sample_photo, None, photo)
        photo_run.click(run_photo, [photo, model, style_id, degree, color_transfer, crop, fast, exemplar, exemplar_aligned,
                         faces],
                        [photo_result, photo_status],
                        preprocess=False, concurrency_id="stylize", concurrency_limit=1)

        video.upload(check_video, video, video_status)
        video_sample.click(use_sample_video, None, [video, video_status])
        video_run.click(run_video, [video, model, style_id, degree, color_transfer, crop, fast, track, smooth, exemplar,
                                    exemplar_aligned, faces],
                        [video_result, video_status], concurrency_id="stylize", concurrency_limit=1)
    return demo


# ----------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Local web demo of VToonify (portrait photo and video toonification)")
    p.add_argument("--ckpt_dir", default="./checkpoint",
                   help="checkpoint folder in the released layout, searched for models (default: ./checkpoint)")
    p.add_argument("--ckpt", action="append", default=[], metavar="PATH",
                   help="a VToonify checkpoint to offer as well (repeatable; listed first, the first is the default); "
                        "a VToonify-D model needs exstyle_code.npy next to it")
    p.add_argument("--style_encoder_path", default=None, help="pSp style encoder (default: <ckpt_dir>/encoder.pt)")
    p.add_argument("--faceparsing_path", default=None, help="BiSeNet face parser (default: <ckpt_dir>/faceparsing.pth)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available; the default), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                   help="precision of VToonify and the face parser (default: float32)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default: 127.0.0.1, this machine only; 0.0.0.0: the network too)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    p.add_argument("--max_video_seconds", type=float, default=10.0,
                   help="longest video accepted, in seconds (default: 10; 0: no limit)")
    p.add_argument("--max_video_frames", type=int, default=None, help="most frames accepted in a video (default: no limit)")
    p.add_argument("--max_loaded_models", type=int, default=2, help="models kept in memory at once (default: 2)")
    p.add_argument("--share", action="store_true",
                   help="also publish the page through a temporary public gradio.live link (default: off)")
    p.add_argument("--no_download", action="store_true",
                   help="never download the default model when the checkpoint folder has none (also: VTOONIFY_NO_DOWNLOAD=1)")
    return p


def fetch_default_model(args: argparse.Namespace) -> list[Path]:
    """First run: download the default model (VToonify-D cartoon) and the helper networks into ``--ckpt_dir``
    when it has no model and none is given with ``--ckpt``, and the helpers when they are missing at their
    default paths (see :mod:`hub.first_run`). Paths given with ``--ckpt`` and the ``--*_path`` options
    are never replaced."""
    from hub.first_run import fetch_missing_defaults

    root = Path(args.ckpt_dir)
    defaults = []
    if args.style_encoder_path is None:
        defaults.append(root / "encoder.pt")
    if args.faceparsing_path is None:
        defaults.append(root / "faceparsing.pth")
    if not args.ckpt and not discover_models(root):
        defaults += [root / rel for rel in files_for() if rel not in SHARED_FILES]
    return fetch_missing_defaults(defaults, root, no_download=args.no_download)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(message)s")
    log.setLevel(logging.INFO)
    from hub.download_hints import missing_file_message

    try:
        fetch_default_model(args)
        config = AppConfig.from_checkpoint_dir(
            args.ckpt_dir, args.ckpt, args.style_encoder_path, args.faceparsing_path, device=args.device,
            dtype=args.dtype, max_video_seconds=args.max_video_seconds or None, max_video_frames=args.max_video_frames,
            max_loaded_models=args.max_loaded_models)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    missing = config.missing_files()
    if missing:
        print("error: " + "\n".join(missing_file_message(p) for p in missing), file=sys.stderr)
        return 1
    state = AppState(config)
    try:  # the default model is loaded up front, so that the first request is quick
        state.pipeline(config.labels[0])
    except (*USER_ERRORS, ImportError) as e:  # ImportError: dlib or another optional package is missing
        print(f"error: {e}", file=sys.stderr)
        return 1
    demo = build_app(config, state)
    demo.queue().launch(server_name=args.host, server_port=args.port, share=args.share,
                        allowed_paths=[str(state.workdir)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
