"""Every face in the frame: each detected face stylised at its own scale, with its own style code.

``faces='largest'`` (the default of :meth:`VToonifyPipeline.stylize_image` / ``stylize_video``) renders the
whole frame or crop with the largest face's code and scale. ``faces='all'`` (this module) adds every other
face:

* **Canvas.** What ``largest`` produces for the main (largest) face: without ``scale_image`` the whole frame;
  with it the main face's rescaled frame (eye distance 64), cropped to the union of every face's padded crop
  mapped into it, clipped to the frame, edges floored to multiples of 8 (the crop rule of
  :func:`pipeline.faces.crop_parameters`). The main face's crop is a sub-box of the canvas, and the main
  face's style code is computed on that crop, so it is the code ``largest`` uses.
* **Other faces.** Each one gets its own :func:`~pipeline.faces.crop_parameters` crop (eye distance 64, the
  same padding), its own style code (:meth:`VToonifyPipeline.style_code`), its own parsing logits
  (:meth:`VToonifyPipeline.parse`) and its own VToonify forward; crops of one size are batched (``batch``).
* **Blend.** A face's weight, in its own crop pixels, is ``m * t``: ``m`` the parsing probability of the
  face, hair and neck classes (:data:`MASK_CLASSES`), remapped to 1 above and 0 below :data:`MASK_RANGE`,
  blurred with a Gaussian of sigma :data:`FEATHER`;
  ``t`` a smoothstep ramp from 0 at each crop edge to 1 at :data:`TAPER` pixels inside (edges on the frame
  border are not ramped: the canvas ends there too). Where the crops of several faces (the main one
  included) cover a pixel, face ``j`` owns the share ``softmax_j(log t_j - d_j / OWNERSHIP_SOFTNESS)``, with
  ``d_j`` the distance to its eye centre (the centre of its padded crop) in its own crop pixels, so the face
  nearer its own crop centre wins, smoothly. Face ``k``'s weight ``alpha_k = m_k * t_k * share_k`` and its
  output are resampled into the canvas (one bilinear affine warp each; the maps are pure scale + offset
  because every crop is a rescale of the same frame) and
  ``out = canvas * (1 - sum alpha_k) + sum alpha_k * face_k``, rounded to uint8. Where every ``alpha_k``
  is 0 (outside all other faces' crops) the output is the canvas exactly.

Videos (:func:`stylize_video`): faces are detected on every frame first (the detections are kept for the
stylising pass, so each frame is detected once); with ``scale_image`` the canvas is the main face's crop at
the first frame with a face, grown to hold every face crop of every frame, so its size is constant. Every
face is a :class:`FaceTrack` with a stable id, matched frame to frame by eye-centre distance (within 1.5 eye
distances, nearest first). A track keeps the crop size and scale of its first detection and, with ``track``, its
crop follows the face with the smoothing of :class:`pipeline.stylize.FaceTracker` (one per track; the main
track moves the canvas). Its style code comes from its first frame where the style encoder finds the face.
Faces that appear later are picked up (up to ``max_faces`` live tracks); a track fades in and, once its face
is gone, fades out over ``fade_frames`` frames; its mask is smoothed in time (an exponential average,
:data:`MASK_MEMORY`). Every input frame is written, with the audio.

Cost: one more parsing + VToonify forward of a (by default 400x400) crop per extra face and frame, one style
encoder pass per face, and in videos a face detection on every frame. ``max_faces`` bounds it.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.faces import DEFAULT_PADDING, CropParams, Face, apply_crop, crop_parameters, landmarks_in_crop, select_face
from pipeline.stylize import (
    FaceTracker,
    ImageResult,
    NoFaceError,
    VideoResult,
    VToonifyPipeline,
    _pad_to_multiple,
    frames_to_tensor,
    tensor_to_frames,
)

__all__ = [
    "FACE_MODES",
    "MASK_CLASSES",
    "MASK_RANGE",
    "FEATHER",
    "TAPER",
    "OWNERSHIP_SOFTNESS",
    "MIN_EYE_DISTANCE",
    "MIN_SCORE",
    "FaceRender",
    "MultiFaceImageResult",
    "MultiFaceVideoResult",
    "FaceTrack",
    "FrameFaces",
    "check_faces",
    "select_faces",
    "canvas_parameters",
    "output_map",
    "resample",
    "face_weight",
    "ownership",
    "blend",
    "stylize_image",
    "stylize_video",
]

#: The values of the ``faces`` option.
FACE_MODES = ("largest", "all")
#: BiSeNet (CelebAMask-HQ) labels blended: skin 1, brows 2-3, eyes 4-5, glasses 6, ears 7-8, earring 9,
#: nose 10, mouth 11, lips 12-13, neck 14, necklace 15, hair 17 (not background 0, cloth 16, hat 18).
MASK_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17)
#: The parsing probability ``p`` of :data:`MASK_CLASSES` becomes the mask ``smoothstep((p - lo) / (hi - lo))``:
#: 1 where the parser gives the pixel to the face at ``p >= hi``, 0 at ``p <= lo``. The face is then wholly the
#: face's own render (a raw ``p`` of 0.85-0.95 inside a face would leave 5-15% of the canvas, rendered with the
#: main face's code and scale, mixed in) and the mask still ends softly where the parser is unsure.
MASK_RANGE = (0.25, 0.75)
#: Sigma of the Gaussian that feathers a face's mask, in pixels of its own crop (eye distance 64).
FEATHER = 6.0
#: Width of the ramp from 0 at a crop edge to 1 inside, in crop pixels.
TAPER = 16
#: Softness of the ownership split between overlapping crops, in crop pixels of distance.
OWNERSHIP_SOFTNESS = 16.0
#: Extra faces need at least this horizontal eye distance in the frame (below it a 64 px eye distance
#: means upscaling more than 4x) ...
MIN_EYE_DISTANCE = 16.0
#: ... and at least this dlib HOG score (the scikit-image astronaut's suit badge is a false face at 0.12,
#: real faces of the test pictures score 1.1-1.7). The main face is chosen as with ``largest``.
MIN_SCORE = 0.5
#: Weight of the previous mask in a track's temporal mask average.
MASK_MEMORY = 0.5
#: Frames over which a track fades in and, once its face is no longer detected, out.
FADE_FRAMES = 4


def check_faces(faces: str, max_faces: int | None) -> None:
    if faces not in FACE_MODES:
        raise ValueError(f"faces must be one of {', '.join(FACE_MODES)}, got {faces!r}")
    if max_faces is not None and max_faces < 1:
        raise ValueError(f"--max_faces must be at least 1, got {max_faces}")


def _eye_distance(face: Face) -> float:
    left, right = face.eye_centres
    return float(right[0] - left[0])


def select_faces(faces: Sequence[Face], max_faces: int | None = None, min_eye_distance: float = MIN_EYE_DISTANCE,
                 min_score: float = MIN_SCORE) -> list[Face]:
    """The main face (:func:`select_face`'s choice) first, then the other faces that pass the size and score
    thresholds, largest first, at most ``max_faces`` in all."""
    main = select_face(faces)
    if main is None:
        return []
    others = [f for f in faces if f is not main and _eye_distance(f) >= min_eye_distance and f.score >= min_score]
    others.sort(key=lambda f: (f.area, f.score), reverse=True)
    return ([main] + others)[: max_faces or None]


# ----------------------------------------------------------------------------------------------- geometry
def _axis_maps(params: CropParams | None, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` per axis (x, y) with ``frame coordinate = a * crop pixel + b`` (pixel centres; the crop of
    ``params``, or the whole frame when None). ``cv2.resize`` maps rescaled pixel ``i`` to ``(i + 0.5) * W / w - 0.5``."""
    height, width = shape
    if params is None:
        return np.ones(2), np.zeros(2)
    a = np.array([width / params.w, height / params.h])
    return a, (np.array([params.left, params.top]) + 0.5) * a - 0.5


def output_map(params: CropParams | None, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` with ``frame coordinate = a * output pixel + b`` for the 4x output of a crop."""
    a, b = _axis_maps(params, shape)
    # output pixel u covers crop pixel (u + 0.5) / 4 - 0.5
    return a / 4, b + a * (0.5 / 4 - 0.5)


def resample(src: np.ndarray, src_map: tuple[np.ndarray, np.ndarray], dst_map: tuple[np.ndarray, np.ndarray],
             size: tuple[int, int], border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """``src`` (pixels -> frame by ``src_map``) sampled bilinearly at the pixels of a ``size = (W, H)`` image
    whose pixels map to the frame by ``dst_map``; float32."""
    (sa, sb), (da, db) = src_map, dst_map
    scale, offset = da / sa, (db - sb) / sa  # destination pixel -> source pixel
    m = np.array([[scale[0], 0, offset[0]], [0, scale[1], offset[1]]], dtype=np.float64)
    return cv2.warpAffine(np.ascontiguousarray(src, dtype=np.float32), m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=border, borderValue=0)


def canvas_parameters(shape: tuple[int, int], main: CropParams, others: Sequence[Face],
                      padding: Sequence[int] = DEFAULT_PADDING) -> CropParams:
    """The main face's crop grown to the union of every face's padded crop (mapped into the main face's
    rescaled frame), clipped to it, edges floored to multiples of 8 as :func:`crop_parameters` does."""
    pad_l, pad_r, pad_t, pad_b = padding
    height, width = shape
    left, right, top, bottom = main.left, main.right, main.top, main.bottom
    sx, sy = main.w / width, main.h / height
    for face in others:
        s = 64.0 / _eye_distance(face)  # this face's own rescale factor (frame px -> its crop px)
        cx, cy = np.mean(face.eye_centres, axis=0)  # its padded crop, in frame pixels, then in the main rescaled frame
        left = min(left, max(round((cx - pad_l / s) * sx), 0) // 8 * 8)
        top = min(top, max(round((cy - pad_t / s) * sy), 0) // 8 * 8)
        right = max(right, min(round((cx + pad_r / s) * sx), main.w) // 8 * 8)
        bottom = max(bottom, min(round((cy + pad_b / s) * sy), main.h) // 8 * 8)
    return dataclasses.replace(main, left=left, right=right, top=top, bottom=bottom)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def crop_taper(params: CropParams, taper: float = TAPER) -> np.ndarray:
    """``(h, w)`` ramp, 0 on the outermost pixels (1 at ``taper`` pixels inside); edges on the frame border stay 1.

    The edge pixels are exactly 0 so that extending the ramp past the crop (replicated border) stays 0.
    """
    ch, cw = params.bottom - params.top, params.right - params.left
    if taper <= 0:
        return np.ones((ch, cw), np.float32)
    x, y = np.arange(cw, dtype=np.float64), np.arange(ch, dtype=np.float64)
    rx = np.minimum(_smoothstep(x / taper) if params.left > 0 else 1.0,
                    _smoothstep(x[::-1] / taper) if params.right < params.w else 1.0)
    ry = np.minimum(_smoothstep(y / taper) if params.top > 0 else 1.0,
                    _smoothstep(y[::-1] / taper) if params.bottom < params.h else 1.0)
    return (np.broadcast_to(ry, (ch,))[:, None] * np.broadcast_to(rx, (cw,))[None, :]).astype(np.float32)


def face_weight(parsing: torch.Tensor, feather: float = FEATHER, mask_range: tuple[float, float] = MASK_RANGE) -> np.ndarray:
    """``(h, w)`` float32 soft mask in ``[0, 1]``: the softmax probability of :data:`MASK_CLASSES` of 19-channel
    parsing logits ``(19, H, W)`` (``H, W`` >= h, w: padded maps are cropped by the caller), remapped by
    :data:`MASK_RANGE` and feathered."""
    prob = torch.softmax(parsing.float(), dim=0)[list(MASK_CLASSES)].sum(0).clamp_(0, 1).cpu().numpy()
    lo, hi = mask_range
    prob = _smoothstep((prob - lo) / (hi - lo)).astype(np.float32)
    if feather > 0:
        prob = cv2.GaussianBlur(prob, (0, 0), feather, borderType=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(prob, dtype=np.float32)


def ownership(points_maps: Sequence[tuple[np.ndarray, np.ndarray]], covers: Sequence[np.ndarray], size: tuple[int, int],
              canvas_map: tuple[np.ndarray, np.ndarray], softness: float = OWNERSHIP_SOFTNESS) -> list[np.ndarray]:
    """Each face's share of the canvas pixels (``size = (W, H)``): ``softmax_j(log cover_j - d_j / softness)``.

    ``points_maps[j] = (eye centre in the frame, per-axis frame px -> face j crop px factor)``; ``covers[j]``
    is face j's crop cover (taper) resampled into the canvas. Pixels no face covers get share 0.
    """
    width, height = size
    a, b = canvas_map
    fx = a[0] * np.arange(width) + b[0]
    fy = a[1] * np.arange(height) + b[1]
    logits = []
    for (centre, k), cover in zip(points_maps, covers):
        d = np.sqrt(((fx - centre[0]) * k[0])[None, :] ** 2 + ((fy - centre[1]) * k[1])[:, None] ** 2)
        with np.errstate(divide="ignore"):
            logits.append(np.log(np.maximum(cover, 0)) - d / softness)
    stack = np.stack(logits)
    top = stack.max(axis=0)
    valid = np.isfinite(top)
    ex = np.where(valid, np.exp(stack - np.where(valid, top, 0)), 0.0)
    total = ex.sum(axis=0)
    return [np.where(valid, e / np.where(valid, total, 1), 0.0).astype(np.float32) for e in ex]


def blend(canvas: np.ndarray, layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``canvas * (1 - sum alpha) + sum alpha * image`` over ``(image float32 HxWx3, alpha HxW)`` layers, rounded."""
    out = canvas.astype(np.float32)
    if not layers:
        return canvas.copy()
    rest = np.ones(canvas.shape[:2], np.float32)
    acc = np.zeros_like(out)
    for image, alpha in layers:
        acc += alpha[..., None] * image
        rest -= alpha
    out = out * np.clip(rest, 0, 1)[..., None] + acc
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- rendering
@dataclass
class FaceRender:
    """One extra face of a frame: its crop, its stylised crop (4x), its soft weight in crop pixels (before the
    ownership split), and the weight ``alpha`` it got in the canvas output (after it)."""

    face: Face | None
    params: CropParams
    crop: np.ndarray
    output: np.ndarray
    weight: np.ndarray
    centre: np.ndarray  # frame position of the centre of its padded crop (its eye centre), for the ownership split
    alpha: np.ndarray | None = None
    track_id: int | None = None


@dataclass
class MultiFaceImageResult(ImageResult):
    """:class:`pipeline.stylize.ImageResult` of the canvas (``crop``: the canvas crop, None for the whole frame),
    plus the canvas before the blend, the main face's crop and every extra face."""

    canvas_output: np.ndarray | None = None
    main_crop: CropParams | None = None
    faces: list[FaceRender] = field(default_factory=list)


def _stylize_crops(pipe: VToonifyPipeline, crops: Sequence[np.ndarray], styles: Sequence[torch.Tensor],
                   style_degree: float, batch: int) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """Stylised outputs and parsing logits (cropped to each input's size) of crops with per-crop codes; crops of
    one size go through parsing and VToonify ``batch`` at a time (one style code per sample)."""
    outputs: list = [None] * len(crops)
    parsings: list = [None] * len(crops)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, crop in enumerate(crops):
        groups.setdefault(crop.shape[:2], []).append(i)
    for (h, w), members in groups.items():
        for start in range(0, len(members), max(batch, 1)):
            idx = members[start:start + max(batch, 1)]
            x = frames_to_tensor([_pad_to_multiple(crops[i]) for i in idx], pipe.device, pipe.dtype)
            parsing = pipe.parse(x)
            y = pipe.stylize_tensor(x, torch.cat([styles[i] for i in idx]), style_degree, parsing)
            for j, (i, out) in enumerate(zip(idx, tensor_to_frames(y))):
                outputs[i] = out[: 4 * h, : 4 * w]
                parsings[i] = parsing[j, :, :h, :w]
    return outputs, parsings


def _style_codes(pipe: VToonifyPipeline, jobs: Sequence[tuple[np.ndarray, np.ndarray]], style_id: int,
                 color_transfer: bool) -> list[torch.Tensor | None]:
    """One code per ``(crop, landmarks in crop)``, None where the style encoder finds no face; the encoder stays
    loaded for the whole list (and is released after it when the pipeline does not keep it)."""
    keep = pipe.keep_style_encoder
    codes: list[torch.Tensor | None] = []
    try:
        for i, (crop, lm) in enumerate(jobs):
            pipe.keep_style_encoder = keep or i < len(jobs) - 1  # the last call releases it as usual
            try:
                codes.append(pipe.style_code(crop, style_id, color_transfer, lm))
            except NoFaceError:
                codes.append(None)
    finally:
        pipe.keep_style_encoder = keep
    return codes


def _default_batch(pipe: VToonifyPipeline) -> int:
    return 4 if pipe.device.type == "cuda" else 1


def _composite(shape: tuple[int, int], canvas_params: CropParams | None, canvas_out: np.ndarray, main: CropParams,
               main_eyes: np.ndarray, renders: Sequence[FaceRender], presence: Sequence[float] | None = None) -> np.ndarray:
    """Blend ``renders`` into ``canvas_out`` (see the module docstring); sets each render's ``alpha``."""
    size = (canvas_out.shape[1], canvas_out.shape[0])
    cmap = output_map(canvas_params, shape)
    height, width = shape
    rep = cv2.BORDER_REPLICATE
    covers = [resample(crop_taper(main), _axis_maps(main, shape), cmap, size, rep)]
    centres = [(main_eyes, np.array([main.w / width, main.h / height]))]
    weights = []
    for r in renders:
        src = _axis_maps(r.params, shape)
        covers.append(resample(crop_taper(r.params), src, cmap, size, rep))
        centres.append((r.centre, np.array([r.params.w / width, r.params.h / height])))
        weights.append(resample(r.weight, src, cmap, size, rep))
    shares = ownership(centres, covers, size, cmap)
    layers = []
    for i, r in enumerate(renders):
        alpha = weights[i] * covers[i + 1] * shares[i + 1] * (1.0 if presence is None else presence[i])
        r.alpha = alpha
        image = resample(r.output, output_map(r.params, shape), cmap, size, border=cv2.BORDER_REPLICATE)
        layers.append((image, alpha))
    return blend(canvas_out, layers)


def _shift(params: CropParams, moved: CropParams, shape: tuple[int, int]) -> np.ndarray:
    """How far (frame pixels) a tracked crop has moved from where it started."""
    a, _ = _axis_maps(params, shape)
    return a * np.array([moved.left - params.left, moved.top - params.top])


def stylize_image(pipe: VToonifyPipeline, image: np.ndarray, style_id: int = 26, style_degree: float = 0.5,
                  color_transfer: bool = False, scale_image: bool = False, padding: Sequence[int] = DEFAULT_PADDING,
                  faces: str = "all", max_faces: int | None = None, batch: int | None = None) -> MultiFaceImageResult:
    """Stylise every face of one RGB uint8 image (``faces='all'``; see the module docstring)."""
    check_faces(faces, max_faces)
    if faces != "all":
        raise ValueError("pipeline.multiface renders faces='all'; 'largest' is VToonifyPipeline's own path")
    shape = image.shape[:2]
    found = select_faces(pipe.detector.detect(image), max_faces)
    if not found:
        raise NoFaceError("no face found in the image")
    main, others = found[0], found[1:]
    main_params = crop_parameters(image, main.landmarks, padding)
    canvas_params = canvas_parameters(shape, main_params, others, padding) if scale_image else None
    main_frame = apply_crop(image, main_params) if scale_image else image
    main_lm = landmarks_in_crop(main.landmarks, image, main_params if scale_image else None)
    other_params = [crop_parameters(image, f.landmarks, padding) for f in others]
    other_crops = [apply_crop(image, p) for p in other_params]
    codes = _style_codes(pipe, [(main_frame, main_lm)] + [(c, landmarks_in_crop(f.landmarks, image, p))
                                                          for c, f, p in zip(other_crops, others, other_params)],
                         style_id, color_transfer)
    if codes[0] is None:
        raise NoFaceError("no face found for the style encoder (FFHQ alignment failed)")
    keep = [i for i, c in enumerate(codes[1:]) if c is not None]  # a face the encoder cannot align is left out
    canvas = apply_crop(image, canvas_params) if canvas_params is not None else image
    canvas_out = pipe.stylize_frames([canvas], codes[0], style_degree)[0]
    outs, parsings = _stylize_crops(pipe, [other_crops[i] for i in keep], [codes[i + 1] for i in keep], style_degree,
                                    batch or _default_batch(pipe))
    renders = [FaceRender(others[i], other_params[i], other_crops[i], out, face_weight(p),
                          np.mean(others[i].eye_centres, axis=0)) for i, out, p in zip(keep, outs, parsings)]
    output = _composite(shape, canvas_params, canvas_out, main_params, np.mean(main.eye_centres, axis=0), renders)
    return MultiFaceImageResult(canvas, output, canvas_params, canvas_out, main_params, renders)


# -------------------------------------------------------------------------------------------------- video
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

    def presence(self, fade: int) -> float:
        """Fade-in over the first ``fade`` rendered frames, fade-out over ``fade`` frames without a detection."""
        if fade <= 0:
            return 1.0 if self.missed == 0 else 0.0
        return float(min(1.0, (self.age + 1) / fade, max(0.0, 1.0 - self.missed / fade)))


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
    """:class:`pipeline.stylize.VideoResult` plus the tracks: ``tracks[id] = (first frame, last frame)`` (frames
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
            if d <= radius * max(t.eye_distance, _eye_distance(f)):
                pairs.append((d, t.id, j))
    matched: dict[int, Face] = {}
    used: set[int] = set()
    for _, tid, j in sorted(pairs):
        if tid not in matched and j not in used:
            matched[tid] = faces[j]
            used.add(j)
    return matched


def _detect_all(pipe: VToonifyPipeline, path) -> tuple[list[list[Face]], tuple[int, int]]:
    """Every frame's detections (kept for the stylising pass: one detection per frame in all) and the frame size."""
    from pipeline.video import VideoReader

    detections, shape = [], None
    with VideoReader(path) as reader:
        for frame in reader:
            shape = shape or frame.shape[:2]
            detections.append(pipe.detector.detect(frame))
    return detections, shape


def stylize_video(pipe: VToonifyPipeline, path: str | os.PathLike, output_dir: str | os.PathLike = "output",
                  style_id: int = 26, style_degree: float = 0.5, color_transfer: bool = False, scale_image: bool = True,
                  padding: Sequence[int] = DEFAULT_PADDING, track: bool = False, faces: str = "all",
                  max_faces: int | None = None, batch_size: int | None = None, progress: bool = True,
                  name: str | None = None, fade_frames: int = FADE_FRAMES, mask_memory: float = MASK_MEMORY,
                  on_frame: Callable[[FrameFaces], None] | None = None, smooth_parsing: int = 0,
                  parsing_map_path: str | os.PathLike | None = None, frame_range: tuple[int, int] | None = None,
                  overlap: bool = True) -> MultiFaceVideoResult:
    """Stylise every face of a video (``faces='all'``); writes the files :meth:`VToonifyPipeline.stylize_video`
    writes. The canvas size is fixed (with ``scale_image``: the main face's crop at the first frame with a face,
    grown to hold the face crops of every frame); with ``track`` it follows the main face. ``on_frame`` is called with each
    frame's :class:`FrameFaces` (for tests and figures). ``batch_size`` bounds how many face crops of one size go
    through the model together (default 1 on CPU, 4 on CUDA). ``smooth_parsing``, ``parsing_map_path`` and
    ``frame_range`` (``stylize_video``'s single-face options) are refused; ``overlap`` is accepted and
    ignored (frames are read, stylised and written in turn)."""
    from tqdm.auto import tqdm

    from pipeline.video import VideoReader, VideoWriter, probe

    check_faces(faces, max_faces)
    if faces != "all":
        raise ValueError("pipeline.multiface renders faces='all'; 'largest' is VToonifyPipeline's own path")
    for option, value in (("--smooth_parsing", smooth_parsing), ("--parsing_map_path", parsing_map_path),
                          ("a frame range (torchrun)", frame_range)):
        if value:
            raise ValueError(f"{option} is not available with --faces all (each face has its own crop and parsing)")
    if not 0 <= mask_memory < 1:
        raise ValueError(f"mask_memory must be in [0, 1), got {mask_memory}")
    info = probe(path)
    batch = batch_size or _default_batch(pipe)
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
    with VideoReader(path) as reader:
        first_frame = next(frame for index, frame in enumerate(reader) if index == first)
    main_lm = landmarks_in_crop(main.landmarks, first_frame, main_params if scale_image else None)
    main_style = _style_codes(pipe, [(apply_crop(first_frame, main_params) if scale_image else first_frame, main_lm)],
                              style_id, color_transfer)[0]
    del first_frame
    if main_style is None:
        raise NoFaceError("no face found for the style encoder (FFHQ alignment failed)")

    def new_track(tid: int, face: Face, index: int, params: CropParams | None = None, age: int = 0) -> FaceTrack:
        t = FaceTrack(tid, params or crop_parameters(shape, face.landmarks, padding), index,
                      np.mean(face.eye_centres, axis=0), _eye_distance(face), last_face=face, last_frame=index, age=age)
        t.current = t.params
        if track:
            t.given = _Given()
            t.tracker = FaceTracker(t.params, t.given)
        return t

    def follow(t: FaceTrack, face: Face | None, frame: np.ndarray, index: int) -> None:
        """Record this frame's detection (or its absence) and move the track's crop with ``track``."""
        if face is not None:
            t.eyes, t.last_face, t.missed, t.last_frame = np.mean(face.eye_centres, axis=0), face, 0, index
        else:
            t.missed += 1
        if t.tracker is not None:
            t.given.face = face
            t.current = t.tracker.update(frame)

    main_track = new_track(0, main, first, main_params)
    main_centre = np.mean(main.eye_centres, axis=0)
    canvas_tracker, canvas_given = None, None
    if track and canvas_params is not None:
        canvas_given = _Given()
        canvas_tracker = FaceTracker(canvas_params, canvas_given)
    tracks: dict[int, FaceTrack] = {}  # the live extra tracks
    history: dict[int, tuple[int, int]] = {0: (first, first)}
    frame_tracks: list[tuple[int, ...]] = []
    next_id = 1
    start_centres: dict[int, np.ndarray] = {}

    if canvas_params is not None:
        h, w = canvas_params.bottom - canvas_params.top, canvas_params.right - canvas_params.left
    else:
        h, w = shape
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    name = name or Path(path).stem
    in_path = output_dir / f"{name}_input.mp4"
    out_path = output_dir / f"{name}_vtoonify_{'d' if pipe.backbone == 'dualstylegan' else 't'}.mp4"
    written = 0
    with VideoReader(path) as reader, VideoWriter(in_path, info.fps, w, h, audio_from=path) as w_in, \
            VideoWriter(out_path, info.fps, 4 * w, 4 * h, audio_from=path) as w_out, \
            tqdm(total=info.frame_count, unit="frame", disable=not progress, desc=out_path.name) as bar:
        for index, frame in enumerate(reader):
            if frame.shape[:2] != shape:
                raise ValueError(f"{path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, expected {shape[1]}x{shape[0]}")
            cparams, mparams = canvas_params, main_params
            # ---- associate this frame's faces with the tracks; unmatched faces start new tracks
            matched: dict[int, Face] = {}
            if index == first:  # the faces chosen above, by identity (present from the start: no fade-in)
                matched[0] = main
                for f in chosen[1:]:
                    t = new_track(next_id, f, index, age=fade_frames)
                    tracks[t.id], matched[t.id] = t, f
                    next_id += 1
            elif index > first:
                detected = detections[index] if index < len(detections) else pipe.detector.detect(frame)
                matched = _match([main_track, *tracks.values()], detected)
                used = {id(f) for f in matched.values()}
                fresh = [f for f in select_faces(detected) if id(f) not in used]
                for f in fresh:
                    if f.score < MIN_SCORE or _eye_distance(f) < MIN_EYE_DISTANCE:
                        continue
                    if max_faces is not None and 1 + len(tracks) >= max_faces:
                        break
                    t = new_track(next_id, f, index)
                    tracks[t.id], matched[t.id] = t, f
                    next_id += 1
            if index >= first:
                if index > first:
                    for t in [main_track, *tracks.values()]:
                        follow(t, matched.get(t.id), frame, index)
                if matched.get(0) is not None:
                    history[0] = (first, index)
                if canvas_tracker is not None:
                    canvas_given.face = matched.get(0)
                    cparams = canvas_tracker.update(frame)
                mparams = main_track.current
            # ---- the canvas: the main face's crop (or the whole frame), as `largest` renders it
            canvas = apply_crop(frame, cparams) if cparams is not None else frame
            canvas_out = pipe.stylize_frames([canvas], main_style, style_degree)[0]
            # ---- the other tracks: their crops, their codes (from their first frame the encoder accepts)
            active: list[FaceTrack] = []
            for t in list(tracks.values()):
                if t.missed >= max(fade_frames, 1):
                    del tracks[t.id]  # faded out
                    continue
                if t.style is None:
                    face = matched.get(t.id)
                    if face is None:
                        continue
                    crop = apply_crop(frame, t.current)
                    t.style = _style_codes(pipe, [(crop, landmarks_in_crop(face.landmarks, frame, t.current))],
                                           style_id, color_transfer)[0]
                    if t.style is None:
                        continue
                    start_centres[t.id] = np.mean(face.eye_centres, axis=0) - _shift(t.params, t.current, shape)
                active.append(t)
            crops = [apply_crop(frame, t.current) for t in active]
            outs, parsings = _stylize_crops(pipe, crops, [t.style for t in active], style_degree, batch)
            renders = []
            for t, crop, out, parsing in zip(active, crops, outs, parsings):
                weight = face_weight(parsing)
                if t.mask is not None:
                    weight = mask_memory * t.mask + (1 - mask_memory) * weight
                t.mask = weight
                centre = start_centres[t.id] + _shift(t.params, t.current, shape)
                renders.append(FaceRender(matched.get(t.id), t.current, crop, out, weight, centre, track_id=t.id))
                history[t.id] = (history.get(t.id, (index, index))[0], index)
            presence = [t.presence(fade_frames) for t in active]
            for t in active:
                t.age += 1
            centre = main_centre + _shift(main_params, mparams, shape)
            output = _composite(shape, cparams, canvas_out, mparams, centre, renders, presence)
            w_in.write(canvas)
            w_out.write(output)
            frame_tracks.append(tuple(r.track_id for r in renders))
            if on_frame is not None:
                on_frame(FrameFaces(index, canvas, output, canvas_out, cparams, renders))
            written += 1
            bar.update(1)
    return MultiFaceVideoResult(in_path, out_path, written, float(info.fps), first, canvas_params, 0, history, frame_tracks)
