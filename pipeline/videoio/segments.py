"""Joining MP4 segments (one per process of a sharded run) into one video without re-encoding."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from common.atomic import atomic_output
from pipeline.videoio.audio import audio_track
from pipeline.videoio.reading import PathLike, VideoError, open_input, video_stream

__all__ = ["SEGMENT_CODEC_OPTIONS", "concat_segments"]

#: Encoder options for segments that will be joined by :func:`concat_segments`: no B-frames, so every
#: segment's decode order starts at its first frame and the joined timestamps stay monotonic.
SEGMENT_CODEC_OPTIONS = {"bf": "0"}


def concat_segments(parts: list[PathLike], path: PathLike, audio_from: PathLike | None = None) -> int:
    """Join MP4 segments written by :class:`VideoWriter` (same size, codec and frame rate) without re-encoding.

    The compressed video packets of ``parts`` are copied one segment after another, their timestamps
    shifted by the duration of the segments before; the audio of ``audio_from`` (if any) is added as
    :class:`VideoWriter` does. Segments must have been encoded without B-frames
    (``codec_options=SEGMENT_CODEC_OPTIONS``). The result is written atomically (:func:`common.atomic.atomic_output`);
    returns its frame count.
    """
    if not parts:
        raise ValueError("concat_segments needs at least one segment")
    with atomic_output(path) as partial:
        return _join(parts, partial, audio_from)


def _join(parts: list[PathLike], partial: Path, audio_from: PathLike | None) -> int:
    """Write the joined video to ``partial``; returns its frame count."""
    output = av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"})
    audio = None
    frames = 0
    try:
        with open_input(parts[0]) as first:
            template = video_stream(first)
            out_stream = output.add_stream_from_template(template)
            fps = template.average_rate or template.guessed_rate
        if audio_from is not None:
            audio = audio_track(open_input(audio_from), output)
        output.start_encoding()
        for part in parts:
            with open_input(part) as container:
                stream = video_stream(container)
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
    except BaseException:
        if audio is not None:
            audio.close()
        try:
            output.close()
        except Exception:  # noqa: BLE001 - already failing; the temporary file is removed by atomic_output
            pass
        raise
    return frames
