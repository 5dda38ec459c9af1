"""What a one-face video stylisation decides before it stylises a frame: :func:`make_plan`.

The first frame with a face sets the crop (``scale_image``) and the style code of the whole video; the frames
read while looking for it are kept (up to :data:`HELD_FRAMES`) and stylised from memory, so a video whose face
shows early is decoded once. Every option is checked against the others here, before any output exists.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import NoFaceError, OptionError
from common.options import check
from pipeline.faces import CropParams, apply_crop, crop_parameters, landmarks_in_crop, select_face
from pipeline.memory import frames_batched
from pipeline.parsing import ParsingMaps
from pipeline.results import output_paths
from pipeline.tensors import fit_side, fitted_size
from pipeline.tracking import FaceTracker
from pipeline.videoio import SEGMENT_CODEC_OPTIONS, VideoError, VideoInfo, VideoReader, probe

__all__ = ["HELD_FRAMES", "FirstFace", "VideoPlan", "find_first_face", "make_plan"]

#: Frames decoded while looking for the first face that are kept for the stylising pass (beyond them the video is
#: decoded again from its start): a bound on memory, not on which videos work.
HELD_FRAMES = 16


@dataclass
class FirstFace:
    """The first frame with a face: its index, crop, the cropped frame, the landmarks in it, and the open reader
    with the frames decoded so far (``held``: ``(index, frame, time)``, empty when there were too many)."""

    index: int
    params: CropParams | None
    crop: np.ndarray
    landmarks: np.ndarray
    reader: VideoReader | None = None
    held: deque = field(default_factory=deque)


def find_first_face(pipe, path: str | os.PathLike, padding, scale_image: bool, info: VideoInfo | None = None,
                    keep_open: bool = False) -> FirstFace:
    """The first frame with a face (:func:`select_face`'s choice). With ``keep_open`` the reader stays open in the
    result, positioned after that frame, holding the frames read (when at most :data:`HELD_FRAMES`)."""
    reader = VideoReader(path, info=info)
    held: deque = deque()
    try:
        for index, frame in enumerate(reader):
            if keep_open:
                held.append((index, frame, reader.frame_time))
                if len(held) > HELD_FRAMES:
                    held.clear()
                    keep_open = False  # too far in: the stylising pass reads the file again
            face = select_face(pipe.detector.detect(frame))
            if face is None:
                continue
            params = crop_parameters(frame, face.landmarks, padding) if scale_image else None
            crop = apply_crop(frame, params) if params else frame
            found = FirstFace(index, params, crop, landmarks_in_crop(face.landmarks, frame, params))
            if keep_open:
                found.reader, found.held, reader = reader, held, None
            return found
    finally:
        if reader is not None:
            reader.close()
    raise NoFaceError(f"{path}: no face found in any frame")


@dataclass
class VideoPlan:
    """What :func:`pipeline.video.single.stylize_video` stylises and where it writes (see :func:`make_plan`)."""

    path: str | os.PathLike
    info: VideoInfo
    first: int  # index of the first frame with a face
    params: CropParams | None  # rescale/crop of the first face (None: frames as they are)
    style: object  # the prepared style of every frame (PipelineModels.prepare_style)
    tracker: FaceTracker | None
    maps: ParsingMaps | None  # precomputed parsing logits, one per frame
    smoother: object | None  # pipeline.smoothing.ParsingSmoother
    size: tuple[int, int]  # (h, w) of the cropped frames
    in_path: Path
    out_path: Path
    start: int
    stop: int | None
    writer_options: dict
    batch_size: int
    max_side: int | None = None
    paste_scale: float | None = None  # paste_back's output scale (None: no paste-back)
    reader: VideoReader | None = None  # the reader the first face was found with (still open), and its frames
    held: deque = field(default_factory=deque)

    @property
    def total(self) -> int:
        """Frames that will be stylised (as the container declares them)."""
        count = self.info.frame_count
        return (min(self.stop, count) if self.stop is not None else count) - self.start

    def open(self) -> VideoReader:
        """The reader of the stylising pass: the one kept from the first-face search, or a new one."""
        if self.reader is not None and self.start == 0:
            return self.reader
        self.close()
        return VideoReader(self.path, info=self.info)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader, self.held = None, deque()

    def frames(self, reader: VideoReader) -> Iterator[tuple[int, np.ndarray, float | None]]:
        """``(index, frame, time)`` of the whole video: the held frames first when ``reader`` is the kept one."""
        index = -1
        if reader is self.reader:
            while self.held:
                item = self.held.popleft()
                index = item[0]
                yield item
        for index, frame in enumerate(reader, start=index + 1):
            yield index, frame, reader.frame_time

    def crops(self, reader: VideoReader) -> Iterator[tuple[int, np.ndarray, float | None, tuple | None]]:
        """``(index, cropped frame, presentation time, source)`` of the frame range: decode + crop (+ tracking); runs
        in the read-ahead thread when overlap is on. ``source``: ``(frame, its crop)`` for the paste-back, else None."""
        h, w = self.size
        for index, frame, time in self.frames(reader):
            if index < self.start:
                continue
            if self.stop is not None and index >= self.stop:
                break
            params = self.params
            if self.tracker is not None and index >= self.first:
                params = self.tracker.update(frame)
            crop = fit_side(apply_crop(frame, params) if params is not None else frame, self.max_side)
            if crop.shape[:2] != (h, w):
                raise VideoError(f"{self.path}: frame {index} is {crop.shape[1]}x{crop.shape[0]}, expected {w}x{h}")
            yield index, crop, time, (frame, params) if self.paste_scale is not None else None


def make_plan(pipe, path: str | os.PathLike, output_dir: str | os.PathLike, options, name: str | None = None,
              frame_range: tuple[int, int] | None = None, exemplar=None) -> VideoPlan:
    """Everything the one-face video path decides before reading frames: first face, crop, style code, tracker,
    parsing maps or smoother, output paths and frame range (checked against each other). ``options``: a
    :class:`pipeline.api.VideoOptions`; ``exemplar``: the Z+ code of ``options.style_image``."""
    o = options
    if frame_range is not None and (o.track or o.smooth_parsing):
        raise OptionError("--track and --smooth_parsing need the whole video in one process (no frame ranges)")
    maps = ParsingMaps(o.parsing_map_path) if o.parsing_map_path else None
    info = probe(path)
    batch_size = o.batch_size or pipe.default_batch_size()
    batched = frames_batched(batch_size, frame_range[1] - frame_range[0] if frame_range else info.frame_count)
    if not o.scale_image:
        pipe._check_memory(fitted_size((info.height, info.width), o.max_side), batched, max_side=o.max_side)
    first = find_first_face(pipe, path, o.padding, o.scale_image, info, keep_open=frame_range is None)
    try:
        style = pipe.style_code(first.crop, o.style_id, o.color_transfer, first.landmarks, exemplar)
        first_crop = fit_side(first.crop, o.max_side)
        pipe._check_memory(first_crop.shape[:2], batched, scale_image=o.scale_image, max_side=o.max_side)
        h, w = first_crop.shape[:2]
        if maps is not None:
            maps.check_size((h, w))
        smoother = None
        if o.smooth_parsing:
            from pipeline.smoothing import ParsingSmoother

            smoother = ParsingSmoother(window_size=check("smooth_parsing", o.smooth_parsing))
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        in_path, out_path = output_paths(output_dir, name or Path(path).stem, pipe.backbone, ".mp4")
        start, stop = 0, None
        writer_options: dict = {"audio_from": path, "timestamps": True}  # output timing follows the input's
        if frame_range is not None:
            start, stop = frame_range
            in_path, out_path = (p.with_name(f"{p.stem}.seg{start:08d}.mp4") for p in (in_path, out_path))
            writer_options = {"codec_options": SEGMENT_CODEC_OPTIONS}
        tracker = FaceTracker(first.params, pipe.detector) if (o.track and first.params is not None) else None
        return VideoPlan(path, info, first.index, first.params, pipe.prepare_style(style), tracker, maps, smoother,
                         (h, w), in_path, out_path, start, stop, writer_options, batch_size, o.max_side,
                         o.paste_scale if o.paste_back else None, first.reader, first.held)
    except BaseException:
        if first.reader is not None:
            first.reader.close()
        raise
