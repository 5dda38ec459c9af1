"""Temporal consistency of a stylised video: warping error and flicker on static regions.

Both metrics compare *output* frames but take the motion from the *input* frames, which are what the
stylisation should follow: a perfectly consistent stylisation moves exactly as its input does.

Warping error (Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018), for each pair
of consecutive frames ``t, t+1``:

1. Motion: OpenCV's DIS optical flow (:data:`pipeline.smoothing.FLOW_PRESETS`, ``'medium'`` by
   default) on the grayscale input frames, from ``t`` to ``t+1`` (``f``) and from ``t+1`` to ``t``
   (``b``): ``input_t(x) ~ input_t+1(x + f(x))``.
2. Occlusions: the forward-backward consistency test of Sundaram et al. (ECCV 2010), as used by
   Ruder et al. (GCPR 2016) and Lai et al.: with ``b'(x) = b(x + f(x))`` (bilinear), a pixel is
   valid when ``|f + b'|^2 <= 0.01 (|f|^2 + |b'|^2) + 0.5`` (pixels of the input frame) and
   ``x + f(x)`` lies inside frame ``t+1`` (all four bilinear taps inside).
3. When the outputs are larger than the inputs (VToonify: 4x), the flow is resized to the output
   size with bilinear interpolation (``cv2.resize``, pixel centres aligned) and multiplied by the
   size ratio per axis; the validity mask is resized with nearest-neighbour interpolation.
4. ``output_t+1`` is backward-warped onto frame ``t`` with that flow (exact bilinear,
   :func:`pipeline.smoothing.backward_warp`) and the error is the mean, over valid pixels, of the
   squared difference averaged over the three channels, with RGB in ``[0, 1]``:
   ``E_t = sum_x M(x) mean_c (O_t(x) - warp(O_t+1)(x))^2 / sum_x M(x)``.

A video's warping error is the mean of ``E_t`` over its pairs. Identical frames give exactly 0.

Flicker on static regions: a pixel is *static* when the grayscale input, smoothed with a 5x5 Gaussian
(sigma 1) to ignore codec noise, changes by less than ``threshold`` (in ``[0, 1]``; default 0.02,
about 5 grey levels) between every pair of consecutive frames. The flicker score is the temporal
standard deviation (population, over all frames) of the output's RGB values in ``[0, 1]``, averaged
over the channels and the static pixels (the mask is resized to the output size with nearest-neighbour
interpolation). A static input with a constant output scores exactly 0.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from pipeline.smoothing import FLOW_PRESETS, backward_warp

__all__ = [
    "CONSISTENCY_ALPHA",
    "CONSISTENCY_BETA",
    "STATIC_THRESHOLD",
    "Flicker",
    "consistency_mask",
    "flicker_score",
    "optical_flow",
    "resize_flow",
    "static_mask",
    "warp",
    "warping_error",
    "warping_errors",
]

#: Forward-backward test ``|f + b'|^2 <= CONSISTENCY_ALPHA (|f|^2 + |b'|^2) + CONSISTENCY_BETA``.
CONSISTENCY_ALPHA = 0.01
CONSISTENCY_BETA = 0.5
#: Default largest input change (grayscale, in [0, 1]) of a static pixel between consecutive frames.
STATIC_THRESHOLD = 0.02
# A warped pixel is inside the source frame when all its bilinear taps are (coverage 1).
_FULL_COVERAGE = 0.9999


def _gray(frame: np.ndarray) -> np.ndarray:
    """RGB ``uint8`` (or grayscale) frame -> grayscale ``uint8``, C-contiguous."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise TypeError(f"expected uint8 frames, got {frame.dtype}")
    if frame.ndim == 3:
        frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(frame)


