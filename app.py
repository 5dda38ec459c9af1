"""A local web demo of VToonify: toonify a portrait photo or a short video in the browser.

    python app.py                                   # models found under ./checkpoint, http://127.0.0.1:7860
    python app.py --ckpt_dir /data/vtoonify --device cuda --max_video_seconds 30

The page offers every model found in the checkpoint folder (``vtoonify_d_<style>/vtoonify_s_d*.pt`` with
its ``exstyle_code.npy``, ``vtoonify_t_<style>/vtoonify.pt``) and any given with ``--ckpt``, then the released
styles not downloaded yet (fetched into the checkpoint folder when picked, unless ``--no_download``); the exemplar
style (with a thumbnail of it), the style degree and colour transfer for VToonify-D; cropping around the
face; a photo or a video upload, or the bundled public-domain samples (scikit-image's astronaut, and a
short clip panning over it, with a tone as its audio track). Results appear with a progress bar; videos keep
their audio and can be downloaded.

The work is done by :class:`pipeline.stylize.VToonifyPipeline`: each model is loaded once, on first use
(the first one at start-up), and kept warm (``--max_loaded_models`` at a time, in a
:class:`pipeline.registry.PipelineCache`). Requests go through
Gradio's queue and run one at a time, so a long video never freezes the page; it shows its progress and
its place in the queue. Bad inputs (no face, a file that is not an image or a video, a video over the
length limit) get a message on the page. The handlers are plain functions of an :class:`AppState`
(:func:`toonify_image`, :func:`toonify_video`, :func:`describe_video`, :func:`style_thumbnail`), usable
and tested without a browser; :func:`build_app` wires them to the page.

The demo lives in the :mod:`demo` package (``demo.config``, ``demo.state``, ``demo.handlers`` without Gradio,
``demo.page``); this file is its entry point (command line, first-run download, start-up) and re-exports its
public names.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from common.errors import USER_ERRORS
from common.options import RANGES, add_engine_argument, ranged
from demo.config import (
    DEFAULT_STYLE_ID,
    MAX_CACHED_THUMBNAILS,
    MAX_UNCROPPED_SIDE,
    RESULT_MAX_AGE,
    THUMBNAIL_SIZE,
    AppConfig,
    ModelEntry,
    ModelInfo,
    discover_models,
    helper_paths,
)
from demo.handlers import describe_video, read_image, style_thumbnail, toonify_image, toonify_video
from demo.page import build_app
from demo.released import with_released_styles
from demo.state import AppState, render_exemplar
from hub.released import CHECKPOINT_DIR, SHARED_FILES, files_for
from pipeline.samples import sample_photo

__all__ = [
    "DEFAULT_STYLE_ID",
    "MAX_CACHED_THUMBNAILS",
    "MAX_UNCROPPED_SIDE",
    "RANGES",
    "RESULT_MAX_AGE",
    "THUMBNAIL_SIZE",
    "AppConfig",
    "AppState",
    "ModelEntry",
    "ModelInfo",
    "build_app",
    "build_parser",
    "describe_video",
    "discover_models",
    "fetch_default_model",
    "main",
    "read_image",
    "render_exemplar",
    "sample_photo",
    "style_thumbnail",
    "toonify_image",
    "toonify_video",
]

# ----------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Local web demo of VToonify (portrait photo and video toonification)")
    p.add_argument("--ckpt_dir", default=os.path.join(".", CHECKPOINT_DIR),
                   help="checkpoint folder in the released layout, searched for models (default: %(default)s)")
    p.add_argument("--ckpt", action="append", default=[], metavar="PATH",
                   help="a VToonify checkpoint to offer as well (repeatable; listed first, the first is the default); "
                        "a VToonify-D model needs exstyle_code.npy next to it")
    p.add_argument("--style_encoder_path", default=None, help="pSp style encoder (default: <ckpt_dir>/encoder.pt)")
    p.add_argument("--faceparsing_path", default=None, help="BiSeNet face parser (default: <ckpt_dir>/faceparsing.pth)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available; the default), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                   help="precision of VToonify and the face parser (default: float32)")
    add_engine_argument(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default: 127.0.0.1, this machine only; 0.0.0.0: the network too)")
    p.add_argument("--port", type=ranged("port"), default=7860, help="port to serve on (default: 7860)")
    p.add_argument("--max_video_seconds", type=ranged("max_video_seconds"), default=10.0,
                   help="longest video accepted, in seconds (default: 10; 0: no limit)")
    p.add_argument("--max_video_frames", type=ranged("max_video_frames"), default=None,
                   help="most frames accepted in a video (default: no limit)")
    p.add_argument("--max_loaded_models", type=ranged("max_loaded_models"), default=2,
                   help="models kept in memory at once (default: 2)")
    p.add_argument("--share", action="store_true",
                   help="also publish the page through a temporary public gradio.live link (default: off)")
    p.add_argument("--no_download", action="store_true",
                   help="never download: neither the default model when the checkpoint folder has none, nor a released "
                        "style picked in the page (then not listed); also: VTOONIFY_NO_DOWNLOAD=1")
    return p


def fetch_default_model(args: argparse.Namespace) -> list[Path]:
    """First run: download the default model (VToonify-D cartoon) and the helper networks into ``--ckpt_dir``
    when it has no model and none is given with ``--ckpt``, and the helpers when they are missing at their
    default paths (see :mod:`hub.first_run`). Paths given with ``--ckpt`` and the ``--*_path`` options
    are never replaced."""
    from hub.first_run import fetch_missing_defaults

    root = Path(args.ckpt_dir)
    encoder, parser = helper_paths(root)
    defaults = [path for path, given in ((encoder, args.style_encoder_path), (parser, args.faceparsing_path)) if given is None]
    if not args.ckpt and not discover_models(root):
        defaults += [root / rel for rel in files_for() if rel not in SHARED_FILES]
    return fetch_missing_defaults(defaults, root, no_download=args.no_download)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(message)s")
    logging.getLogger("vtoonify").setLevel(logging.INFO)  # this file's messages and the models loaded and dropped
    from hub.download_hints import missing_file_message

    try:
        fetch_default_model(args)
        config = AppConfig.from_checkpoint_dir(
            args.ckpt_dir, args.ckpt, args.style_encoder_path, args.faceparsing_path, device=args.device,
            dtype=args.dtype, max_video_seconds=args.max_video_seconds or None, max_video_frames=args.max_video_frames,
            max_loaded_models=args.max_loaded_models, engine=args.engine)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    missing = config.missing_files()
    if missing:
        print("error: " + "\n".join(missing_file_message(p) for p in missing), file=sys.stderr)
        return 1
    config = with_released_styles(config, args.ckpt_dir, no_download=args.no_download)  # listed, fetched when picked
    state = AppState(config)
    try:  # the default model is loaded up front, so that the first request is quick
        state.pipeline(config.labels[0])
    except (*USER_ERRORS, ImportError) as e:  # ImportError: dlib or another optional package is missing
        print(f"error: {e}", file=sys.stderr)
        return 1
    demo = build_app(config, state)
    demo.queue().launch(server_name=args.host, server_port=args.port, share=args.share,
                        allowed_paths=[str(state.workdir)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
