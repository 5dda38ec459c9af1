"""Contact sheets and bar charts drawn with OpenCV (no plotting library needed).

Images are RGB ``uint8`` arrays. A sheet is built from *panels* (an image scaled to a common height
with a caption band above it) laid out in rows with :func:`grid`; :func:`bar_chart` draws one small
bar plot per metric with its own scale.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

__all__ = ["BACKGROUND", "bar_chart", "caption", "fit_height", "grid", "inset", "panel", "placeholder", "text_image"]

BACKGROUND = (255, 255, 255)
_INK = (20, 20, 20)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Bar colours (RGB), one per series, cycled.
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def fit_height(image: np.ndarray, height: int) -> np.ndarray:
    """``image`` resized to ``height`` rows, keeping its aspect ratio (area averaging when shrinking)."""
    h, w = image.shape[:2]
    if h == height:
        return image
    width = max(1, round(w * height / h))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if height < h else cv2.INTER_CUBIC)


def _fitted_scale(text: str, width: int, scale: float, thickness: int) -> float:
    """The largest font scale <= ``scale`` at which ``text`` fits in ``width`` pixels."""
    text_w = cv2.getTextSize(text, _FONT, scale, thickness)[0][0]
    return scale if text_w <= width else scale * width / text_w


def _put(canvas: np.ndarray, text: str, x: int, baseline: int, scale: float, thickness: int,
         color: tuple[int, int, int] = _INK) -> None:
    cv2.putText(canvas, text, (x, baseline), _FONT, scale, color, thickness, cv2.LINE_AA)


def caption(image: np.ndarray, text: str, band: int | None = None) -> np.ndarray:
    """``image`` with ``text`` centred in a white band above it (font shrunk to fit the width)."""
    h, w = image.shape[:2]
    band = band or max(18, round(0.11 * min(h, 256)))
    thickness = 1 if band < 28 else 2
    scale = _fitted_scale(text, w - 6, band / 36.0, thickness)
    (text_w, text_h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    canvas = np.full((band + h, w, 3), BACKGROUND, dtype=np.uint8)
    _put(canvas, text, (w - text_w) // 2, (band + text_h) // 2, scale, thickness)
    canvas[band:] = image
    return canvas


def panel(image: np.ndarray, text: str, height: int) -> np.ndarray:
    """A sheet panel: ``image`` scaled to ``height`` rows, captioned with ``text``."""
    return caption(fit_height(image, height), text)


def text_image(text: str, height: int, width: int | None = None) -> np.ndarray:
    """A white image of ``height`` rows holding ``text`` (a row label), ``width`` wide or just wide enough."""
    scale = height / 160.0
    thickness = 1 if scale < 0.8 else 2
    (text_w, text_h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    width = width or text_w + 12
    scale = _fitted_scale(text, width - 6, scale, thickness)
    (text_w, text_h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    _put(canvas, text, (width - text_w) // 2, (height + text_h) // 2, scale, thickness)
    return canvas


def placeholder(text: str, size: int) -> np.ndarray:
    """A ``size`` x ``size`` light grey tile holding ``text``: a panel standing for a missing image ("no face")."""
    tile = text_image(text, size, size)
    tile[tile.sum(-1) == 3 * 255] = 200
    return tile


def inset(image: np.ndarray, small: np.ndarray) -> np.ndarray:
    """A copy of ``image`` with ``small`` in its bottom-right corner, a quarter of its height (at least 8 px) and at
    most half its width, on a white border."""
    h, w = image.shape[:2]
    small = fit_height(small, max(8, h // 4))[:, : w // 2]
    out = image.copy()
    border = max(2, h // 200)
    out[h - small.shape[0] - border:, w - small.shape[1] - border:] = 255
    out[h - small.shape[0]:, w - small.shape[1]:] = small
    return out


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    out = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    out[: image.shape[0], : image.shape[1]] = image
    return out


def grid(rows: Sequence[Sequence[np.ndarray]], gap: int = 6) -> np.ndarray:
    """Lay out rows of images left to right, top to bottom, with white gaps and a white margin."""
    if not rows or not all(rows):
        raise ValueError("a grid needs at least one image in every row")
    lines = []
    for row in rows:
        height = max(im.shape[0] for im in row)
        cells = []
        for im in row:
            cells += [_pad_to(im, height, im.shape[1]), np.full((height, gap, 3), BACKGROUND, dtype=np.uint8)]
        lines.append(np.concatenate(cells[:-1], axis=1))
    width = max(line.shape[1] for line in lines)
    stacked = []
    for line in lines:
        stacked += [_pad_to(line, line.shape[0], width), np.full((gap, width, 3), BACKGROUND, dtype=np.uint8)]
    body = np.concatenate(stacked[:-1], axis=0)
    return cv2.copyMakeBorder(body, gap, gap, gap, gap, cv2.BORDER_CONSTANT, value=BACKGROUND)


def _format(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def bar_chart(values: Mapping[str, Mapping[str, float]], title: str = "",
              panel_size: tuple[int, int] = (260, 240)) -> np.ndarray:
    """One bar plot per metric, side by side, each with its own y scale starting at 0.

    ``values[metric][series]`` is a number (NaN is drawn as a missing bar marked ``n/a``); every
    metric shows the series in the same order and colour, with a legend below the plots.
    """
    series = list(dict.fromkeys(name for per_metric in values.values() for name in per_metric))
    if not series:
        raise ValueError("bar_chart needs at least one value")
    width, height = panel_size
    top, bottom, side = 34, 26, 14
    plots = []
    for metric, per_metric in values.items():
        canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
        scale = _fitted_scale(metric, width - 8, 0.5, 1)
        text_w = cv2.getTextSize(metric, _FONT, scale, 1)[0][0]
        _put(canvas, metric, (width - text_w) // 2, 20, scale, 1)
        finite = [v for v in per_metric.values() if math.isfinite(v)]
        vmax = max(max(finite, default=0.0), 0.0) or 1.0
        axis_y = height - bottom
        cv2.line(canvas, (side, axis_y), (width - side, axis_y), _INK, 1, cv2.LINE_AA)
        slot = (width - 2 * side) / len(series)
        for k, name in enumerate(series):
            value = per_metric.get(name, float("nan"))
            x0, x1 = round(side + (k + 0.15) * slot), round(side + (k + 0.85) * slot)
            if math.isfinite(value):
                y = axis_y - round(max(value, 0.0) / vmax * (axis_y - top - 14))
                cv2.rectangle(canvas, (x0, y), (x1, axis_y), _PALETTE[k % len(_PALETTE)], -1)
            else:
                y = axis_y
            label = _format(value)
            label_scale = _fitted_scale(label, x1 - x0 + 10, 0.42, 1)
            label_w = cv2.getTextSize(label, _FONT, label_scale, 1)[0][0]
            _put(canvas, label, (x0 + x1 - label_w) // 2, y - 5, label_scale, 1)
        plots.append(canvas)
    legend = np.full((28, sum(p.shape[1] for p in plots), 3), BACKGROUND, dtype=np.uint8)
    x = 10
    for k, name in enumerate(series):
        cv2.rectangle(legend, (x, 8), (x + 14, 22), _PALETTE[k % len(_PALETTE)], -1)
        _put(legend, name, x + 20, 20, 0.45, 1)
        x += 20 + cv2.getTextSize(name, _FONT, 0.45, 1)[0][0] + 24
    body = np.concatenate([np.concatenate(plots, axis=1), legend], axis=0)
    if title:
        body = caption(body, title, band=32)
    return cv2.copyMakeBorder(body, 6, 6, 6, 6, cv2.BORDER_CONSTANT, value=BACKGROUND)
