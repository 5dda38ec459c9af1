"""Finding faces: the dlib detector and 68-point landmark model (loaded once per process and shared), the choice
among several faces, and reading a picture as RGB. :mod:`pipeline.faces` re-exports every name (see its docstring
for the conventions, the face choice and where the landmark model is found)."""
from __future__ import annotations

import functools
import importlib.util
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence, Union

import numpy as np

from common.errors import InputError
from common.images import read_rgb

__all__ = ["LANDMARKS_ENV", "LANDMARKS_FILENAME", "Face", "FaceDetector", "ImageInput", "Which", "default_detector",
           "file_version", "landmark_model_path", "landmarks", "load_rgb", "select_face"]

LANDMARKS_FILENAME = "shape_predictor_68_face_landmarks.dat"
LANDMARKS_ENV = "VTOONIFY_LANDMARKS"

ImageInput = Union[np.ndarray, str, os.PathLike]
Which = Literal["largest", "last"]


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

def landmark_model_path(path: str | os.PathLike | None = None) -> Path:
    """Locate dlib's ``shape_predictor_68_face_landmarks.dat``.

    Args:
        path: an explicit file to use. When ``None``, the environment variable ``VTOONIFY_LANDMARKS``
            is used if set, else the copy shipped by the ``face-recognition-models`` pip package, else
            ``checkpoint/shape_predictor_68_face_landmarks.dat`` in the repository.

    Raises:
        FileNotFoundError: an explicit/environment path that does not exist, or no model anywhere.
    """
    if path is None:
        path = os.environ.get(LANDMARKS_ENV) or None
        origin = f"${LANDMARKS_ENV}"
    else:
        origin = "the given path"
    if path is not None:
        candidate = Path(path).expanduser()
        if not candidate.is_file():
            raise FileNotFoundError(f"dlib landmark model not found at {candidate} ({origin})")
        return candidate

    searched: list[Path] = []
    spec = importlib.util.find_spec("face_recognition_models")  # finds the package without importing it
    if spec is not None:
        for location in spec.submodule_search_locations or []:
            candidate = Path(location) / "models" / LANDMARKS_FILENAME
            searched.append(candidate)
            if candidate.is_file():
                return candidate
    candidate = Path(__file__).resolve().parent.parent / "checkpoint" / LANDMARKS_FILENAME
    searched.append(candidate)
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(
        f"dlib landmark model {LANDMARKS_FILENAME} not found (looked at: {', '.join(map(str, searched))}). "
        f"Install it with `pip install face-recognition-models==0.3.0`, or point ${LANDMARKS_ENV} at a copy."
    )


def load_rgb(image: ImageInput) -> np.ndarray:
    """Return ``image`` as a C-contiguous RGB ``uint8`` array of shape ``(H, W, 3)``.

    ``image`` is a file path, a PIL image or a numpy array (``HxW`` grey, ``HxWx3`` RGB, ``HxWx4`` RGBA
    composited on white, ``uint8`` or ``uint16``), read by the project's one reader,
    :func:`common.images.read_rgb` (EXIF orientation, bit depth, alpha, size limit: see there).
    """
    # C-contiguous: dlib 20 silently returns wrong detections for non-contiguous arrays (e.g. a slice of a frame).
    return read_rgb(image)


