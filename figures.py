"""Make the paper's kinds of figures from any set of VToonify checkpoints.

Every subcommand writes PNG sheets of labelled panels (and, for ``video``, an animated GIF and an
MP4) to ``--output_dir`` (default ``output/figures/``) and prints the paths it wrote::

    python figures.py degree    --content photo.jpg --ckpt checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt --style_id 26
    python figures.py styles    --content a.jpg b.jpg --style_ids 0 26 64 153 299
    python figures.py color     --content photo.jpg --ckpt_color checkpoint/vtoonify_d_cartoon/vtoonify_s_d_c.pt \\
                                --ckpt_nocolor checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt
    python figures.py backbones --content a.jpg b.jpg --ckpt checkpoint/vtoonify_t_cartoon/vtoonify.pt \\
                                --ckpt checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt --label "VToonify-T" --label "VToonify-D"
    python figures.py video     --content clip.mp4 --frames 16 --strip_frames 6
    python figures.py baseline  --content clip.mp4 --frames 6
    python figures.py faces     --content group.jpg --style_id 26          # --faces largest vs all
    python figures.py all       --image a.jpg b.jpg --video clip.mp4

Panels show the face crop that VToonify works on (rescaled to a 64 px eye distance and cropped with
``--padding``, as ``style_transfer.py --scale_image`` does) and the outputs, all scaled to
``--panel`` pixels high. Each checkpoint is loaded once per command (``all`` too, as long as the models
a figure needs were the last ones used: at most two pipelines are kept loaded, in a
:class:`pipeline.registry.PipelineCache`). The figures themselves are built by :mod:`metrics.figures`.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from common.atomic import atomic_output
from common.cli import run_cli
from common.errors import MissingFileError, OptionError
from common.images import read_rgb
from common.options import add_engine_argument, ranged
from hub.released import SHARED_FILES
from metrics.figures import (
    DEGREES,
    Layout,
    backbones_figure,
    baseline_figure,
    color_figures,
    default_style_ids,
    degree_figure,
    faces_figure,
    styles_figure,
    video_figures,
)
from pipeline.clips import read_frames
from pipeline.faces import DEFAULT_PADDING
from pipeline.registry import PipelineCache, default_model, released_path
from pipeline.stylize import VToonifyPipeline, atomic_imwrite
from pipeline.videoio import VideoWriter, probe

__all__ = [
    "DEGREES",
    "Layout",
    "PipelineCache",
    "backbones_figure",
    "baseline_figure",
    "build_parser",
    "color_figures",
    "degree_figure",
    "faces_figure",
    "main",
    "styles_figure",
    "video_figures",
]

D_CKPT = default_model("dualstylegan")
D_COLOR_CKPT = default_model("dualstylegan", color_transfer=True)
T_CKPT = default_model("toonify")
#: Pipelines kept loaded: a figure needs at most two models at a time (each pipeline holds its VToonify and parser).
LOADED_MODELS = 2


# ----------------------------------------------------------------------------------------- output
def _save_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_imwrite(path, image)
    return path


def _save_gif(path: Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        images = [Image.fromarray(f) for f in frames]
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


def _save_mp4(path: Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps, frames[0].shape[1], frames[0].shape[0]) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def _load_images(paths: Sequence[str]) -> list[np.ndarray]:
    for path in paths:
        if not os.path.isfile(path):
            raise MissingFileError(f"content not found: {path}")
    return [read_rgb(path) for path in paths]


# -------------------------------------------------------------------------------------- commands
def _pipeline(args: argparse.Namespace, cache: PipelineCache, ckpt: str, exstyle_path: str | None = None) -> VToonifyPipeline:
    """The pipeline of ``ckpt`` with the command's helper networks, device, precision and engine (each loaded once)."""
    return cache.get(ckpt, style_encoder_path=args.style_encoder_path, faceparsing_path=args.faceparsing_path,
                     exstyle_path=exstyle_path, device=args.device, dtype=args.dtype, engine=args.engine)


