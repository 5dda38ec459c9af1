"""Images and short clips in memory, for figures and evaluation: face crop, style codes, per-frame baseline.

:class:`pipeline.stylize.PipelineModels` stylises files; the figure and evaluation scripts need the
pieces separately: one face crop reused for every frame, the content's pSp code computed once and
mixed with many exemplar styles, and the per-frame image-toonification baseline.

* :func:`read_frames` decodes (part of) a video into a list of RGB frames.
* :func:`find_face_crop` gives the rescale/crop of the first frame with a face (the eyes rescaled to
  64 px apart, then cropped with the padding), as ``PipelineModels.stylize_video`` applies it to every
  frame of a video.
* :func:`crop_content_code` / :func:`content_code` and :func:`mix_exstyle` split
  ``PipelineModels.style_code`` in two: the pSp code of the FFHQ-aligned face, then the exemplar's
  rows for VToonify-D (same result, with pSp run once for any number of styles).
* :class:`PerFrameBaseline` is the per-frame image toonification the paper compares VToonify
  with: for every frame independently, FFHQ alignment of the face, pSp, and the teacher generator
  (DualStyleGAN for VToonify-D, the Toonify StyleGAN for VToonify-T) at its native 1024x1024.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from common.errors import NoFaceError, OptionError
from model.dualstylegan import interp_weights
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
from pipeline.models import PipelineModels
from pipeline.tensors import tensor_to_frames
from pipeline.videoio import VideoError, VideoReader

__all__ = [
    "BaselineFrame",
    "FaceCrop",
    "PerFrameBaseline",
    "content_code",
    "crop_content_code",
    "find_face_crop",
    "mix_exstyle",
    "read_frames",
]


def read_frames(path: str | os.PathLike, max_frames: int | None = None, start: int = 0, stride: int = 1) -> list[np.ndarray]:
    """RGB ``uint8`` frames ``start, start + stride, ...`` of a video, at most ``max_frames`` of them."""
    if start < 0 or stride < 1 or (max_frames is not None and max_frames < 1):
        raise OptionError(f"need start >= 0, stride >= 1 and max_frames >= 1, got {start}, {stride}, {max_frames}")
    with VideoReader(path) as reader:
        frames = list(itertools.islice(reader, start, None if max_frames is None else start + max_frames * stride, stride))
    if not frames:
        raise VideoError(f"{path}: no frame at index {start} or later")
    return frames


@dataclass(frozen=True)
class FaceCrop:
    """The face that fixes a crop: ``frame`` rescaled and cropped by ``params``, the face's landmarks in
    ``frame``'s coordinates and the ``index`` of the frame it was found in."""

    frame: np.ndarray
    params: CropParams
    landmarks: np.ndarray
    index: int

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Rescale and crop another frame of the same video the same way."""
        return apply_crop(frame, self.params)


def find_face_crop(detector: FaceDetector, frames: Iterable[np.ndarray], padding: Sequence[int] = DEFAULT_PADDING) -> FaceCrop:
    """The crop of the first frame with a face (the largest face), rescaled to a 64 px eye distance and
    cropped with ``padding`` as ``style_transfer.py --scale_image`` does. Raises :class:`NoFaceError`
    if no frame has a face."""
    for index, frame in enumerate(frames):
        face = select_face(detector.detect(frame))
        if face is None:
            continue
        params = crop_parameters(frame, face.landmarks, padding)
        return FaceCrop(apply_crop(frame, params), params, landmarks_in_crop(face.landmarks, frame, params), index)
    raise NoFaceError("no face found")


def content_code(pipe: PipelineModels, aligned: np.ndarray) -> torch.Tensor:
    """W+ code (1, 18, 512) of a 256x256 FFHQ-aligned face (RGB ``uint8``): :meth:`PipelineModels.content_code`."""
    return pipe.content_code(aligned)


def mix_exstyle(pipe: PipelineModels, content: torch.Tensor, style_id: int, color_transfer: bool = False) -> torch.Tensor:
    """The VToonify style code from a content code (:meth:`PipelineModels.mix_style`): for VToonify-D the structure
    rows (0 .. 6) come from exemplar ``style_id`` and, with ``color_transfer``, all rows; VToonify-T uses
    ``content`` as it is."""
    return pipe.mix_style(content, style_id, color_transfer)


def crop_content_code(pipe: PipelineModels, crop: FaceCrop) -> torch.Tensor:
    """:func:`content_code` of the face of ``crop``, aligned as the pipeline's style code aligns it
    (:meth:`PipelineModels.aligned_face`: detected again in the crop, with the crop's landmarks as the fallback)."""
    return pipe.content_code(pipe.aligned_face(crop.frame, crop.landmarks))


@dataclass(frozen=True)
class BaselineFrame:
    """One frame of the per-frame baseline: the aligned input face and the teacher's output, both ``size`` x ``size``."""

    aligned: np.ndarray
    output: np.ndarray


class PerFrameBaseline:
    """Per-frame image toonification with VToonify's own teacher (the paper's baseline).

    For each frame independently: FFHQ alignment of the largest face of the frame (256x256), its pSp
    content code ``c`` (:func:`content_code`), then the teacher at its native 1024x1024 with fixed noise
    (the generator's noise buffers):

    * VToonify-D: ``DualStyleGAN([c], s, input_is_latent=True, truncation=1, use_res=True,
      interp_weights=[d] * 7 + [1 if color_transfer else 0] * 11, randomize_noise=False)`` with
      ``s = mix_exstyle(c, style_id, color_transfer)`` and ``d`` the style degree
      (:func:`model.dualstylegan.interp_weights`): the weights VToonify-D was trained to imitate (colour
      rows from the exemplar only with colour transfer).
    * VToonify-T: ``Toonify([c], input_is_latent=True, randomize_noise=False)``.

    The output is clamped to [-1, 1], converted to ``uint8`` as the pipeline does (truncation), and
    resized with ``cv2.INTER_AREA`` to ``size`` x ``size`` (default 256, the aligned input's size).
    Cropping to the aligned face at a fixed size is the limitation the paper points out.
    """

    def __init__(self, pipe: PipelineModels, size: int = 256):
        if size < 8:
            raise ValueError(f"baseline size must be at least 8, got {size}")
        self.pipe = pipe
        self.size = size

    @torch.inference_mode()
    def render(self, content: torch.Tensor, style_id: int = 26, style_degree: float = 0.5,
               color_transfer: bool = False) -> np.ndarray:
        """The teacher's 1024x1024 RGB ``uint8`` image for content code ``content`` (1, 18, 512)."""
        vtoonify = self.pipe.vtoonify
        if self.pipe.backbone == "dualstylegan":
            weights = interp_weights(style_degree, color_transfer, vtoonify.stylegan().n_latent)
            image, _ = vtoonify.generator([content], mix_exstyle(self.pipe, content, style_id, color_transfer),
                                          input_is_latent=True, truncation=1, use_res=True, interp_weights=weights,
                                          randomize_noise=False)
        else:
            image, _ = vtoonify.generator([content], input_is_latent=True, randomize_noise=False)
        return tensor_to_frames(image)[0]

    def __call__(self, frame: np.ndarray, style_id: int = 26, style_degree: float = 0.5,
                 color_transfer: bool = False) -> BaselineFrame | None:
        """Toonify the face of one RGB ``uint8`` frame; ``None`` when the frame has no face."""
        aligned = align_face(frame, self.pipe.detector)
        if aligned is None:
            return None
        aligned = np.asarray(aligned)
        output = self.render(content_code(self.pipe, aligned), style_id, style_degree, color_transfer)
        size = (self.size, self.size)
        return BaselineFrame(cv2.resize(aligned, size, interpolation=cv2.INTER_AREA),
                             cv2.resize(output, size, interpolation=cv2.INTER_AREA))
