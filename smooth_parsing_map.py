"""Precompute temporally smoothed face-parsing maps of a (cropped) video, like the original script.

    python style_transfer.py --content clip.mp4 --video --scale_image            # writes output/clip_input.mp4
    python smooth_parsing_map.py --video_path output/clip_input.mp4              # writes output/clip_input_parsingmap.npy
    python style_transfer.py --content clip.mp4 --video --scale_image \\
        --parsing_map_path output/clip_input_parsingmap.npy

The original used RAFT optical flow (a separate download, CUDA only); this uses OpenCV's DIS flow
(:mod:`pipeline.smoothing`) and runs anywhere. Each frame is parsed as ``style_transfer.py`` parses it
(BiSeNet at 2x the frame size, logits brought back to the frame size, :func:`pipeline.stylize.parse_frames`)
and smoothed at the frame size, so the maps written here are exactly those ``style_transfer.py
--smooth_parsing W`` computes on the fly for the same frames. (The original smoothed at 2x and brought the
result back with an anti-aliased 1/2 downsampling.) The (N, 19, H, W) float32 result is written
incrementally (memory-mapped), so long videos do not need to fit in RAM.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from common.options import ranged


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window_size", type=ranged("window_size"), default=5, help="half window: frames i-W .. i+W are fused")
    ap.add_argument("--faceparsing_path", type=str, default="./checkpoint/faceparsing.pth")
    ap.add_argument("--video_path", type=str, required=True, help="the cropped video (style_transfer's *_input.mp4)")
    ap.add_argument("--output_path", type=str, default="./output/")
    ap.add_argument("--device", type=str, default="auto")
    ap.add_argument("--no_progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from common.atomic import new_folders_removed
    from common.cli import run_cli

    def work() -> Path:
        with new_folders_removed(args.output_path):  # a failed run leaves no empty folder it created
            return _run(args)

    return run_cli(work, lambda out: print(f"saved {out}"))


def _run(args: argparse.Namespace) -> Path:
    from tqdm.auto import tqdm

    from common.atomic import atomic_output
    from common.devices import resolve_device
    from common.errors import InputError
    from model.checkpoint import load_bisenet
    from pipeline.parsing import parse_frames
    from pipeline.smoothing import ParsingSmoother
    from pipeline.tensors import frames_to_tensor
    from pipeline.videoio import VideoError, VideoReader, probe

    info = probe(args.video_path)
    device = resolve_device(args.device)
    parser = load_bisenet(args.faceparsing_path, device)
    if info.width % 8 or info.height % 8:
        raise InputError(f"{args.video_path}: frames are {info.width}x{info.height}; use the cropped *_input.mp4 "
                         "written by style_transfer.py (sides are multiples of 8)")
    smoother = ParsingSmoother(window_size=args.window_size)
    os.makedirs(args.output_path, exist_ok=True)
    out = Path(args.output_path) / f"{Path(args.video_path).stem}_parsingmap.npy"
    with atomic_output(out) as tmp:
        maps = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                         shape=(info.frame_count, 19, info.height, info.width))
        written = 0

        def store(ready, maps=maps) -> None:
            nonlocal written
            for index, smoothed in ready:
                maps[index] = smoothed.float().numpy()
                written += 1

        with torch.inference_mode(), VideoReader(args.video_path) as reader:
            for frame in tqdm(reader, total=info.frame_count, unit="frame", disable=args.no_progress):
                x = frames_to_tensor([frame], device)
                store(smoother.push(x[0].cpu(), parse_frames(parser, x)[0].cpu()))
            store(smoother.flush())
        if written != info.frame_count:
            raise VideoError(f"{args.video_path}: decoded {written} frames, the container declares {info.frame_count}")
        maps.flush()
        del store, maps  # drop every reference to the memmap (store's default too) so it closes before the rename
    return out


if __name__ == "__main__":
    sys.exit(main())
