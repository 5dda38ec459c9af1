"""What a stylisation returns, and the names of the files it writes.

:func:`output_paths` is the one naming rule of the outputs: ``<name>_input<ext>`` (the rescaled and
cropped input) and ``<name>_vtoonify_<d|t><ext>`` (the result, ``d`` for VToonify-D, ``t`` for
VToonify-T) in the output folder.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.atomic import atomic_outputs
from pipeline.faces import CropParams

__all__ = ["ImageResult", "VideoResult", "atomic_imwrite", "atomic_imwrite_all", "output_paths"]


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
    atomic_imwrite_all([(path, rgb)])


def atomic_imwrite_all(items: Sequence[tuple[str | os.PathLike, np.ndarray]]) -> None:
    """Write RGB images that belong together (an input copy and its result) with OpenCV: all of them or none
    (:func:`common.atomic.atomic_outputs`), a full disk reported as such, naming the output."""
    encoded = []
    for path, rgb in items:
        ok, data = cv2.imencode(Path(path).suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"could not encode {path} (extension {Path(path).suffix!r})")
        encoded.append(data)
    with atomic_outputs([path for path, _ in items]) as tmps:
        for tmp, data in zip(tmps, encoded):
            write_bytes(tmp, data)


def write_bytes(path: Path, data: np.ndarray) -> None:
    """``data`` into the file ``path`` (an ``OSError`` without a file name, e.g. a full disk at close, gets it)."""
    try:
        with open(path, "wb") as f:
            f.write(data.tobytes())
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
