"""Cropped frames in, stylised frames out, a batch at a time: :class:`FrameBatcher`."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
import torch

from pipeline import pasteback
from pipeline.tensors import frames_to_tensor, pad_to_multiple, tensor_to_frames
from pipeline.videoio import VideoWriter

__all__ = ["FrameBatcher", "InlineWorker", "write_pair"]


class FrameBatcher:
    """Cropped frames in, stylised frames out (to ``emit(crop, out, time, parsing, source)``: ``parsing`` the frame's
    ``(19, h, w)`` logits, ``source`` what :meth:`add` was given with it), in order, ``plan.batch_size`` at a time.

    Frames wait in a queue until a batch is full; the batch is then parsed by BiSeNet as one stacked tensor and
    stylised. Only where a frame's parsing is needed on its own is it parsed on arrival: with precomputed maps (read
    per frame) and with the parsing smoother, which takes frames one by one and hands them back a few frames later.
    A compiled model keeps one graph per shape (and TensorRT one engine per shape range), so a short last batch is
    padded with copies of its last frame (``pipe.pads_batches``).
    """

    def __init__(self, pipe, plan, style_degree: float, emit: Callable[..., None]):
        self.pipe, self.plan, self.style_degree, self.emit = pipe, plan, style_degree, emit
        # (cropped frame, time, x (3, H, W), source, parsing (19, H, W) or None: parsed with its batch) for VToonify
        self.queue: deque = deque()
        self.pending: dict[int, tuple[np.ndarray, float | None, torch.Tensor, object]] = {}  # for the smoother
        self.written = 0

    def add(self, index: int, crop: np.ndarray, time: float | None = None, source: object = None) -> None:
        pipe, plan = self.pipe, self.plan
        x = frames_to_tensor([pad_to_multiple(crop)], pipe.device, pipe.dtype)
        if plan.maps is not None:
            maps = torch.from_numpy(plan.maps[index]).to(pipe.device, pipe.dtype)
            self.queue.append((crop, time, x[0], source, maps))
        elif plan.smoother is not None:
            self.pending[index] = (crop, time, x[0], source)
            self._take_smoothed(plan.smoother.push(x[0], pipe.parse(x)[0]))
        else:
            self.queue.append((crop, time, x[0], source, None))
        self._flush(plan.batch_size)

    def finish(self) -> None:
        if self.plan.smoother is not None:
            self._take_smoothed(self.plan.smoother.flush())
        self._flush(1)

    def _take_smoothed(self, ready) -> None:
        for j, smoothed in ready:
            self.queue.append((*self.pending.pop(j), smoothed.to(self.pipe.device, self.pipe.dtype)))

    def _flush(self, min_size: int) -> None:
        pipe, batch_size = self.pipe, self.plan.batch_size
        h, w = self.plan.size
        while len(self.queue) >= max(min_size, 1):
            items = [self.queue.popleft() for _ in range(min(batch_size, len(self.queue)))]
            pad = batch_size - len(items) if pipe.pads_batches else 0
            x = torch.stack([it[2] for it in items] + [items[-1][2]] * pad)
            if items[0][4] is None:
                parsing = pipe.parse(x)
            else:
                parsing = torch.stack([it[4] for it in items] + [items[-1][4]] * pad)
            y = pipe.stylize_tensor(x, self.plan.style, self.style_degree, parsing)[: len(items)]
            for j, ((crop, time, _, source, _), out) in enumerate(zip(items, tensor_to_frames(y, clamp=False))):
                self.emit(crop, out[: 4 * h, : 4 * w], time, parsing[j, :, :h, :w], source)
            self.written += len(items)


def write_pair(w_in: VideoWriter, w_out: VideoWriter, crop: np.ndarray, out: np.ndarray, time: float | None,
               paste: tuple | None = None) -> None:
    """One input frame and its result, each to its writer at the input frame's time. ``paste = (frame, crop
    parameters, weight, scale)``: the result pasted back into the frame (:func:`pipeline.pasteback.paste`) first."""
    w_in.write_at(crop, time)
    if paste is not None:
        frame, params, weight, scale = paste
        out = pasteback.paste(frame, params, out, weight, scale)
    w_out.write_at(out, time)


class InlineWorker:
    """:class:`pipeline.overlap.BackgroundWorker`'s interface, running each call at once (``overlap=False``)."""

    def submit(self, fn, *args) -> None:
        fn(*args)

    def __enter__(self) -> InlineWorker:
        return self

    def __exit__(self, *exc) -> None:
        pass
