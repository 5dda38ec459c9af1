"""The one reader of pictures: every picture the project reads (photos, style images, training sets, the demo's
uploads, figures) and every array given to the Python API becomes an RGB ``uint8`` array the same way.

:func:`read_rgb` takes a file path, a PIL image or a numpy array; :func:`check_rgb_array` is its array half,
for the Python API. The rules, the same for every caller:

* **Decoding.** Pillow opens every file first: it names the format, checks the size limit, decodes the file
  to its end (libjpeg and libpng decode a file cut short without failing, so a truncated file is refused
  here) and gives the EXIF orientation. The pixels of PNG files and of grey or RGB JPEG files are then
  decoded by OpenCV with ``IMREAD_UNCHANGED``, as the original's ``cv2.imread`` read ``--content`` photos:
  JPEG decoders differ between libjpeg builds, and this keeps the pixels of an ordinary photo what they
  were (and keeps 16-bit colour PNGs at 16 bits, which Pillow cuts to their high byte). Every other format
  keeps Pillow's pixels; files Pillow does not know are left to OpenCV.
* **EXIF orientation** is applied (all eight values), to files and to PIL images.
* **Bit depth.** 16-bit samples (grey ``I;16`` and ``I`` modes included) are scaled, ``round(v / 257)``,
  never clipped; 32-bit integer pictures are read as 16-bit when their values fit, else refused.
* **Grey** pictures are repeated into the three channels.
* **Transparency** (RGBA, grey + alpha, palette with a transparent colour) is composited on **white**: the
  picture as a page shows it, never the colours hidden under transparent pixels (often black, or the
  background a cut-out removed). A fully opaque alpha channel changes nothing.
* **CMYK** and the other colour modes are converted by Pillow.
* **HDR / floating-point** pictures (``.hdr``, ``.exr``, float TIFF) are refused in words: tone-mapping is a
  choice for an image editor, not a guess for this program.
* **Size limit**: a picture with more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb,
  or a picture to downscale first) is a one-line :class:`~common.errors.InputError` naming the size and the
  limit; Pillow's own warning is never printed.
* A folder, an empty file, a file that is not a picture, a truncated or damaged one: one-line errors.

Arrays (:func:`check_rgb_array`): ``uint8`` ``HxWx3`` is returned as it is (no copy); ``HxW`` / ``HxWx1``
grey, ``HxWx2`` grey + alpha, ``HxWx4`` RGBA and ``uint16`` are converted by the rules above; anything else
(float, other integer types, other shapes, not an array) is an :class:`~common.errors.InputError` naming what
was given.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import warnings
from typing import Any, Iterator

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from common.errors import InputError, MissingFileError

__all__ = ["ImageTypeError", "NotAnImageError", "check_complete", "check_rgb_array", "read_image_file", "read_rgb"]


class ImageTypeError(InputError, TypeError):
    """A picture given to the Python API is of a type or dtype this project does not read."""


class NotAnImageError(InputError):
    """A file is not a picture that Pillow or OpenCV can read."""


#: Pillow modes read as they are (with their numpy dtype); others are converted to RGB(A) by Pillow.
_PIL_AS_IS = {"L", "RGB", "RGBA", "I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
#: Formats whose pixels OpenCV decodes (see the module docstring), with the Pillow modes it decodes there.
_OPENCV_DECODES = {"PNG": None, "JPEG": {"L", "RGB"}}  # None: every mode
_EXIF_ORIENTATION = 0x0112
# Pillow's decompression-bomb warning goes through the process-wide warning filters; the lock keeps two
# threads from restoring each other's filters while it is silenced (this module then checks the size itself).
_PILLOW_WARNINGS = threading.Lock()


# ---------------------------------------------------------------------------------------------- entry points
def read_rgb(source: Any, name: str | None = None) -> np.ndarray:
    """``source`` (a file path, a PIL image or a numpy array) as a C-contiguous RGB ``uint8`` ``(H, W, 3)`` array.

    ``name`` labels the picture in messages (default: the path, or ``"image"``). Raises
    :class:`~common.errors.InputError` (one line) for what cannot be read; see the module docstring.
    """
    if isinstance(source, np.ndarray):
        return np.ascontiguousarray(check_rgb_array(source, name or "image"))
    if isinstance(source, Image.Image):
        label = name or "image"
        _check_size(source.size, label)
        with _pillow_guard(label):
            source.load()
        return _finish(_pil_array(source, label), _orientation(source), label)
    if isinstance(source, (str, os.PathLike)):
        return _read_file(os.fspath(source), name)
    raise ImageTypeError(f"{name or 'image'}: expected a file path, a PIL image or a numpy array, "
                         f"got {type(source).__module__}.{type(source).__qualname__}")


def check_rgb_array(array: Any, name: str = "image") -> np.ndarray:
    """The RGB ``uint8`` ``(H, W, 3)`` picture of an array given to the Python API.

    ``uint8`` ``HxWx3`` comes back unchanged (no copy, whatever its strides); grey, grey + alpha, RGBA and
    ``uint16`` arrays are converted (alpha composited on white, 16 bits scaled). Anything else raises
    :class:`ImageTypeError` (not an array, a dtype other than ``uint8``/``uint16``) or
    :class:`~common.errors.InputError` (a shape that is not a picture), naming what was given.
    """
    if not isinstance(array, np.ndarray):
        raise ImageTypeError(f"{name}: expected a numpy array (H, W, 3) of uint8 RGB values, got "
                             f"{type(array).__module__}.{type(array).__qualname__} (read files and PIL images "
                             "with common.images.read_rgb)")
    given = f"a {array.dtype} array of shape {array.shape}"
    if array.dtype.kind != "u" or array.dtype.itemsize > 2:
        hint = " (floating-point values: scale to 0..255 and convert, e.g. (x * 255).round().astype(np.uint8))" \
            if array.dtype.kind == "f" else ""
        raise ImageTypeError(f"{name}: expected RGB values as uint8 (or uint16), got {given}{hint}")
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype.itemsize == 1 and 0 not in array.shape:
        return array
    return _to_rgb8(array, name, given)


def check_complete(path: str | os.PathLike) -> None:
    """Raise :class:`InputError` if the image file ``path`` is truncated, damaged or over the size limit (as far
    as Pillow can tell); a format Pillow does not know passes."""
    with open(path, "rb") as f:
        image = _open_checked(f.read(), os.fspath(path))
    if image is not None:
        image.close()


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """The RGB ``uint8`` picture of ``--content``: :func:`read_rgb`, with the messages of the command line."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"{path} is a folder, not an image or a video file")
    try:
        return read_rgb(path)
    except NotAnImageError as e:
        raise NotAnImageError(f"{e} (use --video for videos)") from None


