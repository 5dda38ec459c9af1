"""One VToonify forward (model only) through each engine: torch float32 and bfloat16 (``to_mixed_precision``), ONNX
Runtime float32, OpenVINO float32 and bfloat16, at the released size with face-showing fill-rule weights
(``bf16_accuracy.face_fill_rows``).

    python benchmarks/engines.py --backbone dualstylegan --size 256 --repeat 3 --work /tmp/vtoonify_engines
    python benchmarks/engines.py --backbone toonify --size 360 392 --repeat 4      # the sample video's crop

The checkpoint is written once to ``--work`` and exported once into ``--work/cache`` (the pipeline's export
cache; the export time is printed on the first run). Input: the astronaut's face, ``--size`` (H [W]), with 19
smooth pseudo-parsing channels, and a random W+ code, degree 0.5. Every engine is loaded (timed apart) and run twice
(warm-up; the PSNR of its second uint8 output against torch float32); then ``--repeat`` rounds run each engine once in
turn, so that a load from other processes falls on all of them alike. Reported: the best time and the speed-up over
torch float32 as the median over the rounds of the same-round ratio. Writes one JSON line per engine and a Markdown
table to stdout.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import torch
from skimage import data as skdata

from benchmarks.bf16_accuracy import face_fill_rows, psnr_uint8, to_uint8
from benchmarks.make_fill_checkpoints import TABLES
from common.atomic import atomic_output
from model.checkpoint import load_vtoonify
from model.fill import fill_module
from model.vtoonify import VToonify
from pipeline.engines import get_engine
from pipeline.engines.cache import ExportCache

RUNS = (("torch", torch.float32), ("torch", torch.bfloat16), ("onnxruntime", torch.float32), ("openvino", torch.float32),
        ("openvino", torch.bfloat16))


def face_checkpoint(work: Path, backbone: str) -> Path:
    path = work / f"vtoonify_{backbone}_face.pt"
    if not path.exists():
        work.mkdir(parents=True, exist_ok=True)
        model = VToonify(backbone=backbone)
        fill_module(model, face_fill_rows(model, TABLES / f"fill_vtoonify_{backbone}.tsv"))
        with atomic_output(path) as tmp:
            torch.save({"g_ema": model.state_dict()}, tmp)
    return path


def face_input(size: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The astronaut's face at ``size`` x ``width`` (default square) with 19 smooth pseudo-parsing channels, and a
    random W+ code."""
    width = width or size
    face = cv2.resize(skdata.astronaut()[30:230, 110:310], (width, size), interpolation=cv2.INTER_AREA)
    rgb = torch.from_numpy(face).permute(2, 0, 1).float().div(127.5).sub(1)[None]
    g = torch.Generator().manual_seed(1)
    parsing = torch.nn.functional.interpolate(torch.randn(1, 19, size // 8, width // 8, generator=g), size=(size, width),
                                              mode="bilinear")
    return torch.cat([rgb, parsing], 1), torch.randn(1, 18, 512, generator=g)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="dualstylegan", choices=["dualstylegan", "toonify"])
    ap.add_argument("--size", type=int, nargs="+", default=[256], help="input height [and width] (multiples of 8)")
    ap.add_argument("--repeat", type=int, default=2, help="timed rounds (each runs every engine once)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vtoonify_engines"))
    args = ap.parse_args(argv)

    ckpt = face_checkpoint(args.work, args.backbone)
    t0 = time.perf_counter()
    ExportCache(args.work / "cache").get(ckpt)
    print(json.dumps({"export_or_cache_hit_s": round(time.perf_counter() - t0, 1)}))
    x, style = face_input(*args.size[:2])
    models, rows, ref = [], [], None
    with torch.inference_mode():
        for name, dtype in RUNS:
            t0 = time.perf_counter()
            engine = get_engine(name, dtype, cache_dir=args.work / "cache")
            model = engine.vtoonify(ckpt, model=load_vtoonify(ckpt).to_mixed_precision(dtype) if name == "torch" else None)
            load_s = time.perf_counter() - t0
            model(x, style, d_s=0.5)  # warm-up: OpenVINO compiles a model for this input shape on first use
            out = to_uint8(model(x, style, d_s=0.5))
            ref = out if ref is None else ref
            models.append(model)
            rows.append({"engine": name, "dtype": str(dtype).removeprefix("torch."),
                         "precision": getattr(model, "precision", "-"), "load_s": round(load_s, 2),
                         "psnr_db_vs_torch_fp32": round(psnr_uint8(out, ref), 1) if rows else None, "times_s": []})
        for _ in range(args.repeat):
            for model, row in zip(models, rows):
                t0 = time.perf_counter()
                model(x, style, d_s=0.5)
                row["times_s"].append(round(time.perf_counter() - t0, 3))
    for row in rows:
        row["best_s"] = min(row["times_s"])
        row["speedup"] = round(statistics.median(b / t for b, t in zip(rows[0]["times_s"], row["times_s"])), 2)
        print(json.dumps(row))
    print(f"\n{args.backbone} forward, input 22x{x.shape[2]}x{x.shape[3]}, {torch.get_num_threads()} threads, "
          f"{args.repeat} interleaved rounds\n")
    print("| engine | dtype | best s/forward | vs torch float32 (median of rounds) | PSNR vs torch float32 (uint8) |\n"
          "|---|---|---|---|---|")
    for r in rows:
        psnr = "-" if r["psnr_db_vs_torch_fp32"] is None else f"{r['psnr_db_vs_torch_fp32']} dB"
        print(f"| {r['engine']} | {r['dtype']} | {r['best_s']:.2f} | x{r['speedup']:.2f} | {psnr} |")


if __name__ == "__main__":
    main()
