"""One face, one crop, one style code: the video path of ``faces='largest'`` (the original's, streamed)."""
from __future__ import annotations

import os
from contextlib import nullcontext

import numpy as np

from pipeline.multiface.blend import face_weight, scaled_size
from pipeline.overlap import BackgroundWorker, Prefetcher
from pipeline.results import VideoResult
from pipeline.video.frames import FrameBatcher, InlineWorker, write_pair
from pipeline.video.plan import make_plan
from pipeline.videoio import VideoWriter

__all__ = ["stylize_video"]


def stylize_video(pipe, path: str | os.PathLike, output_dir: str | os.PathLike, options, name: str | None = None,
                  frame_range: tuple[int, int] | None = None, exemplar=None) -> VideoResult:
    """Stylise a video with the crop and style code of its first face (``options``: a checked
    :class:`pipeline.api.VideoOptions`); writes ``<name>_input.mp4`` and ``<name>_vtoonify_<d|t>.mp4`` with the
    input's audio and timing, or with ``frame_range`` the silent segments :mod:`pipeline.sharding` joins. With
    ``paste_back`` the result is the full frame (x ``output_scale``, :mod:`pipeline.pasteback`; the crop follows the
    face with ``track``); ``<name>_input.mp4`` stays what the model was fed (the crop).

    With ``options.overlap`` decoding (and cropping) runs ahead and encoding behind in two threads while the model
    runs (:mod:`pipeline.overlap`); the frames are the same either way."""
    from tqdm.auto import tqdm

    plan = make_plan(pipe, path, output_dir, options, name, frame_range, exemplar)
    h, w = plan.size
    shape = (plan.info.height, plan.info.width)
    out_size = (4 * w, 4 * h) if plan.paste_scale is None else scaled_size(shape, plan.paste_scale)
    overlap = options.overlap
    try:
        reader = plan.open()
        with reader, \
                VideoWriter(plan.in_path, plan.info.fps, w, h, **plan.writer_options) as w_in, \
                VideoWriter(plan.out_path, plan.info.fps, *out_size, **plan.writer_options) as w_out, \
                tqdm(total=plan.total, unit="frame", disable=not options.progress, desc=plan.out_path.name) as bar, \
                (Prefetcher(plan.crops(reader), depth=2 * plan.batch_size) if overlap
                 else nullcontext(plan.crops(reader))) as frames, \
                (BackgroundWorker(depth=4 * plan.batch_size) if overlap else InlineWorker()) as encoder:

            def emit(crop: np.ndarray, out: np.ndarray, time: float | None, parsing, source) -> None:
                paste = None
                if source is not None:  # the weight now (the parsing may be on the device), the paste with the write
                    frame, params = source
                    paste = (frame, params, None if params is None else face_weight(parsing), plan.paste_scale)
                encoder.submit(write_pair, w_in, w_out, crop, out, time, paste)
                bar.update(1)

            batcher = FrameBatcher(pipe, plan, options.style_degree, emit)
            for index, crop, time, source in frames:
                batcher.add(index, crop, time, source)
            batcher.finish()
    finally:
        plan.close()
    return VideoResult(plan.in_path, plan.out_path, batcher.written, float(plan.info.fps), plan.first, plan.params)
