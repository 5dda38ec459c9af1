"""Temporal smoothing of face-parsing maps with optical flow, one frame at a time.

VToonify feeds per-frame BiSeNet parsing logits to its generator; parsed independently, these maps
flicker from frame to frame and the flicker shows in the stylised video. The original's optional
``smooth_parsing_map.py`` removes it by fusing, for every frame, the parsing maps of its temporal
neighbours after warping them onto the frame with RAFT optical flow. This module implements the same
fusion with OpenCV's DIS optical flow (no network, no weights to download) and as a stream: frames go
in one at a time and smoothed maps come out in order, ``window_size`` frames later, while at most
``2 * window_size + 1`` frames are held in memory.

Algorithm, for window half-width ``w`` and the frame ``i`` being smoothed:

1. The sequence is padded with copies of its first ``w`` frames at the front and of its last ``w``
   frames at the end, in their original order (not reflected, not the end frame repeated): with frames
   ``0..N-1`` the padded sequence is ``0, 1, ..., w-1, 0, 1, ..., N-1, N-w, ..., N-1``. Frame ``i`` is
   smoothed over the ``2w + 1`` padded positions centred on it, slot ``k = 0..2w`` holding padded
   position ``i + k``. (For ``N < w`` the original is undefined; here front copies beyond the last frame
   repeat the last frame and end copies before the first frame repeat the first frame.)
2. Temporal weight of slot ``k``: ``wt_k = exp(-(k - w)^2 / (2 (w + 0.5)^2))``.
3. For a neighbour ``j`` the flow from frame ``i`` to frame ``j`` is computed on grayscale ``uint8``
   versions of the frames (``round((x + 1) * 127.5)`` then OpenCV's RGB-to-gray luma), and the neighbour's image and
   parsing are backward-warped onto frame ``i``
   (bilinear, sampling ``j`` at ``x + flow(x)``, pixel centres at integer coordinates as with
   ``grid_sample(align_corners=True)``, zeros outside). The validity mask is the warp of an image of
   ones, set to 0 where it is below 0.9999 and to 1 elsewhere, i.e. 1 where the sample lies inside the
   neighbour. Spatial (photometric) weight:
   ``ws = exp(-mean_c(warped_image - image_i)^2 / (2 sigma_color^2)) * mask``, on images in [-1, 1].
4. The centre slot uses frame ``i``'s own, unwarped parsing with ``ws = 1``; so do the slots that hold
   a padding copy of frame ``i`` itself (the flow between a frame and itself is exactly zero).
5. Per pixel, the weights ``ws * wt`` are normalised over the window and the output is the weighted
   sum of the (warped) parsing maps.

Differences from the original: DIS instead of RAFT; flow on grayscale frames. The original parsed the
frames at twice their resolution and downsampled the smoothed logits; here the caller chooses the
resolution, and the smoother works at whatever resolution it is given (frames and parsing maps must
have the same height and width). The default flow preset, ``'medium'``
(``cv2.DISOPTICAL_FLOW_PRESET_MEDIUM``), is OpenCV's most accurate DIS preset; ``'fast'`` and
``'ultrafast'`` trade accuracy for speed.

Cost per frame: up to ``2w`` DIS flows and ``2w`` bilinear warps of ``3 + C`` channels (fewer near the
ends of the sequence, where padding repeats frames); each flow is computed once per (frame, distinct
neighbour) pair. Memory: ``2w + 1`` frames of ``3 + C`` float32 channels plus a grayscale copy.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from common.errors import InputError

__all__ = ["FLOW_PRESETS", "ParsingSmoother", "backward_warp", "smooth_parsing_sequence", "temporal_weights"]

#: DIS optical-flow presets by name.
FLOW_PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

#: A warped pixel is valid where the warp of an image of ones reaches this value (as in the original).
_VALID_COVERAGE = 0.9999


def temporal_weights(window_size: int) -> list[float]:
    """Temporal weights ``wt_k = exp(-(k - w)^2 / (2 (w + 0.5)^2))`` of the slots ``k = 0..2w``."""
    w = window_size
    return [math.exp(-((k - w) ** 2) / (2.0 * (w + 0.5) ** 2)) for k in range(2 * w + 1)]


def _axis_taps(position: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps along one axis: clamped indices ``i0 = floor(p)``, ``i1 = i0 + 1`` and their weights,
    zero for a tap outside ``[0, size)``."""
    floor = position.floor()
    frac = position - floor
    i0 = floor.long()
    i1 = i0 + 1
    w0 = (1 - frac) * ((i0 >= 0) & (i0 < size))
    w1 = frac * ((i1 >= 0) & (i1 < size))
    return i0.clamp_(0, size - 1), i1.clamp_(0, size - 1), w0, w1


