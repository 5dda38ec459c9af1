"""Helpers that the original inference notebook imports from ``util``.

Image tensors are RGB, channels first, with values in ``[-1, 1]`` (the VToonify convention):
``x = (rgb_uint8 / 255 - 0.5) / 0.5``. Converting back uses ``(x + 1) * 127.5`` truncated to ``uint8``
(no rounding), as the original does; values are clamped to ``[-1, 1]`` first so that out-of-range
values saturate instead of wrapping around (the original wrapped; in-range values are unaffected).

No torchvision (it cannot be installed next to CPU torch 2.13) and no dlib at import time: the face
helpers import :mod:`pipeline.faces` when called.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from common.images import read_rgb
from model.encoder.psp import load_psp_standalone

__all__ = [
    "get_video_crop_parameter",
    "load_image",
    "load_psp_standalone",
    "save_image",
    "tensor2cv2",
    "to_tensor_normalized",
    "visualize",
]


def to_tensor_normalized(rgb: np.ndarray) -> torch.Tensor:
    """RGB ``uint8`` ``(H, W, 3)`` array -> ``(1, 3, H, W)`` float32 tensor in ``[-1, 1]``.

    Same as torchvision's ``ToTensor()`` followed by ``Normalize([0.5]*3, [0.5]*3)``: ``(x/255 - 0.5)/0.5``.
    """
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {arr.dtype} {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).to(torch.float32).div_(255.0)
    return x.sub_(0.5).div_(0.5).unsqueeze(0)


def _to_rgb_uint8(img: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` (or ``(1, 3, H, W)``) tensor in ``[-1, 1]`` -> ``(H, W, 3)`` RGB uint8 (truncating)."""
    x = img.detach()
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(img.shape)}")
    arr = x.to("cpu", torch.float32).clamp(-1.0, 1.0).numpy().transpose(1, 2, 0)
    return np.ascontiguousarray(((arr + 1.0) * 127.5).astype(np.uint8))


def tensor2cv2(img: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` RGB tensor in ``[-1, 1]`` -> BGR ``uint8`` ``(H, W, 3)`` array for OpenCV."""
    return cv2.cvtColor(_to_rgb_uint8(img), cv2.COLOR_RGB2BGR)


def save_image(img: torch.Tensor, filename: str | os.PathLike) -> None:
    """Write a ``(3, H, W)`` RGB tensor in ``[-1, 1]`` to an image file with OpenCV."""
    if not cv2.imwrite(os.fspath(filename), tensor2cv2(img)):
        raise OSError(f"could not write image {filename}")


def load_image(filename: str | os.PathLike) -> torch.Tensor:
    """Read an image file (:func:`common.images.read_rgb`) as a ``(1, 3, H, W)`` RGB float tensor in ``[-1, 1]``."""
    return to_tensor_normalized(read_rgb(filename))


def visualize(img: torch.Tensor, ax: Any = None, dpi: float | None = None) -> Any:
    """Show a ``(3, H, W)`` RGB tensor in ``[-1, 1]`` with matplotlib (imported lazily).

    ``ax`` is a matplotlib Axes to draw into; when ``None`` a new 10x10 inch figure is created and shown.
    For compatibility with the original ``visualize(img, dpi)``, a number given as ``ax`` is taken as
    the figure's dpi. Returns the Axes.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("visualize() needs matplotlib: `pip install matplotlib`") from exc
    if isinstance(ax, (int, float)):
        ax, dpi = None, ax
    show = ax is None
    if show:
        fig = plt.figure(figsize=(10, 10), dpi=dpi)
        ax = fig.add_subplot(1, 1, 1)
    ax.imshow(_to_rgb_uint8(img))
    ax.axis("off")
    if show:
        plt.show()
    return ax


def get_video_crop_parameter(
    filepath: Any,
    predictor: Any = None,
    padding: Sequence[int] = (200, 200, 200, 200),
) -> tuple[int, int, int, int, int, int, float] | None:
    """``(h, w, top, bottom, left, right, scale)`` of the rescale/crop for a frame, or ``None`` (no face).

    ``filepath`` is an RGB ``uint8`` array or an image path; ``predictor`` a ``dlib.shape_predictor``, a
    :class:`pipeline.faces.FaceDetector` or ``None``. Frames are blurred before resizing once when
    ``scale <= 0.75`` and twice when ``scale <= 0.375`` (see :func:`pipeline.faces.apply_crop`).
    The largest face is used when several are found (the original used the last detection).
    """
    from pipeline.faces import get_video_crop_parameter as _get

    return _get(filepath, predictor, padding)
