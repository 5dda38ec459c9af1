"""The paper's kinds of figures: sheets of labelled panels showing what VToonify does (``figures.py`` is their CLI).

The qualitative half of the evaluation (``evaluate.py`` measures; these show): one input across style
degrees (:func:`degree_figure`), inputs x exemplar styles (:func:`styles_figure`), colour kept vs
transferred (:func:`color_figures`), several models side by side (:func:`backbones_figure`), a group photo
with ``--faces largest`` vs ``all`` (:func:`faces_figure`), consecutive video frames (:func:`video_figures`)
and VToonify against the per-frame baseline (:func:`baseline_figure`). Panels show the face crop VToonify
works on (rescaled to a 64 px eye distance and cropped with the :class:`Layout`'s padding) and the outputs;
the drawing is :mod:`common.sheets`'.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.errors import OptionError
from common.images import read_rgb
from common.sheets import fit_height, grid, inset, panel, placeholder
from pipeline.clips import FaceCrop, PerFrameBaseline, crop_content_code, find_face_crop, mix_exstyle
from pipeline.faces import DEFAULT_PADDING
from pipeline.stylize import VToonifyPipeline

__all__ = [
    "DEGREES",
    "Layout",
    "backbones_figure",
    "baseline_figure",
    "color_figures",
    "default_style_ids",
    "degree_figure",
    "faces_figure",
    "styles_figure",
    "video_figures",
]

#: Style degrees of the degree figure.
DEGREES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class Layout:
    """How inputs are cropped (``padding`` around the eyes, as ``style_transfer.py --scale_image``) and
    how high each panel of a sheet is drawn."""

    padding: Sequence[int] = DEFAULT_PADDING
    panel_height: int = 256

    def panel(self, image: np.ndarray, text: str) -> np.ndarray:
        return panel(image, text, self.panel_height)


def _require_backbone(pipe: VToonifyPipeline, backbone: str, what: str) -> None:
    if pipe.backbone != backbone:
        name = "VToonify-D (dualstylegan)" if backbone == "dualstylegan" else "VToonify-T (toonify)"
        raise OptionError(f"the {what} figure needs a {name} checkpoint")


# ---------------------------------------------------------------------------------------- helpers
class _Portrait:
    """One face crop prepared for one pipeline: its content code is computed once."""

    def __init__(self, pipe: VToonifyPipeline, crop: FaceCrop):
        self.pipe, self.crop = pipe, crop
        self.content = crop_content_code(pipe, crop)

    def style(self, style_id: int, color_transfer: bool = False) -> torch.Tensor:
        return mix_exstyle(self.pipe, self.content, style_id, color_transfer)

    def stylize(self, style: torch.Tensor, style_degree: float) -> np.ndarray:
        return self.pipe.stylize_frames([self.crop.frame], style, style_degree)[0]


def _crop(pipe: VToonifyPipeline, image: np.ndarray, layout: Layout) -> FaceCrop:
    return find_face_crop(pipe.detector, [image], layout.padding)


def default_style_ids(pipe: VToonifyPipeline, count: int = 6) -> list[int]:
    """``count`` style ids spread evenly over the model's exemplar styles (VToonify-D)."""
    return sorted({round(float(i)) for i in np.linspace(0, pipe.num_styles - 1, min(count, pipe.num_styles))})


def _with_exemplar(output: np.ndarray, pipe: VToonifyPipeline, style_id: int, style_dir: str | None) -> np.ndarray:
    """``output`` with the exemplar image of ``style_id`` (``style_dir/<name in the exstyle file>``, when
    it exists) inset in its bottom-right corner, a quarter of its height."""
    if style_dir is None:
        return output
    path = Path(style_dir) / list(pipe.exstyles)[style_id]
    return inset(output, read_rgb(path)) if path.is_file() else output


