"""Face front-end of the VToonify inference pipeline.

This module finds faces with dlib, computes the rescale/crop that normalises a frame to the training
geometry of VToonify (eyes 64 px apart, a fixed padding around them), applies it, and produces the
FFHQ-aligned 256x256 face fed to the pSp style encoder.

Conventions
-----------
* Images are RGB ``uint8`` numpy arrays in HWC layout (a grey ``HxW`` array or an ``HxWx4`` RGBA array
  is converted to RGB by :func:`common.images.read_rgb`).  Every function that takes an image also accepts
  a file path.
* Landmarks are dlib's 68-point iBUG layout as a ``float64`` array of shape ``(68, 2)`` holding
  ``(x, y)`` pixel coordinates.
* dlib is imported lazily, so importing this module never needs dlib; the detector and the landmark
  model are loaded on first use and shared by every :class:`FaceDetector` of the process (a landmark
  model once per file; loading the two takes about a second, which every pipeline, figure and demo model
  used to pay again).

Face choice
-----------
When dlib finds several faces the original implementation silently keeps the **last** detection. dlib
orders its detections by decreasing confidence, so "last" is the *least* confident box; on the
scikit-image astronaut photo that is a false positive on the badge of the suit, not the face. This module
therefore picks the **largest** face by default (box area; ties broken by the higher detection score).
Every function that chooses a face has a ``which`` argument; ``which='last'`` reproduces the original.

Landmark model
--------------
``shape_predictor_68_face_landmarks.dat`` (the model the original uses) is looked up, in this order, at
the explicit path given to :func:`landmark_model_path` / :class:`FaceDetector`, at the path in the
environment variable ``VTOONIFY_LANDMARKS``, in the ``models/`` folder of the ``face-recognition-models``
pip package (located without importing it: its ``__init__`` needs ``pkg_resources``, which recent
setuptools no longer ship), and finally in ``checkpoint/`` of this repository (where the original
downloaded it). The model was trained on iBUG 300-W, whose licence excludes commercial use.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np
from PIL import Image

from pipeline.detection import (
    LANDMARKS_ENV,
    LANDMARKS_FILENAME,
    Face,
    FaceDetector,
    ImageInput,
    Which,
    default_detector,
    file_version,
    landmark_model_path,
    landmarks,
    load_rgb,
    select_face,
)

__all__ = [
    "landmarks_in_crop",
    "LANDMARKS_ENV",
    "LANDMARKS_FILENAME",
    "CropParams",
    "Face",
    "FaceDetector",
    "file_version",
    "align_face",
    "apply_crop",
    "crop_parameters",
    "default_detector",
    "get_video_crop_parameter",
    "landmark_model_path",
    "landmarks",
    "load_rgb",
    "select_face",
]

#: Default ``--padding`` of the original CLI: pixels kept left, right, above and below the eye centre
#: after rescaling the frame to a 64 px eye distance.
DEFAULT_PADDING = (200, 200, 200, 200)

# Separable low-pass filter applied before down-scaling: [1, 3, 3, 1] / 8 as a column.
_PREBLUR_KERNEL = np.array([[1.0], [3.0], [3.0], [1.0]]) / 8.0


# --------------------------------------------------------------------------------------------------
# Rescale and crop
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CropParams:
    """How a frame is normalised: blur ``blur_count`` times, resize to ``w x h``, crop the box.

    ``as_tuple()`` gives the original ``get_video_crop_parameter`` result
    ``(h, w, top, bottom, left, right, scale)``.
    """

    h: int
    w: int
    top: int
    bottom: int
    left: int
    right: int
    scale: float
    blur_count: int

    @property
    def crop_size(self) -> tuple[int, int]:
        """``(width, height)`` of the cropped output (both multiples of 8)."""
        return self.right - self.left, self.bottom - self.top

    def as_tuple(self) -> tuple[int, int, int, int, int, int, float]:
        return self.h, self.w, self.top, self.bottom, self.left, self.right, self.scale


def _blur_count(scale: float) -> int:
    """Number of [1,3,3,1]/8 pre-blur passes: 1 when shrinking to <= 3/4, 2 when <= 3/8."""
    return int(scale <= 0.75) + int(scale <= 0.375)


def crop_parameters(
    frame: np.ndarray | Sequence[int],
    lm: np.ndarray,
    padding: Sequence[int] = DEFAULT_PADDING,
) -> CropParams:
    """Rescale/crop parameters that bring the eye distance to 64 px.

    Args:
        frame: the frame (only its height and width are used) or its shape ``(H, W, ...)``.
        lm: ``(68, 2)`` landmarks of the face in ``frame``.
        padding: pixels kept around the eye centre after rescaling: ``(left, right, top, bottom)``.

    The frame is resized to ``w = round(W*scale)`` x ``h = round(H*scale)`` (Python rounding, halves to
    even) with ``scale = 64 / horizontal eye distance``; the crop box around the rescaled eye centre is
    clamped to the image and each edge is floored to a multiple of 8.

    Raises:
        ValueError: degenerate landmarks (non-positive horizontal eye distance) or an empty crop.
    """
    shape = frame.shape if isinstance(frame, np.ndarray) else tuple(frame)
    height, width = int(shape[0]), int(shape[1])
    lm = np.asarray(lm, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got shape {lm.shape}")
    if len(padding) != 4:
        raise ValueError(f"padding must be (left, right, top, bottom), got {padding!r}")
    pad_l, pad_r, pad_t, pad_b = padding

    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_distance = float(eye_right[0] - eye_left[0])
    if not eye_distance > 0:
        raise ValueError(f"degenerate landmarks: horizontal eye distance {eye_distance} must be positive")
    scale = 64.0 / eye_distance
    cx, cy = ((eye_left + eye_right) / 2.0 * scale).tolist()
    h, w = round(height * scale), round(width * scale)

    left = max(round(cx - pad_l), 0) // 8 * 8
    right = min(round(cx + pad_r), w) // 8 * 8
    top = max(round(cy - pad_t), 0) // 8 * 8
    bottom = min(round(cy + pad_b), h) // 8 * 8
    if right <= left or bottom <= top:
        raise ValueError(
            f"empty crop: rows {top}:{bottom}, columns {left}:{right} of the {w}x{h} rescaled frame "
            f"(scale {scale:.4g}, padding {tuple(padding)})"
        )
    return CropParams(h=h, w=w, top=top, bottom=bottom, left=left, right=right, scale=scale,
                      blur_count=_blur_count(scale))


def apply_crop(frame: np.ndarray, params: CropParams) -> np.ndarray:
    """Blur ``params.blur_count`` times, resize to ``(params.w, params.h)`` and crop the box.

    The blur is ``cv2.sepFilter2D(frame, -1, k, k)`` with ``k = [1, 3, 3, 1] / 8`` and OpenCV's default
    border (reflect-101), applied to the frame in its own dtype: with ``ddepth=-1`` a ``uint8`` frame
    stays ``uint8`` after each pass (rounded), exactly as the original. The resize is
    ``cv2.resize`` with its default bilinear interpolation. Returns a new C-contiguous array.
    """
    out = np.ascontiguousarray(frame)
    for _ in range(params.blur_count):
        out = cv2.sepFilter2D(out, -1, _PREBLUR_KERNEL, _PREBLUR_KERNEL)
    out = cv2.resize(out, (params.w, params.h))
    return np.ascontiguousarray(out[params.top:params.bottom, params.left:params.right])


def landmarks_in_crop(lm: np.ndarray, frame: np.ndarray, params: CropParams | None) -> np.ndarray:
    """Map landmarks of ``frame`` into the pixel coordinates of its rescaled crop (``params``; None: unchanged)."""
    if params is None:
        return lm
    scale = np.array([params.w / frame.shape[1], params.h / frame.shape[0]])
    return (lm + 0.5) * scale - 0.5 - [params.left, params.top]


def get_video_crop_parameter(
    frame: ImageInput,
    predictor: Any = None,
    padding: Sequence[int] = DEFAULT_PADDING,
    which: Which = "largest",
) -> tuple[int, int, int, int, int, int, float] | None:
    """The original's ``get_video_crop_parameter``: ``(h, w, top, bottom, left, right, scale)`` or ``None``.

    ``predictor`` is a :class:`FaceDetector`, a loaded ``dlib.shape_predictor`` or ``None`` (default
    detector). ``None`` is returned when no face is found. The pre-blur count follows from ``scale``
    (see :func:`crop_parameters`); use :func:`crop_parameters` directly to get a :class:`CropParams`.
    """
    rgb = load_rgb(frame)
    lm = landmarks(rgb, predictor, which)
    if lm is None:
        return None
    return crop_parameters(rgb, lm, padding).as_tuple()


# --------------------------------------------------------------------------------------------------
# FFHQ alignment (as in the FFHQ data set's alignment script)
# --------------------------------------------------------------------------------------------------

def _alignment_quad(lm: np.ndarray) -> tuple[np.ndarray, float]:
    """The oriented square (4 corners, ``(4, 2)``) to sample, and its side length ``qsize``."""
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_mid = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_mid = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_mid - eye_mid

    # Horizontal axis: the eye line combined with the eye-to-mouth direction turned by -90 degrees.
    axis_x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    axis_x = axis_x / math.hypot(*axis_x)
    axis_x = axis_x * max(2.0 * math.hypot(*eye_to_eye), 1.8 * math.hypot(*eye_to_mouth))
    axis_y = np.array([-axis_x[1], axis_x[0]])
    centre = eye_mid + 0.1 * eye_to_mouth
    quad = np.stack([centre - axis_x - axis_y, centre - axis_x + axis_y,
                     centre + axis_x + axis_y, centre + axis_x - axis_y])
    return quad, 2.0 * math.hypot(*axis_x)


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an ``HxWxC`` float32 image over H and W.

    Same definition as ``scipy.ndimage.gaussian_filter(img, (sigma, sigma, 0))`` with its defaults:
    a kernel truncated at ``int(4*sigma + 0.5)`` pixels, half-sample symmetric borders ("reflect" in
    scipy), rows filtered before columns with float32 storage between the passes.
    """
    radius = int(4.0 * sigma + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    out = img
    for axis in (0, 1):
        pad = [(0, 0)] * img.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out.astype(np.float64), pad, mode="symmetric")
        n = out.shape[axis]
        acc = np.zeros(out.shape, dtype=np.float64)
        for i, weight in enumerate(kernel):
            acc += weight * np.take(padded, np.arange(i, i + n), axis=axis)
        out = acc.astype(np.float32)
    return out


