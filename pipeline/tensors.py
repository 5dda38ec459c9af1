"""Frames <-> tensors, and the frame-size rules of the pipeline.

The model reads RGB in ``[-1, 1]`` (the original's ``ToTensor`` + ``Normalize(0.5, 0.5)``) at a size that is a
multiple of 8 (:func:`pad_to_multiple` replicates the border; results are cropped back), and writes ``[-1, 1]``,
which :func:`tensor_to_frames` truncates to uint8 as the original's ``astype(uint8)`` does.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

__all__ = ["fit_side", "fitted_size", "frames_to_tensor", "pad_to_multiple", "tensor_to_frames"]


def frames_to_tensor(frames: Sequence[np.ndarray], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """RGB uint8 HxWx3 frames -> (B, 3, H, W) in [-1, 1] (the original's ToTensor + Normalize(0.5, 0.5))."""
    x = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float().div(255)
    return x.sub(0.5).div(0.5).to(dtype)


def tensor_to_frames(y: torch.Tensor, clamp: bool = True) -> list[np.ndarray]:
    """(B, 3, H, W) in [-1, 1] -> RGB uint8 frames, truncating like the original (``astype(uint8)``).
    ``clamp=False`` for outputs that are clamped already (the pipeline's model step clamps)."""
    y = y.float()
    if clamp:
        y = y.clamp(-1, 1)
    y = ((y + 1.0) * 127.5).to(torch.uint8)
    return list(y.permute(0, 2, 3, 1).cpu().numpy())


def pad_to_multiple(frame: np.ndarray, m: int = 8) -> np.ndarray:
    """``frame`` with its bottom and right borders replicated up to multiples of ``m`` (the same array if it is)."""
    h, w = frame.shape[:2]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        frame = cv2.copyMakeBorder(frame, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    return frame


def fitted_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``(h, w)`` shrunk so that the longer side is at most ``max_side`` (unchanged when it already is)."""
    h, w = size
    if max_side is None or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def fit_side(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """``frame`` area-resized to :func:`fitted_size` (the same array when it already fits)."""
    h, w = fitted_size(frame.shape[:2], max_side)
    if (h, w) == frame.shape[:2]:
        return frame
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
