"""Time one VToonify forward pass (model only) on CPU or CUDA with fill-rule weights of the released size.

    python benchmarks/model_forward.py --backbone dualstylegan --size 256 256 --repeat 3

Cost does not depend on the weight values, so no checkpoint is needed. Reports the wall time of each
forward (the first includes one-off allocations) and the process's peak resident memory.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from metrics.runtime import peak_memory_gib
from model.fill import fill_module
from model.vtoonify import VToonify


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="dualstylegan", choices=["dualstylegan", "toonify"])
    ap.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"), help="input size (multiples of 8)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    model = fill_module(VToonify(backbone=args.backbone)).eval().requires_grad_(False).to(device, dtype)
    h, w = args.size
    x = torch.randn(args.batch, 22, h, w, device=device, dtype=dtype).clamp(-1, 1)
    style = torch.randn(args.batch, 18, 512, device=device, dtype=dtype)
    times = []
    with torch.inference_mode():
        for _ in range(args.repeat):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model(x, style, d_s=0.5)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    result = {
        "backbone": args.backbone,
        "input": [args.batch, 22, h, w],
        "output": list(out.shape),
        "device": str(device),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "seconds": [round(t, 3) for t in times],
        "best_seconds": round(min(times), 3),
        "peak_rss_gib": round(peak_memory_gib('cpu'), 2),
    }
    if device.type == "cuda":
        result["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
