"""Cost of ``--faces all``: seconds per video frame with 1, 2 and 4 faces in the frame.

    python benchmarks/multiface.py                              # released-size fill-rule VToonify-D, CPU
    python benchmarks/multiface.py --cell 256 --padding 200 --frames 4    # 512x512 frames, 400x400 face crops

The input is a synthetic video: a 2x2 grid of ``--cell`` px astronaut portraits (eye distance 0.085 * cell),
of which the first 1, 2 or 4 cells hold a face and the rest a face-free gradient. Runs without
``--scale_image`` (the canvas is then the whole frame, the same for every face count), so every extra face
adds one crop of ``2 * padding`` px square: one BiSeNet parse and one VToonify forward (plus one
style-encoder pass per video). ``s/frame`` is the median interval between consecutive output frames after the first
(style codes and warm-up excluded); ``largest`` on the 4-face video is the single-face reference. Weights are fill-rule
weights of the released sizes (the cost does not depend on their values), written once to ``--ckpt_dir``.
Writes ``multiface.json`` and ``multiface.md`` to ``--out`` and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
from pipeline import multiface  # noqa: E402
from pipeline.stylize import VToonifyPipeline  # noqa: E402
from pipeline.video import VideoWriter  # noqa: E402


def grid_video(path: Path, n_faces: int, frames: int, c: int = 192) -> Path:
    from skimage import data

    face = cv2.resize(data.astronaut(), (c, c), interpolation=cv2.INTER_AREA)
    gradient = np.linspace(60, 200, c).astype(np.uint8)[None, :, None].repeat(c, 0).repeat(3, 2)
    with VideoWriter(path, 10, 2 * c, 2 * c) as writer:
        for t in range(frames):
            frame = np.empty((2 * c, 2 * c, 3), np.uint8)
            for cell in range(4):
                y, x = divmod(cell, 2)
                frame[c * y:c * y + c, c * x:c * x + c] = face if cell < n_faces else gradient
            writer.write(np.roll(frame, t, axis=1))  # 1 px/frame of motion
    return path


def time_video(pipe: VToonifyPipeline, path: Path, out: Path, faces: str,
               padding: tuple[int, ...]) -> tuple[float, list[float], int]:
    stamps: list[float] = []
    n_extra = []
    if faces == "all":
        result = multiface.stylize_video(pipe, path, out, style_id=0, scale_image=False, progress=False, padding=padding,
                                         on_frame=lambda f: (stamps.append(time.perf_counter()), n_extra.append(len(f.faces))))
    else:
        from pipeline import video

        original = video.VideoWriter.write

        def stamped(self, frame):
            if self.path.name.endswith("_vtoonify_d.mp4") or self.path.name.endswith("_vtoonify_t.mp4"):
                stamps.append(time.perf_counter())
            return original(self, frame)

        video.VideoWriter.write = stamped
        try:
            result = pipe.stylize_video(path, out, style_id=0, scale_image=False, progress=False, overlap=False,
                                        padding=padding)
        finally:
            video.VideoWriter.write = original
        n_extra = [0]
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    assert result.frames == len(stamps)
    return statistics.median(intervals), intervals, max(n_extra)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt_dir", type=Path, default=Path("/tmp/vtoonify_fill_ckpt"))
    ap.add_argument("--faces", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--frames", type=int, default=3, help="frames per video (the first is not timed)")
    ap.add_argument("--cell", type=int, default=192, help="side of each grid cell (2x2 cells per frame)")
    ap.add_argument("--padding", type=int, default=128, help="pixels kept around the eye centre (each side)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = args.ckpt_dir / "vtoonify_d_fill" / "vtoonify_s_d.pt"
    if not ckpt.is_file():
        from benchmarks.make_fill_checkpoints import write_fill_checkpoints

        write_fill_checkpoints(args.ckpt_dir)
    pipe = VToonifyPipeline(ckpt, style_encoder_path=args.ckpt_dir / "encoder.pt",
                            faceparsing_path=args.ckpt_dir / "faceparsing.pth", device=args.device)
    work = args.out / "multiface_work"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    load_before = os.getloadavg()
    for n in args.faces:
        path = grid_video(work / f"grid{n}.mp4", n, args.frames, args.cell)
        s, intervals, extra = time_video(pipe, path, work / f"out{n}", "all", (args.padding,) * 4)
        rows.append({"mode": "all", "faces": n, "extra_faces_blended": extra, "s_per_frame": s, "intervals": intervals})
        print(f"all, {n} face(s): {s:.2f} s/frame ({extra} extra)", flush=True)
    path = work / f"grid{max(args.faces)}.mp4"
    s, intervals, _ = time_video(pipe, path, work / "largest", "largest", (args.padding,) * 4)
    rows.append({"mode": "largest", "faces": max(args.faces), "extra_faces_blended": 0, "s_per_frame": s,
                 "intervals": intervals})
    base = next(r["s_per_frame"] for r in rows if r["mode"] == "all" and r["faces"] == 1)
    for r in rows:
        r["ratio_to_1_face"] = r["s_per_frame"] / base
    report = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "device": args.device, "frames": args.frames, "cell": args.cell, "padding": args.padding,
              "weights": "released sizes, fill rule", "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "multiface.json").write_text(json.dumps(report, indent=2))
    lines = ["| mode | faces in frame | s/frame | x (1 face) |", "|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['faces']} | {r['s_per_frame']:.2f} | {r['ratio_to_1_face']:.2f} |" for r in rows]
    lines.append(f"\n{2 * args.cell}x{2 * args.cell} frames, no --scale_image, {2 * args.padding}x{2 * args.padding} face "
                 f"crops, VToonify-D, {args.device}, {report['torch_threads']} "
                 f"torch threads; load average before/after: {load_before[0]:.1f} / {report['loadavg_after'][0]:.1f}.")
    (args.out / "multiface.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