def backward_warp(source: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``source`` at ``(x + flow_x(x, y), y + flow_y(x, y))`` with bilinear interpolation.

    Pixel centres are at integer coordinates (the convention of ``grid_sample(align_corners=True)``),
    and samples outside the image are zero (``padding_mode='zeros'``); the computation is done in pixel
    units, so a zero flow reproduces ``source`` exactly.

    Args:
        source: (H, W, D) float32 tensor, channels last.
        flow: (H, W, 2) float32 tensor, x then y displacement in pixels.

    Returns:
        ``(warped, coverage)``: the (H, W, D) warped tensor and the (H, W) warp of an image of ones,
        which is 1 where all four bilinear taps lie inside the image and smaller near or beyond its border.
    """
    if source.dim() != 3 or flow.dim() != 3 or flow.shape[2] != 2 or source.shape[:2] != flow.shape[:2]:
        raise ValueError(f"expected source (H, W, D) and flow (H, W, 2), got {tuple(source.shape)} and {tuple(flow.shape)}")
    height, width, depth = source.shape
    x0, x1, wx0, wx1 = _axis_taps(torch.arange(width, dtype=flow.dtype) + flow[..., 0], width)
    y0, y1, wy0, wy1 = _axis_taps(torch.arange(height, dtype=flow.dtype)[:, None] + flow[..., 1], height)
    flat = source.reshape(height * width, depth)
    row0 = y0 * width
    row1 = y1 * width
    warped = flat.index_select(0, (row0 + x0).view(-1)).mul_((wy0 * wx0).view(-1, 1))
    warped.addcmul_(flat.index_select(0, (row0 + x1).view(-1)), (wy0 * wx1).view(-1, 1))
    warped.addcmul_(flat.index_select(0, (row1 + x0).view(-1)), (wy1 * wx0).view(-1, 1))
    warped.addcmul_(flat.index_select(0, (row1 + x1).view(-1)), (wy1 * wx1).view(-1, 1))
    return warped.view(height, width, depth), (wx0 + wx1) * (wy0 + wy1)


@dataclass(frozen=True)
class _Frame:
    """One buffered frame: ``samples`` = (H*W, 3 + C) float32 [image in [-1, 1], parsing], and its gray version."""

    samples: torch.Tensor
    gray: np.ndarray


class ParsingSmoother:
    """Streaming temporal smoother of face-parsing logits (see the module docstring for the algorithm).

    Input convention: every frame is an RGB image as a float torch tensor of shape (3, H, W) with
    values in [-1, 1] (the pipeline's representation: ``(uint8 / 255 - 0.5) / 0.5``), and its parsing
    map is a float tensor of shape (C, H, W) (C = 19 BiSeNet logits) with the same H and W. All frames
    of a sequence must have the same size. Outputs are float32 CPU tensors of shape (C, H, W).

    Usage::

        smoother = ParsingSmoother(window_size=5)
        for frame, parsing in stream:
            for index, smoothed in smoother.push(frame, parsing):
                ...  # frames come out in order, window_size frames behind
        for index, smoothed in smoother.flush():
            ...

    :meth:`flush` ends the sequence and resets the smoother, which can then take a new sequence.

    Attributes:
        window_size: half-width ``w`` of the temporal window (``2w + 1`` frames); 0 disables smoothing.
        sigma_color: standard deviation of the photometric weight, on images in [-1, 1].
        flow_preset: name of the DIS preset (a key of :data:`FLOW_PRESETS`).
        capacity: the most frames ever held, ``2 * window_size + 1``.
    """

    def __init__(self, window_size: int = 5, sigma_color: float = 0.2, flow_preset: str = "medium") -> None:
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 0:
            raise ValueError(f"window_size must be a non-negative int, got {window_size!r}")
        if not sigma_color > 0:
            raise ValueError(f"sigma_color must be positive, got {sigma_color!r}")
        if flow_preset not in FLOW_PRESETS:
            raise ValueError(f"flow_preset must be one of {sorted(FLOW_PRESETS)}, got {flow_preset!r}")
        self.window_size = window_size
        self.sigma_color = float(sigma_color)
        self.flow_preset = flow_preset
        self.capacity = 2 * window_size + 1
        self._temporal = temporal_weights(window_size)
        self._flow = cv2.DISOpticalFlow_create(FLOW_PRESETS[flow_preset])
        self.reset()

    def reset(self) -> None:
        """Drop all buffered frames and start a new sequence."""
        self._buffer: dict[int, _Frame] = {}
        self._num_pushed = 0
        self._next_index = 0
        self._shape: tuple[int, int, int] | None = None

    @property
    def num_buffered(self) -> int:
        """Number of frames currently held (never more than :attr:`capacity`)."""
        return len(self._buffer)

    def push(self, frame: torch.Tensor, parsing: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """Add the next frame and its parsing map; return the ``(index, smoothed)`` pairs now ready, in order.

        Frame ``i`` is returned by the push of frame ``i + window_size`` (or by :meth:`flush`).

        Raises:
            TypeError: if an argument is not a floating-point torch tensor.
            ValueError: on wrong dimensions, a frame that is not 3-channel, height/width differing between
                frame and parsing or from earlier frames of the sequence, or frames too small for the flow.
        """
        self._buffer[self._num_pushed] = self._prepare(frame, parsing)
        self._num_pushed += 1
        ready = []
        while self._next_index + self.window_size < self._num_pushed:
            ready.append((self._next_index, self._smooth(self._next_index)))
            self._next_index += 1
        for index in [i for i in self._buffer if i < self._next_index - self.window_size]:
            del self._buffer[index]
        return ready

    def flush(self) -> list[tuple[int, torch.Tensor]]:
        """End the sequence: return the remaining ``(index, smoothed)`` pairs in order, then :meth:`reset`."""
        ready = [(index, self._smooth(index)) for index in range(self._next_index, self._num_pushed)]
        self.reset()
        return ready

    def _prepare(self, frame: torch.Tensor, parsing: torch.Tensor) -> _Frame:
        """Validate one input pair and convert it to the buffered representation."""
        for name, tensor in (("frame", frame), ("parsing", parsing)):
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                raise TypeError(f"{name} must be a floating-point torch tensor, got {type(tensor).__name__}"
                                + (f" of dtype {tensor.dtype}" if isinstance(tensor, torch.Tensor) else ""))
            if tensor.dim() != 3:
                raise ValueError(f"{name} must have 3 dimensions (channels, H, W), got shape {tuple(tensor.shape)}")
        if frame.shape[0] != 3:
            raise ValueError(f"frame must be RGB (3, H, W), got shape {tuple(frame.shape)}")
        if frame.shape[1:] != parsing.shape[1:]:
            raise ValueError(f"frame {tuple(frame.shape)} and parsing {tuple(parsing.shape)} differ in height/width")
        shape = tuple(parsing.shape)
        if self._shape is None:
            # DIS needs a pyramid level at least one patch wide; twice the patch size guarantees it.
            min_side = 2 * self._flow.getPatchSize()
            if self.window_size > 0 and min(shape[1:]) < min_side:
                raise InputError(f"frames of {shape[1]}x{shape[2]} are too small for DIS flow (need at least {min_side} px)")
            self._shape = shape
        elif shape != self._shape:
            raise ValueError(f"parsing shape {shape} differs from the sequence's {self._shape}")
        image = frame.detach().to("cpu", torch.float32)
        logits = parsing.detach().to("cpu", torch.float32)
        samples = torch.cat((image, logits)).permute(1, 2, 0).reshape(-1, 3 + shape[0]).contiguous()
        rgb = ((image + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        return _Frame(samples=samples, gray=cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))

    def _source(self, position: int, count: int) -> int:
        """Frame index at ``position`` of the padded sequence of the ``count`` frames known so far."""
        w = self.window_size
        if position < w:
            return min(position, count - 1)
        if position < count + w:
            return position - w
        return max(position - 2 * w, 0)

    def _smooth(self, index: int) -> torch.Tensor:
        """Fuse the window around frame ``index`` (all its frames must be buffered)."""
        assert self._shape is not None
        channels, height, width = self._shape
        slot_weights: dict[int, float] = {}
        for k, weight in enumerate(self._temporal):
            source = self._source(index + k, self._num_pushed)
            slot_weights[source] = slot_weights.get(source, 0.0) + weight
        centre = self._buffer[index]
        centre_weight = slot_weights.pop(index)
        image = centre.samples[:, :3]
        numerator = centre.samples[:, 3:] * centre_weight
        denominator = torch.full((height * width,), centre_weight)
        for source, weight in slot_weights.items():
            neighbour = self._buffer[source]
            flow = torch.from_numpy(self._flow.calc(centre.gray, neighbour.gray, None))
            warped, coverage = backward_warp(neighbour.samples.reshape(height, width, -1), flow)
            warped = warped.reshape(height * width, -1)
            distance = (warped[:, :3] - image).square().mean(dim=1)
            spatial = torch.exp(distance / (-2.0 * self.sigma_color**2))
            spatial *= (coverage.reshape(-1) >= _VALID_COVERAGE) * weight
            numerator.addcmul_(warped[:, 3:], spatial[:, None])
            denominator += spatial
        return (numerator / denominator[:, None]).T.reshape(channels, height, width).contiguous()


def smooth_parsing_sequence(
    frames: Sequence[torch.Tensor] | torch.Tensor,
    parsings: Sequence[torch.Tensor] | torch.Tensor,
    window_size: int = 5,
    sigma_color: float = 0.2,
    flow_preset: str = "medium",
) -> torch.Tensor:
    """Smooth a whole in-memory sequence with a :class:`ParsingSmoother`.

    Args:
        frames: N RGB frames, each (3, H, W) in [-1, 1] (a list or an (N, 3, H, W) tensor).
        parsings: N parsing maps, each (C, H, W) (a list or an (N, C, H, W) tensor).
        window_size, sigma_color, flow_preset: as for :class:`ParsingSmoother`.

    Returns:
        The smoothed maps, an (N, C, H, W) float32 tensor.
    """
    if len(frames) != len(parsings):
        raise ValueError(f"got {len(frames)} frames but {len(parsings)} parsing maps")
    if len(frames) == 0:
        raise ValueError("the sequence is empty")
    smoother = ParsingSmoother(window_size, sigma_color, flow_preset)
    smoothed = []
    for frame, parsing in zip(frames, parsings):
        smoothed.extend(map_ for _, map_ in smoother.push(frame, parsing))
    smoothed.extend(map_ for _, map_ in smoother.flush())
    return torch.stack(smoothed)