def optical_flow(source: np.ndarray, target: np.ndarray, preset: str = "medium") -> np.ndarray:
    """DIS optical flow ``(H, W, 2)`` (x, y; float32) such that ``source(p) ~ target(p + flow(p))``.

    Frames are RGB (or grayscale) ``uint8`` arrays of one size; the flow is computed on grayscale.
    """
    if preset not in FLOW_PRESETS:
        raise ValueError(f"flow preset must be one of {sorted(FLOW_PRESETS)}, got {preset!r}")
    a, b = _gray(source), _gray(target)
    if a.shape != b.shape:
        raise ValueError(f"frames differ in size: {a.shape} and {b.shape}")
    return cv2.DISOpticalFlow_create(FLOW_PRESETS[preset]).calc(a, b, None)


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward-warp ``image`` (``(H, W)`` or ``(H, W, C)``) by ``flow``: sample it at ``p + flow(p)``.

    Returns ``(warped, inside)``: the float32 warped image (bilinear, zeros outside) and the boolean
    mask of pixels whose four bilinear taps all lie inside ``image``.
    """
    source = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    squeeze = source.dim() == 2
    if squeeze:
        source = source[..., None]
    warped, coverage = backward_warp(source, torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)))
    warped = warped.numpy()
    return (warped[..., 0] if squeeze else warped), coverage.numpy() >= _FULL_COVERAGE


def consistency_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels that pass the forward-backward test and stay in the frame.

    ``forward`` maps frame t to t+1, ``backward`` maps t+1 to t (both ``(H, W, 2)``, from
    :func:`optical_flow`). See the module docstring for the rule.
    """
    back, inside = warp(backward, forward)
    total = forward + back
    bound = CONSISTENCY_ALPHA * ((forward**2).sum(-1) + (back**2).sum(-1)) + CONSISTENCY_BETA
    return inside & ((total**2).sum(-1) <= bound)


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a flow field to ``size = (width, height)`` and rescale its vectors to the new pixel units."""
    height, width = flow.shape[:2]
    if (width, height) == tuple(size):
        return flow
    resized = cv2.resize(flow, size, interpolation=cv2.INTER_LINEAR)
    return resized * np.array([size[0] / width, size[1] / height], dtype=np.float32)


def _check_scale(input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> None:
    if output_shape[0] < input_shape[0] or output_shape[1] < input_shape[1]:
        raise ValueError(f"outputs ({output_shape[1]}x{output_shape[0]}) must be at least the input size "
                         f"({input_shape[1]}x{input_shape[0]})")


def warping_error(
    input_t: np.ndarray,
    input_next: np.ndarray,
    output_t: np.ndarray,
    output_next: np.ndarray,
    compensate: bool = True,
    preset: str = "medium",
) -> float:
    """Warping error ``E_t`` of one pair of consecutive frames (RGB ``uint8``; see the module docstring).

    ``compensate=False`` compares the outputs without motion compensation (zero flow, every pixel
    valid): the plain frame difference, the reference point that motion compensation should beat.
    Returns NaN (with a warning) when no pixel is valid.
    """
    _check_scale(input_t.shape, output_t.shape)
    if input_t.shape != input_next.shape or output_t.shape != output_next.shape:
        raise ValueError("the two frames of a pair must have the same size (inputs and outputs respectively)")
    out_t = np.asarray(output_t, dtype=np.float32) / 255.0
    out_next = np.asarray(output_next, dtype=np.float32) / 255.0
    if compensate:
        forward = optical_flow(input_t, input_next, preset)
        valid = consistency_mask(forward, optical_flow(input_next, input_t, preset))
        size = (out_t.shape[1], out_t.shape[0])
        if size != (valid.shape[1], valid.shape[0]):
            valid = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
        warped, inside = warp(out_next, resize_flow(forward, size))
        valid &= inside
    else:
        warped, valid = out_next, np.ones(out_t.shape[:2], dtype=bool)
    if not valid.any():
        warnings.warn("warping error: no pixel is valid (all occluded or out of frame); returning NaN", stacklevel=2)
        return float("nan")
    return float(((out_t - warped) ** 2).mean(axis=-1)[valid].mean())


def warping_errors(
    inputs: Sequence[np.ndarray | None],
    outputs: Sequence[np.ndarray | None],
    compensate: bool = True,
    preset: str = "medium",
) -> np.ndarray:
    """Warping error of every consecutive pair, shape ``(len(inputs) - 1,)``.

    A pair in which either frame is ``None`` (e.g. a frame where a per-frame method found no face)
    gets NaN; average with ``np.nanmean``.
    """
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} input frames but {len(outputs)} output frames")
    errors = np.full(max(len(inputs) - 1, 0), np.nan)
    for t in range(len(errors)):
        frames = (inputs[t], inputs[t + 1], outputs[t], outputs[t + 1])
        if all(f is not None for f in frames):
            errors[t] = warping_error(*frames, compensate=compensate, preset=preset)
    return errors


def static_mask(inputs: Sequence[np.ndarray], threshold: float = STATIC_THRESHOLD) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels where the input never changes by ``threshold`` or more."""
    if len(inputs) < 2:
        raise ValueError("a static mask needs at least two frames")
    smooth = [cv2.GaussianBlur(_gray(f), (5, 5), 1.0).astype(np.float32) / 255.0 for f in inputs]
    change = np.zeros(smooth[0].shape, dtype=np.float32)
    for a, b in zip(smooth[:-1], smooth[1:]):
        np.maximum(change, np.abs(b - a), out=change)
    return change < threshold


@dataclass(frozen=True)
class Flicker:
    """Flicker score (mean temporal std of the output over static pixels, RGB in [0, 1]) and the
    fraction of the frame that is static (NaN score when nothing is)."""

    score: float
    static_fraction: float


def flicker_score(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray], threshold: float = STATIC_THRESHOLD) -> Flicker:
    """Flicker of ``outputs`` on the regions where ``inputs`` are static (see the module docstring)."""
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} input frames but {len(outputs)} output frames")
    _check_scale(inputs[0].shape, outputs[0].shape)
    mask = static_mask(inputs, threshold)
    fraction = float(mask.mean())
    size = (outputs[0].shape[1], outputs[0].shape[0])
    if size != (mask.shape[1], mask.shape[0]):
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    if not mask.any():
        warnings.warn("flicker score: the input has no static pixel; returning NaN", stacklevel=2)
        return Flicker(float("nan"), fraction)
    # Two passes over the frames (mean, then variance), keeping only the static pixels of each frame.
    count = len(outputs)
    mean = sum(np.asarray(o, dtype=np.float64)[mask] for o in outputs) / (255.0 * count)
    var = sum((np.asarray(o, dtype=np.float64)[mask] / 255.0 - mean) ** 2 for o in outputs) / count
    return Flicker(float(np.sqrt(var).mean()), fraction)
