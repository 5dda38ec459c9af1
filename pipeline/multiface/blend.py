"""Where every face of a frame goes: which faces are kept, the canvas, the geometry between crops and the canvas,
each face's weight, and the blend (see :mod:`pipeline.multiface`)."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from common.errors import OptionError
from common.options import FACE_MODES, check
from pipeline.faces import DEFAULT_PADDING, CropParams, Face, select_face

if TYPE_CHECKING:
    from pipeline.multiface.image import FaceRender

__all__ = ["FACE_MODES", "MASK_CLASSES", "MASK_RANGE", "FEATHER", "TAPER", "OWNERSHIP_SOFTNESS", "MIN_EYE_DISTANCE",
           "MIN_SCORE", "MASK_MEMORY", "FADE_FRAMES", "check_faces", "eye_distance", "select_faces", "canvas_parameters",
           "crop_map", "resized_map", "scaled_size",
           "output_map", "resample", "crop_taper", "face_weight", "ownership", "blend", "composite", "shift"]

#: BiSeNet (CelebAMask-HQ) labels blended: skin 1, brows 2-3, eyes 4-5, glasses 6, ears 7-8, earring 9,
#: nose 10, mouth 11, lips 12-13, neck 14, necklace 15, hair 17 (not background 0, cloth 16, hat 18).
MASK_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17)
#: The parsing probability ``p`` of :data:`MASK_CLASSES` becomes the mask ``smoothstep((p - lo) / (hi - lo))``:
#: 1 where the parser gives the pixel to the face at ``p >= hi``, 0 at ``p <= lo``. The face is then wholly the
#: face's own render (a raw ``p`` of 0.85-0.95 inside a face would leave 5-15% of the canvas, rendered with the
#: main face's code and scale, mixed in) and the mask still ends softly where the parser is unsure.
MASK_RANGE = (0.25, 0.75)
#: Sigma of the Gaussian that feathers a face's mask, in pixels of its own crop (eye distance 64).
FEATHER = 6.0
#: Width of the ramp from 0 at a crop edge to 1 inside, in crop pixels.
TAPER = 16
#: Softness of the ownership split between overlapping crops, in crop pixels of distance.
OWNERSHIP_SOFTNESS = 16.0
#: Extra faces need at least this horizontal eye distance in the frame (below it a 64 px eye distance
#: means upscaling more than 4x) ...
MIN_EYE_DISTANCE = 16.0
#: ... and at least this dlib HOG score (the scikit-image astronaut's suit badge is a false face at 0.12,
#: real faces of the test pictures score 1.1-1.7). The main face is chosen as with ``largest``.
MIN_SCORE = 0.5
#: Weight of the previous mask in a track's temporal mask average.
MASK_MEMORY = 0.5
#: Frames over which a track fades in and, once its face is no longer detected, out.
FADE_FRAMES = 4


def check_faces(faces: str, max_faces: int | None) -> None:
    """The ``faces`` mode and ``max_faces`` (its range in :data:`common.options.RANGES`)."""
    if faces not in FACE_MODES:
        raise OptionError(f"faces must be one of {', '.join(FACE_MODES)}, got {faces!r}")
    if max_faces is not None:
        check("max_faces", max_faces, "--max_faces")


def eye_distance(face: Face) -> float:
    left, right = face.eye_centres
    return float(right[0] - left[0])


def select_faces(faces: Sequence[Face], max_faces: int | None = None, min_eye_distance: float = MIN_EYE_DISTANCE,
                 min_score: float = MIN_SCORE) -> list[Face]:
    """The main face (:func:`select_face`'s choice) first, then the other faces that pass the size and score
    thresholds, largest first, at most ``max_faces`` in all."""
    main = select_face(faces)
    if main is None:
        return []
    others = [f for f in faces if f is not main and eye_distance(f) >= min_eye_distance and f.score >= min_score]
    others.sort(key=lambda f: (f.area, f.score), reverse=True)
    return ([main] + others)[: max_faces or None]


# ----------------------------------------------------------------------------------------------- geometry
def crop_map(params: CropParams | None, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` per axis (x, y) with ``frame coordinate = a * crop pixel + b`` (pixel centres; the crop of
    ``params``, or the whole frame when None). ``cv2.resize`` maps rescaled pixel ``i`` to ``(i + 0.5) * W / w - 0.5``."""
    height, width = shape
    if params is None:
        return np.ones(2), np.zeros(2)
    a = np.array([width / params.w, height / params.h])
    return a, (np.array([params.left, params.top]) + 0.5) * a - 0.5


_axis_maps = crop_map  # its name before paste-back needed it outside this module


def resized_map(image_map: tuple[np.ndarray, np.ndarray], size: tuple[int, int],
                new_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The map of an image of ``size = (W, H)`` (``image_map``: frame coordinate = a * pixel + b) resized to
    ``new_size``: ``cv2.resize`` puts new pixel ``j`` at old pixel ``(j + 0.5) * k - 0.5``, ``k = size / new_size``."""
    a, b = image_map
    k = np.asarray(size, np.float64) / np.asarray(new_size, np.float64)
    return a * k, b + a * (0.5 * k - 0.5)


def scaled_size(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(W, H)`` of a ``shape = (H, W)`` frame resized by ``scale`` (a pasted-back output, :mod:`pipeline.pasteback`)."""
    height, width = shape
    return max(1, round(width * scale)), max(1, round(height * scale))


def output_map(params: CropParams | None, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` with ``frame coordinate = a * output pixel + b`` for the 4x output of a crop."""
    size = (shape[1], shape[0]) if params is None else params.crop_size
    return resized_map(crop_map(params, shape), size, (4 * size[0], 4 * size[1]))


def resample(src: np.ndarray, src_map: tuple[np.ndarray, np.ndarray], dst_map: tuple[np.ndarray, np.ndarray],
             size: tuple[int, int], border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """``src`` (pixels -> frame by ``src_map``) sampled bilinearly at the pixels of a ``size = (W, H)`` image
    whose pixels map to the frame by ``dst_map``; float32."""
    (sa, sb), (da, db) = src_map, dst_map
    scale, offset = da / sa, (db - sb) / sa  # destination pixel -> source pixel
    m = np.array([[scale[0], 0, offset[0]], [0, scale[1], offset[1]]], dtype=np.float64)
    return cv2.warpAffine(np.ascontiguousarray(src, dtype=np.float32), m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=border, borderValue=0)


def canvas_parameters(shape: tuple[int, int], main: CropParams, others: Sequence[Face],
                      padding: Sequence[int] = DEFAULT_PADDING) -> CropParams:
    """The main face's crop grown to the union of every face's padded crop (mapped into the main face's
    rescaled frame), clipped to it, edges floored to multiples of 8 as :func:`crop_parameters` does."""
    pad_l, pad_r, pad_t, pad_b = padding
    height, width = shape
    left, right, top, bottom = main.left, main.right, main.top, main.bottom
    sx, sy = main.w / width, main.h / height
    for face in others:
        s = 64.0 / eye_distance(face)  # this face's own rescale factor (frame px -> its crop px)
        cx, cy = np.mean(face.eye_centres, axis=0)  # its padded crop, in frame pixels, then in the main rescaled frame
        left = min(left, max(round((cx - pad_l / s) * sx), 0) // 8 * 8)
        top = min(top, max(round((cy - pad_t / s) * sy), 0) // 8 * 8)
        right = max(right, min(round((cx + pad_r / s) * sx), main.w) // 8 * 8)
        bottom = max(bottom, min(round((cy + pad_b / s) * sy), main.h) // 8 * 8)
    return dataclasses.replace(main, left=left, right=right, top=top, bottom=bottom)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def crop_taper(params: CropParams, taper: float = TAPER) -> np.ndarray:
    """``(h, w)`` ramp, 0 on the outermost pixels (1 at ``taper`` pixels inside); edges on the frame border stay 1.

    The edge pixels are exactly 0 so that extending the ramp past the crop (replicated border) stays 0.
    """
    ch, cw = params.bottom - params.top, params.right - params.left
    if taper <= 0:
        return np.ones((ch, cw), np.float32)
    x, y = np.arange(cw, dtype=np.float64), np.arange(ch, dtype=np.float64)
    rx = np.minimum(_smoothstep(x / taper) if params.left > 0 else 1.0,
                    _smoothstep(x[::-1] / taper) if params.right < params.w else 1.0)
    ry = np.minimum(_smoothstep(y / taper) if params.top > 0 else 1.0,
                    _smoothstep(y[::-1] / taper) if params.bottom < params.h else 1.0)
    return (np.broadcast_to(ry, (ch,))[:, None] * np.broadcast_to(rx, (cw,))[None, :]).astype(np.float32)


def face_weight(parsing: torch.Tensor, feather: float = FEATHER, mask_range: tuple[float, float] = MASK_RANGE) -> np.ndarray:
    """``(h, w)`` float32 soft mask in ``[0, 1]``: the softmax probability of :data:`MASK_CLASSES` of 19-channel
    parsing logits ``(19, H, W)`` (``H, W`` >= h, w: padded maps are cropped by the caller), remapped by
    :data:`MASK_RANGE` and feathered."""
    prob = torch.softmax(parsing.float(), dim=0)[list(MASK_CLASSES)].sum(0).clamp_(0, 1).cpu().numpy()
    lo, hi = mask_range
    prob = _smoothstep((prob - lo) / (hi - lo)).astype(np.float32)
    if feather > 0:
        prob = cv2.GaussianBlur(prob, (0, 0), feather, borderType=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(prob, dtype=np.float32)


def ownership(points_maps: Sequence[tuple[np.ndarray, np.ndarray]], covers: Sequence[np.ndarray], size: tuple[int, int],
              canvas_map: tuple[np.ndarray, np.ndarray], softness: float = OWNERSHIP_SOFTNESS) -> list[np.ndarray]:
    """Each face's share of the canvas pixels (``size = (W, H)``): ``softmax_j(log cover_j - d_j / softness)``.

    ``points_maps[j] = (eye centre in the frame, per-axis frame px -> face j crop px factor)``; ``covers[j]``
    is face j's crop cover (taper) resampled into the canvas. Pixels no face covers get share 0.
    """
    width, height = size
    a, b = canvas_map
    fx = a[0] * np.arange(width) + b[0]
    fy = a[1] * np.arange(height) + b[1]
    logits = []
    for (centre, k), cover in zip(points_maps, covers):
        d = np.sqrt(((fx - centre[0]) * k[0])[None, :] ** 2 + ((fy - centre[1]) * k[1])[:, None] ** 2)
        with np.errstate(divide="ignore"):
            logits.append(np.log(np.maximum(cover, 0)) - d / softness)
    stack = np.stack(logits)
    top = stack.max(axis=0)
    valid = np.isfinite(top)
    ex = np.where(valid, np.exp(stack - np.where(valid, top, 0)), 0.0)
    total = ex.sum(axis=0)
    return [np.where(valid, e / np.where(valid, total, 1), 0.0).astype(np.float32) for e in ex]


def blend(canvas: np.ndarray, layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``canvas * (1 - sum alpha) + sum alpha * image`` over ``(image float32 HxWx3, alpha HxW)`` layers, rounded."""
    out = canvas.astype(np.float32)
    if not layers:
        return canvas.copy()
    rest = np.ones(canvas.shape[:2], np.float32)
    acc = np.zeros_like(out)
    for image, alpha in layers:
        acc += alpha[..., None] * image
        rest -= alpha
    out = out * np.clip(rest, 0, 1)[..., None] + acc
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)



def composite(shape: tuple[int, int], canvas_params: CropParams | None, canvas_out: np.ndarray, main: CropParams,
               main_eyes: np.ndarray, renders: Sequence[FaceRender], presence: Sequence[float] | None = None) -> np.ndarray:
    """Blend ``renders`` into ``canvas_out`` (see the module docstring); sets each render's ``alpha``."""
    size = (canvas_out.shape[1], canvas_out.shape[0])
    cmap = output_map(canvas_params, shape)
    height, width = shape
    rep = cv2.BORDER_REPLICATE
    covers = [resample(crop_taper(main), _axis_maps(main, shape), cmap, size, rep)]
    centres = [(main_eyes, np.array([main.w / width, main.h / height]))]
    weights = []
    for r in renders:
        src = _axis_maps(r.params, shape)
        covers.append(resample(crop_taper(r.params), src, cmap, size, rep))
        centres.append((r.centre, np.array([r.params.w / width, r.params.h / height])))
        weights.append(resample(r.weight, src, cmap, size, rep))
    shares = ownership(centres, covers, size, cmap)
    layers = []
    for i, r in enumerate(renders):
        alpha = weights[i] * covers[i + 1] * shares[i + 1] * (1.0 if presence is None else presence[i])
        r.alpha = alpha
        image = resample(r.output, output_map(r.params, shape), cmap, size, border=cv2.BORDER_REPLICATE)
        layers.append((image, alpha))
    return blend(canvas_out, layers)


def shift(params: CropParams, moved: CropParams, shape: tuple[int, int]) -> np.ndarray:
    """How far (frame pixels) a tracked crop has moved from where it started."""
    a, _ = _axis_maps(params, shape)
    return a * np.array([moved.left - params.left, moved.top - params.top])
