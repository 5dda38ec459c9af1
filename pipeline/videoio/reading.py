"""Reading videos: :func:`probe` describes a file (:class:`VideoInfo`), :class:`VideoReader` decodes it.

Anything that is not a decodable video is rejected with a :class:`VideoError`. Frames are RGB ``uint8``
arrays, upright (:mod:`pipeline.videoio.rotation`), converted with whatever matrix and range the file
is tagged with (BT.601 limited range when it is untagged, as FFmpeg does); memory does not grow with
the length of the video.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import av
import numpy as np
from av.video.reformatter import Interpolation

from model.errors import UserError
from pipeline.videoio.rotation import rotation_steps, upright_rgb

__all__ = ["PathLike", "VideoError", "VideoInfo", "VideoReader", "check_file", "open_input", "probe", "video_stream"]

PathLike = str | os.PathLike

_ACCURATE_DECODE_SCALING = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


class VideoError(UserError, ValueError):
    """A file cannot be used as a video: missing, unreadable, not a video, without frames, or a failed write."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found out about a video file.

    ``width`` and ``height`` are those of the frames :class:`VideoReader` yields, i.e. after the
    rotation stored in the file (``rotation``, degrees counter-clockwise) has been applied.
    ``frame_count`` is the number of frames the container declares (MP4/MOV always do) or, when it
    declares none (Matroska/WebM, raw streams), the number of video packets, counted by reading the
    file through without decoding; FFmpeg delivers one frame per video packet, so both are the
    number of frames the reader yields (files cut with edit lists may yield a few less).
    ``duration`` and ``audio_duration`` are in seconds (``audio_duration`` is ``None`` when there is
    no audio or the container does not state it).
    """

    path: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    codec: str
    rotation: int
    has_audio: bool
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None
    audio_duration: float | None


def check_file(path: PathLike) -> str:
    """``path`` as a string, or a :class:`VideoError` if it is not a non-empty regular file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise VideoError(f"{path}: not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    return path


def open_input(path: PathLike) -> av.container.InputContainer:
    """Open a media file for reading, turning FFmpeg's errors into :class:`VideoError`."""
    path = check_file(path)
    try:
        return av.open(path, metadata_errors="ignore")
    except av.FFmpegError as exc:
        if _starts_like_mp4(path):
            raise VideoError(f"{path}: an MP4/MOV file without a readable index (incomplete or damaged; {exc})") from exc
        raise VideoError(f"{path}: not a readable media file ({exc})") from exc


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The first video stream of a container that holds a video (not a still image)."""
    path = container.name
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        raise VideoError(f"{path}: a still image ({container.format.name}), not a video; stylise it as an image")
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams})
        if kinds:  # an audio file (or subtitles ...): whole, just not a video
            raise VideoError(f"{path}: no video stream in it (only {' and '.join(kinds)}); give a video file")
        damaged = " (an MP4/MOV file without its index: incomplete or damaged)" if _is_mp4(container) else ""
        raise VideoError(f"{path}: contains no video stream{damaged}")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _starts_like_mp4(path: str) -> bool:
    """Whether the file begins with an MP4/MOV ``ftyp`` box."""
    try:
        with open(path, "rb") as f:
            return f.read(8)[4:8] == b"ftyp"
    except OSError:
        return False


def _is_mp4(container: av.container.InputContainer) -> bool:
    return "mp4" in container.format.name.split(",") or "mov" in container.format.name.split(",")


def probe(path: PathLike) -> VideoInfo:
    """Describe the video file ``path``.

    The first frame is decoded to check that the video really decodes and to learn its upright size.
    Raises :class:`VideoError` for a missing or empty file, a file FFmpeg cannot read, a still image
    (PNG, JPEG, ...: VToonify stylises those as images, not as 1-frame videos), a file without a
    video stream and a video stream without frames.
    """
    with open_input(path) as container:
        stream = video_stream(container)
        name = container.name
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as exc:
            raise VideoError(f"{name}: the video stream cannot be decoded ({exc})") from exc
        if first is None:
            listed = f" (its index lists {stream.frames}: the file is damaged)" if stream.frames > 0 else ""
            raise VideoError(f"{name}: the video stream has no frames{listed}")
        rotation = rotation_steps(first) * 90
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)

        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise VideoError(f"{name}: the frame rate is unknown")
        fps = float(rate)

        frame_count = stream.frames
        if frame_count <= 0:
            with open_input(name) as again:
                frame_count = sum(1 for packet in again.demux(again.streams.video[0]) if packet.size > 0)

        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = frame_count / fps

        audio = container.streams.audio[0] if container.streams.audio else None
        audio_duration = None
        if audio is not None and audio.duration is not None and audio.time_base is not None:
            audio_duration = float(audio.duration * audio.time_base)
        return VideoInfo(
            path=name,
            width=width,
            height=height,
            fps=fps,
            frame_count=frame_count,
            duration=duration,
            codec=stream.codec.canonical_name,
            rotation=rotation,
            has_audio=audio is not None,
            audio_codec=audio.codec.canonical_name if audio is not None else None,
            audio_sample_rate=audio.sample_rate if audio is not None else None,
            audio_channels=audio.channels if audio is not None else None,
            audio_duration=audio_duration,
        )


class VideoReader:
    """Decode a video into RGB ``uint8`` frames of shape ``(H, W, 3)``, one at a time.

    Use as a context manager and iterate (a single pass)::

        with VideoReader("in.mp4") as reader:
            for frame in reader:
                ...

    Only the frame being handed out is converted to RGB; besides it the decoder keeps its own small
    reordering/threading queue (a few frames, independent of the length of the video), so memory
    does not grow with the video. Frames keep their size, odd or not. If the file asks for a
    rotation of the picture (phones record portrait videos as rotated landscape frames plus a
    display matrix), frames are rotated by it, as players show them; a mirroring in the display
    matrix is not applied. ``frames_read`` and ``packets_read`` count the frames yielded and the
    compressed packets read so far (progress reporting).

    By default frames are converted to RGB as OpenCV's ``VideoCapture`` does (bit for bit with
    opencv-python 5.0, which bundles the same FFmpeg 8 as PyAV 18), so results can be compared with
    the original VToonify, which read videos with OpenCV. With ``accurate_color`` the conversion uses
    exact rounding and full chroma interpolation instead, which removes the default path's darkening
    by about one grey level.
    """

    def __init__(self, path: PathLike, accurate_color: bool = False, info: VideoInfo | None = None) -> None:
        self.info: VideoInfo = info if info is not None else probe(path)  # a caller that probed already passes it
        self.path: str = self.info.path
        self._interpolation = _ACCURATE_DECODE_SCALING if accurate_color else None
        self.frames_read = 0
        #: Presentation time (seconds) of the frame handed out last, ``None`` when the file does not state it.
        self.frame_time: float | None = None
        self.packets_read = 0
        self._container = open_input(self.path)
        self._stream = video_stream(self._container)
        self._frames = self._decode()

    def _decode(self) -> Iterator[np.ndarray]:
        try:
            for packet in self._container.demux(self._stream):
                self.packets_read += packet.size > 0
                for frame in packet.decode():
                    self.frames_read += 1
                    self.frame_time = float(frame.time) if frame.pts is not None else None
                    yield upright_rgb(frame, self._interpolation)
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: reading failed after {self.frames_read} frames ({exc})") from exc
        listed = self._stream.frames  # what the container's index lists (0: it lists nothing)
        if listed > 0 and self.packets_read < listed:
            # The index lists frames whose data is not in the file: a cut or damaged file, not an edit list.
            raise VideoError(f"{self.path}: the file ends after {self.frames_read} of the {listed} frames its index "
                             "lists (incomplete or damaged); nothing saved")

    def __iter__(self) -> VideoReader:
        return self

    def __next__(self) -> np.ndarray:
        return next(self._frames)

    def iter_batches(self, n: int) -> Iterator[list[np.ndarray]]:
        """Yield the remaining frames in lists of ``n`` (the last list may be shorter)."""
        if n < 1:
            raise ValueError(f"batch size must be at least 1, got {n}")
        batch: list[np.ndarray] = []
        for frame in self:
            batch.append(frame)
            if len(batch) == n:
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        """Release the file (idempotent)."""
        self._frames.close()
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