def _stylize_clip(pipe: VToonifyPipeline, frames: Sequence[np.ndarray], style_id: int, style_degree: float,
                  color_transfer: bool, layout: Layout) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(crops, outputs)`` of VToonify on ``frames`` with the crop and style code of the first face, as
    ``VToonifyPipeline.stylize_video`` stylises a video."""
    crop = find_face_crop(pipe.detector, frames, layout.padding)
    style = _Portrait(pipe, crop).style(style_id, color_transfer)
    crops = [crop.apply(f) for f in frames]
    return crops, [pipe.stylize_frames([c], style, style_degree)[0] for c in crops]


# ---------------------------------------------------------------------------------------- figures
def degree_figure(pipe: VToonifyPipeline, image: np.ndarray, style_id: int = 26, *, degrees: Sequence[float] = DEGREES,
                  color_transfer: bool = False, layout: Layout = Layout()) -> np.ndarray:
    """One row: the input, then VToonify-D outputs at each style degree."""
    _require_backbone(pipe, "dualstylegan", "style degree")
    portrait = _Portrait(pipe, _crop(pipe, image, layout))
    style = portrait.style(style_id, color_transfer)
    row = [layout.panel(portrait.crop.frame, "input")]
    row += [layout.panel(portrait.stylize(style, d), f"degree {d:.2f}") for d in degrees]
    return grid([row])


def faces_figure(pipe: VToonifyPipeline, image: np.ndarray, style_id: int = 26, *, style_degree: float = 0.5,
                 color_transfer: bool = False, scale_image: bool = True, max_faces: int | None = None,
                 layout: Layout = Layout()) -> np.ndarray:
    """One row: a group photo (the region ``--faces all`` renders), then ``--faces largest`` (every face at the
    largest face's scale and code: the canvas before the blend, which is ``largest``'s output without
    ``scale_image`` and contains it with) and ``--faces all`` (each face at its own), on that same region."""
    options = dict(style_id=style_id, style_degree=style_degree, color_transfer=color_transfer, scale_image=scale_image,
                   padding=layout.padding)
    every = pipe.stylize_image(image, faces="all", max_faces=max_faces, **options)
    n = 1 + len(every.faces)
    row = [layout.panel(every.input, f"input ({n} face{'s' if n > 1 else ''})"),
           layout.panel(every.canvas_output, "--faces largest"), layout.panel(every.output, "--faces all")]
    return grid([row])


def styles_figure(pipe: VToonifyPipeline, images: Sequence[np.ndarray], style_ids: Sequence[int], *,
                  style_degree: float = 0.5, color_transfer: bool = False, columns: int = 4, style_dir: str | None = None,
                  layout: Layout = Layout()) -> np.ndarray:
    """Exemplar-based style transfer. One input: the input, then its outputs for every style id,
    ``columns`` outputs per row; several inputs: one row per input, one column per style."""
    _require_backbone(pipe, "dualstylegan", "exemplar styles")
    rows = []
    for image in images:
        portrait = _Portrait(pipe, _crop(pipe, image, layout))
        row = [layout.panel(portrait.crop.frame, "input")]
        for sid in style_ids:
            out = portrait.stylize(portrait.style(sid, color_transfer), style_degree)
            row.append(layout.panel(_with_exemplar(out, pipe, sid, style_dir), f"style {sid}"))
        rows.append(row)
    if len(rows) == 1:
        row = rows[0]
        rows = [row[: columns + 1]] + [row[i: i + columns] for i in range(columns + 1, len(row), columns)]
    return grid(rows)


def color_figures(pipe_color: VToonifyPipeline, pipe_nocolor: VToonifyPipeline, images: Sequence[np.ndarray],
                  style_ids: Sequence[int], *, style_degree: float = 0.5, steps: int = 5,
                  layout: Layout = Layout()) -> tuple[np.ndarray, np.ndarray]:
    """Colour: ``(comparison, interpolation)`` sheets, one row per (input, style).

    * comparison: input | colour-preserving model | colour-transfer model with ``color_transfer``;
    * interpolation: input | colour-transfer model with the colour rows (7 .. 17) of the style code
      moved from the content's own code (0) to the exemplar's (1) in ``steps`` steps.
    """
    for pipe in (pipe_color, pipe_nocolor):
        _require_backbone(pipe, "dualstylegan", "colour")
    if steps < 2:
        raise OptionError(f"colour interpolation needs at least 2 steps, got {steps}")
    comparison, interpolation = [], []
    for image in images:
        crop = _crop(pipe_color, image, layout)
        kept, transferred = _Portrait(pipe_nocolor, crop), _Portrait(pipe_color, crop)
        source = layout.panel(crop.frame, "input")
        for sid in style_ids:
            own, exemplar = transferred.style(sid, False), transferred.style(sid, True)
            comparison.append([
                source,
                layout.panel(kept.stylize(kept.style(sid, False), style_degree), f"style {sid}: colour kept"),
                layout.panel(transferred.stylize(exemplar, style_degree), f"style {sid}: colour transfer"),
            ])
            row = [source]
            for a in np.linspace(0.0, 1.0, steps):
                mixed = own + float(a) * (exemplar - own)
                row.append(layout.panel(transferred.stylize(mixed, style_degree), f"style {sid}: colour {a:.2f}"))
            interpolation.append(row)
    return grid(comparison), grid(interpolation)


def backbones_figure(models: Sequence[tuple[str, VToonifyPipeline, int]], images: Sequence[np.ndarray], *,
                     style_degree: float = 0.5, color_transfer: bool = False, layout: Layout = Layout()) -> np.ndarray:
    """One row per input: the input, then one column per model ``(label, pipeline, style_id)``."""
    rows = []
    for image in images:
        crop = _crop(models[0][1], image, layout)
        row = [layout.panel(crop.frame, "input")]
        for label, pipe, sid in models:
            portrait = _Portrait(pipe, crop)
            row.append(layout.panel(portrait.stylize(portrait.style(sid, color_transfer), style_degree), label))
        rows.append(row)
    return grid(rows)


def video_figures(pipe: VToonifyPipeline, frames: Sequence[np.ndarray], style_id: int = 26, *, style_degree: float = 0.5,
                  color_transfer: bool = False, strip_frames: int = 6, numbers: Sequence[int] | None = None,
                  layout: Layout = Layout()) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(strip, animation)``: the first ``strip_frames`` input crops above their outputs, and every
    frame as input | output side by side, one panel high. ``numbers`` label the frames (default 0, 1, ...)."""
    crops, outputs = _stylize_clip(pipe, frames, style_id, style_degree, color_transfer, layout)
    numbers = list(numbers) if numbers is not None else list(range(len(frames)))
    shown = range(min(strip_frames, len(frames)))
    strip = grid([[layout.panel(crops[i], f"input #{numbers[i]}") for i in shown],
                  [layout.panel(outputs[i], f"VToonify #{numbers[i]}") for i in shown]])
    height = layout.panel_height
    animation = [np.concatenate([fit_height(c, height), fit_height(o, height)], axis=1) for c, o in zip(crops, outputs)]
    return strip, animation