def _layout(args: argparse.Namespace) -> Layout:
    return Layout(tuple(args.padding), args.panel)


def _out(args: argparse.Namespace, kind: str, content: str, suffix: str = ".png") -> Path:
    """``<output_dir>/<kind>_<name><suffix>``, the name being ``--name`` or the content's file name."""
    return Path(args.output_dir) / f"{kind}_{args.name or Path(content).stem}{suffix}"


def _cmd_degree(args: argparse.Namespace, cache: PipelineCache) -> list[Path]:
    pipe = _pipeline(args, cache, args.ckpt, args.exstyle_path)
    sheet = degree_figure(pipe, _load_images([args.content])[0], args.style_id, degrees=args.degrees,
                          color_transfer=args.color_transfer, layout=_layout(args))
    return [_save_png(_out(args, "degree", args.content), sheet)]


def _cmd_faces(args: argparse.Namespace, cache: PipelineCache) -> list[Path]:
    pipe = _pipeline(args, cache, args.ckpt, args.exstyle_path)
    sheet = faces_figure(pipe, _load_images([args.content])[0], args.style_id, style_degree=args.style_degree,
                         color_transfer=args.color_transfer, scale_image=not args.whole_frame, max_faces=args.max_faces,
                         layout=_layout(args))
    return [_save_png(_out(args, "faces", args.content), sheet)]


def _cmd_styles(args: argparse.Namespace, cache: PipelineCache) -> list[Path]:
    pipe = _pipeline(args, cache, args.ckpt, args.exstyle_path)
    sheet = styles_figure(pipe, _load_images(args.content), args.style_ids or default_style_ids(pipe),
                          style_degree=args.style_degree, color_transfer=args.color_transfer, columns=args.columns,
                          style_dir=args.style_dir, layout=_layout(args))
    return [_save_png(_out(args, "styles", args.content[0]), sheet)]


def _cmd_color(args: argparse.Namespace, cache: PipelineCache) -> list[Path]:
    pipe_color = _pipeline(args, cache, args.ckpt_color, args.exstyle_path)
    pipe_nocolor = _pipeline(args, cache, args.ckpt_nocolor, args.exstyle_path)
    comparison, interpolation = color_figures(pipe_color, pipe_nocolor, _load_images(args.content),
                                              args.style_ids or default_style_ids(pipe_color, 3),
                                              style_degree=args.style_degree, steps=args.steps, layout=_layout(args))
    return [_save_png(_out(args, "color", args.content[0]), comparison),
            _save_png(_out(args, "color_interp", args.content[0]), interpolation)]


def _cmd_backbones(args: argparse.Namespace, cache: PipelineCache) -> list[Path]:
    labels, style_ids = args.label or [], args.style_id or [26]
    if labels and len(labels) != len(args.ckpt):
        raise OptionError(f"give one --label per --ckpt ({len(args.ckpt)}), got {len(labels)}")
    if len(style_ids) not in (1, len(args.ckpt)):
        raise OptionError(f"give one --style_id for all checkpoints or one per --ckpt ({len(args.ckpt)}), "
                          f"got {len(style_ids)}")
    models = []
    for k, ckpt in enumerate(args.ckpt):
        pipe = _pipeline(args, cache, ckpt)
        sid = style_ids[k if len(style_ids) > 1 else 0]
        if labels:
            label = labels[k]
        elif pipe.backbone == "dualstylegan":
            label = f"VToonify-D {Path(ckpt).parent.name} #{sid}"
        else:
            label = f"VToonify-T {Path(ckpt).parent.name}"
        models.append((label, pipe, sid))
    sheet = backbones_figure(models, _load_images(args.content), style_degree=args.style_degree,
                             color_transfer=args.color_transfer, layout=_layout(args))
    return [_save_png(_out(args, "backbones", args.content[0]), sheet)]


