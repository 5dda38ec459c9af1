"""Paste-back: the stylised result brought back into the input's full frame (``paste_back``).

The canvas is the input frame itself, resized by ``output_scale`` (1: the input's own size, up to 4). The 4x result
of a crop is mapped back to the crop's place and scale in the frame (one affine warp, the geometry of
:mod:`pipeline.multiface.blend`; an area shrink first where the warp shrinks, so that it does not alias) and blended
in with a soft weight: the parser's face, hair and neck (:func:`~pipeline.multiface.blend.face_weight`: the
classes of :data:`~pipeline.multiface.blend.MASK_CLASSES`, feathered) times the fade at the crop's edges
(:func:`~pipeline.multiface.blend.crop_taper`; edges on the frame border are not faded). Outside the crop every
pixel is the canvas's: the input's exactly at ``output_scale`` 1. Only the crop's box of the canvas is computed.

Without ``scale_image`` the whole frame went through the model: the paste-back is the 4x result resized to the
canvas (no mask). With ``faces='all'`` the composited canvas output (every face blended in) is pasted with the
weight ``clip(main weight + sum of the extra faces' weights)``, so every face comes back.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from pipeline.faces import CropParams
from pipeline.multiface.blend import blend, crop_map, crop_taper, face_weight, resample, resized_map, scaled_size

__all__ = ["paste", "paste_back", "paste_faces"]

_Map = tuple[np.ndarray, np.ndarray]


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``size = (W, H)``: area-averaged where it shrinks, bicubic where it grows."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    shrink = size[0] < image.shape[1] and size[1] < image.shape[0]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def _warp(src: np.ndarray, src_map: _Map, dst_map: _Map, size: tuple[int, int]) -> np.ndarray:
    """:func:`resample` (replicated border) after an area shrink of ``src`` where one destination pixel spans more
    than one source pixel."""
    k = np.maximum(dst_map[0] / src_map[0], 1.0)
    if (k > 1).any():
        old = (src.shape[1], src.shape[0])
        new = (max(1, round(old[0] / k[0])), max(1, round(old[1] / k[1])))
        src, src_map = cv2.resize(src, new, interpolation=cv2.INTER_AREA), resized_map(src_map, old, new)
    return resample(src, src_map, dst_map, size, cv2.BORDER_REPLICATE)


def _box(params: CropParams, shape: tuple[int, int], canvas_map: _Map, size: tuple[int, int]) -> tuple[int, ...]:
    """``(x0, y0, x1, y1)``: the canvas pixels the crop of ``params`` reaches (a pixel of margin)."""
    a, b = crop_map(params, shape)
    lo = (a * -0.5 + b - canvas_map[1]) / canvas_map[0]
    hi = (a * (np.array(params.crop_size) - 0.5) + b - canvas_map[1]) / canvas_map[0]
    x0, y0 = (max(0, int(np.floor(v)) - 1) for v in lo)
    x1, y1 = (min(n, int(np.ceil(v)) + 2) for v, n in zip(hi, size))
    return x0, y0, x1, y1


def paste(frame: np.ndarray, params: CropParams | None, output: np.ndarray, weight: np.ndarray | None,
          scale: float = 1.0) -> np.ndarray:
    """``frame`` (RGB uint8) at ``scale`` with ``output`` (the stylised crop ``params`` of it, at any size: 4x the
    crop, or 4x its ``max_side`` shrink) blended in with ``weight`` (float32 in [0, 1] at any size over the crop:
    the model input's pixels) times the crop's edge fade. ``params`` None: ``output`` covers the whole frame and is
    resized to the canvas (``weight`` unused)."""
    shape = frame.shape[:2]
    size = scaled_size(shape, scale)
    if params is None:
        return _resize(output, size).copy()
    canvas = _resize(frame, size).copy()
    cmap = resized_map(crop_map(None, shape), (shape[1], shape[0]), size)
    x0, y0, x1, y1 = _box(params, shape, cmap, size)
    if x1 <= x0 or y1 <= y0:
        return canvas
    box_map = (cmap[0], cmap[1] + cmap[0] * np.array([x0, y0]))
    box = (x1 - x0, y1 - y0)
    own = crop_map(params, shape)
    image = _warp(output, resized_map(own, params.crop_size, (output.shape[1], output.shape[0])), box_map, box)
    rep = cv2.BORDER_REPLICATE
    alpha = resample(crop_taper(params), own, box_map, box, rep)
    alpha *= resample(weight, resized_map(own, params.crop_size, (weight.shape[1], weight.shape[0])), box_map, box, rep)
    canvas[y0:y1, x0:x1] = blend(canvas[y0:y1, x0:x1], [(image, alpha)])
    return canvas


def paste_back(frame: np.ndarray, params: CropParams | None, output: np.ndarray, parsing: torch.Tensor | None,
               scale: float = 1.0) -> np.ndarray:
    """:func:`paste` with the weight of the crop's parsing logits (``(19, H, W)`` at the model input's size, or
    padded beyond it: cropped here to ``output``'s size / 4)."""
    if params is None or parsing is None:
        return paste(frame, params, output, None, scale)
    h, w = output.shape[0] // 4, output.shape[1] // 4
    return paste(frame, params, output, face_weight(parsing[:, :h, :w]), scale)


def paste_faces(frame: np.ndarray, canvas_params: CropParams | None, output: np.ndarray,
                canvas_parsing: torch.Tensor | None, alphas: Sequence[np.ndarray], scale: float = 1.0) -> np.ndarray:
    """``faces='all'``: the composited canvas ``output`` pasted with its parsing's weight plus the weights ``alphas``
    the extra faces got in it (each at ``output``'s size)."""
    if canvas_params is None or canvas_parsing is None:
        return paste(frame, canvas_params, output, None, scale)
    h, w = output.shape[0] // 4, output.shape[1] // 4
    weight = face_weight(canvas_parsing[:, :h, :w])
    for alpha in alphas:
        weight += cv2.resize(alpha.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return paste(frame, canvas_params, output, np.clip(weight, 0, 1), scale)
