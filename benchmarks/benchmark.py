"""Per-stage and end-to-end timing of the VToonify pipeline, for both backbones, on CPU or CUDA.

    python benchmarks/benchmark.py                                  # CPU, both backbones, both sizes
    python benchmarks/benchmark.py --device cuda --dtype float16    # GPU
    python benchmarks/benchmark.py --backbones dualstylegan --sizes video --frames 6

Weights are fill-rule weights of the released sizes (cost does not depend on their values), written once
to ``--ckpt_dir`` (default ``/tmp/vtoonify_fill_ckpt``, ~2.3 GB). The video input is the original
project's sample clip when ``--video`` is given (e.g. ``../shared/samples/529.mp4``), else a synthetic
clip of the public-domain astronaut portrait of the same size (400x368).

Stages, timed per frame (median of ``--repeat`` runs after ``--warmup`` untimed calls, default 1):
``detect`` (dlib face + landmarks on the full frame), ``parse`` (BiSeNet at 2x), ``style_encoder``
(alignment + pSp, done once per video), ``generator`` (VToonify), ``decode`` / ``encode`` (video I/O).
``end_to_end`` is ``(time(N frames) - time(2 frames)) / (N - 2)`` of ``stylize_video`` with the models
already loaded, i.e. the steady-state cost of one more frame (the measure used for the original in benchmarks/README.md);
each time is the fastest of ``--repeat`` interleaved runs (noise only adds time), and where the difference is not
positive (the extra frames cost less than the runs' noise: use more ``--frames``) ``end_to_end`` and ``fps`` are
null, never a negative time.
``conv_efficiency`` is the generator's FLOP rate over the machine's measured rate on a large 3x3
convolution (the practical peak). Peak memory is the process's peak RSS (CPU) or peak CUDA allocation.
``batch_fps`` is the generator's throughput on batches of ``--throughput_batch`` frames (parsing included in
``batch_fps_with_parse``); ``psnr_vs_fp32`` (dtype other than float32) compares the uint8 frames of the
run's dtype with those of a float32 model on the same input. ``--compile MODE`` compiles the generator as
``style_transfer.py --compile`` does (compile time excluded: one warm-up call first).
Writes ``results.json`` and ``results.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.make_fill_checkpoints import write_fill_checkpoints
from metrics.runtime import peak_memory_gib
from model.vtoonify import PARSING_SCALE
from pipeline.faces import apply_crop, crop_parameters, select_face
from pipeline.stylize import COMPILE_MODES, VToonifyPipeline, frames_to_tensor, tensor_to_frames
from pipeline.video import VideoReader, VideoWriter, probe, synthesize_test_video

ROOT = Path(__file__).resolve().parents[1]

CKPT = {"dualstylegan": "vtoonify_d_fill/vtoonify_s_d.pt", "toonify": "vtoonify_t_fill/vtoonify.pt"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeat: int, warmup: int = 1) -> float:
    """Median seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_frame_seconds(t_n: float, t_2: float, n: int) -> float | None:
    """Steady-state seconds of one more frame from the times of an ``n``-frame and a 2-frame run; None where
    the difference is not positive (below the timing noise), never a negative time."""
    if n <= 2:
        raise ValueError(f"--frames must be more than 2, got {n}")
    seconds = (t_n - t_2) / (n - 2)
    return seconds if seconds > 0 else None


@torch.inference_mode()
def conv_peak_gflops(device: torch.device, dtype: torch.dtype) -> float:
    """Measured rate of a large 3x3 convolution (512 -> 512 channels, 96x96, channels-last)."""
    x = torch.randn(1, 512, 96, 96, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(512, 512, 3, 3, device=device, dtype=dtype)
    seconds = timed(lambda: F.conv2d(x, w, padding=1), device, 5)
    return 2 * 512 * 512 * 9 * 96 * 96 / seconds / 1e9


def generator_gflop(model, x, style) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x, style, d_s=0.5)
    return counter.get_total_flops() / 1e9