def _clip(args: argparse.Namespace) -> tuple[list[np.ndarray], list[int], float]:
    """The frames of ``--content`` selected by ``--start/--frames/--stride``, their numbers and frame rate."""
    if not os.path.isfile(args.content):
        raise MissingFileError(f"content not found: {args.content}")
    frames = read_frames(args.content, args.frames, args.start, args.stride)
    numbers = [args.start + i * args.stride for i in range(len(frames))]
    return frames, numbers, probe(args.content).fps / args.stride


def _cmd_video(args: argparse.Namespace, cache: PipelineCache) -> list[Path]:
    pipe = _pipeline(args, cache, args.ckpt, args.exstyle_path)
    frames, numbers, fps = _clip(args)
    strip, animation = video_figures(pipe, frames, args.style_id, style_degree=args.style_degree,
                                     color_transfer=args.color_transfer, strip_frames=args.strip_frames, numbers=numbers,
                                     layout=_layout(args))
    return [_save_png(_out(args, "video", args.content, "_strip.png"), strip),
            _save_gif(_out(args, "video", args.content, ".gif"), animation, fps),
            _save_mp4(_out(args, "video", args.content, ".mp4"), animation, fps)]


def _cmd_baseline(args: argparse.Namespace, cache: PipelineCache) -> list[Path]:
    pipe = _pipeline(args, cache, args.ckpt, args.exstyle_path)
    frames, numbers, _ = _clip(args)
    sheet = baseline_figure(pipe, frames, args.style_id, style_degree=args.style_degree, color_transfer=args.color_transfer,
                            baseline_size=args.baseline_size, numbers=numbers, layout=_layout(args))
    return [_save_png(_out(args, "baseline", args.content), sheet)]


def _cmd_all(args: argparse.Namespace, cache: PipelineCache) -> list[Path]:
    """Every figure: the images for degree/styles/color/backbones, the video for video/baseline; each
    subcommand is run with the command line it would get on its own, sharing the loaded models."""
    shared = ["--output_dir", args.output_dir, "--padding", *map(str, args.padding), "--panel", str(args.panel),
              "--style_encoder_path", args.style_encoder_path, "--faceparsing_path", args.faceparsing_path,
              "--device", args.device, "--engine", args.engine]
    shared += ["--name", args.name] if args.name else []
    shared += ["--dtype", args.dtype] if args.dtype else []
    degree = ["--style_degree", str(args.style_degree)]
    ids = ["--style_ids", *map(str, args.style_ids)] if args.style_ids else []
    color_ids = ["--style_ids", *map(str, args.style_ids[:3])] if args.style_ids else []
    style_dir = ["--style_dir", args.style_dir] if args.style_dir else []
    clip = ["--content", args.video, "--ckpt", args.ckpt_d, "--style_id", str(args.style_id), "--start", str(args.start),
            "--stride", str(args.stride), *degree]
    runs = [
        ["degree", "--content", args.image[0], "--ckpt", args.ckpt_d, "--style_id", str(args.style_id)],
        ["styles", "--content", *args.image, "--ckpt", args.ckpt_d, *ids, *style_dir, *degree],
        ["color", "--content", *args.image, "--ckpt_color", args.ckpt_color, "--ckpt_nocolor", args.ckpt_d, *color_ids,
         *degree],
        ["backbones", "--content", *args.image, "--ckpt", args.ckpt_t, "--ckpt", args.ckpt_d, "--style_id", str(args.style_id),
         *degree],
        ["video", *clip, "--frames", str(args.frames), "--strip_frames", str(args.strip_frames)],
        ["baseline", *clip, "--frames", str(min(args.frames, args.strip_frames))],
    ]
    parser = build_parser()
    paths = []
    for argv in runs:
        sub_args = parser.parse_args(argv + shared)
        paths += _COMMANDS[sub_args.command](sub_args, cache)
    return paths


