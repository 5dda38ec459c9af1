"""Reading a photo from a file for the command line, refusing damaged files in our own words.

:func:`read_image_file` decodes with OpenCV, as the original script did (EXIF orientation applied, CMYK
and 16-bit files converted), after checking with Pillow that the file decodes to its end: libjpeg and
libpng decode a file cut short without failing (OpenCV then returns a picture whose missing part is
grey, with only a warning of the library on stderr), so a truncated file is refused with a clear
:class:`~common.errors.InputError` instead. Formats Pillow does not know are left to OpenCV.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import InputError

__all__ = ["check_complete", "read_image_file", "read_rgb"]


def check_complete(path: str | os.PathLike) -> None:
    """Raise :class:`InputError` if the image file ``path`` is truncated or damaged (as far as Pillow can tell)."""
    try:
        with Image.open(path) as image:
            image.load()
    except UnidentifiedImageError:
        return  # not a format Pillow reads (OpenCV may); nothing to tell
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: the image is too large to read ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        detail = str(e).strip() or type(e).__name__
        if "truncated" in detail:
            raise InputError(f"{path}: the image file is truncated (damaged or not completely copied): {detail}") from None
        raise InputError(f"{path}: the image file is damaged and cannot be decoded ({detail})") from None


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """The RGB ``uint8`` picture of an image file; :class:`InputError` for a folder, a damaged or a non-image file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"{path} is a folder, not an image or a video file")
    check_complete(path)
    bgr = cv2.imread(path)
    if bgr is None:
        raise InputError(f"cannot read {path} as an image (use --video for videos)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# TEMPORARY minimal read_rgb (branch demo21, issue 21) until the full reader of the image-reading branch lands:
# on merge, keep that branch's read_rgb and drop this one.
def read_rgb(source: str | os.PathLike | Image.Image | np.ndarray) -> np.ndarray:
    """An RGB ``uint8`` ``HxWx3`` C-contiguous array of an image file (:func:`read_image_file`), a PIL image (EXIF
    orientation applied) or an ``HxW`` / ``HxWx3`` / ``HxWx4`` ``uint8`` array (alpha dropped)."""
    if isinstance(source, (str, os.PathLike)):
        return read_image_file(source)
    if isinstance(source, Image.Image):
        return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(source).convert("RGB")))
    array = np.asarray(source)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(f"expected an HxW, HxWx3 or HxWx4 uint8 image, got {array.dtype} of shape {array.shape}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])