# --------------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Attributes:
        box: dlib rectangle ``(left, top, right, bottom)``; right/bottom are inclusive, as in dlib.
        score: HOG detection confidence (higher is more confident; the detector threshold is 0).
        landmarks: ``(68, 2)`` float array of ``(x, y)`` landmark positions.
    """

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray = field(repr=False)

    @property
    def area(self) -> int:
        """Box area in pixels, with dlib's inclusive convention ``(right-left+1)*(bottom-top+1)``."""
        left, top, right, bottom = self.box
        return max(right - left + 1, 0) * max(bottom - top + 1, 0)

    @property
    def eye_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean positions of the image-left eye (points 36-41) and the image-right eye (points 42-47)."""
        return self.landmarks[36:42].mean(axis=0), self.landmarks[42:48].mean(axis=0)


class FaceDetector:
    """dlib HOG frontal face detector + 68-point landmark predictor, loaded once and reusable.

    Args:
        landmark_path: the landmark model file (see :func:`landmark_model_path` for the default).
        predictor: an already-loaded ``dlib.shape_predictor`` to use instead of loading one.
        upsample: how many times the detector up-samples the image first (the original uses 1).
        threshold: detection score threshold (dlib's default 0.0, as the original).
    """

    def __init__(
        self,
        landmark_path: str | os.PathLike | None = None,
        *,
        predictor: Any | None = None,
        upsample: int = 1,
        threshold: float = 0.0,
    ) -> None:
        self.landmark_path = landmark_path
        self.upsample = int(upsample)
        self.threshold = float(threshold)
        self._predictor = predictor
        self._detector: Any | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._detector is None:
            self._detector = _shared_detector()
        if self._predictor is None:
            self._predictor = _shared_predictor(*file_version(landmark_model_path(self.landmark_path)))
        return self._detector, self._predictor

    def detect(self, image: ImageInput) -> list[Face]:
        """All faces in ``image``, in dlib's order (decreasing detection score)."""
        rgb = load_rgb(image)
        detector, predictor = self._load()
        with _DETECTOR_LOCK:  # one dlib detector per process; it keeps scratch state while it runs
            rects, scores, _ = detector.run(rgb, self.upsample, self.threshold)
        faces = []
        for rect, score in zip(rects, scores):
            shape = predictor(rgb, rect)  # dlib documents its shape_predictor as safe to share between threads
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            box = (int(rect.left()), int(rect.top()), int(rect.right()), int(rect.bottom()))
            faces.append(Face(box=box, score=float(score), landmarks=points))
        return faces

    def __call__(self, image: ImageInput) -> list[Face]:
        return self.detect(image)


_DETECTOR_LOCK = threading.Lock()


def file_version(path: str | os.PathLike) -> tuple[str, int, int]:
    """``(resolved path, modification time in ns, size)`` of an existing file: the key under which a model loaded
    from it is shared in a process (a file replaced on disk gets a new key, so it is loaded again)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return str(resolved), stat.st_mtime_ns, stat.st_size


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("face detection needs dlib: `pip install dlib-bin`") from exc
    return dlib


@functools.lru_cache(maxsize=1)
def _shared_detector() -> Any:
    """dlib's HOG frontal face detector, built once per process (callers hold ``_DETECTOR_LOCK`` to run it)."""
    return _import_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=4)
def _shared_predictor(path: str, mtime_ns: int, size: int) -> Any:
    """The landmark model at ``path``, loaded once per (file, modification time, size): a file replaced on
    disk is loaded again. A file that is not a dlib landmark model is an :class:`~common.errors.InputError`."""
    try:
        return _import_dlib().shape_predictor(path)
    except RuntimeError as e:  # dlib's "Error deserializing object of type ..."
        raise InputError(f"{path} is not a dlib landmark model ({e}); use {LANDMARKS_FILENAME}") from None


_DEFAULT_DETECTOR: FaceDetector | None = None


def default_detector() -> FaceDetector:
    """A process-wide :class:`FaceDetector` with the default landmark model (created on first use)."""
    global _DEFAULT_DETECTOR
    if _DEFAULT_DETECTOR is None:
        _DEFAULT_DETECTOR = FaceDetector()
    return _DEFAULT_DETECTOR


def _as_detector(detector: Any) -> FaceDetector:
    """Accept a :class:`FaceDetector`, ``None`` (the default one) or a loaded ``dlib.shape_predictor``."""
    if detector is None:
        return default_detector()
    if isinstance(detector, FaceDetector):
        return detector
    if callable(detector) and type(detector).__name__ == "shape_predictor":
        return FaceDetector(predictor=detector)
    raise TypeError(f"expected a FaceDetector or a dlib.shape_predictor, got {type(detector).__name__}")


def select_face(faces: Sequence[Face], which: Which = "largest") -> Face | None:
    """Choose one face of a detection list.

    ``'largest'`` (default) takes the face with the largest box, ties broken by the higher score;
    ``'last'`` takes the last detection, which is what the original implementation does.
    Returns ``None`` for an empty list.
    """
    if which not in ("largest", "last"):
        raise ValueError(f"which must be 'largest' or 'last', got {which!r}")
    if not faces:
        return None
    if which == "last":
        return faces[-1]
    return max(faces, key=lambda f: (f.area, f.score))


def landmarks(image: ImageInput, detector: Any = None, which: Which = "largest") -> np.ndarray | None:
    """The ``(68, 2)`` landmarks of the chosen face in ``image``, or ``None`` if there is no face."""
    face = select_face(_as_detector(detector).detect(image), which)
    return None if face is None else face.landmarks