# ------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--output_dir", default="./output/figures/", help="folder of the figures")
    common.add_argument("--name", default=None, help="base of the file names (default: the first content's name)")
    encoder, parser = (released_path(name) for name in SHARED_FILES)
    common.add_argument("--style_encoder_path", default=encoder, help="pSp style encoder")
    common.add_argument("--faceparsing_path", default=parser, help="BiSeNet face parser")
    common.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    common.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"], help="VToonify precision")
    add_engine_argument(common)
    common.add_argument("--padding", type=ranged("padding"), nargs=4, default=list(DEFAULT_PADDING),
                        metavar=("LEFT", "RIGHT", "TOP", "BOTTOM"),
                        help="pixels kept around the eye centre after rescaling (as style_transfer.py)")
    common.add_argument("--panel", type=ranged("panel"), default=256, help="height of each panel in pixels")
    style = argparse.ArgumentParser(add_help=False)
    style.add_argument("--style_degree", type=ranged("style_degree"), default=0.5, help="style degree (VToonify-D)")
    style.add_argument("--color_transfer", action="store_true", help="transfer the exemplar's colour too (VToonify-D)")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--ckpt", default=D_CKPT, help="VToonify checkpoint")
    model.add_argument("--exstyle_path", default=None, help="exemplar style codes (default: exstyle_code.npy next to --ckpt)")
    clip = argparse.ArgumentParser(add_help=False)
    clip.add_argument("--content", required=True, help="input video")
    clip.add_argument("--style_id", type=ranged("style_id"), default=26, help="exemplar style (VToonify-D)")
    clip.add_argument("--start", type=ranged("start"), default=0, help="first frame")
    clip.add_argument("--stride", type=ranged("stride"), default=1, help="take every n-th frame")

    p = argparse.ArgumentParser(description="Make the paper's kinds of figures from VToonify checkpoints.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    s = sub.add_parser("degree", parents=[common, model], formatter_class=fmt,
                       help="one input across style degrees (VToonify-D)")
    s.add_argument("--content", required=True, help="input image")
    s.add_argument("--style_id", type=ranged("style_id"), default=26, help="exemplar style")
    s.add_argument("--degrees", type=ranged("style_degree", "--degrees"), nargs="+", default=list(DEGREES),
                   help="style degrees, one panel each")
    s.add_argument("--color_transfer", action="store_true", help="transfer the exemplar's colour too")

    s = sub.add_parser("styles", parents=[common, model, style], formatter_class=fmt,
                       help="inputs x exemplar styles (VToonify-D)")
    s.add_argument("--content", nargs="+", required=True, help="input image(s)")
    s.add_argument("--style_ids", type=ranged("style_id", "--style_ids"), nargs="+", default=None,
                   help="exemplar styles (default: 6 spread over the file)")
    s.add_argument("--columns", type=ranged("columns"), default=4, help="style panels per row when there is one input")
    s.add_argument("--style_dir", default=None, help="folder of the exemplar images, inset into the outputs when found")

    s = sub.add_parser("faces", parents=[common, model, style], formatter_class=fmt,
                       help="a group photo with --faces largest vs --faces all")
    s.add_argument("--content", required=True, help="input image with several faces")
    s.add_argument("--style_id", type=ranged("style_id"), default=26, help="exemplar style (VToonify-D)")
    s.add_argument("--max_faces", type=ranged("max_faces"), default=None, help="at most this many faces")
    s.add_argument("--whole_frame", action="store_true", help="the whole photo at its size (no --scale_image)")

    s = sub.add_parser("color", parents=[common], formatter_class=fmt, help="colour kept vs transferred, colour interpolation")
    s.add_argument("--content", nargs="+", required=True, help="input image(s)")
    s.add_argument("--ckpt_color", default=D_COLOR_CKPT, help="VToonify-D model trained for colour transfer (*_c.pt)")
    s.add_argument("--ckpt_nocolor", default=D_CKPT, help="VToonify-D model that keeps the colours")
    s.add_argument("--exstyle_path", default=None, help="exemplar style codes (default: exstyle_code.npy next to each model)")
    s.add_argument("--style_ids", type=ranged("style_id", "--style_ids"), nargs="+", default=None,
                   help="exemplar styles (default: 3 spread over the file)")
    s.add_argument("--style_degree", type=ranged("style_degree"), default=0.5, help="style degree")
    s.add_argument("--steps", type=ranged("steps"), default=5, help="colour interpolation steps")

    s = sub.add_parser("backbones", parents=[common, style], formatter_class=fmt,
                       help="several models (VToonify-T/-D, styles) on the same inputs")
    s.add_argument("--content", nargs="+", required=True, help="input image(s)")
    s.add_argument("--ckpt", action="append", required=True, help="a VToonify checkpoint (repeat for each column)")
    s.add_argument("--label", action="append", default=None, help="column label (repeat, one per --ckpt)")
    s.add_argument("--style_id", type=ranged("style_id"), action="append", default=None,
                   help="exemplar style of VToonify-D models (once for all, or once per --ckpt; default 26)")

    s = sub.add_parser("video", parents=[common, model, style, clip], formatter_class=fmt,
                       help="input/output strip of consecutive frames, GIF and MP4 preview")
    s.add_argument("--frames", type=ranged("frames"), default=16, help="frames to stylise (the animation)")
    s.add_argument("--strip_frames", type=ranged("strip_frames"), default=6, help="frames shown in the strip")

    s = sub.add_parser("baseline", parents=[common, model, style, clip], formatter_class=fmt,
                       help="VToonify vs the per-frame image toonification baseline")
    s.add_argument("--frames", type=ranged("frames"), default=6, help="consecutive frames to show")
    s.add_argument("--baseline_size", type=ranged("baseline_size"), default=256, help="side of the baseline's aligned faces")

    s = sub.add_parser("all", parents=[common], formatter_class=fmt, help="every figure")
    s.add_argument("--image", nargs="+", required=True, help="input image(s); the first one for the degree figure")
    s.add_argument("--video", required=True, help="input video")
    s.add_argument("--ckpt_d", default=D_CKPT, help="VToonify-D model")
    s.add_argument("--ckpt_color", default=D_COLOR_CKPT, help="VToonify-D colour-transfer model")
    s.add_argument("--ckpt_t", default=T_CKPT, help="VToonify-T model")
    s.add_argument("--style_id", type=ranged("style_id"), default=26,
                   help="exemplar style of the degree, backbone and video figures")
    s.add_argument("--style_ids", type=ranged("style_id", "--style_ids"), nargs="+", default=None,
                   help="exemplar styles of the style and colour figures")
    s.add_argument("--style_dir", default=None, help="folder of the exemplar images")
    s.add_argument("--style_degree", type=ranged("style_degree"), default=0.5, help="style degree")
    s.add_argument("--start", type=ranged("start"), default=0, help="first video frame")
    s.add_argument("--stride", type=ranged("stride"), default=1, help="take every n-th video frame")
    s.add_argument("--frames", type=ranged("frames"), default=16, help="video frames to stylise")
    s.add_argument("--strip_frames", type=ranged("strip_frames"), default=6,
                   help="video frames in the strip and the baseline figure")
    return p


_COMMANDS = {"degree": _cmd_degree, "faces": _cmd_faces, "styles": _cmd_styles, "color": _cmd_color,
             "backbones": _cmd_backbones, "video": _cmd_video, "baseline": _cmd_baseline, "all": _cmd_all}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cache = PipelineCache(LOADED_MODELS)
    return run_cli(lambda: _COMMANDS[args.command](args, cache), _print_saved)


def _print_saved(paths: list[Path]) -> None:
    for path in paths:
        print(f"saved {path}")


if __name__ == "__main__":
    sys.exit(main())
