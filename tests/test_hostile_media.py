"""Real-world videos nobody tried before, each as a small synthesised file: variable frame rate (timing and
audio follow the input), odd frame sizes, VP9 .webm, animated .gif, .mov (H.264 and ProRes), a face that
leaves the frame and comes back, and MP4 files with a damaged or missing index."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from skimage import data

from conftest import ScriptedDetector
from pipeline.faces import CropParams
from pipeline.samples import synthetic_frames, write_tone
from pipeline.stylize import FaceTracker
from pipeline.videoio import VideoError, VideoReader, VideoWriter, probe

SIZE = (64, 48)  # (W, H)
VFR_TIMES = [0.0, 0.1, 0.15, 0.4, 0.45, 0.9, 1.0, 1.3]


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return list(synthetic_frames(data.astronaut(), 12, SIZE, motion="pan"))


def encode(path: Path, frames, codec: str, fmt: str, pix_fmt: str = "yuv420p", times=None, audio: Path | None = None):
    """Write ``frames`` with PyAV (at ``times`` seconds when given, else at 10 fps), optionally with the audio
    packets of ``audio`` copied in."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        source = av.open(str(audio)) if audio is not None else None
        track = out.add_stream_from_template(source.streams.audio[0]) if source is not None else None
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if source is not None:
            for packet in source.demux(source.streams.audio[0]):
                if packet.pts is not None:
                    packet.stream = track
                    out.mux(packet)
            source.close()
    return path


def read_all(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with VideoReader(path) as reader:
        out, times = [], []
        for frame in reader:
            out.append(frame)
            times.append(reader.frame_time)
    return out, times


def roundtrip(path: Path, out: Path, timestamps: bool = True) -> Path:
    """What stylize_video does with the timing and the audio: every frame rewritten at its input time."""
    info = probe(path)
    with VideoReader(path) as reader, VideoWriter(out, info.fps, info.width, info.height, audio_from=path,
                                                  timestamps=timestamps) as writer:
        for frame in reader:
            writer.write_at(frame, reader.frame_time)
    return out


# ---------------------------------------------------------------------------------- variable frame rate
def test_variable_frame_rate_timing_and_audio_follow_the_input(tmp_path, frames):
    tone = tmp_path / "tone.m4a"
    write_tone(str(tone), 2.0)  # longer than the video: the output's audio ends with its video
    src = encode(tmp_path / "vfr.mp4", frames[: len(VFR_TIMES)], "libx264", "mp4", times=VFR_TIMES, audio=tone)
    _, times = read_all(src)
    assert times == pytest.approx(VFR_TIMES, abs=1e-3)

    out = roundtrip(src, tmp_path / "out.mp4")
    _, out_times = read_all(out)
    assert out_times == pytest.approx(VFR_TIMES, abs=1e-3)  # not 0, 0.1, 0.2, ... (the constant-rate grid)
    info = probe(out)
    assert info.has_audio and info.audio_codec == "aac"
    # the audio lasts as long as the video (last frame time + one average frame), within one AAC frame
    assert info.audio_duration == pytest.approx(VFR_TIMES[-1] + 1 / float(probe(src).fps), abs=0.03)

    constant = roundtrip(src, tmp_path / "constant.mp4", timestamps=False)  # the old behaviour, for contrast
    assert read_all(constant)[1] != pytest.approx(VFR_TIMES, abs=1e-3)


# --------------------------------------------------------------------------------------- other formats
@pytest.mark.parametrize("name, codec, fmt, pix_fmt", [
    ("vp9.webm", "libvpx-vp9", "webm", "yuv420p"),
    ("h264.mov", "libx264", "mov", "yuv420p"),
    ("prores.mov", "prores_ks", "mov", "yuv422p10le"),
    ("odd.mkv", "ffv1", "matroska", "yuv444p"),
    ("odd.mp4", "libx264", "mp4", "yuv444p"),
])
def test_formats_probe_read_and_rewrite(tmp_path, frames, name, codec, fmt, pix_fmt):
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    clip = frames if not name.startswith("odd") else [f[:47, :63] for f in frames]  # 63x47: odd both ways
    src = encode(tmp_path / name, clip, codec, fmt, pix_fmt)
    info = probe(src)
    assert (info.width, info.height, info.frame_count) == (clip[0].shape[1], clip[0].shape[0], len(clip))
    decoded, _ = read_all(src)
    assert len(decoded) == len(clip) and decoded[0].shape == clip[0].shape
    assert np.abs(decoded[5].astype(int) - clip[5]).mean() < 8  # the picture, not garbage
    out = roundtrip(src, tmp_path / "out.mp4")
    assert probe(out).frame_count == len(clip)
    assert read_all(out)[0][0].shape[:2] == (clip[0].shape[0] + clip[0].shape[0] % 2, clip[0].shape[1] + clip[0].shape[1] % 2)


def test_animated_gif_keeps_its_frame_durations(tmp_path, frames):
    path = tmp_path / "anim.gif"
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=[100, 50] * 6, loop=0)
    info = probe(path)
    assert (info.width, info.height, info.frame_count) == (SIZE[0], SIZE[1], 12)
    decoded, times = read_all(path)
    assert len(decoded) == 12
    expected = np.cumsum([0] + [100, 50] * 6)[:12] / 1000
    assert times == pytest.approx(list(expected), abs=0.011)  # GIF times are in 1/100 s
    assert read_all(roundtrip(path, tmp_path / "out.mp4"))[1] == pytest.approx(list(expected), abs=0.011)