# ------------------------------------------------------------------------------------------------- files
def _read_file(path: str, name: str | None) -> np.ndarray:
    label = name or path
    if os.path.isdir(path):
        raise InputError(f"{label} is a folder, not an image file")
    if not os.path.exists(path):
        raise MissingFileError(f"image not found: {label}")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise NotAnImageError(f"{label}: not an image (cannot read an empty file)")
    image = _open_checked(data, label)
    if image is None:  # a format Pillow does not know (e.g. Radiance .hdr): OpenCV's decoders
        pixels = _opencv_decode(data)
        if pixels is None:
            raise NotAnImageError(f"{label}: not an image (cannot read it: neither Pillow nor OpenCV knows its format)")
        _check_size(pixels.shape[1::-1], label)
        return _finish(pixels, 1, label)
    with image:
        modes = _OPENCV_DECODES.get(image.format or "", set())
        pixels = _opencv_decode(data) if modes is None or image.mode in modes else None
        if pixels is None or pixels.shape[:2] != image.size[::-1]:
            pixels = _pil_array(image, label)
        return _finish(pixels, _orientation(image), label)


def _open_checked(data: bytes, label: str) -> Image.Image | None:
    """The decoded Pillow image of the file bytes ``data`` (``None``: not a format Pillow knows); one-line
    :class:`InputError` for a picture over the size limit, a truncated or a damaged file."""
    try:
        with _pillow_guard(label):
            image = Image.open(io.BytesIO(data))
            try:
                _check_size(image.size, label)
                image.load()
            except BaseException:
                image.close()
                raise
    except UnidentifiedImageError:
        return None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, InputError):
            raise
        detail = str(e).strip() or type(e).__name__
        if "truncated" in detail:
            raise InputError(f"{label}: the image file is truncated (damaged or not completely copied): {detail}") from None
        raise InputError(f"{label}: the image file is damaged and cannot be decoded ({detail})") from None
    return image