def psnr_vs_float32(pipe, ckpt: Path, inputs: torch.Tensor, style: torch.Tensor, y: torch.Tensor, device) -> float:
    """PSNR (dB) of the uint8 frames ``y`` (the pipeline's dtype) against a float32 model on the same input."""
    from model.checkpoint import load_vtoonify

    ref = load_vtoonify(ckpt, device=device).float()
    with torch.inference_mode():
        y_ref = ref(inputs.float(), style.float(), d_s=0.5).clamp_(-1, 1)
    del ref
    a, b = (torch.from_numpy(np.stack(tensor_to_frames(t))).double() for t in (y, y_ref))
    mse = (a - b).square().mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def make_video(args, tmp: Path) -> Path:
    if args.video:
        return Path(args.video)
    from skimage import data

    return synthesize_test_video(tmp / "astronaut_400x368.mp4", data.astronaut(), n_frames=max(args.frames, 6), fps=30,
                                 size=(400, 368), motion="static", with_audio=True)


@torch.inference_mode()
def bench_backbone(args, backbone: str, video: Path, device: torch.device, dtype: torch.dtype, peak: float,
                   tmp: Path) -> list[dict]:
    ckpt = Path(args.ckpt_dir)
    pipe = VToonifyPipeline(ckpt / CKPT[backbone], backbone=backbone, style_encoder_path=ckpt / "encoder.pt",
                            faceparsing_path=ckpt / "faceparsing.pth", device=device, dtype=dtype, compile=args.compile)
    with VideoReader(video) as reader:
        frame = next(iter(reader))
    face = select_face(pipe.detector.detect(frame))
    params = crop_parameters(frame, face.landmarks, (200, 200, 200, 200))
    crop = apply_crop(frame, params)
    rows = []
    for size in args.sizes:
        frame_in = cv2.resize(crop, (256, 256), interpolation=cv2.INTER_AREA) if size == "256" else crop
        h, w = frame_in.shape[:2]
        x = frames_to_tensor([frame_in], device, dtype)
        style = pipe.style_code(crop, style_id=0)
        parsing = pipe.parse(x)
        inputs = torch.cat([x, parsing / PARSING_SCALE], 1)
        y = pipe.stylize_tensor(x, style, 0.5, parsing)
        stage = {
            "detect": timed(lambda: pipe.detector.detect(frame), device, args.repeat, args.warmup),
            "parse": timed(lambda: pipe.parse(x), device, args.repeat, args.warmup),
            "style_encoder": timed(lambda: pipe.style_code(crop, style_id=0), device, args.repeat, args.warmup),
            "generator": timed(lambda: pipe.stylize_tensor(x, style, 0.5, parsing), device, args.repeat, args.warmup),
            "to_uint8": timed(lambda: tensor_to_frames(y), device, args.repeat, args.warmup),
        }
        batch = args.throughput_batch or (8 if device.type == "cuda" else 1)
        xb, pb = x.expand(batch, -1, -1, -1).contiguous(), parsing.expand(batch, -1, -1, -1).contiguous()
        t_batch = timed(lambda: pipe.stylize_tensor(xb, style, 0.5, pb), device, args.repeat, args.warmup)
        t_batch_parse = timed(lambda: pipe.stylize_tensor(xb, style, 0.5), device, args.repeat, args.warmup)
        extra = {"batch": batch, "batch_fps": round(batch / t_batch, 2),
                 "batch_fps_with_parse": round(batch / t_batch_parse, 2)}
        if dtype != torch.float32:
            extra["psnr_vs_fp32"] = round(psnr_vs_float32(pipe, ckpt / CKPT[backbone], inputs, style, y, device), 2)
        out = np.zeros((4 * h, 4 * w, 3), np.uint8)
        enc_path = tmp / "enc.mp4"

        def encode():
            with VideoWriter(enc_path, 30, 4 * w, 4 * h) as writer:
                for _ in range(4):
                    writer.write(out)

        stage["encode"] = timed(encode, device, 1, args.warmup) / 4

        def decode():
            with VideoReader(video) as reader:
                for k, _ in enumerate(reader):
                    if k == 3:
                        break

        stage["decode"] = timed(decode, device, 1, args.warmup) / 4
        gflop = generator_gflop(pipe.vtoonify, inputs, style)
        row = {"backbone": backbone, "size": f"{w}x{h}->{4 * w}x{4 * h}", **{k: round(v, 4) for k, v in stage.items()},
               "generator_gflop": round(gflop, 1),
               "conv_efficiency": round(gflop / stage["generator"] / peak, 3), **extra}
        if size != "256":
            def run(n):
                short = tmp / f"clip{n}.mp4"
                info = probe(video)
                with VideoReader(video) as reader, \
                        VideoWriter(short, info.fps, info.width, info.height, audio_from=video) as wr:
                    for k, f in enumerate(reader):
                        if k == n:
                            break
                        wr.write(f)
                t0 = time.perf_counter()
                pipe.stylize_video(short, tmp / "out", style_id=0, scale_image=True, progress=False,
                                   batch_size=args.batch_size)
                sync(device)
                return time.perf_counter() - t0

            n, t_n, t_2 = args.frames, float("inf"), float("inf")
            for _ in range(args.repeat):  # interleaved, so a slow spell of the machine does not favour one length
                t_n, t_2 = min(t_n, run(n)), min(t_2, run(2))
            per_frame = per_frame_seconds(t_n, t_2, n)
            if per_frame is None:
                print(f"warning: {n} frames took no longer than 2 ({t_n:.2f} s, {t_2:.2f} s): the extra frames are "
                      f"below the timing noise; end_to_end left empty (use more --frames or --repeat)", file=sys.stderr)
            row["end_to_end"] = None if per_frame is None else round(per_frame, 3)
            row["fps"] = None if per_frame is None else round(1 / per_frame, 3)
        row["peak_memory_gib"] = round(peak_memory_gib(device), 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def to_markdown(rows: list[dict], meta: dict) -> str:
    cols = ["backbone", "size", "detect", "parse", "style_encoder", "generator", "to_uint8", "decode", "encode",
            "end_to_end", "fps", "batch", "batch_fps", "batch_fps_with_parse", "psnr_vs_fp32", "generator_gflop",
            "conv_efficiency", "peak_memory_gib"]
    lines = [f"Machine: {meta['machine']}; device {meta['device']}, dtype {meta['dtype']}, compile {meta['compile']}, "
             f"{meta['threads']} threads, "
             f"torch {meta['torch']}; measured 3x3-conv peak {meta['conv_peak_gflops']:.0f} GFLOP/s.", "",
             "Seconds per frame (style_encoder: once per video).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(c) is None else str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--backbones", nargs="+", default=["dualstylegan", "toonify"], choices=list(CKPT))
    ap.add_argument("--sizes", nargs="+", default=["256", "video"], choices=["256", "video"])
    ap.add_argument("--video", default=None, help="input video (default: a synthetic 400x368 astronaut clip)")
    ap.add_argument("--frames", type=int, default=6, help="frames of the end-to-end run (>= 3)")
    ap.add_argument("--batch_size", type=int, default=None, help="frames per forward of the end-to-end run")
    ap.add_argument("--throughput_batch", type=int, default=None,
                    help="batch of the batch_fps column (default 8 on CUDA, 1 on CPU)")
    ap.add_argument("--compile", default=None, choices=COMPILE_MODES,
                    help="torch.compile the generator as style_transfer.py --compile does")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls before each timed stage (0: none, for a "
                    "smoke run; the first call of a stage is then in its time)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ckpt_dir", default="/tmp/vtoonify_fill_ckpt")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    if args.frames < 3 or args.repeat < 1:
        ap.error(f"--frames must be at least 3 and --repeat at least 1 (got {args.frames}, {args.repeat})")
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if not (Path(args.ckpt_dir) / "encoder.pt").exists():
        print(f"writing fill-rule checkpoints to {args.ckpt_dir} ...", flush=True)
        write_fill_checkpoints(Path(args.ckpt_dir))
    peak = conv_peak_gflops(device, dtype)
    meta = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
            + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
            "device": str(device), "dtype": args.dtype, "compile": args.compile, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "conv_peak_gflops": round(peak, 1)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(args, Path(tmp))
        for backbone in args.backbones:
            rows += bench_backbone(args, backbone, video, device, dtype, peak, Path(tmp))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (out / "results.md").write_text(to_markdown(rows, meta))
    print(to_markdown(rows, meta))


if __name__ == "__main__":
    main()
