"""Every face of a video (``faces='all'``): faces tracked with stable ids, each stylised with its own crop and code,
blended into the main face's canvas, every frame written at its input time with the audio (see
:mod:`pipeline.multiface`)."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from common.errors import NoFaceError, OptionError
from pipeline.faces import DEFAULT_PADDING, CropParams, Face, apply_crop, crop_parameters, landmarks_in_crop
from pipeline.multiface.blend import (
    FADE_FRAMES,
    MASK_MEMORY,
    MIN_EYE_DISTANCE,
    MIN_SCORE,
    canvas_parameters,
    check_faces,
    composite,
    eye_distance,
    face_weight,
    scaled_size,
    select_faces,
    shift,
)
from pipeline.multiface.image import FaceRender, style_codes, stylize_crops
from pipeline.results import VideoResult, output_paths
from pipeline.tracking import FaceTracker
from pipeline.videoio import VideoError, VideoReader, VideoWriter, probe

__all__ = ["FaceTrack", "FrameFaces", "MultiFaceVideoResult", "stylize_video"]


class _Given:
    """A detector stand-in that reports the face it is handed (lets :class:`FaceTracker` smooth a track)."""

    def __init__(self):
        self.face: Face | None = None

    def detect(self, frame) -> list[Face]:
        return [self.face] if self.face is not None else []


@dataclass
class FaceTrack:
    """One face across frames: id, its crop (fixed scale and size), the tracker moving it, its style code."""

    id: int
    params: CropParams
    first_frame: int
    eyes: np.ndarray
    eye_distance: float
    tracker: object | None = None
    given: _Given | None = None
    style: torch.Tensor | None = None
    last_face: Face | None = None
    missed: int = 0
    age: int = 0
    mask: np.ndarray | None = None
    last_frame: int = -1
    current: CropParams | None = None
    start_centre: np.ndarray | None = None  # where its eye centre was when it got its code, less the crop's move

    def presence(self, fade: int) -> float:
        """Fade-in over the first ``fade`` rendered frames, fade-out over ``fade`` frames without a detection."""
        if fade <= 0:
            return 1.0 if self.missed == 0 else 0.0
        return float(min(1.0, (self.age + 1) / fade, max(0.0, 1.0 - self.missed / fade)))

    def follow(self, face: Face | None, frame: np.ndarray, index: int) -> None:
        """Record this frame's detection (or its absence) and move the crop with ``track``."""
        if face is not None:
            self.eyes, self.last_face, self.missed, self.last_frame = np.mean(face.eye_centres, axis=0), face, 0, index
        else:
            self.missed += 1
        if self.tracker is not None:
            self.given.face = face
            self.current = self.tracker.update(frame)


@dataclass
class FrameFaces:
    """What :func:`stylize_video` hands its ``on_frame`` callback for each written frame."""

    index: int
    input: np.ndarray
    output: np.ndarray
    canvas_output: np.ndarray
    crop: CropParams | None  # this frame's canvas crop (it moves with the main face under ``track``)
    faces: list[FaceRender]


@dataclass
class MultiFaceVideoResult(VideoResult):
    """:class:`pipeline.results.VideoResult` plus the tracks: ``tracks[id] = (first frame, last frame)`` (frames
    with a detection for the main track 0, frames blended for the others) and ``frame_tracks[i]`` = the ids of
    the extra faces blended into frame ``i``."""

    main_track: int = 0
    tracks: dict[int, tuple[int, int]] = field(default_factory=dict)
    frame_tracks: list[tuple[int, ...]] = field(default_factory=list)


