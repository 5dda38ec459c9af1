"""One video split across the processes of a ``torchrun`` launch: a contiguous frame range each.

Each process stylises its range into segment files (no B-frames); rank 0 joins them without re-encoding
(:func:`pipeline.videoio.concat_segments`) and adds the source audio. :func:`run_under_torchrun` sets up
the process group (gloo, used only for the success vote that doubles as the barrier).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.devices import world_size
from model.errors import UserError
from pipeline import api
from pipeline.results import VideoResult, output_paths
from pipeline.videoio import concat_segments, probe

__all__ = ["ShardError", "run_under_torchrun", "shard_range", "stylize_video_sharded", "world_size"]


class ShardError(UserError, RuntimeError):
    """Another process of a sharded run failed (it reports its own error)."""


def shard_range(n_frames: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous frame range ``[start, stop)`` of ``rank`` among ``world`` processes."""
    return n_frames * rank // world, n_frames * (rank + 1) // world


def stylize_video_sharded(pipe: Any, path: str | os.PathLike, output_dir: str | os.PathLike, rank: int,
                          world: int, all_ok: Callable[[bool], bool], name: str | None = None,
                          **kwargs: Any) -> VideoResult | None:
    """Split one video across ``world`` processes: each stylises a contiguous frame range into segments, then
    rank 0 joins the segments without re-encoding and adds the source audio.

    ``pipe`` is a :class:`pipeline.stylize.VToonifyPipeline`. ``all_ok(ok: bool) -> bool`` must be a
    collective that returns True only if every rank passed True (e.g. an all-reduce); it doubles as the
    barrier. Returns the result on rank 0, None elsewhere. On any failure every segment is removed and
    nothing is left under the final names.
    """
    info = probe(path)
    name = name or Path(path).stem
    start, stop = shard_range(info.frame_count, rank, world)
    result, error = None, None
    try:
        if stop > start:
            result = api.stylize_video(pipe, path, output_dir, name=name, frame_range=(start, stop), **kwargs)
    except Exception as e:  # noqa: BLE001 - reported after the collective, so no rank waits forever
        error = e
    ok = all_ok(error is None)
    finals = list(output_paths(output_dir, name, pipe.backbone, ".mp4"))
    segments = [sorted(Path(output_dir).glob(f"{f.stem}.seg*.mp4")) for f in finals]
    try:
        if error is not None:
            raise error
        if not ok:
            raise ShardError("another process failed while stylising its part of the video")
        if rank != 0:
            return None
        frames = [concat_segments(parts, final, audio_from=path) for parts, final in zip(segments, finals)][1]
        return VideoResult(finals[0], finals[1], frames, float(info.fps), result.first_face_frame if result else -1,
                           result.crop if result else None)
    finally:
        all_ok(True)  # every rank has read the segment list before any is deleted
        if rank == 0:
            for part in segments[0] + segments[1]:
                part.unlink(missing_ok=True)


def run_under_torchrun(pipe: Any, path: str | os.PathLike, output_dir: str | os.PathLike, name: str,
                       progress: bool = True, **kwargs: Any) -> VideoResult | None:
    """:func:`stylize_video_sharded` in the process group of a torchrun launch (progress bar on rank 0 only)."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="env://")  # only for the barrier / success vote
    try:
        def all_ok(ok: bool) -> bool:
            flag = torch.tensor([1 if ok else 0])
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            return bool(flag.item())

        return stylize_video_sharded(pipe, path, output_dir, dist.get_rank(), dist.get_world_size(), all_ok,
                                     name=name, progress=progress and dist.get_rank() == 0, **kwargs)
    finally:
        dist.destroy_process_group()
