"""Quality and cost metrics for stylised portrait videos.

* :mod:`metrics.temporal`: warping error (DIS optical flow of the inputs, occlusions masked) and
  flicker on static regions.
* :mod:`metrics.identity`: distance between dlib face descriptors of input and output.
* :mod:`metrics.runtime`: seconds per frame and peak host/CUDA memory.
* :mod:`metrics.figures`: the paper's kinds of figures (sheets of labelled panels), for ``figures.py``.

``evaluate.py`` applies them to VToonify and to the per-frame baseline on a video.
"""
from metrics.identity import FaceEmbedder, identity_distance, recognition_model_path
from metrics.runtime import RuntimeMonitor, RuntimeStats, peak_memory_gib, peak_rss_bytes, reset_peak_rss
from metrics.temporal import (
    Flicker,
    consistency_mask,
    flicker_score,
    optical_flow,
    resize_flow,
    static_mask,
    warp,
    warping_error,
    warping_errors,
)

__all__ = [
    "FaceEmbedder",
    "Flicker",
    "RuntimeMonitor",
    "RuntimeStats",
    "consistency_mask",
    "flicker_score",
    "identity_distance",
    "optical_flow",
    "peak_memory_gib",
    "peak_rss_bytes",
    "recognition_model_path",
    "reset_peak_rss",
    "resize_flow",
    "static_mask",
    "warp",
    "warping_error",
    "warping_errors",
]
