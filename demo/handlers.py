"""What the page's buttons do, as plain functions of an :class:`~demo.state.AppState` (no Gradio needed).

Each handler returns its result and a message for the page: bad inputs (no face, a file that is not an image
or a video, a video over the limits) are reported in words, anything unexpected as such with its traceback
on the console.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from common.errors import USER_ERRORS
from common.images import read_rgb
from demo.config import DEFAULT_STYLE_ID, over_limits, too_large
from demo.released import Progress
from demo.state import AppState
from pipeline.styles import StyleCodeError
from pipeline.stylize import NoFaceError, VToonifyPipeline
from pipeline.videoio import VideoError, probe

__all__ = ["describe_video", "fetch_model", "read_image", "style_thumbnail", "toonify_image", "toonify_video"]

log = logging.getLogger("vtoonify.app")

ImageInput = np.ndarray | str | os.PathLike | None

# Failures that are the user's input or the user's files, reported on the page in words (anything else is
# reported as unexpected, with its traceback on the console).
EXPECTED_ERRORS = USER_ERRORS
_NO_FACE_TIP = "Try a portrait where the face is frontal, well lit and not too small."


def read_image(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    """An RGB ``uint8`` array from an array or an image file (EXIF orientation applied): :func:`common.images.read_rgb`.

    Raises :class:`~common.errors.InputError` (a ``ValueError``) for a file that cannot be read as an image.
    """
    return read_rgb(image)


def _report(progress: Progress | None, fraction: float, desc: str) -> None:
    if progress is not None:
        progress(fraction, desc=desc)


def _one_line(error: BaseException, path: str | os.PathLike | None = None) -> str:
    """The first line of ``error``'s message, the temporary upload ``path`` shortened to the file name."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if path is None else text.replace(os.fspath(path), Path(path).name)


def error_message(error: BaseException, path: str | os.PathLike | None = None) -> str:
    """A one-line message for the page (see :func:`_one_line`)."""
    return f"{'Unsupported file' if isinstance(error, VideoError) else 'Error'}: {_one_line(error, path)}"


def _check_style_id(pipe: VToonifyPipeline, style_id: int) -> None:
    """Raise :class:`StyleCodeError` for a style id the model does not have, before any work (VToonify-D)."""
    if pipe.backbone == "dualstylegan" and not 0 <= style_id < pipe.num_styles:
        raise StyleCodeError(f"style id {style_id} is out of range: this model has {pipe.num_styles} styles "
                             f"(0 .. {pipe.num_styles - 1})")


def _exemplar(pipe: VToonifyPipeline, style_image: str | os.PathLike | dict | None, aligned: bool) -> np.ndarray | None:
    """The Z+ code of an uploaded exemplar (VToonify-D; cached by :mod:`pipeline.exstyle`), or None.

    ``style_image`` is a file path, or Gradio's description of an upload (``{'path': ...}``) when the
    handler runs without preprocessing."""
    if isinstance(style_image, dict):
        style_image = style_image.get("path")
    return None if not style_image else pipe.exemplar_code(style_image, aligned=bool(aligned), progress=False)


def _model_and_exemplar(state: AppState, model: str, fast: bool, style_id: int, style_image: str | os.PathLike | None,
                        style_aligned: bool, progress: Progress | None,
                        fraction: float) -> tuple[VToonifyPipeline, np.ndarray | None]:
    """The model (loading it, reported at ``fraction``), its style id checked, and the code of an uploaded exemplar."""
    _report(progress, fraction, "Loading the model")
    pipe = state.pipeline(model, fast=bool(fast))
    _check_style_id(pipe, int(style_id))
    return pipe, _exemplar(pipe, style_image, style_aligned)


