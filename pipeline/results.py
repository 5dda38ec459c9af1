"""What a stylisation returns, and the names of the files it writes.

:func:`output_paths` is the one naming rule of the outputs: ``<name>_input<ext>`` (the rescaled and
cropped input) and ``<name>_vtoonify_<d|t><ext>`` (the result, ``d`` for VToonify-D, ``t`` for
VToonify-T) in the output folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.atomic import atomic_output
from pipeline.faces import CropParams

__all__ = ["ImageResult", "VideoResult", "atomic_imwrite", "output_paths"]


def output_paths(output_dir: str | Path, name: str, backbone: str, ext: str) -> tuple[Path, Path]:
    """``(input copy, result)`` paths for input name ``name`` and ``backbone`` (``ext`` with its dot)."""
    suffix = "d" if backbone == "dualstylegan" else "t"
    output_dir = Path(output_dir)
    return output_dir / f"{name}_input{ext}", output_dir / f"{name}_vtoonify_{suffix}{ext}"


@dataclass
class ImageResult:
    input: np.ndarray  # the (rescaled, cropped) RGB input the model was fed, H x W
    output: np.ndarray  # RGB stylised image, 4H x 4W; with paste_back the input's full frame (x output_scale)
    crop: CropParams | None


@dataclass
class VideoResult:
    input_path: Path
    output_path: Path
    frames: int
    fps: float
    first_face_frame: int
    crop: CropParams | None


def atomic_imwrite(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an RGB image with OpenCV (format from the extension), whole or not at all (:func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
