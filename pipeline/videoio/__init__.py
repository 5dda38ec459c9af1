"""Streaming video input/output for the stylisation pipeline (PyAV / FFmpeg, in process).

The original VToonify reads and writes videos with OpenCV, which cannot write H.264 and drops the
audio track. This package keeps both, one module per concern:

* :mod:`~pipeline.videoio.reading`: :func:`probe` describes a video file (:class:`VideoInfo`) and rejects
  anything that is not a decodable video with a :class:`VideoError`; :class:`VideoReader` decodes one
  frame at a time into RGB ``uint8`` arrays (memory does not grow with the length of the video).
* :mod:`~pipeline.videoio.rotation`: frames are shown upright, as players show them.
* :mod:`~pipeline.videoio.audio`: the source's audio is copied or re-encoded into the output, in sync.
* :mod:`~pipeline.videoio.writing`: :class:`VideoWriter` encodes RGB frames to H.264 in an MP4 file and
  only ever leaves a complete file under the final name.
* :mod:`~pipeline.videoio.segments`: :func:`concat_segments` joins segments without re-encoding.

Test videos are made by :mod:`pipeline.samples`.
"""
from __future__ import annotations

from pipeline.videoio.audio import COPIED_AUDIO_CODECS
from pipeline.videoio.reading import VideoError, VideoInfo, VideoReader, probe
from pipeline.videoio.segments import SEGMENT_CODEC_OPTIONS, concat_segments
from pipeline.videoio.writing import VideoWriter

__all__ = ["COPIED_AUDIO_CODECS", "SEGMENT_CODEC_OPTIONS", "VideoError", "VideoInfo", "VideoReader", "VideoWriter",
           "concat_segments", "probe"]
