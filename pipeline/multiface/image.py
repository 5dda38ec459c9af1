"""Every face of one picture (``faces='all'``), and the per-face rendering the video path shares."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from common.errors import NoFaceError, OptionError
from pipeline.faces import DEFAULT_PADDING, CropParams, Face, apply_crop, crop_parameters, landmarks_in_crop
from pipeline.multiface.blend import canvas_parameters, check_faces, composite, face_weight, select_faces
from pipeline.results import ImageResult

__all__ = ["FaceRender", "MultiFaceImageResult", "stylize_crops", "style_codes", "stylize_image"]


@dataclass
class FaceRender:
    """One extra face of a frame: its crop, its stylised crop (4x), its soft weight in crop pixels (before the
    ownership split), and the weight ``alpha`` it got in the canvas output (after it)."""

    face: Face | None
    params: CropParams
    crop: np.ndarray
    output: np.ndarray
    weight: np.ndarray
    centre: np.ndarray  # frame position of the centre of its padded crop (its eye centre), for the ownership split
    alpha: np.ndarray | None = None
    track_id: int | None = None


@dataclass
class MultiFaceImageResult(ImageResult):
    """:class:`pipeline.stylize.ImageResult` of the canvas (``crop``: the canvas crop, None for the whole frame),
    plus the canvas before the blend, the main face's crop and every extra face."""

    canvas_output: np.ndarray | None = None
    main_crop: CropParams | None = None
    faces: list[FaceRender] = field(default_factory=list)


def stylize_crops(pipe, crops: Sequence[np.ndarray], styles: Sequence[torch.Tensor],
                   style_degree: float, batch: int) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """Stylised outputs and parsing logits (cropped to each input's size) of crops with per-crop codes; crops of
    one size go through parsing and VToonify ``batch`` at a time (one style code per sample)."""
    outputs: list = [None] * len(crops)
    parsings: list = [None] * len(crops)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, crop in enumerate(crops):
        groups.setdefault(crop.shape[:2], []).append(i)
    for members in groups.values():
        for start in range(0, len(members), max(batch, 1)):
            idx = members[start:start + max(batch, 1)]
            outs, parsing = pipe.stylize_frames_parsed([crops[i] for i in idx], torch.cat([styles[i] for i in idx]),
                                                       style_degree)
            for j, i in enumerate(idx):
                outputs[i], parsings[i] = outs[j], parsing[j]
    return outputs, parsings


def style_codes(pipe, jobs: Sequence[tuple[np.ndarray, np.ndarray]], style_id: int,
                 color_transfer: bool) -> list[torch.Tensor | None]:
    """One code per ``(crop, landmarks in crop)``, None where the style encoder finds no face; the encoder stays
    loaded for the whole list (and is released after it when the pipeline does not keep it)."""
    keep = pipe.keep_style_encoder
    codes: list[torch.Tensor | None] = []
    try:
        for i, (crop, lm) in enumerate(jobs):
            pipe.keep_style_encoder = keep or i < len(jobs) - 1  # the last call releases it as usual
            try:
                codes.append(pipe.style_code(crop, style_id, color_transfer, lm))
            except NoFaceError:
                codes.append(None)
    finally:
        pipe.keep_style_encoder = keep
    return codes


def stylize_image(pipe, image: np.ndarray, style_id: int = 26, style_degree: float = 0.5,
                  color_transfer: bool = False, scale_image: bool = False, padding: Sequence[int] = DEFAULT_PADDING,
                  faces: str = "all", max_faces: int | None = None, batch: int | None = None,
                  paste_scale: float | None = None) -> MultiFaceImageResult:
    """Stylise every face of one RGB uint8 image (``faces='all'``; see the module docstring). With ``paste_scale``
    the ``output`` is the whole image at that scale with every face pasted back (:mod:`pipeline.pasteback`)."""
    check_faces(faces, max_faces)
    if faces != "all":
        raise OptionError("pipeline.multiface renders faces='all'; 'largest' is VToonifyPipeline's own path")
    shape = image.shape[:2]
    found = select_faces(pipe.detector.detect(image), max_faces)
    if not found:
        raise NoFaceError("no face found in the image")
    main, others = found[0], found[1:]
    main_params = crop_parameters(image, main.landmarks, padding)
    canvas_params = canvas_parameters(shape, main_params, others, padding) if scale_image else None
    main_frame = apply_crop(image, main_params) if scale_image else image
    main_lm = landmarks_in_crop(main.landmarks, image, main_params if scale_image else None)
    other_params = [crop_parameters(image, f.landmarks, padding) for f in others]
    other_crops = [apply_crop(image, p) for p in other_params]
    codes = style_codes(pipe, [(main_frame, main_lm)] + [(c, landmarks_in_crop(f.landmarks, image, p))
                                                          for c, f, p in zip(other_crops, others, other_params)],
                         style_id, color_transfer)
    if codes[0] is None:
        raise NoFaceError("no face found for the style encoder (FFHQ alignment failed)")
    keep = [i for i, c in enumerate(codes[1:]) if c is not None]  # a face the encoder cannot align is left out
    canvas = apply_crop(image, canvas_params) if canvas_params is not None else image
    canvas_outs, canvas_parsing = pipe.stylize_frames_parsed([canvas], codes[0], style_degree)
    canvas_out = canvas_outs[0]
    outs, parsings = stylize_crops(pipe, [other_crops[i] for i in keep], [codes[i + 1] for i in keep], style_degree,
                                    batch or pipe.default_batch_size())
    renders = [FaceRender(others[i], other_params[i], other_crops[i], out, face_weight(p),
                          np.mean(others[i].eye_centres, axis=0)) for i, out, p in zip(keep, outs, parsings)]
    output = composite(shape, canvas_params, canvas_out, main_params, np.mean(main.eye_centres, axis=0), renders)
    if paste_scale is not None:
        from pipeline.pasteback import paste_faces  # lazily: pipeline.pasteback imports this package's blend

        output = paste_faces(image, canvas_params, output, canvas_parsing[0], [r.alpha for r in renders], paste_scale)
    return MultiFaceImageResult(canvas, output, canvas_params, canvas_out, main_params, renders)
