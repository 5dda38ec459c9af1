"""The one way in: :func:`stylize_image` and :func:`stylize_video` take a pipeline, an input and one options value,
check the options once, and hand over to the path that renders them (one face or every face, photo or video).

``style_transfer.py``, the demo, the figures and :class:`pipeline.stylize.VToonifyPipeline`'s methods all come
through here, so an option means the same everywhere and is checked in one place::

    from pipeline.api import StyleOptions, VideoOptions, stylize_image, stylize_video
    result = stylize_image(pipe, rgb, StyleOptions(style_id=26, scale_image=True))
    stylize_video(pipe, "clip.mp4", "output/", VideoOptions(track=True, faces="all"))
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from common.errors import NoFaceError, OptionError
from common.images import check_rgb_array
from common.options import check, check_all
from pipeline.faces import DEFAULT_PADDING, apply_crop, crop_parameters, landmarks_in_crop, select_face
from pipeline.multiface import image as multiface_image
from pipeline.multiface import video as multiface_video
from pipeline.multiface.blend import check_faces
from pipeline.pasteback import paste_back
from pipeline.results import ImageResult, VideoResult
from pipeline.tensors import fit_side, fitted_size
from pipeline.video import single

__all__ = ["StyleOptions", "VideoOptions", "exemplar_zplus", "stylize_image", "stylize_video"]


@dataclass(frozen=True)
class StyleOptions:
    """How a picture is stylised (the options of ``style_transfer.py`` that are not about files or devices).

    ``style_image``: a picture (path, PIL image or RGB array) or a float32 (1, 18, 512) Z+ code from
    :meth:`pipeline.stylize.VToonifyPipeline.exemplar_code`, used instead of ``style_id`` (VToonify-D).
    ``faces``: ``'largest'`` (the largest face sets the crop and the style of the whole picture) or ``'all'``
    (every face at its own scale, :mod:`pipeline.multiface`), at most ``max_faces``.
    ``max_side`` shrinks the (cropped) input so that its longer side is at most that many pixels.
    ``paste_back``: the result is the input's full frame with the stylised crop blended back in
    (:mod:`pipeline.pasteback`), at ``output_scale`` times the input's size (None: 1; only with ``paste_back``).
    """

    style_id: int = 26
    style_degree: float = 0.5
    color_transfer: bool = False
    scale_image: bool = False
    padding: tuple[int, int, int, int] = DEFAULT_PADDING
    max_side: int | None = None
    style_image: Any = None
    faces: str = "largest"
    max_faces: int | None = None
    paste_back: bool = False
    output_scale: float | None = None

    @property
    def paste_scale(self) -> float:
        """The size of a pasted-back output, times the input's (``output_scale``, default 1)."""
        return 1.0 if self.output_scale is None else float(self.output_scale)

    def checked(self) -> StyleOptions:
        """``self`` if every option is in its range (:data:`common.options.RANGES`) and the options agree, else an
        :class:`~common.errors.OptionError` naming the option."""
        if isinstance(self.style_id, bool) or not isinstance(self.style_id, (int, np.integer)):
            raise OptionError(f"style_id must be an integer, got {self.style_id!r}")
        check("style_id", self.style_id)
        check("style_degree", self.style_degree)
        if len(self.padding) != 4:
            raise OptionError(f"padding must be four numbers (left, right, top, bottom), got {list(self.padding)}")
        check_all("padding", self.padding)
        if self.scale_image and min(sum(self.padding[:2]), sum(self.padding[2:])) < 8:
            raise OptionError(f"padding {list(self.padding)} leaves a crop under 8 pixels: give at least 8 in total "
                              "across each of (left, right) and (top, bottom)")
        if self.max_side is not None:
            check("max_side", self.max_side)
        check_faces(self.faces, self.max_faces)
        if self.output_scale is not None:
            if not self.paste_back:
                raise OptionError("--output_scale sets the size of the pasted-back output: add --paste_back")
            check("output_scale", self.output_scale, "--output_scale")
        if self.faces != "largest" and (self.max_side is not None or self.style_image is not None):
            raise OptionError("--faces all does not combine with --max_side or --style_image yet; use --faces largest")
        return self


@dataclass(frozen=True)
class VideoOptions(StyleOptions):
    """:class:`StyleOptions` plus what only videos have. ``batch_size``: frames per forward pass (default 1 on CPU,
    4 on CUDA); ``track``: move the crop with the face; ``smooth_parsing``: half window of the optical-flow parsing
    smoothing (0 = off); ``parsing_map_path``: precomputed ``(N, 19, H, W)`` logits; ``overlap``: decode ahead and
    encode behind in threads; ``progress``: a progress bar. With ``paste_back`` the result video is the full frame
    (x ``output_scale``) and ``<name>_input.mp4`` stays the crop the model was fed."""

    scale_image: bool = True
    batch_size: int | None = None
    track: bool = False
    smooth_parsing: int = 0
    parsing_map_path: str | os.PathLike | None = None
    overlap: bool = True
    progress: bool = True

    def checked(self) -> VideoOptions:
        super().checked()
        if self.batch_size is not None:
            check("batch_size", self.batch_size)
        check("smooth_parsing", self.smooth_parsing)
        if self.faces == "all":
            for option, value in (("--smooth_parsing", self.smooth_parsing), ("--parsing_map_path", self.parsing_map_path)):
                if value:
                    raise OptionError(f"{option} is not available with --faces all (each face has its own crop and parsing)")
        return self