def align_face(
    image: ImageInput,
    detector: Any = None,
    output_size: int = 256,
    transform_size: int = 256,
    which: Which = "largest",
    lm: np.ndarray | None = None,
) -> Image.Image | None:
    """FFHQ-style alignment of the chosen face: a ``output_size`` square RGB PIL image, or ``None``.

    Args:
        image: RGB ``uint8`` array or image path.
        detector: :class:`FaceDetector`, loaded ``dlib.shape_predictor`` or ``None`` (default detector).
        output_size: side of the returned image.
        transform_size: side of the quad-transform result (resized to ``output_size`` with LANCZOS if
            larger).
        which: face choice, see :func:`select_face`.
        lm: landmarks to use instead of running the detector.

    Steps: oriented square from eyes and mouth corners; integer down-scaling with LANCZOS
    when the square is at least 4x larger than ``output_size``; crop to the square's bounding box plus
    a border; if the square (plus border) leaves the image, reflect-pad, blend the padded area towards a
    Gaussian blur and towards the median colour; finally a bilinear QUAD transform.
    """
    rgb = load_rgb(image)
    if lm is None:
        lm = landmarks(rgb, detector, which)
        if lm is None:
            return None
    lm = np.asarray(lm, dtype=np.float64)
    quad, qsize = _alignment_quad(lm)
    img = Image.fromarray(rgb, "RGB")

    # 1. Integer shrink of large faces (anti-aliased).
    shrink = int(math.floor(qsize / output_size * 0.5))
    if shrink > 1:
        new_size = (int(np.rint(img.width / shrink)), int(np.rint(img.height / shrink)))
        img = img.resize(new_size, Image.Resampling.LANCZOS)
        quad = quad / shrink
        qsize = qsize / shrink

    # 2. Crop to the quad's bounding box plus a border (clamped to the image).
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    box = (max(lo[0] - border, 0), max(lo[1] - border, 0),
           min(hi[0] + border, img.width), min(hi[1] + border, img.height))
    if box[2] - box[0] < img.width or box[3] - box[1] < img.height:
        img = img.crop(box)
        quad = quad - np.array(box[:2], dtype=np.float64)

    # 3. Pad when the quad plus border still leaves the image.
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    pads = np.array([max(border - lo[0], 0), max(border - lo[1], 0),
                     max(hi[0] - img.width + border, 0), max(hi[1] - img.height + border, 0)])
    if pads.max() > border - 4:
        pads = np.maximum(pads, max(int(np.rint(qsize * 0.3)), 1))
        pad_l, pad_t, pad_r, pad_b = (int(p) for p in pads)
        arr = np.pad(np.asarray(img, dtype=np.float32), ((pad_t, pad_b), (pad_l, pad_r), (0, 0)), mode="reflect")
        height, width = arr.shape[:2]
        cols = np.arange(width, dtype=np.float64)[None, :, None]
        rows = np.arange(height, dtype=np.float64)[:, None, None]
        # 1 on the outer edge, 0 where the original image starts, negative inside it.
        closeness = np.maximum(1.0 - np.minimum(cols / pad_l, (width - 1 - cols) / pad_r),
                               1.0 - np.minimum(rows / pad_t, (height - 1 - rows) / pad_b))
        arr += (_gaussian_blur(arr, qsize * 0.02) - arr) * np.clip(3.0 * closeness + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(closeness, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad = quad + np.array([pad_l, pad_t], dtype=np.float64)

    # 4. Sample the quad (PIL maps the output corners to these source points; +0.5 = pixel centres).
    img = img.transform((transform_size, transform_size), Image.Transform.QUAD,
                        tuple((quad + 0.5).flatten().tolist()), Image.Resampling.BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return img
