"""Streaming video input/output for the stylisation pipeline (PyAV / FFmpeg, in process).

The original VToonify reads and writes videos with OpenCV, which cannot write H.264 and drops the
audio track. This module keeps both:

* :func:`probe` describes a video file (:class:`VideoInfo`) and rejects anything that is not a
  decodable video with a :class:`VideoError`.
* :class:`VideoReader` decodes one frame at a time into RGB ``uint8`` arrays (memory does not grow
  with the length of the video).
* :class:`VideoWriter` encodes RGB frames to H.264 in an MP4 file, copies the audio of a source file
  into it (in sync, trimmed to the video), and only ever leaves a complete file under the final name.
* :func:`synthetic_frames` / :func:`synthesize_test_video` make deterministic test videos from a
  still portrait (moving or zooming crop plus a sine tone).

Colour: the writer converts frames to Y'CbCr with the BT.709 matrix in limited ("TV") range, with
exact rounding, and tags the stream accordingly, which is what players assume for HD material; the
reader converts with whatever matrix and range a file is tagged with (BT.601 limited range when it is
untagged, as FFmpeg does).
"""
from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from itertools import chain
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Literal

import av
import cv2
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, Interpolation

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

PathLike = str | os.PathLike

#: Audio codecs whose packets are copied into the MP4 output as they are: MP4 can carry them and their
#: frames are short (at most 1536 samples, 32 ms at 48 kHz), so cutting the track at a packet boundary
#: ends it within half a frame of the video. Others (PCM, Vorbis, FLAC, ALAC, ...) are re-encoded to AAC.
COPIED_AUDIO_CODECS = frozenset({"aac", "mp3", "opus", "ac3", "eac3"})
#: Sample rates the AAC encoder accepts; other rates are resampled to 48 kHz.
_AAC_SAMPLE_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350})
_AAC_BIT_RATE = 192_000
#: swscale flags for RGB <-> Y'CbCr 4:2:0. Its default path (which OpenCV uses too) rounds down and
#: interpolates chroma coarsely, which darkens a round trip by about one grey level; with these flags on
#: both sides the round trip has no bias (mean absolute error 1.6 instead of 2.1 through lossless H.264,
#: astronaut at 256x256), for under 10 ms per 1600x1600 frame.
_ENCODE_SCALING = Interpolation.BICUBIC | Interpolation.ACCURATE_RND
_ACCURATE_DECODE_SCALING = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


class VideoError(ValueError):
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


