"""Fetch the released VToonify checkpoints that a chosen backbone and style need (command line and API).

``python -m hub.download --help`` is the command-line front end (:func:`main`). The parts live by
concern and are re-exported here under their documented names:

* :mod:`hub.released`: the table of released files; :func:`files_for` lists the files (relative
  to ``checkpoint/``) that one configuration needs.
* :mod:`hub.fetching`: :func:`fetch` downloads those that are missing, one at a time, and never
  leaves a half-written file under its final name; a failure becomes a :class:`DownloadError` that says
  how to retry.
* :mod:`hub.download_hints`: :func:`missing_file_message`, the hint the inference script prints
  when a checkpoint is absent, and :func:`download_command`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.options import ranged
from hub.download_hints import download_command, manual_download_url, missing_file_message
from hub.fetching import Downloader, DownloadError, fetch
from hub.fetching import hub_download as _hub_download
from hub.released import (
    BACKBONES,
    CHECKPOINT_DIR,
    DEFAULT_BACKBONE,
    DEFAULT_REPO,
    DEFAULT_STYLE,
    REMOTE_DIR,
    STYLES,
    d_checkpoint_name,
    files_for,
    guess_style_from_path,
)

__all__ = [
    "BACKBONES",
    "CHECKPOINT_DIR",
    "DEFAULT_REPO",
    "REMOTE_DIR",
    "STYLES",
    "DownloadError",
    "Downloader",
    "d_checkpoint_name",
    "download_command",
    "fetch",
    "files_for",
    "guess_style_from_path",
    "main",
    "manual_download_url",
    "missing_file_message",
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hub.download",
        description=f"Download the VToonify checkpoints one style needs from the Hugging Face repository "
        f"{DEFAULT_REPO} into the checkpoint folder. Files already there are kept.",
    )
    parser.add_argument("--backbone", choices=BACKBONES, default=DEFAULT_BACKBONE,
                        help="dualstylegan = VToonify-D, toonify = VToonify-T (default: %(default)s)")
    parser.add_argument("--style", default=DEFAULT_STYLE,
                        help=f"D: {', '.join(STYLES['dualstylegan'])}; T: {', '.join(STYLES['toonify'])} "
                        "(default: %(default)s)")
    parser.add_argument("--color_transfer", action="store_true", help="D: the colour-transfer model (vtoonify_s_d_c.pt)")
    parser.add_argument("--style_id", type=ranged("style_id"), help="D: the model trained on this fixed style (e.g. 26)")
    parser.add_argument("--style_degree", type=ranged("style_degree"),
                        help="D: the model trained on this fixed degree (e.g. 0.5)")
    parser.add_argument("--training", action="store_true", help="also fetch the training teachers (best effort)")
    parser.add_argument("--dest", type=Path, default=CHECKPOINT_DIR, help="checkpoint folder (default: %(default)s)")
    parser.add_argument("--repo", default=DEFAULT_REPO, help="Hugging Face model repository (default: %(default)s)")
    parser.add_argument("--revision", help="branch, tag or commit of the repository (default: main)")
    parser.add_argument("--force", action="store_true", help="download again files that are already present")
    parser.add_argument("--list", action="store_true", help="print what would be fetched and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 download failure, 2 bad usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        rels = files_for(args.backbone, args.style, args.color_transfer, args.style_id, args.style_degree, args.training)
    except ValueError as e:
        parser.error(str(e))
    if args.list:
        for rel in rels:
            target = args.dest / rel
            print(f"{'present' if target.is_file() and not args.force else 'fetch':<8} {target}")
        return 0
    try:
        paths = fetch(rels, args.dest, args.repo, args.revision, args.force, downloader=_hub_download)
    except (DownloadError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(paths)} file(s) ready in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