# ------------------------------------------------------------------------------------------ damaged mp4
def test_mp4_cut_short_with_its_index_intact_is_an_error_not_a_short_video(tmp_path, frames):
    src = tmp_path / "full.mp4"
    with VideoWriter(src, 10, *SIZE) as writer:  # faststart: the index comes first
        for frame in frames * 3:
            writer.write(frame)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 6 // 10])
    assert probe(cut).frame_count == 36  # the index still lists every frame
    with pytest.raises(VideoError, match=r"ends after \d+ of the 36 frames its index lists"):
        read_all(cut)
    assert len(read_all(src)[0]) == 36  # the whole file reads


def test_mp4_without_its_index_says_so(tmp_path, frames):
    src = encode(tmp_path / "plain.mp4", frames * 3, "libx264", "mp4")  # index (moov) at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 6 // 10])
    with pytest.raises(VideoError, match="without (its|a readable) index"):
        probe(cut)


def test_mp4_with_a_damaged_index_says_so(tmp_path, frames):
    src = tmp_path / "full.mp4"
    with VideoWriter(src, 10, *SIZE) as writer:
        for frame in frames:
            writer.write(frame)
    raw = bytearray(src.read_bytes())
    at = raw.find(b"stco")  # the chunk offsets: every chunk now points past the end of the file
    raw[at + 12: at + 16] = b"\xff\xff\xff\xff"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(raw))
    with pytest.raises(VideoError, match="damaged"):
        probe(bad)


# --------------------------------------------------------------------------- a face that leaves and returns
def test_face_that_leaves_the_frame_and_comes_back_keeps_the_crop(monkeypatch):
    params = CropParams(h=400, w=600, top=100, bottom=300, left=200, right=400, scale=1.0, blur_count=0)
    detector = ScriptedDetector([(300, 200), (320, 200), None, None, None, (340, 210), (340, 210)], half_gap=32)
    monkeypatch.setattr("pipeline.tracking.select_face", lambda faces, which="largest": faces[0] if faces else None)
    tracker = FaceTracker(params, detector, alpha=1.0)
    crops = [tracker.update(np.zeros((400, 600, 3), np.uint8)) for _ in range(7)]
    assert {(c.right - c.left, c.bottom - c.top) for c in crops} == {(200, 200)}  # constant output size
    assert crops[2] == crops[3] == crops[4] == crops[1]  # while the face is away, the crop stays put
    assert crops[5].left == crops[1].left + 20  # and follows it again when it is back
