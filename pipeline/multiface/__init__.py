"""Every face in the frame: each detected face stylised at its own scale, with its own style code.

``faces='largest'`` (the default of :meth:`VToonifyPipeline.stylize_image` / ``stylize_video``) renders the
whole frame or crop with the largest face's code and scale. ``faces='all'`` (this package:
:mod:`~pipeline.multiface.blend` the geometry and the blend, :mod:`~pipeline.multiface.image` one picture,
:mod:`~pipeline.multiface.video` a video) adds every other face:

* **Canvas.** What ``largest`` produces for the main (largest) face: without ``scale_image`` the whole frame;
  with it the main face's rescaled frame (eye distance 64), cropped to the union of every face's padded crop
  mapped into it, clipped to the frame, edges floored to multiples of 8 (the crop rule of
  :func:`pipeline.faces.crop_parameters`). The main face's crop is a sub-box of the canvas, and the main
  face's style code is computed on that crop, so it is the code ``largest`` uses.
* **Other faces.** Each one gets its own :func:`~pipeline.faces.crop_parameters` crop (eye distance 64, the
  same padding), its own style code (:meth:`VToonifyPipeline.style_code`), its own parsing logits
  (:meth:`VToonifyPipeline.parse`) and its own VToonify forward; crops of one size are batched (``batch``).
* **Blend.** A face's weight, in its own crop pixels, is ``m * t``: ``m`` the parsing probability of the
  face, hair and neck classes (:data:`MASK_CLASSES`), remapped to 1 above and 0 below :data:`MASK_RANGE`,
  blurred with a Gaussian of sigma :data:`FEATHER`;
  ``t`` a smoothstep ramp from 0 at each crop edge to 1 at :data:`TAPER` pixels inside (edges on the frame
  border are not ramped: the canvas ends there too). Where the crops of several faces (the main one
  included) cover a pixel, face ``j`` owns the share ``softmax_j(log t_j - d_j / OWNERSHIP_SOFTNESS)``, with
  ``d_j`` the distance to its eye centre (the centre of its padded crop) in its own crop pixels, so the face
  nearer its own crop centre wins, smoothly. Face ``k``'s weight ``alpha_k = m_k * t_k * share_k`` and its
  output are resampled into the canvas (one bilinear affine warp each; the maps are pure scale + offset
  because every crop is a rescale of the same frame) and
  ``out = canvas * (1 - sum alpha_k) + sum alpha_k * face_k``, rounded to uint8. Where every ``alpha_k``
  is 0 (outside all other faces' crops) the output is the canvas exactly.

Videos (:func:`stylize_video`): faces are detected on every frame first (the detections are kept for the
stylising pass, so each frame is detected once); with ``scale_image`` the canvas is the main face's crop at
the first frame with a face, grown to hold every face crop of every frame, so its size is constant. Every
face is a :class:`FaceTrack` with a stable id, matched frame to frame by eye-centre distance (within 1.5 eye
distances, nearest first). A track keeps the crop size and scale of its first detection and, with ``track``, its
crop follows the face with the smoothing of :class:`pipeline.stylize.FaceTracker` (one per track; the main
track moves the canvas). Its style code comes from its first frame where the style encoder finds the face.
Faces that appear later are picked up (up to ``max_faces`` live tracks); a track fades in and, once its face
is gone, fades out over ``fade_frames`` frames; its mask is smoothed in time (an exponential average,
:data:`MASK_MEMORY`). Every input frame is written, with the audio.

Cost: one more parsing + VToonify forward of a (by default 400x400) crop per extra face and frame, one style
encoder pass per face, and in videos a face detection on every frame. ``max_faces`` bounds it.
"""
from __future__ import annotations

import dataclasses  # noqa: F401  (tests reach dataclasses.replace through this module, as before the split)

from pipeline.multiface.blend import (
    FACE_MODES,
    FADE_FRAMES,
    FEATHER,
    MASK_CLASSES,
    MASK_MEMORY,
    MASK_RANGE,
    MIN_EYE_DISTANCE,
    MIN_SCORE,
    OWNERSHIP_SOFTNESS,
    TAPER,
    _axis_maps,  # noqa: F401  (tests use it)
    blend,
    canvas_parameters,
    check_faces,
    composite,
    crop_taper,
    face_weight,
    output_map,
    ownership,
    resample,
    select_faces,
)
from pipeline.multiface.image import FaceRender, MultiFaceImageResult, stylize_image
from pipeline.multiface.video import FaceTrack, FrameFaces, MultiFaceVideoResult, stylize_video

_composite = composite  # the name tests used before the split

__all__ = [
    "FACE_MODES",
    "MASK_CLASSES",
    "MASK_RANGE",
    "FEATHER",
    "TAPER",
    "OWNERSHIP_SOFTNESS",
    "MIN_EYE_DISTANCE",
    "MIN_SCORE",
    "MASK_MEMORY",
    "FADE_FRAMES",
    "FaceRender",
    "MultiFaceImageResult",
    "MultiFaceVideoResult",
    "FaceTrack",
    "FrameFaces",
    "check_faces",
    "select_faces",
    "canvas_parameters",
    "output_map",
    "resample",
    "crop_taper",
    "face_weight",
    "ownership",
    "blend",
    "stylize_image",
    "stylize_video",
]
