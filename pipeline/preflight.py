"""What ``style_transfer.py`` checks before any model loads: the device, the options against each other, the
output folder, and the flags that would do nothing (one warning line each, never silence).

:func:`preflight` takes the parsed command line and returns the warnings; a mistake is a one-line user error
(:mod:`common.errors`) raised before minutes of model loading and decoding.
"""
from __future__ import annotations

import argparse

from common.atomic import check_writable_folder
from common.devices import resolve_device

__all__ = ["ignored_flags", "preflight"]


def ignored_flags(args: argparse.Namespace) -> list[str]:
    """One line per given flag that the run would ignore."""
    notes = []
    if not args.video:
        for flag, given in (("--track", args.track), ("--smooth_parsing", args.smooth_parsing),
                            ("--batch_size", args.batch_size is not None),
                            ("--parsing_map_path", args.parsing_map_path is not None)):
            if given:
                notes.append(f"{flag} is for videos (add --video); ignored for a photo")
    elif args.track and not args.scale_image:
        notes.append("--track moves the crop around the face: without --scale_image there is no crop; ignored")
    if args.cpu and args.device not in ("auto", "cpu"):
        notes.append(f"--cpu runs on the CPU; --device {args.device} is ignored")
    if args.max_faces is not None and args.faces != "all":
        notes.append("--max_faces is for --faces all; ignored")
    if not args.style_image and (args.style_aligned or args.style_refine):
        notes.append("--style_aligned and --style_refine are for --style_image; ignored")
    return notes


def preflight(args: argparse.Namespace) -> list[str]:
    """Check ``style_transfer.py``'s ``args`` before the work (device, options, output folder); the warnings of
    :func:`ignored_flags`."""
    from pipeline.api import StyleOptions

    resolve_device("cpu" if args.cpu else args.device)  # an unknown --device: one line, before anything loads
    StyleOptions(scale_image=args.scale_image, padding=tuple(args.padding), max_side=args.max_side,
                 style_image=args.style_image, faces=args.faces, max_faces=args.max_faces).checked()
    check_writable_folder(args.output_path, "--output_path")
    return ignored_flags(args)
