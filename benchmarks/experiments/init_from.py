"""Measured try: how many distillation iterations ``--init_from`` saves a new VToonify-T style, on small random models.

    python benchmarks/experiments/init_from.py                       # the sizes of benchmarks/README.md
    python benchmarks/experiments/init_from.py --teacher_iter 2 --pretrain_iter 2 \\
        --release_iter 2 --distill_iter 4                                            # smoke run

What it runs, every step through the project's own entry points (``train_style.main`` for the teachers,
``train_vtoonify.main`` with the argument lists of ``train_style.vtoonify_stage_argv`` for the students):

1. a small random FFHQ StyleGAN2 (``Generator(256, 512, 8, channel_multiplier=1, channel_max=32)`` and its
   Discriminator), the released-size pSp encoder and BiSeNet with fill-rule weights (the tables in
   ``tests/data/golden/``, as ``benchmarks/make_fill_checkpoints.py`` writes them) and random editing directions;
2. two few-shot teachers of it (``train_style.py --mode fewshot --aligned``) toward two synthetic styles:
   A, a red cast with horizontal stripes; B, a blue-green cast with vertical stripes;
3. the stand-in "released" model: a VToonify-T student of A, stage 1 (``--pretrain_iter``) + stage 2
   (``--release_iter``);
4. two students of B with the same settings and seed: from scratch (stage 1 ``--pretrain_iter`` + stage 2
   ``--distill_iter``, what ``train_style.py --vtoonify`` runs) and with ``--init_from`` the A student (stage 2
   ``--distill_iter`` only, the ``train_vtoonify.py --init_from`` command of README.md). Both runs draw the same
   batches: the data stream is re-seeded after the student is built and no step's randomness depends on the
   student's weights;
5. the distillation loss of both B runs from their ``losses.csv`` (column ``rec``: the MSE to the teacher's
   output times ``--grec_loss`` 0.1), also as a trailing mean over ``--smooth`` iterations, and the first
   iteration at which the init_from run's trailing mean is at or below the scratch run's final trailing mean.

Writes ``curves.csv`` (every iteration), ``init_from.md`` (table and summary) and ``init_from.json`` to
``--out``; the models go to ``--work`` (removed first unless ``--resume``). The perceptual loss is off
(``--perc_loss 0``: it needs the VGG16/LPIPS weight files, which nothing here downloads). Result on the 2-core CI
machine type: README.md ("A video model from your pictures").
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.make_fill_checkpoints import ensure_fill_helper

ROOT = Path(__file__).resolve().parents[2]

SIZE = 256
#: (RGB cast, stripes vertical?) of the two synthetic styles
STYLES = {"a": ((210, 40, 40), False), "b": ((40, 170, 200), True)}


def style_pictures(rgb: tuple[int, int, int], vertical: bool, n: int, seed: int) -> np.ndarray:
    """(n, SIZE, SIZE, 3) uint8: a strong colour cast with 32-pixel stripes (+-45) and a little noise."""
    rng = np.random.default_rng(seed)
    stripes = ((np.arange(SIZE) // 32) % 2) * 2 - 1
    stripes = stripes[None, None, :, None] if vertical else stripes[None, :, None, None]
    ims = np.full((n, SIZE, SIZE, 3), rgb, np.float32) + 45 * stripes
    return np.clip(ims + rng.normal(0, 8, ims.shape), 0, 255).astype(np.uint8)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "init_from")
    p.add_argument("--work", type=Path, default=Path("/tmp/vtoonify_init_from"), help="models, logs (removed first)")
    p.add_argument("--resume", action="store_true", help="keep --work and continue every run where it stopped")
    p.add_argument("--teacher_iter", type=int, default=12, help="few-shot teacher steps (each style)")
    p.add_argument("--teacher_lr", type=float, default=5e-3)
    p.add_argument("--pictures", type=int, default=4, help="style pictures per style")
    p.add_argument("--pretrain_iter", type=int, default=80, help="stage 1 of the A student and of the scratch B student")
    p.add_argument("--release_iter", type=int, default=70, help="stage 2 of the A student (the stand-in released model)")
    p.add_argument("--distill_iter", type=int, default=60, help="stage 2 of both B students")
    p.add_argument("--batch", type=int, default=1, help="VToonify batch (both stages)")
    p.add_argument("--smooth", type=int, default=10, help="trailing-mean window (iterations) for the comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--analyse_only", action="store_true",
                   help="no training: the report from the losses in --work (timings from --out/init_from.json)")
    return p


def write_inputs(work: Path, args) -> dict[str, Path]:
    """The small random FFHQ StyleGAN2 (+ Discriminator), fill-rule helpers, directions and the style pictures."""
    from model.stylegan.model import Discriminator, Generator

    paths = {"ffhq": work / "stylegan2-small.pt", "encoder": work / "encoder.pt", "parser": work / "faceparsing.pth",
             "directions": work / "directions.npy"}
    if not paths["ffhq"].is_file():
        torch.manual_seed(args.seed)
        g = Generator(SIZE, 512, 8, channel_multiplier=1, channel_max=32)
        d = Discriminator(SIZE, channel_multiplier=1, channel_max=32)
        torch.save({"g_ema": g.state_dict(), "d": d.state_dict()}, paths["ffhq"])
    ensure_fill_helper("encoder", paths["encoder"])
    ensure_fill_helper("faceparsing", paths["parser"])
    rng = np.random.default_rng(args.seed)
    np.save(paths["directions"], (0.1 * rng.standard_normal((4, 18, 512))).astype(np.float32))
    for n, (k, (rgb, vertical)) in enumerate(STYLES.items()):
        folder = work / f"pictures_{k}"
        folder.mkdir(exist_ok=True)
        for i, im in enumerate(style_pictures(rgb, vertical, args.pictures, args.seed + n)):
            cv2.imwrite(str(folder / f"ref{i}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
        paths[f"pictures_{k}"] = folder
    return paths


def style_argv(paths: dict[str, Path], work: Path, args, style: str, name: str, distill_iter: int,
               init_from: Path | None = None) -> list[str]:
    """``train_style.py`` arguments of the teacher of ``style`` (``checkpoint/<style>/``) and of a VToonify-T
    student of it (``checkpoint/vtoonify_t_<name>/``, ``log/vtoonify_t_<name>/``)."""
    argv = ["--images", str(paths[f"pictures_{style}"]), "--name", name, "--aligned", "--mode", "fewshot",
            "--iter", str(args.teacher_iter), "--batch", "2", "--lr", str(args.teacher_lr),
            "--stylegan_path", str(paths["ffhq"]), "--style_encoder_path", str(paths["encoder"]),
            "--faceparsing_path", str(paths["parser"]), "--direction_path", str(paths["directions"]),
            "--checkpoint_dir", str(work / "checkpoint"), "--log_dir", str(work / "log"), "--device", "cpu",
            "--seed", str(args.seed), "--sample_every", "0", "--no_progress",
            "--pretrain_iter", str(args.pretrain_iter), "--distill_iter", str(distill_iter),
            "--vtoonify_batch", str(args.batch), "--perc_loss", "0"]
    if init_from is not None:
        argv += ["--init_from", str(init_from)]
    return argv


def timed(label: str, fn, timings: dict) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    rc = fn()
    timings[label] = {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}
    print(f"[{label}] {timings[label]['wall_s']} s wall, {timings[label]['cpu_s']} s CPU", flush=True)
    if rc not in (0, None):
        raise SystemExit(f"{label} failed (exit status {rc})")


def train_teacher(paths, work, args, style: str, timings: dict) -> Path:
    """The few-shot teacher of ``style`` (``train_style.main``, no ``--vtoonify``)."""
    import train_style
    from training.teacher import finetune_name

    argv = style_argv(paths, work, args, style, style, args.distill_iter) + ["--resume"]
    timed(f"teacher {style}", lambda: train_style.main(argv), timings)
    return work / "checkpoint" / style / finetune_name(args.teacher_iter)


def train_student(paths, work, args, style: str, name: str, teacher: Path, stages: tuple[bool, ...], distill_iter: int,
                  timings: dict, init_from: Path | None = None) -> Path:
    """Stage 1 (``True``) and/or 2 (``False``) of a VToonify-T student: ``train_vtoonify.main`` with the
    arguments ``train_style.py --vtoonify`` passes it."""
    import train_style
    import train_vtoonify

    ns = train_style.build_parser().parse_args(style_argv(paths, work, args, style, name, distill_iter, init_from))
    for pretrain in stages:
        argv = train_style.vtoonify_stage_argv(ns, teacher, pretrain)
        timed(f"{name} stage {1 if pretrain else 2}", lambda: train_vtoonify.main(argv), timings)
    return work / "checkpoint" / f"vtoonify_t_{name}" / "vtoonify.pt"


def read_rec(path: Path) -> np.ndarray:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == list(range(len(rows))), path
    return np.array([float(r["rec"]) for r in rows])


def trailing_mean(x: np.ndarray, w: int) -> np.ndarray:
    c = np.concatenate([[0.0], np.cumsum(x)])
    n = np.minimum(np.arange(1, len(x) + 1), w)
    return (c[1:] - c[np.arange(1, len(x) + 1) - n]) / n


def table_rows(n: int) -> list[int]:
    marks = [0, 10, 20, 50] + list(range(100, n, 100 if n <= 1000 else 500))
    return sorted({m for m in marks if m < n} | {n - 1})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    work, out = args.work, args.out
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    if args.analyse_only:
        previous = json.loads((out / "init_from.json").read_text())
        timings, wall_total = previous["timings"], previous["wall_s_total"]
    else:
        if work.exists() and not args.resume:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        timings = {}
        paths = write_inputs(work, args)
        teachers = {k: train_teacher(paths, work, args, k, timings) for k in STYLES}

        # the stand-in released model: the A student, stage 1 + stage 2
        released = train_student(paths, work, args, "a", "a", teachers["a"], (True, False), args.release_iter, timings)
        # B from scratch (stage 1 + stage 2) and B warm-started from the A student (stage 2 only)
        train_student(paths, work, args, "b", "b_scratch", teachers["b"], (True, False), args.distill_iter, timings)
        train_student(paths, work, args, "b", "b_init_from", teachers["b"], (False,), args.distill_iter, timings,
                      init_from=released)
        wall_total = round(time.perf_counter() - t_start, 1)

    log = work / "log"
    rec_a = read_rec(log / "vtoonify_t_a" / "losses.csv")
    rec_s = read_rec(log / "vtoonify_t_b_scratch" / "losses.csv")
    rec_i = read_rec(log / "vtoonify_t_b_init_from" / "losses.csv")
    w = args.smooth
    sm_s, sm_i, sm_a = trailing_mean(rec_s, w), trailing_mean(rec_i, w), trailing_mean(rec_a, w)
    target = float(sm_s[-1])
    reached = np.nonzero(sm_i[w - 1:] <= target)[0]  # only full windows count
    reach = int(reached[0]) + w if len(reached) else None  # iterations run (0-based index + 1)
    n = len(rec_s)
    # the same measure of the scratch run against its own end: how soon a flat curve's noise first touches it
    self_reach = int(np.nonzero(sm_s[w - 1:] <= target)[0][0]) + w
    blocks = [(b, min(b + w, n)) for b in range(0, n, w)]
    block_ratio = [float(np.mean(rec_i[b:e] / rec_s[b:e])) for b, e in blocks]

    with open(out / "curves.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["iteration", "rec_scratch", "rec_init_from", f"rec_scratch_mean{w}", f"rec_init_from_mean{w}"])
        for i in range(n):
            wr.writerow([i, f"{rec_s[i]:.6g}", f"{rec_i[i]:.6g}", f"{sm_s[i]:.6g}", f"{sm_i[i]:.6g}"])

    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch": torch.__version__,
        "rec_A_student_end_mean": float(sm_a[-1]),
        "rec_scratch_first": float(rec_s[0]), "rec_init_from_first": float(rec_i[0]),
        "rec_scratch_end_mean": target, "rec_init_from_end_mean": float(sm_i[-1]),
        "init_from_iterations_to_reach_scratch_end": reach,
        "scratch_iterations_to_reach_own_end": self_reach,
        "mean_ratio_init_from_to_scratch_per_block": {f"{b}-{e - 1}": round(r, 3) for (b, e), r in zip(blocks, block_ratio)},
        "ratio_stage2": None if reach is None else round(args.distill_iter / reach, 2),
        "ratio_total": None if reach is None else round((args.pretrain_iter + args.distill_iter) / reach, 2),
        "iterations_scratch_total": {"stage1": args.pretrain_iter, "stage2": args.distill_iter},
        "iterations_init_from_total": {"stage1": 0, "stage2": args.distill_iter},
        "timings": timings, "wall_s_total": wall_total,
    }
    (out / "init_from.json").write_text(json.dumps(summary, indent=2) + "\n")

    lines = [f"`{' '.join(['python', 'benchmarks/experiments/init_from.py', *(argv if argv is not None else sys.argv[1:])])}`",
             "", f"Distillation loss `rec` (0.1 x MSE to teacher B) per stage-2 iteration, and its trailing mean over {w}:",
             "", f"| iteration | scratch | init_from | scratch, mean {w} | init_from, mean {w} |", "|---|---|---|---|---|"]
    for i in table_rows(n):
        lines.append(f"| {i} | {rec_s[i]:.4f} | {rec_i[i]:.4f} | {sm_s[i]:.4f} | {sm_i[i]:.4f} |")
    reach_text = (f"**{reach}** of {args.distill_iter} stage-2 iterations" if reach is not None
                  else f"not reached in {args.distill_iter} iterations")
    lines += ["", f"* scratch: {args.pretrain_iter} stage-1 + {args.distill_iter} stage-2 iterations, "
                  f"final mean {target:.4f};",
              f"* init_from (A student, {args.pretrain_iter} + {args.release_iter} iterations on style A, final mean "
              f"{sm_a[-1]:.4f} there): stage 2 only, final mean {sm_i[-1]:.4f};",
              f"* init_from reaches the scratch run's final mean after {reach_text}"
              + ("" if reach is None else f" (stage 2: {summary['ratio_stage2']}x fewer; counting the scratch run's stage 1:"
                                          f" {args.pretrain_iter + args.distill_iter} vs {reach}, "
                                          f"{summary['ratio_total']}x)") + f"; the scratch run's own trailing mean first "
              f"reaches that value at iteration {self_reach}, so the stage-2 difference between the two is {self_reach} - "
              f"{reach if reach is not None else 'n/a'} iterations;",
              f"* mean per-iteration ratio init_from / scratch (same batches) over blocks of {w} iterations: "
              + ", ".join(f"{b}-{e - 1}: {r:.3f}" for (b, e), r in zip(blocks, block_ratio)) + ";",
              "* wall time per run (s; shared 2-core machine, nice 19): "
              + ", ".join(f"{k} {v['wall_s']}" for k, v in timings.items()) + f"; total {summary['wall_s_total']}."]
    (out / "init_from.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