def _match(tracks: Sequence[FaceTrack], faces: Sequence[Face], radius: float = 1.5) -> dict[int, Face]:
    """Greedy nearest matching of detections to tracks by eye-centre distance, within ``radius`` eye distances."""
    pairs = []
    for t in tracks:
        for j, f in enumerate(faces):
            d = float(np.linalg.norm(np.mean(f.eye_centres, axis=0) - t.eyes))
            if d <= radius * max(t.eye_distance, eye_distance(f)):
                pairs.append((d, t.id, j))
    matched: dict[int, Face] = {}
    used: set[int] = set()
    for _, tid, j in sorted(pairs):
        if tid not in matched and j not in used:
            matched[tid] = faces[j]
            used.add(j)
    return matched


def _detect_all(pipe, path) -> tuple[list[list[Face]], tuple[int, int]]:
    """Every frame's detections (kept for the stylising pass: one detection per frame in all) and the frame size."""
    detections, shape = [], None
    with VideoReader(path) as reader:
        for frame in reader:
            shape = shape or frame.shape[:2]
            detections.append(pipe.detector.detect(frame))
    return detections, shape


class _Tracks:
    """The faces of the video from frame to frame: the main track 0 (it sets the canvas), the live extra tracks,
    and their history. :meth:`frame` renders one frame."""

    def __init__(self, pipe, shape, detections, first, chosen, canvas_params, main_style, o: dict):
        self.pipe, self.shape, self.detections, self.first, self.chosen = pipe, shape, detections, first, chosen
        self.o = o
        main = chosen[0]
        self.main_params = crop_parameters(shape, main.landmarks, o["padding"])
        self.canvas_params, self.main_style = canvas_params, main_style
        self.main = self._new_track(0, main, first, self.main_params)
        self.main_centre = np.mean(main.eye_centres, axis=0)
        self.canvas_tracker = self.canvas_given = None
        if o["track"] and canvas_params is not None:
            self.canvas_given = _Given()
            self.canvas_tracker = FaceTracker(canvas_params, self.canvas_given)
        self.tracks: dict[int, FaceTrack] = {}  # the live extra tracks
        self.history: dict[int, tuple[int, int]] = {0: (first, first)}
        self.frame_tracks: list[tuple[int, ...]] = []
        self.next_id = 1

    def _new_track(self, tid: int, face: Face, index: int, params: CropParams | None = None, age: int = 0) -> FaceTrack:
        t = FaceTrack(tid, params or crop_parameters(self.shape, face.landmarks, self.o["padding"]), index,
                      np.mean(face.eye_centres, axis=0), eye_distance(face), last_face=face, last_frame=index, age=age)
        t.current = t.params
        if self.o["track"]:
            t.given = _Given()
            t.tracker = FaceTracker(t.params, t.given)
        return t

    def _add(self, face: Face, index: int, age: int = 0) -> FaceTrack:
        t = self._new_track(self.next_id, face, index, age=age)
        self.tracks[t.id] = t
        self.next_id += 1
        return t

    def _associate(self, index: int, frame: np.ndarray) -> dict[int, Face]:
        """This frame's faces by track id; unmatched faces that pass the thresholds start new tracks."""
        matched: dict[int, Face] = {}
        if index == self.first:  # the faces chosen at the start, by identity (present from the start: no fade-in)
            matched[0] = self.chosen[0]
            for f in self.chosen[1:]:
                matched[self._add(f, index, age=self.o["fade_frames"]).id] = f
        elif index > self.first:
            detected = self.detections[index] if index < len(self.detections) else self.pipe.detector.detect(frame)
            matched = _match([self.main, *self.tracks.values()], detected)
            used = {id(f) for f in matched.values()}
            for f in (f for f in select_faces(detected) if id(f) not in used):
                if f.score < MIN_SCORE or eye_distance(f) < MIN_EYE_DISTANCE:
                    continue
                if self.o["max_faces"] is not None and 1 + len(self.tracks) >= self.o["max_faces"]:
                    break
                matched[self._add(f, index).id] = f
        return matched

    def _active(self, frame: np.ndarray, matched: dict[int, Face]) -> list[FaceTrack]:
        """The extra tracks rendered in this frame: faded-out tracks dropped, new ones given their code (from their
        first frame where the style encoder finds the face)."""
        active = []
        for t in list(self.tracks.values()):
            if t.missed >= max(self.o["fade_frames"], 1):
                del self.tracks[t.id]  # faded out
                continue
            if t.style is None:
                face = matched.get(t.id)
                if face is None:
                    continue
                crop = apply_crop(frame, t.current)
                t.style = style_codes(self.pipe, [(crop, landmarks_in_crop(face.landmarks, frame, t.current))],
                                      self.o["style_id"], self.o["color_transfer"])[0]
                if t.style is None:
                    continue
                t.start_centre = np.mean(face.eye_centres, axis=0) - shift(t.params, t.current, self.shape)
            active.append(t)
        return active

    def frame(self, index: int, frame: np.ndarray) -> FrameFaces:
        """Track, stylise and blend one frame."""
        o, shape = self.o, self.shape
        cparams, mparams = self.canvas_params, self.main_params
        matched = self._associate(index, frame)
        if index >= self.first:
            if index > self.first:
                for t in [self.main, *self.tracks.values()]:
                    t.follow(matched.get(t.id), frame, index)
            if matched.get(0) is not None:
                self.history[0] = (self.first, index)
            if self.canvas_tracker is not None:
                self.canvas_given.face = matched.get(0)
                cparams = self.canvas_tracker.update(frame)
            mparams = self.main.current
        # the canvas: the main face's crop (or the whole frame), as `largest` renders it
        canvas = apply_crop(frame, cparams) if cparams is not None else frame
        canvas_outs, canvas_parsing = self.pipe.stylize_frames_parsed([canvas], self.main_style, o["style_degree"])
        canvas_out = canvas_outs[0]
        active = self._active(frame, matched)
        crops = [apply_crop(frame, t.current) for t in active]
        outs, parsings = stylize_crops(self.pipe, crops, [t.style for t in active], o["style_degree"], o["batch"])
        renders = []
        for t, crop, out, parsing in zip(active, crops, outs, parsings):
            weight = face_weight(parsing)
            if t.mask is not None:
                weight = o["mask_memory"] * t.mask + (1 - o["mask_memory"]) * weight
            t.mask = weight
            centre = t.start_centre + shift(t.params, t.current, shape)
            renders.append(FaceRender(matched.get(t.id), t.current, crop, out, weight, centre, track_id=t.id))
            self.history[t.id] = (self.history.get(t.id, (index, index))[0], index)
        presence = [t.presence(o["fade_frames"]) for t in active]
        for t in active:
            t.age += 1
        centre = self.main_centre + shift(self.main_params, mparams, shape)
        output = composite(shape, cparams, canvas_out, mparams, centre, renders, presence)
        if o["paste_scale"] is not None:
            from pipeline.pasteback import paste_faces  # lazily: pipeline.pasteback imports this package's blend

            output = paste_faces(frame, cparams, output, canvas_parsing[0], [r.alpha for r in renders], o["paste_scale"])
        self.frame_tracks.append(tuple(r.track_id for r in renders))
        return FrameFaces(index, canvas, output, canvas_out, cparams, renders)