def baseline_figure(pipe: VToonifyPipeline, frames: Sequence[np.ndarray], style_id: int = 26, *, style_degree: float = 0.5,
                    color_transfer: bool = False, baseline_size: int = 256, numbers: Sequence[int] | None = None,
                    layout: Layout = Layout()) -> np.ndarray:
    """Four rows over consecutive frames: VToonify's input crop and output, then the per-frame baseline's
    aligned face and output (:class:`pipeline.clips.PerFrameBaseline`)."""
    crops, outputs = _stylize_clip(pipe, frames, style_id, style_degree, color_transfer, layout)
    baseline = PerFrameBaseline(pipe, baseline_size)
    results = [baseline(f, style_id, style_degree, color_transfer) for f in frames]
    numbers = list(numbers) if numbers is not None else list(range(len(frames)))
    missing = placeholder("no face", baseline_size)
    return grid([
        [layout.panel(c, f"input #{n}") for c, n in zip(crops, numbers)],
        [layout.panel(o, f"VToonify #{n}") for o, n in zip(outputs, numbers)],
        [layout.panel(r.aligned if r else missing, f"aligned #{n}") for r, n in zip(results, numbers)],
        [layout.panel(r.output if r else missing, f"per-frame #{n}") for r, n in zip(results, numbers)],
    ])
