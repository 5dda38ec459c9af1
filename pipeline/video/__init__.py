"""Video input/output under its original import path: the names of :mod:`pipeline.videoio` (reading,
writing, audio, segment joining) and the test-video synthesis of :mod:`pipeline.samples`."""
from __future__ import annotations

from pipeline.samples import synthesize_test_video, synthetic_frames
from pipeline.videoio import (
    COPIED_AUDIO_CODECS,
    SEGMENT_CODEC_OPTIONS,
    VideoError,
    VideoInfo,
    VideoReader,
    VideoWriter,
    concat_segments,
    probe,
)

__all__ = [
    "COPIED_AUDIO_CODECS",
    "VideoError",
    "VideoInfo",
    "probe",
    "VideoReader",
    "VideoWriter",
    "synthetic_frames",
    "synthesize_test_video",
    "SEGMENT_CODEC_OPTIONS",
    "concat_segments",
]
