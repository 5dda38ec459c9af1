"""The audio track of a video output: copied packet for packet, or re-encoded to AAC, in sync with the video.

:func:`audio_track` picks the way for a source file and returns an object with ``write_until(output, t)``
(called as video frames are written, so audio and video are interleaved and memory stays bounded),
``finish(output, duration)`` and ``close()``.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from itertools import chain

import av
import numpy as np

__all__ = ["AAC_BIT_RATE", "COPIED_AUDIO_CODECS", "AudioCopy", "AudioTranscode", "audio_origin", "audio_track"]

#: Audio codecs whose packets are copied into the MP4 output as they are: MP4 can carry them and their
#: frames are short (at most 1536 samples, 32 ms at 48 kHz), so cutting the track at a packet boundary
#: ends it within half a frame of the video. Others (PCM, Vorbis, FLAC, ALAC, ...) are re-encoded to AAC.
COPIED_AUDIO_CODECS = frozenset({"aac", "mp3", "opus", "ac3", "eac3"})
#: Sample rates the AAC encoder accepts; other rates are resampled to 48 kHz.
_AAC_SAMPLE_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350})
AAC_BIT_RATE = 192_000


def audio_origin(container: av.container.InputContainer, offset: float) -> float:
    """Source time (s) that becomes t = 0 of the output: the first video frame (if any) plus ``offset``."""
    start = 0.0
    if container.streams.video:
        video = container.streams.video[0]
        if video.start_time is not None and video.time_base is not None:
            start = float(video.start_time * video.time_base)
    return start + offset


class AudioCopy:
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


class AudioTranscode:
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
        self._stream.bit_rate = AAC_BIT_RATE
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


def audio_track(source: av.container.InputContainer, output: av.container.OutputContainer,
                offset: float = 0.0) -> AudioCopy | AudioTranscode | None:
    """The audio of ``source`` for ``output`` (which then owns ``source``), or ``None`` when it has no audio.

    Packets of :data:`COPIED_AUDIO_CODECS` are copied, others re-encoded to AAC. Source time ``offset``
    seconds after the source's first video frame becomes t = 0 of the output. Without audio, ``source``
    is closed at once.
    """
    if not source.streams.audio:
        source.close()
        return None
    copy = source.streams.audio[0].codec.canonical_name in COPIED_AUDIO_CODECS
    return (AudioCopy if copy else AudioTranscode)(source, output, audio_origin(source, offset))
