"""Video input/output (pipeline/videoio/, pipeline/samples.py): probing, streaming decode, H.264 + audio writing,
atomic output."""
from __future__ import annotations

import weakref
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data

from pipeline.samples import synthesize_test_video, synthetic_frames
from pipeline.videoio import VideoError, VideoReader, VideoWriter, probe

SIZE = (128, 96)  # (W, H) of the test videos
FPS = 10
N = 12


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def videos(tmp_path_factory, astronaut) -> dict[str, Path]:
    """Test videos shared by the tests of this module (created once)."""
    folder = tmp_path_factory.mktemp("videos")
    return {
        "static": synthesize_test_video(folder / "static.mp4", astronaut, N, FPS, SIZE, motion="static"),
        "pan": synthesize_test_video(folder / "pan.mp4", astronaut, N, FPS, SIZE, motion="pan"),
        "silent": synthesize_test_video(folder / "silent.mp4", astronaut, N, FPS, SIZE, with_audio=False, motion="zoom"),
    }


def read_all(path: Path) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return list(reader)


def decoded_audio(path: Path) -> tuple[np.ndarray, int]:
    """All audio samples of a file as a (channels, samples) float array, and the sample rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
        return np.concatenate(frames, axis=1).astype(np.float64), stream.sample_rate


def write_frames(path: Path, frames: list[np.ndarray], fps=FPS, **kwargs) -> VideoWriter:
    height, width = frames[0].shape[:2]
    with VideoWriter(path, fps, width, height, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    return writer


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


# --- probe ---------------------------------------------------------------------------------------


def test_probe_fields(videos):
    info = probe(videos["static"])
    assert (info.width, info.height) == SIZE
    assert info.fps == pytest.approx(FPS, abs=1e-3)
    assert info.frame_count == N
    assert info.duration == pytest.approx(N / FPS, abs=1e-3)
    assert info.codec == "h264" and info.rotation == 0
    assert info.has_audio and info.audio_codec == "aac"
    assert info.audio_sample_rate == 48000 and info.audio_channels == 1
    assert info.audio_duration == pytest.approx(info.duration, abs=1 / FPS)


def test_probe_without_audio(videos):
    info = probe(videos["silent"])
    assert not info.has_audio
    assert info.audio_codec is None and info.audio_sample_rate is None and info.audio_duration is None


def test_probe_fractional_fps(tmp_path, astronaut):
    frames = list(synthetic_frames(astronaut, 4, (32, 32), "static"))
    write_frames(tmp_path / "ntsc.mp4", frames, fps=Fraction(30000, 1001))
    info = probe(tmp_path / "ntsc.mp4")
    assert info.fps == pytest.approx(30000 / 1001, abs=1e-3)
    assert info.frame_count == 4


# --- errors --------------------------------------------------------------------------------------


def _text_as_mp4(folder: Path) -> Path:
    path = folder / "notes.mp4"
    path.write_text("this is a text file, not a video\n" * 20)
    return path


def _empty(folder: Path) -> Path:
    path = folder / "empty.mp4"
    path.touch()
    return path


def _png(folder: Path) -> Path:
    path = folder / "portrait.png"
    cv2.imwrite(str(path), data.astronaut()[:, :, ::-1])
    return path


def _audio_only(folder: Path) -> Path:
    path = folder / "tone.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _no_frames(folder: Path) -> Path:
    """An AVI file with a video stream but not a single frame."""
    path = folder / "no_frames.avi"
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=FPS)
    stream.width, stream.height = 64, 48
    container.start_encoding()
    container.close()
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda folder: folder / "missing.mp4", "no such file"),
        (_text_as_mp4, "not a readable media file"),
        (_empty, "empty file"),
        (_png, "still image"),
        (_audio_only, "no video stream"),
        (_no_frames, "no frames"),
    ],
    ids=["missing", "text", "empty", "png", "audio-only", "no-frames"],
)
def test_unusable_inputs_raise_video_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(VideoError, match=message):
        probe(path)
    with pytest.raises(VideoError, match=message):
        VideoReader(path)


def test_video_error_is_a_value_error():
    assert issubclass(VideoError, ValueError)


# --- reading -------------------------------------------------------------------------------------


def test_static_roundtrip(videos, astronaut):
    frames = read_all(videos["static"])
    expected = list(synthetic_frames(astronaut, N, SIZE, "static"))
    assert len(frames) == N == probe(videos["static"]).frame_count
    for frame, reference in zip(frames, expected):
        assert frame.shape == (SIZE[1], SIZE[0], 3) and frame.dtype == np.uint8 and frame.flags.c_contiguous
        assert mean_abs_error(frame, reference) < 6


@pytest.mark.parametrize("motion", ["pan", "zoom"])
def test_moving_roundtrip(tmp_path, astronaut, motion):
    path = synthesize_test_video(tmp_path / f"{motion}.mp4", astronaut, N, FPS, SIZE, with_audio=False, motion=motion, seed=3)
    frames = read_all(path)
    expected = list(synthetic_frames(astronaut, N, SIZE, motion, seed=3))
    assert len(frames) == N
    assert max(mean_abs_error(f, e) for f, e in zip(frames, expected)) < 8
    assert mean_abs_error(expected[0], expected[-1]) > 10  # the camera really moves


def test_reader_decodes_like_opencv(videos):
    """By default frames are converted as OpenCV converts them (the original VToonify read videos with it)."""
    capture = cv2.VideoCapture(str(videos["pan"]))
    with VideoReader(videos["pan"]) as reader:
        for frame in reader:
            ok, bgr = capture.read()
            assert ok and np.abs(frame.astype(int) - bgr[:, :, ::-1]).max() <= 1  # identical with opencv 5.0
    capture.release()


def test_accurate_color_removes_the_darkening(videos, astronaut):
    reference = np.stack(list(synthetic_frames(astronaut, N, SIZE, "static"))).astype(np.float64)
    bias = {}
    for accurate in (False, True):
        with VideoReader(videos["static"], accurate_color=accurate) as reader:
            bias[accurate] = float((np.stack(list(reader)) - reference).mean())
    assert bias[False] < -0.5 and abs(bias[True]) < 0.3


def test_synthetic_frames_are_deterministic(astronaut):
    for motion in ("pan", "zoom", "static"):
        first = list(synthetic_frames(astronaut, 5, (48, 64), motion, seed=7))
        again = list(synthetic_frames(astronaut, 5, (48, 64), motion, seed=7))
        assert all(np.array_equal(a, b) for a, b in zip(first, again))
        assert all(f.shape == (64, 48, 3) and f.dtype == np.uint8 for f in first)
    pans = [list(synthetic_frames(astronaut, 5, (48, 64), "pan", seed=s))[-1] for s in (0, 1)]
    assert not np.array_equal(*pans)
    static = list(synthetic_frames(astronaut, 3, (48, 64), "static"))
    assert all(np.array_equal(static[0], f) for f in static)


def test_iter_batches(videos):
    with VideoReader(videos["pan"]) as reader:
        assert [len(batch) for batch in reader.iter_batches(5)] == [5, 5, 2]
    with VideoReader(videos["pan"]) as reader, pytest.raises(ValueError):
        next(reader.iter_batches(0))


def test_reader_is_lazy_and_keeps_no_frames(tmp_path, astronaut):
    path = synthesize_test_video(tmp_path / "long.mp4", astronaut, n_frames=200, fps=25, size=(32, 32), with_audio=False)
    with VideoReader(path) as reader:
        assert reader.info.frame_count == 200
        next(reader)
        # One frame handed out; only the decoder's short reordering/threading queue was read ahead.
        assert reader.frames_read == 1
        assert reader.packets_read < 50
        alive = []
        for frame in reader:
            alive.append(weakref.ref(frame))
        del frame
        assert reader.frames_read == 200
        assert not any(ref() is not None for ref in alive)  # the reader holds on to no frame


def test_reader_odd_size_and_uncounted_frames(tmp_path, astronaut):
    """Matroska states no frame count (it is counted); a lossless odd-sized video reads back exactly."""
    frames = list(synthetic_frames(astronaut, 5, (63, 47), "pan"))
    path = tmp_path / "odd.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 63, 47, "bgr0"
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = i
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    info = probe(path)
    assert (info.width, info.height, info.frame_count) == (63, 47, 5)
    assert all(np.array_equal(a, b) for a, b in zip(read_all(path), frames))


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_reader_applies_rotation(tmp_path, astronaut, degrees):
    frames = list(synthetic_frames(astronaut, 3, (64, 48), "static"))
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(degrees)  # counter-clockwise, as players apply it
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = i
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    upright = np.rot90(frames[0], degrees // 90)
    info = probe(path)
    assert info.rotation == degrees % 360
    assert (info.height, info.width) == upright.shape[:2]
    first = read_all(path)[0]
    assert first.shape == upright.shape
    assert mean_abs_error(first, upright) < 10


# --- writing -------------------------------------------------------------------------------------


def test_writer_output_is_h264_with_counter(tmp_path, astronaut):
    frames = list(synthetic_frames(astronaut, 6, (64, 64), "pan"))
    height, width = frames[0].shape[:2]
    with VideoWriter(tmp_path / "out.mp4", FPS, width, height) as writer:
        writer.write(frames[0])
        assert writer.frames_written == 1
        for frame in frames[1:]:
            writer.write(frame)
    assert writer.frames_written == 6 and writer.audio_mode is None
    info = probe(tmp_path / "out.mp4")
    assert (info.codec, info.frame_count, info.width, info.height) == ("h264", 6, 64, 64)
    assert not info.has_audio


def test_writer_pads_odd_sizes(tmp_path, astronaut):
    frames = list(synthetic_frames(astronaut, 4, (63, 47), "static"))
    writer = write_frames(tmp_path / "odd.mp4", frames)
    assert (writer.width, writer.height) == (64, 48)
    out = read_all(tmp_path / "odd.mp4")
    assert out[0].shape == (48, 64, 3)
    assert mean_abs_error(out[0][:47, :63], frames[0]) < 8
    assert mean_abs_error(out[0][:, 63], out[0][:, 62]) < 8  # the added column repeats the last one


def test_writer_rejects_bad_frames(tmp_path):
    with VideoWriter(tmp_path / "out.mp4", FPS, 32, 32) as writer:
        with pytest.raises(ValueError, match="shape"):
            writer.write(np.zeros((32, 32), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            writer.write(np.zeros((32, 32, 3), np.float32))
        writer.write(np.zeros((32, 32, 3), np.uint8))


def test_atomic_write_on_exception(tmp_path, astronaut):
    frames = list(synthetic_frames(astronaut, 3, (32, 32), "pan"))
    final = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(final, FPS, 32, 32) as writer:
            for frame in frames:
                writer.write(frame)
            assert writer.partial_path.exists() and not final.exists()
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # neither the final nor the partial file remains


def test_failed_write_leaves_an_existing_file_untouched(tmp_path):
    final = tmp_path / "out.mp4"
    final.write_bytes(b"previous result")
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(final, FPS, 32, 32) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            raise KeyboardInterrupt
    assert final.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_partial_file_is_renamed_on_close(tmp_path):
    final = tmp_path / "out.mp4"
    writer = VideoWriter(final, FPS, 32, 32)
    writer.write(np.zeros((32, 32, 3), np.uint8))
    assert writer.partial_path.parent == tmp_path and writer.partial_path.name.startswith(".")
    writer.close()
    writer.close()  # idempotent
    assert final.exists() and not writer.partial_path.exists()


def test_closing_without_frames_saves_nothing(tmp_path):
    with pytest.raises(VideoError, match="no frames"):
        with VideoWriter(tmp_path / "out.mp4", FPS, 32, 32):
            pass
    assert list(tmp_path.iterdir()) == []


def test_writer_input_errors(tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "out.mp4", FPS, 32, 32)
    with pytest.raises(VideoError, match="no such file"):
        VideoWriter(tmp_path / "out.mp4", FPS, 32, 32, audio_from=tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "out.mp4", 0, 32, 32)
    assert list(tmp_path.iterdir()) == []


# --- audio ---------------------------------------------------------------------------------------


def test_synthesized_audio_matches_video_duration(videos):
    info = probe(videos["static"])
    assert info.has_audio
    assert abs(info.audio_duration - info.duration) <= 1 / FPS
    samples, rate = decoded_audio(videos["static"])
    spectrum = np.abs(np.fft.rfft(samples[0, :rate // 2]))
    peak = np.fft.rfftfreq(rate // 2, 1 / rate)[np.argmax(spectrum)]
    assert peak == pytest.approx(440, abs=2)  # the 440 Hz tone


def test_audio_is_copied_and_in_sync(tmp_path, videos):
    source = videos["pan"]
    writer = write_frames(tmp_path / "out.mp4", read_all(source), audio_from=source)
    assert writer.audio_mode == "copy"
    info = probe(tmp_path / "out.mp4")
    assert info.has_audio and info.audio_codec == "aac"
    assert abs(info.audio_duration - info.duration) <= 1 / FPS
    # The packets are copied: the decoded audio is the source's, sample for sample, from t = 0.
    out, _ = decoded_audio(tmp_path / "out.mp4")
    src, _ = decoded_audio(source)
    n = min(out.shape[1], src.shape[1])
    np.testing.assert_array_equal(out[:, :n], src[:, :n])


def test_audio_is_trimmed_to_a_shorter_video(tmp_path, videos):
    frames = read_all(videos["pan"])[:7]
    write_frames(tmp_path / "short.mp4", frames, audio_from=videos["pan"])
    info = probe(tmp_path / "short.mp4")
    assert info.duration == pytest.approx(0.7, abs=1e-3)
    assert abs(info.audio_duration - info.duration) <= 1 / FPS


def test_audio_offset_skips_source_audio(tmp_path, videos):
    """With ``audio_offset`` (leading source frames skipped), the output starts later in the source audio."""
    frames = read_all(videos["pan"])[4:]
    write_frames(tmp_path / "late.mp4", frames, audio_from=videos["pan"], audio_offset=4 / FPS)
    out, rate = decoded_audio(tmp_path / "late.mp4")
    src, _ = decoded_audio(videos["pan"])
    start = round(4 / FPS * rate)
    n = min(out.shape[1], src.shape[1] - start) - 2048
    np.testing.assert_array_equal(out[:, :n], src[:, start:start + n])


def test_no_audio_unless_requested(tmp_path, videos):
    frames = read_all(videos["pan"])
    write_frames(tmp_path / "plain.mp4", frames)
    assert not probe(tmp_path / "plain.mp4").has_audio
    writer = write_frames(tmp_path / "from_silent.mp4", frames, audio_from=videos["silent"])
    assert writer.audio_mode is None and not probe(tmp_path / "from_silent.mp4").has_audio


def test_pcm_audio_is_reencoded_to_aac_in_sync(tmp_path, videos):
    """A codec that is not copied (PCM in Matroska, starting 10 ms after the video) is re-encoded to AAC."""
    frames = read_all(videos["pan"])
    rate, delay = 44100, 441
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate * 2) / rate) * 32767).astype(np.int16)
    source = tmp_path / "pcm.mkv"
    with av.open(str(source), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = i
            container.mux(video.encode(picture))
        for start in range(0, tone.size, 4410):
            chunk = av.AudioFrame.from_ndarray(tone[None, start:start + 4410], format="s16", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = rate, delay + start, Fraction(1, rate)
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))
        container.mux(video.encode(None))

    writer = write_frames(tmp_path / "out.mp4", frames[:8], audio_from=source)
    assert writer.audio_mode == "aac"
    info = probe(tmp_path / "out.mp4")
    assert info.audio_codec == "aac" and info.audio_sample_rate == rate
    assert abs(info.audio_duration - info.duration) <= 1 / FPS
    out, _ = decoded_audio(tmp_path / "out.mp4")
    expected = tone[: out.shape[1] - delay] / 32768
    assert np.abs(out[0, : delay - 64]).max() < 0.05  # silence until the source audio starts
    assert np.abs(out[0, delay + 1024 : 20000] - expected[1024 : 20000 - delay]).max() < 0.05  # then the tone, aligned