def _failure(error: Exception, where: str, path: str | os.PathLike | None, handler: str) -> str:
    """The page's message for a handler's failure (called in its ``except`` block): no face found in ``where``, the
    user's error in one line, or an unexpected one (with its traceback on the console)."""
    if isinstance(error, NoFaceError):
        return f"No face found in {where}. {_NO_FACE_TIP}"
    if isinstance(error, EXPECTED_ERRORS):
        return error_message(error, path)
    log.exception("%s failed", handler)
    return f"Unexpected error ({type(error).__name__}: {error}); see the console for details."


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
    path = None if isinstance(image, np.ndarray) else image
    try:
        rgb = read_image(image)
    except EXPECTED_ERRORS as e:  # not an image, damaged, too large
        return None, f"Unsupported file: {_one_line(e, path)}"
    if (message := too_large(rgb.shape[1], rgb.shape[0], scale_image)) is not None:
        return None, message
    try:
        pipe, code = _model_and_exemplar(state, model, fast, style_id, style_image, style_aligned, progress, 0.0)
        _report(progress, 0.2, "Stylising")
        result = pipe.stylize_image(rgb, style_id=int(style_id), style_degree=float(style_degree),
                                    color_transfer=bool(color_transfer), scale_image=bool(scale_image), style_image=code,
                                    faces=faces)
    except Exception as e:
        return None, _failure(e, "this photo", path, "toonify_image")
    (h, w), (oh, ow) = result.input.shape[:2], result.output.shape[:2]
    what = f"cropped around the face to {w}x{h}" if result.crop is not None else f"{w}x{h}"
    return result.output, f"Done in {time.perf_counter() - start:.1f} s: input {what}, result {ow}x{oh}."


def describe_video(state: AppState, video: str | os.PathLike | None) -> str:
    """A line about an uploaded video, or why it will be refused (not a video, over the limits)."""
    if video is None:
        return ""
    try:
        info = probe(video)
    except VideoError as e:
        return error_message(e, video)
    if (message := over_limits(state.config, info.duration, info.frame_count)) is not None:
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
        return None, error_message(e, video)
    if (message := over_limits(state.config, info.duration, info.frame_count)) is not None:
        return None, message
    if (message := too_large(info.width, info.height, scale_image)) is not None:
        return None, message
    try:
        pipe, code = _model_and_exemplar(state, model, fast, style_id, style_image, style_aligned, progress, 0.02)
        _report(progress, 0.05, "Finding the face")
        result = pipe.stylize_video(video, state.new_job_dir(), style_id=int(style_id), style_degree=float(style_degree),
                                    color_transfer=bool(color_transfer), scale_image=bool(scale_image), track=bool(track),
                                    smooth_parsing=int(smooth_parsing), progress=progress is not None,
                                    name=Path(video).stem, style_image=code, faces=faces)
    except Exception as e:
        return None, _failure(e, "any frame of this video", video, "toonify_video")
    result.input_path.unlink(missing_ok=True)  # the cropped input: not offered on the page
    audio = "audio kept" if info.has_audio else "no audio in the input"
    return str(result.output_path), (f"Done in {time.perf_counter() - start:.0f} s: {result.frames} frames at "
                                     f"{result.fps:g} fps, {audio}. Download it with the button on the video.")


def fetch_model(state: AppState, model: str, progress: Progress | None = None) -> tuple[bool, str | None]:
    """Download a released model picked on the page if it is not on disk yet (:meth:`AppState.fetch`, each file
    reported to ``progress``): ``(whether anything was downloaded, None)``, or ``(False, one-line message)`` when it
    could not be (offline, downloads turned off, a full disk; nothing half-written is left)."""
    try:
        return state.fetch(model, progress), None
    except (*EXPECTED_ERRORS, ImportError) as e:  # ImportError: huggingface_hub is not installed
        return False, error_message(e)


def style_thumbnail(state: AppState, model: str, style_id: int) -> tuple[np.ndarray | None, str]:
    """``(thumbnail or None, caption)`` of exemplar ``style_id`` of ``model`` (see :func:`demo.state.render_exemplar`)."""
    try:
        info = state.model_info(model)
        if not info.is_dual:
            return None, ("VToonify-T has no exemplar styles: the style is fixed by the model "
                          "(style id, degree and colour transfer do not apply).")
        style_id = int(style_id)
        _check_style_id(state.pipeline(model), style_id)
        image = state.thumbnail(model, style_id)
    except EXPECTED_ERRORS as e:
        return None, error_message(e)
    name = info.style_names[style_id]
    return image, f"Style {style_id} of {len(info.style_names)} (exemplar {name}), as the model's DualStyleGAN renders it."
