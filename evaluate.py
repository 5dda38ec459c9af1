"""Measure VToonify and the per-frame image toonification baseline on the same video.

    python evaluate.py --content clip.mp4 --ckpt checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt \\
        --style_id 26 --style_degree 0.5 --output_path output/eval/ --max_frames 30

writes ``metrics.json`` (settings, per-method summaries and per-frame values), ``metrics.csv`` (one row
per method), ``metrics.png`` (bar charts) and prints a Markdown table. The methods:

* ``vtoonify``: the clip as ``style_transfer.py --video --scale_image`` stylises it: the crop and the
  style code of the first frame with a face, then every frame cropped the same way (RGB outputs 4x the
  crop).
* ``per_frame_baseline``: :class:`pipeline.clips.PerFrameBaseline`, i.e. each frame's face aligned
  (FFHQ) on its own, encoded by pSp and rendered by the teacher at 1024x1024, resized to
  ``--baseline_size`` (default 256). Frames where it finds no face are left out of its metrics.

Metrics (see :mod:`metrics`): warping error between consecutive outputs with DIS flow of the
corresponding inputs (VToonify: the crops; baseline: the aligned faces) and occlusions masked, the
plain difference of consecutive outputs for reference, flicker on static regions, identity distance of
dlib face descriptors (input vs output), seconds per frame (VToonify: crop + parsing + generator, the
once-per-clip style code reported as ``setup_seconds``; baseline: alignment + pSp + teacher + resize,
loading pSp reported as ``setup_seconds``),
and the peak host (and CUDA) memory of each method's run, models included (as ``style_transfer.py``
does, VToonify loads the pSp encoder for its style code and releases it; the baseline needs it for
every frame). All frames are kept in memory (about 8 MB per 1600x1600 output frame): use
``--max_frames`` for long videos.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common.cli import run_cli
from common.errors import MissingFileError
from common.options import add_engine_argument, ranged
from common.sheets import bar_chart
from hub.released import SHARED_FILES
from metrics.identity import FaceEmbedder, identity_distance
from metrics.runtime import RuntimeMonitor, RuntimeStats
from metrics.temporal import STATIC_THRESHOLD, flicker_score, warping_errors
from pipeline.api import StyleOptions
from pipeline.clips import PerFrameBaseline, find_face_crop, read_frames
from pipeline.registry import default_model, released_path, require_files
from pipeline.stylize import VToonifyPipeline, atomic_imwrite

__all__ = ["MethodRun", "build_parser", "main", "markdown_table", "measure", "run_baseline", "run_vtoonify"]

#: (key in the summaries, label in the table and the chart) of the headline metrics.
HEADLINE = [
    ("warping_error", "warping error"),
    ("frame_difference", "frame difference"),
    ("flicker", "flicker (static)"),
    ("identity_distance", "identity distance"),
    ("seconds_per_frame", "s / frame"),
    ("peak_rss_mib", "peak RSS (MiB)"),
]
METHOD_LABELS = {"vtoonify": "VToonify", "per_frame_baseline": "per-frame baseline"}


@dataclass
class MethodRun:
    """What a method produced on a clip: per-frame inputs and outputs (``None`` where it had no result),
    the seconds each frame took, the runtime statistics and the one-off setup time."""

    inputs: list[np.ndarray | None]
    outputs: list[np.ndarray | None]
    seconds: list[float]
    runtime: RuntimeStats
    setup_seconds: float


def run_vtoonify(pipe: VToonifyPipeline, frames: Sequence[np.ndarray], style_id: int, style_degree: float,
                 color_transfer: bool, padding: Sequence[int]) -> MethodRun:
    """VToonify on ``frames`` with the crop and style code of the first face, timed per frame."""
    monitor = RuntimeMonitor(pipe.device)
    inputs, outputs = [], []
    with monitor:
        start = time.perf_counter()
        crop = find_face_crop(pipe.detector, frames, padding)
        style = pipe.style_code(crop.frame, style_id, color_transfer, crop.landmarks)
        setup = time.perf_counter() - start
        for frame in frames:
            with monitor.frame():
                x = crop.apply(frame)
                y = pipe.stylize_frames([x], style, style_degree)[0]
            inputs.append(x)
            outputs.append(y)
    return MethodRun(inputs, outputs, monitor.times, monitor.stats(), setup)


def run_baseline(pipe: VToonifyPipeline, frames: Sequence[np.ndarray], style_id: int, style_degree: float,
                 color_transfer: bool, size: int = 256) -> MethodRun:
    """The per-frame baseline on ``frames``, timed per frame (loading the pSp encoder is setup)."""
    baseline = PerFrameBaseline(pipe, size)
    monitor = RuntimeMonitor(pipe.device)
    inputs, outputs = [], []
    with monitor:
        start = time.perf_counter()
        _ = pipe.pspencoder  # loaded once (if it is not already) and kept for every frame
        setup = time.perf_counter() - start
        for frame in frames:
            with monitor.frame():
                result = baseline(frame, style_id, style_degree, color_transfer)
            inputs.append(result.aligned if result else None)
            outputs.append(result.output if result else None)
    return MethodRun(inputs, outputs, monitor.times, monitor.stats(), setup)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def measure(run: MethodRun, embedder: FaceEmbedder, flow_preset: str = "medium", static_threshold: float = STATIC_THRESHOLD,
            identity_landmarks: str = "detect") -> dict:
    """Summary and per-frame values of every metric for one method's run."""
    present = [i for i, out in enumerate(run.outputs) if out is not None]
    summary: dict = {"frames": len(run.outputs), "frames_with_output": len(present)}
    if present:
        first = present[0]
        summary["input_size"] = [run.inputs[first].shape[1], run.inputs[first].shape[0]]
        summary["output_size"] = [run.outputs[first].shape[1], run.outputs[first].shape[0]]
    errors = warping_errors(run.inputs, run.outputs, preset=flow_preset)
    plain = warping_errors(run.inputs, run.outputs, compensate=False)
    summary["warping_error"] = _nanmean(errors)
    summary["frame_difference"] = _nanmean(plain)
    if len(present) >= 2:
        flicker = flicker_score([run.inputs[i] for i in present], [run.outputs[i] for i in present], static_threshold)
        summary["flicker"], summary["static_fraction"] = flicker.score, flicker.static_fraction
    else:
        summary["flicker"], summary["static_fraction"] = float("nan"), float("nan")
    identity = [float("nan") if out is None else identity_distance(inp, out, embedder, identity_landmarks)
                for inp, out in zip(run.inputs, run.outputs)]
    summary["identity_distance"] = _nanmean(identity)
    summary["identity_frames"] = int(sum(not math.isnan(v) for v in identity))
    summary.update({k: v for k, v in asdict(run.runtime).items() if k != "frames"})
    summary["setup_seconds"] = run.setup_seconds
    summary["per_frame"] = {"warping_error": errors.tolist(), "frame_difference": plain.tolist(),
                            "identity_distance": identity, "seconds": run.seconds}
    return summary