def stylize_video(pipe, path: str | os.PathLike, output_dir: str | os.PathLike = "output",
                  style_id: int = 26, style_degree: float = 0.5, color_transfer: bool = False, scale_image: bool = True,
                  padding: Sequence[int] = DEFAULT_PADDING, track: bool = False, faces: str = "all",
                  max_faces: int | None = None, batch_size: int | None = None, progress: bool = True,
                  name: str | None = None, fade_frames: int = FADE_FRAMES, mask_memory: float = MASK_MEMORY,
                  on_frame: Callable[[FrameFaces], None] | None = None,
                  paste_scale: float | None = None) -> MultiFaceVideoResult:
    """Stylise every face of a video (``faces='all'``); writes the files :func:`pipeline.api.stylize_video` writes,
    each frame at its input frame's time, with the audio. The canvas size is fixed (with ``scale_image``: the main
    face's crop at the first frame with a face, grown to hold the face crops of every frame); with ``track`` it
    follows the main face. ``on_frame`` is called with each frame's :class:`FrameFaces` (for tests and figures).
    ``batch_size`` bounds how many face crops of one size go through the model together (default 1 on CPU, 4 on
    CUDA). With ``paste_scale`` the result video is the whole frame at that scale with every face pasted back
    (:mod:`pipeline.pasteback`); the input copy stays the canvas the model was fed."""
    from tqdm.auto import tqdm

    check_faces(faces, max_faces)
    if faces != "all":
        raise OptionError("pipeline.multiface renders faces='all'; 'largest' is VToonifyPipeline's own path")
    if not 0 <= mask_memory < 1:
        raise OptionError(f"mask_memory must be in [0, 1), got {mask_memory}")
    info = probe(path)
    detections, shape = _detect_all(pipe, path)
    first = next((i for i, found in enumerate(detections) if found), None)
    if first is None:
        raise NoFaceError(f"{path}: no face found in any frame")
    chosen = select_faces(detections[first], max_faces)
    main = chosen[0]
    main_params = crop_parameters(shape, main.landmarks, padding)
    canvas_params = None
    if scale_image:  # grown to hold every face's crop of every frame (so faces that enter later fit too)
        seen = [f for found in detections for f in select_faces(found, max_faces) if f is not main]
        canvas_params = canvas_parameters(shape, main_params, seen, padding)
    with VideoReader(path, info=info) as reader:
        first_frame = next(frame for index, frame in enumerate(reader) if index == first)
    main_lm = landmarks_in_crop(main.landmarks, first_frame, main_params if scale_image else None)
    main_style = style_codes(pipe, [(apply_crop(first_frame, main_params) if scale_image else first_frame, main_lm)],
                             style_id, color_transfer)[0]
    del first_frame
    if main_style is None:
        raise NoFaceError("no face found for the style encoder (FFHQ alignment failed)")
    options = dict(padding=padding, track=track, fade_frames=fade_frames, max_faces=max_faces, style_id=style_id,
                   color_transfer=color_transfer, style_degree=style_degree, mask_memory=mask_memory,
                   batch=batch_size or pipe.default_batch_size(), paste_scale=paste_scale)
    tracks = _Tracks(pipe, shape, detections, first, chosen, canvas_params, pipe.prepare_style(main_style), options)
    if canvas_params is not None:
        h, w = canvas_params.bottom - canvas_params.top, canvas_params.right - canvas_params.left
    else:
        h, w = shape
    out_w, out_h = (4 * w, 4 * h) if paste_scale is None else scaled_size(shape, paste_scale)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    in_path, out_path = output_paths(output_dir, name or Path(path).stem, pipe.backbone, ".mp4")
    written = 0
    timing = dict(audio_from=path, timestamps=True)  # output timing follows the input's, as the one-face path
    with VideoReader(path, info=info) as reader, VideoWriter(in_path, info.fps, w, h, **timing) as w_in, \
            VideoWriter(out_path, info.fps, out_w, out_h, **timing) as w_out, \
            tqdm(total=info.frame_count, unit="frame", disable=not progress, desc=out_path.name) as bar:
        for index, frame in enumerate(reader):
            if frame.shape[:2] != shape:
                raise VideoError(f"{path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, expected {shape[1]}x{shape[0]}")
            result = tracks.frame(index, frame)
            w_in.write_at(result.input, reader.frame_time)
            w_out.write_at(result.output, reader.frame_time)
            if on_frame is not None:
                on_frame(result)
            written += 1
            bar.update(1)
    return MultiFaceVideoResult(in_path, out_path, written, float(info.fps), first, canvas_params, 0, tracks.history,
                                tracks.frame_tracks)