@contextlib.contextmanager
def _pillow_guard(label: str) -> Iterator[None]:
    """Around Pillow's open/load: its decompression-bomb warning silenced (the size is checked here), its
    decompression-bomb error turned into the one-line :class:`InputError`."""
    with _PILLOW_WARNINGS, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except Image.DecompressionBombError as e:
            found = re.search(r"\((\d+) pixels\)", str(e))
            raise _too_large(label, int(found.group(1)) if found else None) from None


def _check_size(size: tuple[int, int], label: str) -> None:
    """:class:`InputError` if ``size`` (width, height) has more pixels than Pillow's ``MAX_IMAGE_PIXELS``."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and size[0] * size[1] > limit:
        raise _too_large(label, size[0] * size[1], f"{size[0]}x{size[1]} = ")


def _too_large(label: str, pixels: int | None, dims: str = "") -> InputError:
    have = f"{dims}{pixels:,} pixels" if pixels is not None else "too many pixels"
    return InputError(f"{label}: the picture is too large to read ({have}; the limit is {Image.MAX_IMAGE_PIXELS:,} "
                      "pixels): a decompression bomb, or a picture to downscale first")


def _opencv_decode(data: bytes) -> np.ndarray | None:
    """OpenCV's pixels of the file bytes ``data`` as they are (depth, alpha, no EXIF rotation), RGB(A) order."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.ndim == 2 or pixels.shape[2] not in (3, 4):
        return pixels
    return pixels[:, :, [2, 1, 0, 3][: pixels.shape[2]]]  # BGR(A) -> RGB(A)


def _pil_array(image: Image.Image, label: str) -> np.ndarray:
    """Pillow's pixels as a numpy array: grey, RGB or RGBA (8 or 16 bits), or float (refused later)."""
    mode = image.mode
    if mode not in _PIL_AS_IS:
        transparent = "A" in mode or "a" in mode or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    pixels = np.asarray(image)
    if pixels.dtype.kind == "i" or pixels.dtype.byteorder not in ("=", "|"):  # 'I' (int32), big-endian 'I;16B'
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise InputError(f"{label}: a 32-bit integer picture with values outside 0..65535; convert it to an "
                             "8-bit or 16-bit PNG first")
        pixels = pixels.astype(np.uint16)
    return pixels


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8) of a Pillow image; 1 when it has none or a wrong one."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 -- a malformed EXIF block is no reason to refuse the picture
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` turned upright for EXIF ``orientation`` (as ``PIL.ImageOps.exif_transpose``)."""
    if orientation in (5, 6, 7, 8):  # the stored rows are the picture's columns
        pixels = pixels.swapaxes(0, 1)
    if orientation in (2, 3, 6, 7):
        pixels = pixels[:, ::-1]
    if orientation in (3, 4, 7, 8):
        pixels = pixels[::-1]
    return pixels


def _finish(pixels: np.ndarray, orientation: int, label: str) -> np.ndarray:
    if pixels.dtype.kind == "f":
        raise InputError(f"{label}: a floating-point (high-dynamic-range) picture; this program reads 8- and "
                         "16-bit pictures: tone-map it to an 8-bit PNG or JPEG in an image editor first")
    if pixels.dtype.kind != "u" or pixels.dtype.itemsize > 2:
        raise InputError(f"{label}: {pixels.dtype} samples, not an 8- or 16-bit picture")
    rgb = _to_rgb8(_orient(pixels, orientation), label, f"a picture of shape {pixels.shape}")
    return np.ascontiguousarray(rgb)


# ------------------------------------------------------------------------------------------------ pixels
def _to_rgb8(pixels: np.ndarray, name: str, given: str) -> np.ndarray:
    """uint8/uint16 grey, grey + alpha, RGB or RGBA -> RGB uint8 (16 bits scaled, alpha composited on white)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or 0 in pixels.shape:
        raise InputError(f"{name}: expected a picture of shape (H, W, 3) (or (H, W) grey, (H, W, 4) RGBA), got {given}")
    if pixels.dtype.itemsize == 2:
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v / 257): 65535 -> 255
    colour, alpha = (pixels, None) if pixels.shape[2] in (1, 3) else (pixels[:, :, :-1], pixels[:, :, -1:])
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    if alpha is None or alpha.min() == 255:
        return colour
    out = np.empty(colour.shape, np.uint8)
    for top in range(0, colour.shape[0], 1024):  # in bands: bounded temporary memory
        c, a = colour[top:top + 1024].astype(np.uint32), alpha[top:top + 1024].astype(np.uint32)
        out[top:top + 1024] = (c * a + 255 * (255 - a) + 127) // 255  # on white, rounded
    return out