def _json_ready(value):
    """NaN -> None (JSON has no NaN), recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _fmt(value) -> str:
    """A table cell: 4 significant digits, ``n/a`` for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _csv_value(value) -> str:
    """A CSV cell: sizes as ``WxH``, floats with 6 significant digits, empty for a missing value."""
    if isinstance(value, list):
        return "x".join(map(str, value))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def markdown_table(results: dict[str, dict]) -> str:
    """The headline metrics as a Markdown table, one column per method."""
    methods = list(results)
    lines = ["| metric | " + " | ".join(METHOD_LABELS.get(m, m) for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for key, label in HEADLINE:
        lines.append(f"| {label} | " + " | ".join(_fmt(results[m].get(key)) for m in methods) + " |")
    return "\n".join(lines)


def _write_outputs(out_dir: Path, settings: dict, results: dict[str, dict]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path, png_path = out_dir / "metrics.json", out_dir / "metrics.csv", out_dir / "metrics.png"
    with open(json_path, "w") as f:
        json.dump(_json_ready({"settings": settings, "methods": results}), f, indent=2)
    columns = ["method"] + [k for k in next(iter(results.values())) if k != "per_frame"]
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for method, summary in results.items():
            writer.writerow([method] + [_csv_value(summary.get(c)) for c in columns[1:]])
    chart = {label: {METHOD_LABELS.get(m, m): float(results[m][key]) for m in results} for key, label in HEADLINE}
    title = f"{Path(settings['content']).name}: {settings['frames']} frames, {Path(settings['ckpt']).parent.name}"
    atomic_imwrite(png_path, bar_chart(chart, title))
    return [json_path, csv_path, png_path]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Temporal consistency, identity, runtime and memory of VToonify vs the per-frame baseline",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--content", required=True, help="input video")
    p.add_argument("--ckpt", default=default_model(), help="VToonify model")
    p.add_argument("--backbone", default=None, choices=["dualstylegan", "toonify"],
                   help="expected backbone (default: read from the file)")
    p.add_argument("--style_id", type=ranged("style_id"), default=26, help="exemplar style (VToonify-D)")
    p.add_argument("--style_degree", type=ranged("style_degree"), default=0.5, help="style degree (VToonify-D)")
    p.add_argument("--color_transfer", action="store_true", help="transfer the exemplar's colour too (VToonify-D)")
    p.add_argument("--exstyle_path", default=None, help="exemplar style codes (default: exstyle_code.npy next to --ckpt)")
    encoder, parser = (released_path(name) for name in SHARED_FILES)
    p.add_argument("--style_encoder_path", default=encoder, help="pSp style encoder")
    p.add_argument("--faceparsing_path", default=parser, help="BiSeNet face parser")
    p.add_argument("--output_path", default="./output/eval/", help="folder of metrics.json / .csv / .png")
    p.add_argument("--max_frames", type=ranged("max_frames"), default=None,
                   help="evaluate the first N frames only (default: all)")
    p.add_argument("--padding", type=ranged("padding"), nargs=4, default=[200, 200, 200, 200],
                   metavar=("LEFT", "RIGHT", "TOP", "BOTTOM"),
                   help="pixels kept around the eye centre after rescaling (as style_transfer.py)")
    p.add_argument("--baseline_size", type=ranged("baseline_size"), default=256,
                   help="side of the baseline's aligned input and output")
    p.add_argument("--skip_baseline", action="store_true", help="measure VToonify only")
    p.add_argument("--flow_preset", default="medium", choices=["ultrafast", "fast", "medium"], help="DIS optical flow preset")
    p.add_argument("--static_threshold", type=ranged("static_threshold"), default=STATIC_THRESHOLD,
                   help="largest frame-to-frame change (grey, in [0, 1]) of a static input pixel, for the flicker score")
    p.add_argument("--identity_landmarks", default="detect", choices=["detect", "input"],
                   help="detect the face in the output, or reuse the input's landmarks (outputs are pixel-aligned)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"], help="VToonify precision")
    add_engine_argument(p)
    return p


def _run(args: argparse.Namespace) -> tuple[list[Path], str]:
    if not os.path.isfile(args.content):
        raise MissingFileError(f"content not found: {args.content}")
    StyleOptions(style_id=args.style_id, style_degree=args.style_degree, scale_image=True,
                 padding=tuple(args.padding)).checked()  # the crop as style_transfer.py --scale_image checks it
    require_files(args.ckpt, args.style_encoder_path, args.faceparsing_path, backbone=args.backbone)
    pipe = VToonifyPipeline(args.ckpt, backbone=args.backbone, style_encoder_path=args.style_encoder_path,
                            faceparsing_path=args.faceparsing_path, exstyle_path=args.exstyle_path, device=args.device,
                            dtype=args.dtype, keep_style_encoder=False, engine=args.engine)
    if pipe.backbone == "dualstylegan":
        pipe.exstyle(args.style_id)  # validates --style_id before any work
    frames = read_frames(args.content, args.max_frames)
    style = (args.style_id, args.style_degree, args.color_transfer)
    runs = {"vtoonify": run_vtoonify(pipe, frames, *style, args.padding)}
    if not args.skip_baseline:
        runs["per_frame_baseline"] = run_baseline(pipe, frames, *style, args.baseline_size)
    embedder = FaceEmbedder(pipe.detector)
    results = {}
    for name, run in runs.items():
        results[name] = measure(run, embedder, args.flow_preset, args.static_threshold, args.identity_landmarks)
    settings = {"content": args.content, "ckpt": args.ckpt, "backbone": pipe.backbone, "style_id": args.style_id,
                "style_degree": args.style_degree, "color_transfer": args.color_transfer, "frames": len(frames),
                "padding": list(args.padding), "baseline_size": args.baseline_size, "flow_preset": args.flow_preset,
                "static_threshold": args.static_threshold, "identity_landmarks": args.identity_landmarks,
                "device": str(pipe.device), "engine": pipe.engine.name,
                "dtype": str(pipe.engine.dtype).replace("torch.", "")}  # the engine's precision (VToonify, parser)
    return _write_outputs(Path(args.output_path), settings, results), markdown_table(results)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _run(args), _print_results)


def _print_results(result: tuple[list[Path], str]) -> None:
    paths, table = result
    print(table)
    for path in paths:
        print(f"saved {path}")


if __name__ == "__main__":
    sys.exit(main())
