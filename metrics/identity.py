"""Identity preservation: distance between dlib face descriptors of an input and its stylisation.

The descriptor is the 128-D embedding of dlib's face recognition ResNet
(``dlib_face_recognition_resnet_model_v1.dat``, shipped in the ``models/`` folder of the
``face-recognition-models`` pip package, located without importing the package). The distance is the
Euclidean distance between the two descriptors; dlib's own decision threshold for "same person" is 0.6
(99.38 % on LFW), so a stylisation that keeps the identity recognisable stays well below 0.6.

Protocol (:func:`identity_distance`):

* The output is first resized to the input's size (``cv2.INTER_AREA``): VToonify outputs are 4x their
  input, and face detection and description then work at the same scale on both images.
* The face is detected in each image with the pipeline's HOG detector and 68-point landmarks
  (:class:`pipeline.faces.FaceDetector`; the largest face when there are several), and the descriptor
  is computed on dlib's 150x150 face chip of those landmarks (no jitter, padding 0.25).
* ``output_landmarks='input'`` skips the detection in the output and uses the input's landmarks
  there instead; this is valid when the output is pixel-aligned with its input, as VToonify's and
  the per-frame baseline's are, and avoids stylised faces that the HOG detector misses.
* When a face is not found the distance is NaN and a warning is issued; average with ``np.nanmean``.
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from pipeline.faces import FaceDetector, load_rgb, select_face

__all__ = [
    "RECOGNITION_MODEL_FILENAME",
    "SAME_PERSON_THRESHOLD",
    "FaceEmbedder",
    "identity_distance",
    "recognition_model_path",
]

RECOGNITION_MODEL_FILENAME = "dlib_face_recognition_resnet_model_v1.dat"
#: dlib's decision threshold: descriptors closer than this are the same person.
SAME_PERSON_THRESHOLD = 0.6

LandmarkSource = Literal["detect", "input"]


def recognition_model_path(path: str | os.PathLike | None = None) -> Path:
    """Locate ``dlib_face_recognition_resnet_model_v1.dat``: ``path`` if given, else the copy in the
    ``face-recognition-models`` package (found with ``importlib.util.find_spec``, never imported)."""
    if path is not None:
        candidate = Path(path).expanduser()
        if not candidate.is_file():
            raise FileNotFoundError(f"dlib face recognition model not found at {candidate}")
        return candidate
    spec = importlib.util.find_spec("face_recognition_models")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / "models" / RECOGNITION_MODEL_FILENAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"dlib face recognition model {RECOGNITION_MODEL_FILENAME} not found; "
                            "install it with `pip install face-recognition-models==0.3.0`")


class FaceEmbedder:
    """dlib's face recognition ResNet with a face detector, both loaded once.

    Args:
        detector: the face detector (default: a new :class:`pipeline.faces.FaceDetector`).
        model_path: the recognition model (default: see :func:`recognition_model_path`).
    """

    def __init__(self, detector: FaceDetector | None = None, model_path: str | os.PathLike | None = None):
        import dlib

        self.detector = detector if detector is not None else FaceDetector()
        self._dlib = dlib
        self._model: Any = dlib.face_recognition_model_v1(str(recognition_model_path(model_path)))

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """``(68, 2)`` landmarks of the largest face in ``image``, or ``None``."""
        face = select_face(self.detector.detect(image))
        return None if face is None else face.landmarks

    def descriptor(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The 128-D descriptor of the face with the given ``(68, 2)`` landmarks in RGB ``image``."""
        dlib = self._dlib
        points = np.rint(np.asarray(landmarks, dtype=np.float64)).astype(int)
        (left, top), (right, bottom) = points.min(axis=0), points.max(axis=0)  # the face chip uses only the points
        shape = dlib.full_object_detection(dlib.rectangle(int(left), int(top), int(right), int(bottom)),
                                           dlib.points([dlib.point(int(x), int(y)) for x, y in points]))
        return np.asarray(self._model.compute_face_descriptor(load_rgb(image), shape, 0, 0.25), dtype=np.float64)


def identity_distance(
    input_rgb: np.ndarray,
    output_rgb: np.ndarray,
    embedder: FaceEmbedder,
    output_landmarks: LandmarkSource = "detect",
) -> float:
    """Descriptor distance between the face of ``input_rgb`` and that of ``output_rgb`` (see the module
    docstring); NaN with a warning when a face is not found."""
    if output_landmarks not in ("detect", "input"):
        raise ValueError(f"output_landmarks must be 'detect' or 'input', got {output_landmarks!r}")
    input_rgb, output_rgb = load_rgb(input_rgb), load_rgb(output_rgb)
    height, width = input_rgb.shape[:2]
    if output_rgb.shape[:2] != (height, width):
        output_rgb = cv2.resize(output_rgb, (width, height), interpolation=cv2.INTER_AREA)
    lm_in = embedder.landmarks(input_rgb)
    if lm_in is None:
        warnings.warn("identity distance: no face found in the input; returning NaN", stacklevel=2)
        return float("nan")
    lm_out = lm_in if output_landmarks == "input" else embedder.landmarks(output_rgb)
    if lm_out is None:
        warnings.warn("identity distance: no face found in the output; returning NaN", stacklevel=2)
        return float("nan")
    a, b = embedder.descriptor(input_rgb, lm_in), embedder.descriptor(output_rgb, lm_out)
    return float(np.linalg.norm(a - b))