def _check_file(path: PathLike) -> str:
    """``path`` as a string, or a :class:`VideoError` if it is not a non-empty regular file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise VideoError(f"{path}: not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    return path


def _open_input(path: PathLike) -> av.container.InputContainer:
    """Open a media file for reading, turning FFmpeg's errors into :class:`VideoError`."""
    path = _check_file(path)
    try:
        return av.open(path, metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: not a readable media file ({exc})") from exc


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The first video stream of a container that holds a video (not a still image)."""
    path = container.name
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        raise VideoError(f"{path}: a still image ({container.format.name}), not a video; stylise it as an image")
    if not container.streams.video:
        raise VideoError(f"{path}: contains no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _rotation_steps(frame: av.VideoFrame) -> int:
    """Quarter turns counter-clockwise that show ``frame`` upright (0 to 3)."""
    return round(frame.rotation / 90) % 4


def _to_rgb(frame: av.VideoFrame, interpolation: Interpolation | None) -> np.ndarray:
    """A decoded frame as a contiguous upright ``(H, W, 3)`` RGB ``uint8`` array."""
    rgb = frame.to_ndarray(format="rgb24", interpolation=interpolation)
    steps = _rotation_steps(frame)
    if steps:
        rgb = np.rot90(rgb, steps)
    return np.ascontiguousarray(rgb)


def probe(path: PathLike) -> VideoInfo:
    """Describe the video file ``path``.

    The first frame is decoded to check that the video really decodes and to learn its upright size.
    Raises :class:`VideoError` for a missing or empty file, a file FFmpeg cannot read, a still image
    (PNG, JPEG, ...: VToonify stylises those as images, not as 1-frame videos), a file without a
    video stream and a video stream without frames.
    """
    with _open_input(path) as container:
        stream = _video_stream(container)
        name = container.name
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as exc:
            raise VideoError(f"{name}: the video stream cannot be decoded ({exc})") from exc
        if first is None:
            raise VideoError(f"{name}: the video stream has no frames")
        rotation = _rotation_steps(first) * 90
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)

        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise VideoError(f"{name}: the frame rate is unknown")
        fps = float(rate)

        frame_count = stream.frames
        if frame_count <= 0:
            with _open_input(name) as again:
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

    def __init__(self, path: PathLike, accurate_color: bool = False) -> None:
        self.info: VideoInfo = probe(path)
        self.path: str = self.info.path
        self._interpolation = _ACCURATE_DECODE_SCALING if accurate_color else None
        self.frames_read = 0
        self.packets_read = 0
        self._container = _open_input(self.path)
        self._stream = _video_stream(self._container)
        self._frames = self._decode()

    def _decode(self) -> Iterator[np.ndarray]:
        try:
            for packet in self._container.demux(self._stream):
                self.packets_read += packet.size > 0
                for frame in packet.decode():
                    self.frames_read += 1
                    yield _to_rgb(frame, self._interpolation)
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: reading failed after {self.frames_read} frames ({exc})") from exc

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


def _audio_origin(container: av.container.InputContainer, offset: float) -> float:
    """Source time (s) that becomes t = 0 of the output: the first video frame (if any) plus ``offset``."""
    start = 0.0
    if container.streams.video:
        video = container.streams.video[0]
        if video.start_time is not None and video.time_base is not None:
            start = float(video.start_time * video.time_base)
    return start + offset


class _AudioCopy:
    """Copies the compressed audio packets of a source into the output (codecs MP4 can carry).

    Packets are shifted so that source time ``origin`` lands on t = 0. The packet in progress at
    t = 0 and one before it (decoder pre-roll, e.g. AAC priming) are kept with negative timestamps:
    the MP4 muxer hides that part with an edit list, so playback starts exactly at t = 0. At the end
    a packet is kept if at least half of it lies within the video, so the audio ends within half an
    audio frame (at most 16 ms for :data:`COPIED_AUDIO_CODECS`) of the video.
    """

    mode = "copy"

    def __init__(self, source: av.container.InputContainer, output: av.container.OutputContainer, origin: float) -> None:
        self._source = source
        self._input = source.streams.audio[0]
        self._stream = output.add_stream_from_template(self._input)
        self._shift = round(origin / self._input.time_base)
        self._packets = self._shifted_packets()
        self._pending = next(self._packets, None)

    def _shifted_packets(self) -> Iterator[av.Packet]:
        previous = None
        for packet in self._source.demux(self._input):
            if packet.pts is None:  # the empty packet that ends demuxing (or one that cannot be placed in time)
                continue
            packet.pts -= self._shift
            packet.dts = packet.pts if packet.dts is None else packet.dts - self._shift
            if packet.pts + packet.duration <= 0:
                previous = packet
                continue
            if previous is not None:
                yield previous
                previous = None
            yield packet

    def _times(self, packet: av.Packet) -> tuple[float, float]:
        start = float(packet.pts * self._input.time_base)
        return start, start + float(packet.duration * self._input.time_base)

    def write_until(self, output: av.container.OutputContainer, t: float) -> None:
        """Mux the packets that end by ``t`` seconds."""
        while self._pending is not None and self._times(self._pending)[1] <= t:
            self._mux(output)

    def finish(self, output: av.container.OutputContainer, duration: float) -> None:
        """Mux the packets that lie at least half within ``duration`` seconds, then stop."""
        while self._pending is not None and sum(self._times(self._pending)) / 2 <= duration:
            self._mux(output)
        self.close()

    def close(self) -> None:
        """Release the source file."""
        self._source.close()

    def _mux(self, output: av.container.OutputContainer) -> None:
        packet = self._pending
        packet.stream = self._stream
        output.mux(packet)
        self._pending = next(self._packets, None)


class _AudioTranscode:
    """Decodes the source audio and encodes it to AAC (codecs MP4 cannot carry, e.g. PCM or Vorbis).

    The decoded audio is laid on the output time line sample by sample: samples before t = 0 are
    dropped, gaps in the source become silence, and the track is cut at the video's end exactly.
    Mono stays mono, anything else becomes stereo; unsupported sample rates become 48 kHz.
    """

    mode = "aac"

    def __init__(self, source: av.container.InputContainer, output: av.container.OutputContainer, origin: float) -> None:
        self._source = source
        self._input = source.streams.audio[0]
        self._origin = origin
        self.rate = self._input.sample_rate if self._input.sample_rate in _AAC_SAMPLE_RATES else 48000
        self._layout = "mono" if self._input.channels == 1 else "stereo"
        self._stream = output.add_stream("aac", rate=self.rate, layout=self._layout)
        self._stream.bit_rate = _AAC_BIT_RATE
        self._resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=self.rate)
        self._chunks = self._timed_chunks()
        self._pending: tuple[int, np.ndarray] | None = next(self._chunks, None)
        self._written = 0  # output samples encoded so far

    def _timed_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first output sample index, (channels, n) float32 samples)`` for the whole source.

        Each decoded frame is placed by its timestamp (a frame without one follows the previous);
        the final ``None`` flushes the resampler.
        """
        position = round(-self._origin * self.rate)
        for frame in chain(self._source.decode(self._input), [None]):
            if frame is not None and frame.pts is not None:
                position = round((frame.time - self._origin) * self.rate)
            for out in self._resampler.resample(frame):
                samples = out.to_ndarray()
                yield position, samples
                position += samples.shape[1]

    def write_until(self, output: av.container.OutputContainer, t: float) -> None:
        """Encode the audio up to ``t`` seconds."""
        self._encode_until(output, math.floor(t * self.rate))

    def finish(self, output: av.container.OutputContainer, duration: float) -> None:
        """Encode the audio up to ``duration`` seconds exactly, flush the encoder, and stop."""
        self._encode_until(output, round(duration * self.rate))
        output.mux(self._stream.encode(None))
        self.close()

    def close(self) -> None:
        """Release the source file."""
        self._source.close()

    def _encode_until(self, output: av.container.OutputContainer, end: int) -> None:
        while self._pending is not None and self._written < end:
            start, samples = self._pending
            if start > self._written:  # a gap in the source (or audio that starts late): silence
                samples = np.concatenate([np.zeros((samples.shape[0], start - self._written), np.float32), samples], axis=1)
            else:  # drop what lies before t = 0 or overlaps audio already written
                samples = samples[:, self._written - start:]
            take = min(samples.shape[1], end - self._written)
            if take > 0:
                self._encode(output, samples[:, :take])
            rest = samples[:, take:]
            self._pending = (self._written, rest) if rest.shape[1] else next(self._chunks, None)

    def _encode(self, output: av.container.OutputContainer, samples: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=self._layout)
        frame.sample_rate = self.rate
        frame.pts = self._written
        frame.time_base = Fraction(1, self.rate)
        output.mux(self._stream.encode(frame))
        self._written += samples.shape[1]


class VideoWriter:
    """Write RGB ``uint8`` frames to an H.264 (libx264) MP4 file, optionally with the audio of another file.

    ``fps`` is a :class:`~fractions.Fraction` or a number, which is turned into the closest fraction
    with a denominator up to 10**6 (so ``probe(...).fps`` of an NTSC video gives back 30000/1001).
    ``crf``/``preset``/``pix_fmt`` go to libx264 (crf 18 is visually lossless; see the x264 docs), as do
    any ``codec_options`` (e.g. ``{"bf": "0"}`` for segments that :func:`concat_segments` will join).
    Frames must have shape ``(height, width, 3)``. Chroma-subsampled formats need sizes divisible by
    the subsampling (2 for ``yuv420p``): an odd width or height is padded by repeating the last
    column/row, so the file is then one pixel wider/taller (``self.width``/``self.height``).

    With ``audio_from`` (any media file with an audio track, usually the source video), its first
    audio track is put into the output: copied packet for packet for AAC, MP3, Opus, AC-3 and
    E-AC-3 (:data:`COPIED_AUDIO_CODECS`), otherwise re-encoded to AAC. Source time ``audio_offset``
    seconds after the source's first video frame becomes t = 0 of the output (pass ``k / fps`` when
    the first ``k`` source frames were skipped), and the audio ends with the video. Audio and video
    are interleaved as frames are written, so memory stays bounded. A file without audio gives a silent
    output (``audio_mode`` is then ``None``, else ``"copy"`` or ``"aac"``).

    The file is written as ``.<name>.partial.mp4`` next to ``path`` (created by the constructor, which
    also opens the encoders, so bad settings fail at once) and renamed to ``path`` only when
    :meth:`close` succeeds. If the ``with`` block raises, :meth:`close` fails (e.g. no frame was
    written) or :meth:`abort` is called, the partial file is deleted and ``path`` is left untouched.
    Without ``with``, call :meth:`close` or :meth:`abort` yourself.
    """

    def __init__(
        self,
        path: PathLike,
        fps: float | Fraction,
        width: int,
        height: int,
        audio_from: PathLike | None = None,
        crf: int = 18,
        preset: str = "medium",
        pix_fmt: str = "yuv420p",
        audio_offset: float = 0.0,
        codec_options: dict[str, str] | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if width < 1 or height < 1:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {crf}")
        if audio_offset < 0:
            raise ValueError(f"audio_offset must be >= 0, got {audio_offset}")
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise VideoError(f"{self.path}: the folder {self.path.parent} does not exist")
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        self.frame_width, self.frame_height = width, height
        fmt = av.VideoFormat(pix_fmt)
        step_w, step_h = 16 // fmt.chroma_width(16), 16 // fmt.chroma_height(16)
        self.width, self.height = -(-width // step_w) * step_w, -(-height // step_h) * step_h
        self.frames_written = 0
        self.partial_path = self.path.with_name(f".{self.path.name}.partial.mp4")
        self._closed = False
        self._container: av.container.OutputContainer | None = None
        self._audio: _AudioCopy | _AudioTranscode | None = None

        source = _open_input(audio_from) if audio_from is not None else None
        try:
            self._container = av.open(str(self.partial_path), "w", format="mp4", options={"movflags": "+faststart"})
            options = {"crf": str(crf), "preset": preset, **(codec_options or {})}
            self._stream = self._container.add_stream("libx264", rate=self.fps, options=options)
            self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, pix_fmt
            cc = self._stream.codec_context  # tag the stream: BT.709 in limited range (matches write())
            cc.color_range, cc.color_primaries, cc.color_trc = ColorRange.MPEG, ColorPrimaries.BT709, ColorTrc.BT709
            cc.colorspace = Colorspace.ITU709  # same value as FFmpeg's AVCOL_SPC_BT709
            if source is not None and source.streams.audio:
                copy = source.streams.audio[0].codec.canonical_name in COPIED_AUDIO_CODECS
                track = _AudioCopy if copy else _AudioTranscode
                self._audio = track(source, self._container, _audio_origin(source, audio_offset))
                source = None  # closed by self._audio from now on
            self._container.start_encoding()  # opens the encoders and the file now: bad settings fail here
        except BaseException:
            self.abort()
            raise
        finally:
            if source is not None:
                source.close()

    @property
    def audio_mode(self) -> Literal["copy", "aac"] | None:
        """How the audio track is written: ``"copy"`` (packets copied), ``"aac"`` (re-encoded) or ``None`` (silent)."""
        return self._audio.mode if self._audio is not None else None

    def write(self, frame: np.ndarray) -> None:
        """Encode one RGB ``uint8`` frame of shape ``(height, width, 3)``."""
        if self._closed:
            raise ValueError(f"{self.path}: write() on a closed VideoWriter")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != (self.frame_height, self.frame_width, 3):
            raise ValueError(
                f"expected a uint8 array of shape {(self.frame_height, self.frame_width, 3)}, "
                f"got {frame.dtype} {frame.shape}"
            )
        if (self.height, self.width) != frame.shape[:2]:
            frame = np.pad(frame, ((0, self.height - frame.shape[0]), (0, self.width - frame.shape[1]), (0, 0)), mode="edge")
        rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        yuv = rgb.reformat(
            format=self._stream.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG", interpolation=_ENCODE_SCALING
        )
        yuv.pts = self.frames_written
        yuv.time_base = 1 / self.fps
        self._container.mux(self._stream.encode(yuv))
        self.frames_written += 1
        if self._audio is not None:
            self._audio.write_until(self._container, self.frames_written / self.fps)

    def close(self) -> None:
        """Finish the file and move it to its final name (idempotent).

        Raises :class:`VideoError` (and leaves nothing behind) if no frame was written.
        """
        if self._closed:
            return
        try:
            if self.frames_written == 0:
                raise VideoError(f"{self.path}: no frames were written; nothing saved")
            self._container.mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.finish(self._container, self.frames_written / self.fps)
            self._container.close()
            os.replace(self.partial_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Stop writing and delete the partial file; ``path`` is left untouched (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._audio is not None:
            self._audio.close()
        if self._container is not None:
            try:
                self._container.close()
            except av.FFmpegError:
                pass  # the file is being discarded; an incomplete trailer does not matter
        self.partial_path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


Motion = Literal["pan", "zoom", "static"]


def synthetic_frames(
    image_rgb: np.ndarray,
    n_frames: int = 12,
    size: tuple[int, int] | None = None,
    motion: Motion = "pan",
    seed: int = 0,
) -> Iterator[np.ndarray]:
    """Frames of a virtual camera looking at a still image: RGB ``uint8`` arrays of ``size`` = (W, H).

    The camera sees the largest centred window of the output's aspect ratio (``static``: every frame
    the same), or a window of 85 % of it sliding linearly across the image, through the centre, along
    a direction drawn from ``seed`` (``pan``), or a window shrinking linearly from 100 % to 75 % while
    its centre moves from the image centre to a nearby point drawn from ``seed`` (``zoom``). The
    motion is mild so that a centred portrait stays in view. ``size`` defaults
    to the image's own size. Sub-pixel motion is rendered with bilinear interpolation after an
    area-averaging reduction of the image to the scale of the closest view, so it is smooth and free
    of aliasing. Deterministic.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got {image_rgb.dtype} {image_rgb.shape}")
    if motion not in ("pan", "zoom", "static"):
        raise ValueError(f"motion must be 'pan', 'zoom' or 'static', got {motion!r}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    img_h, img_w = image_rgb.shape[:2]
    out_w, out_h = size if size is not None else (img_w, img_h)
    rng = np.random.default_rng(seed)

    full_w = min(img_w, img_h * out_w / out_h)  # largest window with the output's aspect ratio
    progress = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(1)
    centre = np.array([img_w / 2, img_h / 2])
    if motion == "static":
        widths = np.full(n_frames, full_w)
        centres = np.tile(centre, (n_frames, 1))
    elif motion == "pan":
        widths = np.full(n_frames, 0.85 * full_w)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        reach = np.array([img_w - widths[0], img_h - widths[0] * out_h / out_w]) / 2 * [np.cos(angle), np.sin(angle)]
        centres = centre + (2 * progress[:, None] - 1) * reach
    else:
        widths = full_w * (1.0 - 0.25 * progress)
        room = np.array([img_w - widths[-1], img_h - widths[-1] * out_h / out_w]) / 2
        centres = centre + progress[:, None] * (0.25 * rng.uniform(-1.0, 1.0, 2) * room)

    # Reduce the image once to the scale of the closest view (never enlarge it).
    scale = min(1.0, out_w / widths.min())
    small = image_rgb
    if scale < 1.0:
        small = cv2.resize(image_rgb, (round(img_w * scale), round(img_h * scale)), interpolation=cv2.INTER_AREA)
    sx, sy = small.shape[1] / img_w, small.shape[0] / img_h
    for width, (cx, cy) in zip(widths, centres):
        step = width / out_w  # original-image pixels per output pixel
        # Output pixel centre (x + 0.5) maps to image position cx + (x + 0.5 - out_w / 2) * step.
        x0, y0 = cx - out_w / 2 * step, cy - out_h / 2 * step
        matrix = np.array([[step * sx, 0.0, (x0 + 0.5 * step) * sx - 0.5], [0.0, step * sy, (y0 + 0.5 * step) * sy - 0.5]])
        yield cv2.warpAffine(
            small, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101
        )


def _write_tone(path: str, duration: float, rate: int = 48000, frequency: float = 440.0) -> None:
    """Write a mono AAC file (MP4 container) holding a sine tone of ``duration`` seconds at -12 dBFS."""
    samples = np.arange(round(duration * rate))
    tone = (0.25 * np.sin(2 * np.pi * frequency * samples / rate)).astype(np.float32)[None]
    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        stream.bit_rate = _AAC_BIT_RATE
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def synthesize_test_video(
    path: PathLike,
    image_rgb: np.ndarray,
    n_frames: int = 12,
    fps: float = 10,
    size: tuple[int, int] | None = None,
    with_audio: bool = True,
    motion: Motion = "pan",
    seed: int = 0,
) -> Path:
    """Write a test video (H.264 MP4) made from a still image and return its path.

    The frames are :func:`synthetic_frames` (``size`` = (W, H), the image's size by default); with
    ``with_audio`` the file also gets a 440 Hz mono AAC tone as long as the video. Deterministic.
    """
    path = Path(path)
    frames = synthetic_frames(image_rgb, n_frames, size, motion, seed)
    first = next(frames)
    tone = None
    try:
        if with_audio:
            handle, tone = tempfile.mkstemp(suffix=".m4a", dir=path.parent)
            os.close(handle)
            _write_tone(tone, n_frames / fps)
        with VideoWriter(path, fps, first.shape[1], first.shape[0], audio_from=tone) as writer:
            writer.write(first)
            for frame in frames:
                writer.write(frame)
    finally:
        if tone is not None:
            os.unlink(tone)
    return path


#: Encoder options for segments that will be joined by :func:`concat_segments`: no B-frames, so every
#: segment's decode order starts at its first frame and the joined timestamps stay monotonic.
SEGMENT_CODEC_OPTIONS = {"bf": "0"}


def concat_segments(parts: list[PathLike], path: PathLike, audio_from: PathLike | None = None) -> int:
    """Join MP4 segments written by :class:`VideoWriter` (same size, codec and frame rate) without re-encoding.

    The compressed video packets of ``parts`` are copied one segment after another, their timestamps
    shifted by the duration of the segments before; the audio of ``audio_from`` (if any) is added as
    :class:`VideoWriter` does. Segments must have been encoded without B-frames
    (``codec_options=SEGMENT_CODEC_OPTIONS``). The result is written atomically; returns its frame count.
    """
    if not parts:
        raise ValueError("concat_segments needs at least one segment")
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial.mp4")
    output = av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"})
    audio = None
    frames = 0
    try:
        with _open_input(parts[0]) as first:
            template = _video_stream(first)
            out_stream = output.add_stream_from_template(template)
            fps = template.average_rate or template.guessed_rate
        if audio_from is not None:
            source = _open_input(audio_from)
            if source.streams.audio:
                copy = source.streams.audio[0].codec.canonical_name in COPIED_AUDIO_CODECS
                audio = (_AudioCopy if copy else _AudioTranscode)(source, output, _audio_origin(source, 0.0))
            else:
                source.close()
        output.start_encoding()
        for part in parts:
            with _open_input(part) as container:
                stream = _video_stream(container)
                if (stream.average_rate or stream.guessed_rate) != fps:
                    raise VideoError(f"{part}: frame rate {stream.average_rate} differs from the first segment's {fps}")
                shift = round(Fraction(frames) / fps / stream.time_base)
                for packet in container.demux(stream):
                    if packet.pts is None:
                        continue
                    packet.pts += shift
                    packet.dts = packet.pts if packet.dts is None else packet.dts + shift
                    packet.stream = out_stream
                    output.mux(packet)
                    if audio is not None:
                        audio.write_until(output, float((packet.pts - shift) * stream.time_base) + frames / fps)
                frames += stream.frames
        if audio is not None:
            audio.finish(output, frames / fps)
        output.close()
        os.replace(partial, path)
    except BaseException:
        if audio is not None:
            audio.close()
        try:
            output.close()
        except Exception:  # noqa: BLE001 - already failing; the partial file is removed below
            pass
        partial.unlink(missing_ok=True)
        raise
    return frames
