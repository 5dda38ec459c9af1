"""Sample inputs: the demo's bundled portrait and short test videos synthesised from a still image.

:func:`sample_photo` is scikit-image's public-domain astronaut; :func:`synthetic_frames` /
:func:`synthesize_test_video` make deterministic videos from a still portrait (moving or zooming crop
plus a sine tone), for the demo's sample clip, the tests and the benchmarks.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from pipeline.videoio.audio import AAC_BIT_RATE
from pipeline.videoio.reading import PathLike
from pipeline.videoio.writing import VideoWriter

__all__ = ["Motion", "sample_photo", "synthesize_test_video", "synthetic_frames", "write_tone"]


def sample_photo() -> np.ndarray:
    """The bundled sample portrait: scikit-image's public-domain astronaut (Eileen Collins, NASA), 512x512 RGB."""
    from skimage import data

    return data.astronaut()


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


def write_tone(path: str, duration: float, rate: int = 48000, frequency: float = 440.0) -> None:
    """Write a mono AAC file (MP4 container) holding a sine tone of ``duration`` seconds at -12 dBFS."""
    samples = np.arange(round(duration * rate))
    tone = (0.25 * np.sin(2 * np.pi * frequency * samples / rate)).astype(np.float32)[None]
    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        stream.bit_rate = AAC_BIT_RATE
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
            write_tone(tone, n_frames / fps)
        with VideoWriter(path, fps, first.shape[1], first.shape[0], audio_from=tone) as writer:
            writer.write(first)
            for frame in frames:
                writer.write(frame)
    finally:
        if tone is not None:
            os.unlink(tone)
    return path