def _options(cls, options, kwargs: dict):
    """``options`` (or a new ``cls``) with ``kwargs`` replaced, checked; the padding as a tuple."""
    options = cls(**kwargs) if options is None else dataclasses.replace(options, **kwargs)
    return dataclasses.replace(options, padding=tuple(options.padding)).checked()


def exemplar_zplus(pipe, style_image) -> torch.Tensor | None:
    """``style_image`` (None, a picture, or a float32 (1, 18, 512) Z+ code) as a Z+ tensor on the pipeline's device."""
    if style_image is None:
        return None
    if isinstance(style_image, np.ndarray) and style_image.dtype == np.float32 and style_image.ndim == 3:
        code = style_image
    else:
        from pipeline.exstyle import exemplar_code

        code = exemplar_code(pipe, style_image)
    return torch.from_numpy(np.asarray(code)).to(pipe.device)


def stylize_image(pipe, image: np.ndarray, options: StyleOptions | None = None, **kwargs) -> ImageResult:
    """Stylise one RGB uint8 image with ``options`` (a :class:`StyleOptions`, or its fields as keywords).

    The memory the stylisation needs is estimated before any work (:func:`pipeline.memory.check_memory`): an input
    too large for this machine is refused with the estimate and the options that fix it."""
    o = _options(StyleOptions, options, kwargs)
    image = check_rgb_array(image)
    if o.faces == "all":
        return multiface_image.stylize_image(pipe, image, o.style_id, o.style_degree, o.color_transfer, o.scale_image,
                                             o.padding, faces=o.faces, max_faces=o.max_faces,
                                             paste_scale=o.paste_scale if o.paste_back else None)
    if not o.scale_image:
        pipe._check_memory(fitted_size(image.shape[:2], o.max_side), 1, max_side=o.max_side)
    exemplar = exemplar_zplus(pipe, o.style_image)
    face = select_face(pipe.detector.detect(image))
    if face is None:
        raise NoFaceError("no face found in the image")
    params = crop_parameters(image, face.landmarks, o.padding) if o.scale_image else None
    frame = apply_crop(image, params) if params else image
    style = pipe.style_code(frame, o.style_id, o.color_transfer, landmarks_in_crop(face.landmarks, image, params), exemplar)
    frame = fit_side(frame, o.max_side)
    pipe._check_memory(frame.shape[:2], 1, scale_image=o.scale_image, max_side=o.max_side)
    if not o.paste_back:
        return ImageResult(frame, pipe.stylize_frames([frame], style, o.style_degree)[0], params)
    outputs, parsing = pipe.stylize_frames_parsed([frame], style, o.style_degree)
    return ImageResult(frame, paste_back(image, params, outputs[0], parsing[0], o.paste_scale), params)


def stylize_video(pipe, path: str | os.PathLike, output_dir: str | os.PathLike = "output",
                  options: VideoOptions | None = None, name: str | None = None,
                  frame_range: tuple[int, int] | None = None, **kwargs) -> VideoResult:
    """Stylise a video with ``options`` (a :class:`VideoOptions`, or its fields as keywords); writes
    ``<name>_input.mp4`` and ``<name>_vtoonify_<d|t>.mp4`` (with the input's audio and timing) in ``output_dir``.

    ``frame_range=(start, stop)`` stylises only those frames into silent segment files (no B-frames) named
    ``<name>_input.seg<start>.mp4`` / ``<name>_vtoonify_<d|t>.seg<start>.mp4``, for
    :func:`pipeline.sharding.stylize_video_sharded` to join; crop and style code still come from the first face
    of the video."""
    o = _options(VideoOptions, options, kwargs)
    if o.faces == "all":
        if frame_range is not None:
            raise OptionError("a frame range (torchrun) is not available with --faces all (each face has its own "
                              "crop and parsing)")
        return multiface_video.stylize_video(pipe, path, output_dir, style_id=o.style_id, style_degree=o.style_degree,
                                             color_transfer=o.color_transfer, scale_image=o.scale_image,
                                             padding=o.padding, track=o.track, faces=o.faces, max_faces=o.max_faces,
                                             batch_size=o.batch_size, progress=o.progress, name=name,
                                             paste_scale=o.paste_scale if o.paste_back else None)
    return single.stylize_video(pipe, path, output_dir, o, name, frame_range, exemplar_zplus(pipe, o.style_image))
