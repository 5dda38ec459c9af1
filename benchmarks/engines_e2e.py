"""The engines end to end: ``style_transfer.py --video --scale_image --cpu`` on a video through each engine.

    python benchmarks/engines_e2e.py --video ../shared/samples/529.mp4 --rounds 2 --out benchmarks/results/engines

Configurations (the first is the reference of every ratio and PSNR): torch float32 (the default), torch
``--dtype bfloat16`` (mixed precision), torch ``--dtype bfloat16 --compile``, ``--engine onnxruntime`` (float32),
``--engine openvino`` (float32) and ``--engine openvino --dtype bfloat16``. Per frame = (t(6 frames) - t(2 frames)) /
4 (model loading and the one-off style code excluded), the configurations interleaved round by round, the speed-up
the median of same-round ratios; peak RSS from ``/usr/bin/time``. Two PSNRs against torch float32: of the frames
before coding (``frame PSNR``: the video's first frame cropped as ``--scale_image`` crops it, its style code, face
parsing and VToonify, each configuration's pipeline in this process: what the engine changes), and of the decoded
output videos (``video PSNR``: crf-18 H.264 on both sides, so two encodings of frames that differ by one level in a
few pixels already differ by the coder's own noise; identical frames give identical files, ``inf``).

Weights: released sizes with face-showing fill-rule weights (``bf16_accuracy.write_face_checkpoints``, written once
to ``--ckpt_dir``). The engines' exports are cached in ``--ckpt_dir/cache`` (``$VTOONIFY_CACHE``), filled by an
untimed warm-up run, as is the compiler's cache. Writes ``engines_e2e.json`` and ``engines_e2e.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import torch

from benchmarks.bf16_accuracy import CKPT, ROOT, time_backbones, write_face_checkpoints
from pipeline.precision import cpu_model_name

CONFIGS = {
    "torch float32": [],
    "torch bfloat16": ["--dtype", "bfloat16"],
    "torch bfloat16 + compile": ["--dtype", "bfloat16", "--compile"],
    "onnxruntime float32": ["--engine", "onnxruntime"],
    "openvino float32": ["--engine", "openvino"],
    "openvino bfloat16": ["--engine", "openvino", "--dtype", "bfloat16"],
}


def warm_ups(configs: dict[str, list[str]]) -> list[str]:
    """The configurations run once untimed first: each compiled one (the compiler's cache) and the first ONNX engine
    (the export every ONNX engine shares)."""
    compiled = [c for c, flags in configs.items() if "--compile" in flags]
    onnx = [c for c, flags in configs.items() if "--engine" in flags][:1]
    return compiled + onnx


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"torch": torch.__version__}
    for package in ("onnxruntime", "openvino"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def pipeline_kwargs(flags: list[str]) -> dict:
    """``VToonifyPipeline`` keywords of a configuration's command-line flags."""
    kwargs, it = {}, iter(flags)
    for flag in it:
        if flag == "--compile":
            kwargs["compile"] = "default"
        else:
            kwargs[flag.removeprefix("--")] = next(it)
    return kwargs


def frame_psnr(ckpt_dir: Path, video: Path, backbones, configs: dict[str, list[str]]) -> dict[tuple[str, str], float]:
    """(backbone, config) -> PSNR (dB) of the first frame's uint8 result against the first configuration's, before
    any coding (see the module docstring)."""
    import numpy as np

    from benchmarks.bf16_accuracy import NAMES, psnr_uint8
    from pipeline.stylize import VToonifyPipeline

    out = {}
    for b in backbones:
        ref = None
        for c, flags in configs.items():
            pipe = VToonifyPipeline(ckpt_dir / CKPT[b], backbone=b, style_encoder_path=ckpt_dir / "encoder.pt",
                                    faceparsing_path=ckpt_dir / "faceparsing.pth", device="cpu",
                                    keep_style_encoder=False, **pipeline_kwargs(flags))
            _, _, frame, lm = pipe.find_first_face(video, (200, 200, 200, 200), True)
            code = pipe.style_code(frame, style_id=0, lm=lm)
            result = np.stack(pipe.stylize_frames([frame], code, 0.5))
            ref = result if ref is None else ref
            out[(NAMES[b], c)] = round(psnr_uint8(result, ref), 2)
            print(json.dumps({"backbone": b, "config": c, "frame_psnr_db": out[(NAMES[b], c)]}), flush=True)
            del pipe
    return out


def to_markdown(meta: dict, rows: list[dict]) -> str:
    short, long = meta["clip_frames"]
    lines = [f"Machine: {meta['machine']}, {meta['threads']} threads; "
             + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + f"; video {meta['video']}.", "",
             f"`style_transfer.py --video --scale_image --cpu [flags]`, per frame = (t({long} frames) - t({short} frames)) / "
             f"{long - short}, median of {meta['rounds']} interleaved rounds (per-round values in brackets):", "",
             "| backbone | engine, precision | s/frame | vs torch float32 | frame PSNR | video PSNR | peak RSS GiB |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        psnr_db = "-" if r["psnr_vs_fp32_db"] is None else f"{r['psnr_vs_fp32_db']} dB"
        frame_db = "-" if r.get("frame_psnr_db") in (None, float("inf")) else f"{r['frame_psnr_db']} dB"
        per_round = ", ".join(map(str, r["s_per_frame_rounds"]))
        lines.append(f"| {r['backbone']} | {r['config']} | {r['s_per_frame']} ({per_round}) "
                     f"| x{r['speedup_vs_fp32']} ({', '.join(map(str, r['speedup_rounds']))}) | {frame_db} | {psnr_db} "
                     f"| {r['peak_rss_gib']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, required=True, help="a portrait video (e.g. the original's sample 529.mp4)")
    ap.add_argument("--ckpt_dir", type=Path, default=Path("/tmp/vtoonify_face_ckpt"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engines")
    ap.add_argument("--backbones", nargs="+", default=list(CKPT), choices=list(CKPT))
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS), metavar="CONFIG",
                    help="configurations to run (the first is the reference); default: all of " + ", ".join(CONFIGS))
    ap.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clip_frames", type=int, nargs=2, default=(2, 6), metavar=("SHORT", "LONG"))
    ap.add_argument("--skip_timing", action="store_true", help="the frame PSNR only (with --timing_json: added to it)")
    ap.add_argument("--timing_json", type=Path, help="rows of an earlier run's engines_e2e.json to use as the timing")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.clip_frames[1] <= args.clip_frames[0] or args.clip_frames[0] < 1:
        ap.error("need --rounds >= 1 and 1 <= SHORT < LONG")
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["VTOONIFY_CACHE"] = str(args.ckpt_dir / "cache")
    write_face_checkpoints(args.ckpt_dir)
    configs = {c: CONFIGS[c] for c in args.configs}
    meta = {"machine": cpu_model_name() or platform.processor(), "threads": args.threads, "versions": versions(),
            "video": args.video.name, "rounds": args.rounds, "clip_frames": list(args.clip_frames)}
    if args.timing_json:
        earlier = json.loads(args.timing_json.read_text())
        rows, meta = earlier["rows"], {**earlier["meta"], "versions": meta["versions"]}
    elif args.skip_timing:
        rows = []
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows = time_backbones(args.ckpt_dir, args.video, args.rounds, Path(tmp), args.backbones, args.clip_frames,
                                  configs=configs, warm_up=warm_ups(configs))
    psnr = frame_psnr(args.ckpt_dir, args.video, args.backbones, configs)
    for r in rows:
        r["frame_psnr_db"] = None if r["psnr_vs_fp32_db"] is None else psnr.get((r["backbone"], r["config"]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engines_e2e.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    md = to_markdown(meta, rows)
    (args.out / "engines_e2e.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
