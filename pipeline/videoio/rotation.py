"""Frame orientation: phones store portrait videos as landscape frames plus a rotation to show them with."""
from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import Interpolation

__all__ = ["rotation_steps", "upright_rgb"]


def rotation_steps(frame: av.VideoFrame) -> int:
    """Quarter turns counter-clockwise that show ``frame`` upright (0 to 3)."""
    return round(frame.rotation / 90) % 4


def upright_rgb(frame: av.VideoFrame, interpolation: Interpolation | None) -> np.ndarray:
    """A decoded frame as a contiguous upright ``(H, W, 3)`` RGB ``uint8`` array.

    The rotation the file asks for is applied, as players show the frame; a mirroring in the display
    matrix is not applied.
    """
    rgb = frame.to_ndarray(format="rgb24", interpolation=interpolation)
    steps = rotation_steps(frame)
    if steps:
        rgb = np.rot90(rgb, steps)
    return np.ascontiguousarray(rgb)
