"""The VToonify inference pipeline: load the models once, stylise many images or video frames.

>>> pipe = VToonifyPipeline("checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt")          # doctest: +SKIP
>>> result = pipe.stylize_image(rgb, style_id=26, style_degree=0.5)                    # doctest: +SKIP
>>> pipe.stylize_video("in.mp4", "output/")                                            # doctest: +SKIP

:class:`VToonifyPipeline` is :class:`pipeline.models.PipelineModels` (the networks and what they compute) with the
two everyday calls, which go through the one dispatch of :mod:`pipeline.api`. This module also keeps the names it
had before the pipeline was split into modules (``frames_to_tensor``, ``resolve_device``, ``FaceTracker`` ...).

Compared with the original script: every video frame is kept (frames before the first detected face
use that face's crop), video is streamed with bounded memory and keeps its audio, the largest face is
used when there are several, inputs of any size work (padded to a multiple of 8 and cropped back),
optional face tracking and parsing-map smoothing, and every failure is a clear exception with no
partial output left behind.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from common.devices import resolve_device, resolve_dtype
from common.errors import USER_ERRORS, NoFaceError
from common.options import COMPILE_MODES
from hub.released import CHECKPOINT_DIR
from pipeline import api
from pipeline.faces import DEFAULT_PADDING
from pipeline.models import PipelineModels, shared_style_encoder
from pipeline.parsing import parse_frames
from pipeline.results import ImageResult, VideoResult, atomic_imwrite
from pipeline.sharding import shard_range, stylize_video_sharded
from pipeline.tensors import frames_to_tensor, tensor_to_frames
from pipeline.tracking import FaceTracker
from pipeline.video.plan import find_first_face

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
    "shared_style_encoder",
    "stylize_video_sharded",
]


class VToonifyPipeline(PipelineModels):
    """Loads VToonify, the face parser, the style encoder and the face detector once (see
    :class:`pipeline.models.PipelineModels` for the arguments), and stylises photos and videos."""

    @classmethod
    def from_pretrained(cls, style: str = "cartoon", backbone: str = "dualstylegan", color_transfer: bool = False,
                        device: str | None = "auto", dtype: str | None = None,
                        checkpoint_dir: str | os.PathLike = CHECKPOINT_DIR,
                        download: bool = True, progress: bool = True, **kwargs) -> "VToonifyPipeline":
        """The released model of ``style`` (``backbone``, ``color_transfer`` pick the variant) from ``checkpoint_dir``,
        downloading the missing files first (:func:`hub.catalog.fetch_style`); ``kwargs`` go to the constructor.

        >>> pipe = VToonifyPipeline.from_pretrained("arcane")                    # doctest: +SKIP
        """
        from hub.catalog import fetch_style

        encoder, parser, model, *_ = fetch_style(backbone, style, color_transfer, checkpoint_dir, download, progress)
        return cls(model, backbone=backbone, style_encoder_path=encoder, faceparsing_path=parser, device=device,
                   dtype=dtype, **kwargs)

    def exemplar_code(self, style_image, aligned: bool = False, refine: int = 0, progress: bool = True,
                      **options) -> np.ndarray:
        """The Z+ code (float32 (1, 18, 512)) of any style image, as in ``exstyle_code.npy``
        (:class:`pipeline.exstyle.ExemplarEncoder`; ``options``: ``cache_dir``, ``perceptual``, ``lr``, ``reg``)."""
        from pipeline.exstyle import exemplar_code

        return exemplar_code(self, style_image, aligned, refine, progress, **options)

    def stylize_image(self, image: np.ndarray, style_id: int = 26, style_degree: float = 0.5, color_transfer: bool = False,
                      scale_image: bool = False, padding: Sequence[int] = DEFAULT_PADDING,
                      max_side: int | None = None, style_image=None, faces: str = "largest",
                      max_faces: int | None = None, paste_back: bool = False,
                      output_scale: float | None = None) -> ImageResult:
        """Stylise one RGB uint8 image (:func:`pipeline.api.stylize_image` with these :class:`pipeline.api.StyleOptions`).

        ``max_side`` shrinks the (cropped) input so that its longer side is at most that many pixels. The
        memory the stylisation needs is estimated before any work (:func:`pipeline.memory.check_memory`):
        an input too large for this machine is refused with the estimate and the options that fix it.
        ``style_image``: an exemplar picture (or its Z+ code from :meth:`exemplar_code`) instead of ``style_id``.
        ``faces='all'``: every face at its own scale (:mod:`pipeline.multiface`).
        ``paste_back``: ``output`` is the whole image (at ``output_scale`` times its size, default 1) with the
        stylised face blended back in (:mod:`pipeline.pasteback`).
        """
        return api.stylize_image(self, image, api.StyleOptions(
            style_id=style_id, style_degree=style_degree, color_transfer=color_transfer, scale_image=scale_image,
            padding=tuple(padding), max_side=max_side, style_image=style_image, faces=faces, max_faces=max_faces,
            paste_back=paste_back, output_scale=output_scale))

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
        paste_back: bool = False,
        output_scale: float | None = None,
    ) -> VideoResult:
        """Stylise a video; writes ``<name>_input.mp4`` and ``<name>_vtoonify_<d|t>.mp4`` (with audio):
        :func:`pipeline.api.stylize_video` with these :class:`pipeline.api.VideoOptions`.

        ``smooth_parsing`` is the half window of the optical-flow parsing smoothing (0 = off);
        ``parsing_map_path`` is a precomputed ``(N, 19, H, W)`` ``.npy`` of parsing logits (one per frame).
        ``frame_range=(start, stop)`` stylises only those frames into silent segment files, for
        :func:`stylize_video_sharded` to join. ``overlap`` decodes ahead and encodes behind in two threads while
        the model runs; the output is the same either way. ``faces='all'``: every face tracked and stylised at its
        own scale (:mod:`pipeline.multiface`), at most ``max_faces``. ``paste_back``: the result video is the whole
        frame (at ``output_scale`` times its size) with the stylised face blended back in (:mod:`pipeline.pasteback`).
        """
        options = api.VideoOptions(
            style_id=style_id, style_degree=style_degree, color_transfer=color_transfer, scale_image=scale_image,
            padding=tuple(padding), max_side=max_side, style_image=style_image, faces=faces, max_faces=max_faces,
            batch_size=batch_size, track=track, smooth_parsing=smooth_parsing, parsing_map_path=parsing_map_path,
            overlap=overlap, progress=progress, paste_back=paste_back, output_scale=output_scale)
        return api.stylize_video(self, path, output_dir, options, name=name, frame_range=frame_range)

    def find_first_face(self, path: str | os.PathLike, padding: Sequence[int], scale_image: bool):
        """Index, crop parameters, cropped frame and landmarks (in crop coordinates) of the first face."""
        found = find_first_face(self, path, padding, scale_image)
        return found.index, found.params, found.crop, found.landmarks
