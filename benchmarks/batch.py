"""Many photos in one run against one run per photo (model loading included), as a creator would run a folder.

    python benchmarks/batch.py --photos 4 --rounds 2

Photos: ``--photos`` variants of the scikit-image astronaut (mirrored, shifted, rescaled), written to a folder.
``one run``: ``style_transfer.py --content FOLDER --scale_image --cpu``; ``one run per photo``: the same command for
each photo in turn. Both interleaved for ``--rounds`` rounds; seconds per photo (median of the rounds) and whether
the outputs are byte-identical. Weights: released sizes with fill-rule weights (VToonify-D, written once to
``--ckpt_dir``, as ``bf16_accuracy.write_face_checkpoints``).
"""
from __future__ import annotations

import argparse
import filecmp
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

from benchmarks.bf16_accuracy import CKPT, ROOT, write_face_checkpoints


def write_photos(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    base = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    paths = []
    for i in range(n):
        img = base[:, ::-1] if i % 2 else base
        img = np.roll(img, 8 * (i // 2), axis=1)
        if i % 3 == 2:
            img = cv2.resize(img, (448, 448), interpolation=cv2.INTER_AREA)
        path = folder / f"photo{i:02d}.jpg"
        cv2.imwrite(str(path), np.ascontiguousarray(img))
        paths.append(path)
    return paths


def run(content: Path, out: Path, ckpt_dir: Path) -> float:
    cmd = [sys.executable, str(ROOT / "style_transfer.py"), "--content", str(content), "--scale_image", "--cpu",
           "--no_progress", "--backbone", "dualstylegan", "--ckpt", str(ckpt_dir / CKPT["dualstylegan"]),
           "--style_encoder_path", str(ckpt_dir / "encoder.pt"), "--faceparsing_path", str(ckpt_dir / "faceparsing.pth"),
           "--style_id", "0", "--output_path", str(out)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ckpt_dir", type=Path, default=Path("/tmp/vtoonify_face_ckpt"))
    args = ap.parse_args(argv)
    if args.photos < 1 or args.rounds < 1:
        ap.error("--photos and --rounds must be >= 1")
    write_face_checkpoints(args.ckpt_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = write_photos(tmp / "photos", args.photos)
        batch, single = [], []
        for r in range(args.rounds):
            batch.append(run(tmp / "photos", tmp / "batch", args.ckpt_dir) / args.photos)
            single.append(sum(run(p, tmp / "single", args.ckpt_dir) for p in photos) / args.photos)
            print(json.dumps({"round": r, "one_run_s_per_photo": round(batch[-1], 2),
                              "one_run_per_photo_s_per_photo": round(single[-1], 2)}), flush=True)
        outputs = sorted(p.name for p in (tmp / "batch").iterdir())
        same = outputs == sorted(p.name for p in (tmp / "single").iterdir()) and all(
            filecmp.cmp(tmp / "batch" / name, tmp / "single" / name, shallow=False) for name in outputs)
    b, s = statistics.median(batch), statistics.median(single)
    print(f"\n{args.photos} photos, VToonify-D (released size), --scale_image --cpu, median of {args.rounds} rounds:\n")
    print("| | s/photo (model loading included) | per round |\n|---|---|---|")
    print(f"| one run for all | {b:.2f} | {', '.join(f'{x:.2f}' for x in batch)} |")
    print(f"| one run per photo | {s:.2f} | {', '.join(f'{x:.2f}' for x in single)} |")
    print(f"\none run is x{s / b:.2f} faster per photo; outputs byte-identical: {same} ({len(outputs)} files)")


if __name__ == "__main__":
    main()
