"""Following one face through a video with a crop of constant size."""
from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.faces import CropParams, FaceDetector, select_face

__all__ = ["FaceTracker"]


class FaceTracker:
    """Moves a fixed-size crop with the face: eye centre re-detected per frame, exponentially smoothed.

    The scale and the crop size stay those of the first face, so the output size is constant; the crop
    centre follows ``centre += alpha * (detected - centre)`` (frames without a detection keep the last
    position), clamped to the frame and rounded to whole pixels.
    """

    def __init__(self, params: CropParams, detector: FaceDetector, alpha: float = 0.2, which: str = "largest"):
        if not 0 < alpha <= 1:
            raise ValueError(f"tracking smoothing alpha must be in (0, 1], got {alpha}")
        self.params, self.detector, self.alpha, self.which = params, detector, alpha, which
        self.centre = np.array([(params.left + params.right) / 2, (params.top + params.bottom) / 2], dtype=np.float64)
        self._offset: np.ndarray | None = None  # crop centre - eye centre (rescaled pixels), fixed at the first detection

    def update(self, frame: np.ndarray) -> CropParams:
        face = select_face(self.detector.detect(frame), self.which)
        if face is not None:
            eyes = np.mean(face.eye_centres, axis=0) * self.params.scale
            if self._offset is None:
                self._offset = self.centre - eyes
            self.centre += self.alpha * (eyes + self._offset - self.centre)
        cw, ch = self.params.crop_size
        left = int(np.clip(round(self.centre[0] - cw / 2), 0, self.params.w - cw))
        top = int(np.clip(round(self.centre[1] - ch / 2), 0, self.params.h - ch))
        return dataclasses.replace(self.params, left=left, right=left + cw, top=top, bottom=top + ch)
