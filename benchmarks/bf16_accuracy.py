"""Accuracy and speed of the bfloat16 CPU path against float32, per stage and end to end.

    python benchmarks/bf16_accuracy.py --video ../shared/samples/529.mp4 --out benchmarks/results/bf16
    python benchmarks/bf16_accuracy.py --video clip.mp4 --skip_timing          # the error profile only

Weights: released sizes, fill-rule weights (``model/fill.py``) in which the weights of VToonify's plain
``nn.Conv2d`` / ``nn.Linear`` layers, default-initialised in the tables, are doubled (:func:`face_fill_rows`).
With the plain tables those layers shrink the signal at every level and the output is nearly flat, so every
PSNR comes out high; doubled, the output shows the face and the error of reduced precision shows too.
Written once to ``--ckpt_dir``.

**Error profile** (one frame of ``--video``, cropped as ``--scale_image`` crops it, VToonify at that size):
``float32`` is the reference; ``bfloat16 (whole model)`` is ``model.to(torch.bfloat16)`` (what ``--dtype
bfloat16`` used to do); ``mixed`` is :meth:`VToonify.to_mixed_precision` (what it does now). Each ``mixed, X in
bfloat16`` row reverts one float32-kept part X to bfloat16, so the PSNR drop is what keeping X in float32 buys.
Per stage: relative RMS error (``||a - b|| / ||b||``) of the parsing logits, the encoder's bottom features, the
fusion outputs, the RGB skip at each resolution, and the PSNR of the uint8 output (clamp, truncation).

**Timing** (``--skip_timing`` to leave out): ``style_transfer.py --video --scale_image --cpu`` on the first 2
and the first 6 frames of ``--video`` (``--clip_frames``), per frame = (t6 - t2) / 4 (loading excluded), float32,
``--dtype bfloat16`` and ``--dtype bfloat16 --compile`` interleaved round by round (``--rounds``; the speed-up is
the median over the rounds of the same-round ratio, the s/frame the median of the rounds, with the best round
beside it in the JSON: other processes on a shared machine only ever add time, and one slow short-clip run can make
a round's difference meaningless), peak RSS from ``/usr/bin/time``. The compiled
runs follow one untimed warm-up run that fills the compiler's cache, so both timed runs load the same graph.
PSNR in the timing table: the output videos' frames against float32 (lossy video coding included).

Writes ``bf16_accuracy.json`` and ``bf16_accuracy.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]

import model.dualstylegan as dualstylegan  # noqa: E402
from benchmarks.make_fill_checkpoints import TABLES, ensure_fill_helper  # noqa: E402
from model.checkpoint import load_bisenet, load_vtoonify  # noqa: E402
from model.fill import FillRow, fill_module, read_fill_table  # noqa: E402
from model.vtoonify import PARSING_SCALE, VToonify  # noqa: E402
from pipeline.precision import cpu_model_name  # noqa: E402
from pipeline.styles import save_exstyle_codes  # noqa: E402

CKPT = {"dualstylegan": "vtoonify_d_face/vtoonify_s_d.pt", "toonify": "vtoonify_t_face/vtoonify.pt"}
NAMES = {"dualstylegan": "VToonify-D", "toonify": "VToonify-T"}


# ------------------------------------------------------------------------------------------ weights
def face_fill_rows(model: nn.Module, table: Path) -> list[FillRow]:
    """The fill table with the standard deviation of every plain ``nn.Conv2d`` / ``nn.Linear`` weight doubled."""
    plain = {name + ".weight" for name, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)}
    return [FillRow(r.key, r.shape, r.mode, r.mean, 2 * r.std) if r.key in plain else r for r in read_fill_table(table)]


def write_face_checkpoints(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for backbone, rel in CKPT.items():
        path = out / rel
        if path.exists():
            continue
        path.parent.mkdir(exist_ok=True)
        model = VToonify(backbone=backbone)
        fill_module(model, face_fill_rows(model, TABLES / f"fill_vtoonify_{backbone}.tsv"))
        torch.save({"g_ema": model.state_dict()}, path)
        del model
    codes = out / "vtoonify_d_face" / "exstyle_code.npy"
    if not codes.exists():
        rng = np.random.default_rng(0)
        save_exstyle_codes(codes, {f"style{i:03d}.jpg": rng.standard_normal((1, 18, 512)).astype(np.float32)
                                   for i in range(8)})
    ensure_fill_helper("encoder", folder=out)
    ensure_fill_helper("faceparsing", folder=out)
    return out


# ------------------------------------------------------------------------------------------ metrics
def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def to_uint8(y: torch.Tensor) -> np.ndarray:
    from pipeline.stylize import tensor_to_frames

    return np.stack(tensor_to_frames(y.clamp(-1, 1)))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


# ------------------------------------------------------------------------------------------ variants
def _cast(modules, dtype):
    for m in modules:
        m.to(dtype)


def _part_modules(model: VToonify, part: str) -> list[nn.Module]:
    """The modules of a float32-kept part (to revert it to bfloat16 in the profile)."""
    g = model.stylegan()
    dual = model.backbone == "dualstylegan"
    if part == "style mapping (W+ codes)":
        return [g.style] + ([model.generator.style] + list(model.generator.res[model.first_row:]) if dual else [])
    if part == "AdaIN / degree affine maps":
        if not dual:
            return []
        return [b.norm.style for b in model.res[1:]] + [b.norm2.style for b in model.res[1:]] + \
            [f.norm.style for f in model.fusion_out] + [f.linear for f in model.fusion_out]
    if part == "modulation + demodulation":
        return [c.conv for c in g.convs]  # modulation affine and the base weight -> bf16 modulated weights
    if part == "ToRGB + skip accumulation":
        return [model.encoder[5], *model.fusion_skip, *g.to_rgbs]
    raise KeyError(part)


PARTS = ["instance-norm statistics", "AdaIN / degree affine maps", "style mapping (W+ codes)",
         "modulation + demodulation", "ToRGB + skip accumulation"]


def _bf16_instance_norm(x, gamma, beta, eps):
    """Instance norm with its statistics in the map's own (low) precision, as the whole-model cast computes it."""
    var, mean = torch.var_mean(x, dim=(2, 3), unbiased=False, keepdim=True)
    return ((x - mean) * (gamma.to(x.dtype) * torch.rsqrt(var + eps)) + beta.to(x.dtype)).to(x.dtype)


@contextlib.contextmanager
def bf16_instance_norm():
    saved = dualstylegan._instance_norm_affine_low_precision
    dualstylegan._instance_norm_affine_low_precision = _bf16_instance_norm
    try:
        yield
    finally:
        dualstylegan._instance_norm_affine_low_precision = saved


def stage_outputs(model: VToonify, inputs: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
    """Forward once, recording the bottom encoder features, each fusion output and each RGB skip."""
    rec: dict[str, torch.Tensor] = {}
    last = model.res[-1] if model.backbone == "dualstylegan" else model.encoder[4][-1]  # after the residual blocks
    hooks = [last.register_forward_hook(lambda m, i, o: rec.__setitem__("encoder (bottom features)", o.float()))]
    for t, f in enumerate(model.fusion_out):  # VToonify-D calls Fusion.fuse: hook its output convolution
        hooks.append((f.conv if model.backbone == "dualstylegan" else f).register_forward_hook(
            lambda m, i, o, t=t: rec.__setitem__(f"fusion {t}", o.float())))
    for t, r in enumerate(model.stylegan().to_rgbs[model.bottom_block + 1:]):
        hooks.append(r.register_forward_hook(lambda m, i, o, t=t: rec.__setitem__(f"skip {t}", o.float())))
    try:
        with torch.inference_mode():
            rec["output"] = model(inputs.to(model.encoder[0][0].weight.dtype), style, d_s=0.5).float()
    finally:
        for h in hooks:
            h.remove()
    return rec


def profile_backbone(backbone: str, ckpt_dir: Path, frame: np.ndarray, style: torch.Tensor) -> list[dict]:
    from pipeline.stylize import frames_to_tensor, parse_frames

    parser = load_bisenet(ckpt_dir / "faceparsing.pth")
    x = frames_to_tensor([frame], torch.device("cpu"))
    parsing32 = parse_frames(parser, x).float()
    parsing16 = parse_frames(parser.to(torch.bfloat16), x.bfloat16()).float()
    del parser
    inputs32 = torch.cat([x, parsing32 / PARSING_SCALE], 1)
    inputs16 = torch.cat([x, parsing16 / PARSING_SCALE], 1)

    model = load_vtoonify(ckpt_dir / CKPT[backbone])
    ref = stage_outputs(model, inputs32, style)
    ref_u8 = to_uint8(ref["output"])
    rows = []

    def row(name, rec, parsing=None):
        r = {"backbone": NAMES[backbone], "variant": name, "psnr_db": round(psnr_uint8(to_uint8(rec["output"]), ref_u8), 2)}
        if parsing is not None:
            r["parsing logits"] = rel_err(parsing, parsing32)
        for k in ref:
            if k in rec:
                r[k] = rel_err(rec[k], ref[k])
        rows.append(r)
        print(json.dumps(r), flush=True)

    model.to(torch.bfloat16)
    row("bfloat16 (whole model, bf16 parsing)", stage_outputs(model, inputs16, style.bfloat16()), parsing16)
    model.to_mixed_precision(torch.bfloat16)
    row("mixed, float32 parsing", stage_outputs(model, inputs32, style))
    row("mixed (bf16 parsing) = --dtype bfloat16", stage_outputs(model, inputs16, style), parsing16)
    rec = stage_outputs(model, inputs16, style)
    rec["output"] = rec["output"].bfloat16().float()
    row("mixed, output rounded to bfloat16", rec)
    for part in PARTS:
        if part == "instance-norm statistics":
            if backbone != "dualstylegan":
                continue
            with bf16_instance_norm():
                rec = stage_outputs(model, inputs16, style)
        else:
            mods = _part_modules(model, part)
            if not mods:
                continue
            _cast(mods, torch.bfloat16)
            rec = stage_outputs(model, inputs16, style)
            _cast(mods, torch.float32)
        row(f"mixed, {part} in bfloat16", rec)
    return rows


def profile_inputs(ckpt_dir: Path, video: Path, backbones):
    """The first frame of ``video`` cropped as ``--scale_image`` crops it, and the float32 W+ codes of it."""
    from pipeline.stylize import VToonifyPipeline

    codes = {}
    for backbone in backbones:
        rel = CKPT[backbone]
        pipe = VToonifyPipeline(ckpt_dir / rel, backbone=backbone, style_encoder_path=ckpt_dir / "encoder.pt",
                                faceparsing_path=ckpt_dir / "faceparsing.pth", device="cpu", keep_style_encoder=False)
        _, _, frame, lm = pipe.find_first_face(video, (200, 200, 200, 200), True)
        frame = frame[: frame.shape[0] // 8 * 8, : frame.shape[1] // 8 * 8]
        codes[backbone] = pipe.style_code(frame, style_id=0, lm=lm).float()
        del pipe
    return frame, codes


# ------------------------------------------------------------------------------------------ timing
def cut_clip(video: Path, n: int, out: Path) -> Path:
    from pipeline.video import VideoReader, VideoWriter, probe

    info = probe(video)
    with VideoReader(video) as reader, VideoWriter(out, info.fps, info.width, info.height) as writer:
        for k, f in enumerate(reader):
            if k == n:
                break
            writer.write(f)
    return out


def run_cli(backbone: str, ckpt_dir: Path, clip: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """Wall time (s) and peak RSS (GiB) of one ``style_transfer.py`` run."""
    cmd = ["/usr/bin/time", "-f", "MAXRSS %M", sys.executable, str(ROOT / "style_transfer.py"), "--video", "--scale_image",
           "--cpu", "--no_progress", "--content", str(clip), "--backbone", backbone, "--ckpt", str(ckpt_dir / CKPT[backbone]),
           "--style_encoder_path", str(ckpt_dir / "encoder.pt"), "--faceparsing_path", str(ckpt_dir / "faceparsing.pth"),
           "--style_id", "0", "--output_path", str(out), *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    rss = int(re.search(r"MAXRSS (\d+)", p.stderr).group(1)) / 2**20
    return wall, rss


def read_frames(path: Path) -> np.ndarray:
    from pipeline.video import VideoReader

    with VideoReader(path) as reader:
        return np.stack(list(reader))


CONFIGS = {"float32": [], "bfloat16": ["--dtype", "bfloat16"], "bfloat16 + compile": ["--dtype", "bfloat16", "--compile"]}


def time_backbones(ckpt_dir: Path, video: Path, rounds: int, tmp: Path, backbones, clip_frames=(2, 6),
                   configs: dict[str, list[str]] = CONFIGS, warm_up=("bfloat16 + compile",)) -> list[dict]:
    """Per-frame time, speed-up and PSNR against the first of ``configs`` (name -> extra flags), interleaved round by
    round; each config of ``warm_up`` runs once untimed first (it fills a cache: the compiler's, the engine export's)."""
    short, long = clip_frames
    clips = {n: cut_clip(video, n, tmp / f"clip{n}.mp4") for n in clip_frames}
    base = next(iter(configs))
    results = {(b, c): [] for b in backbones for c in configs}
    outputs = {}
    for b in backbones:  # cache warm-ups, untimed
        for c in warm_up:
            run_cli(b, ckpt_dir, clips[short], tmp / "warm", configs[c])
    for r in range(rounds):
        for b in backbones:
            for c, extra in configs.items():
                out = tmp / f"{b}_{c.replace(' ', '_').replace('+', '')}"
                t2, rss2 = run_cli(b, ckpt_dir, clips[short], out, extra)
                t6, rss6 = run_cli(b, ckpt_dir, clips[long], out, extra)
                per_frame = (t6 - t2) / (long - short)
                results[(b, c)].append({"per_frame": per_frame, "rss": max(rss2, rss6)})
                outputs[(b, c)] = next(out.glob(f"clip{long}_vtoonify_*.mp4"))
                print(json.dumps({"round": r, "backbone": b, "config": c, "t2": round(t2, 2), "t6": round(t6, 2),
                                  "per_frame": round(per_frame, 3), "peak_rss_gib": round(max(rss2, rss6), 2)}), flush=True)
    rows = []
    for b in backbones:
        ref = read_frames(outputs[(b, base)])
        fp32_rounds = [x["per_frame"] for x in results[(b, base)]]
        for c in configs:
            per = [x["per_frame"] for x in results[(b, c)]]
            ratios = [f / p for f, p in zip(fp32_rounds, per)]  # same round: fp32 and this config back to back
            frames = read_frames(outputs[(b, c)])
            rows.append({"backbone": NAMES[b], "config": c, "s_per_frame": round(statistics.median(per), 3),
                         "s_per_frame_best": round(min(per), 3), "s_per_frame_rounds": [round(p, 3) for p in per],
                         "speedup_vs_fp32": round(statistics.median(ratios), 2),
                         "speedup_rounds": [round(x, 2) for x in ratios],
                         "psnr_vs_fp32_db": None if c == base else round(psnr_uint8(frames, ref), 2),
                         "peak_rss_gib": round(max(x["rss"] for x in results[(b, c)]), 2)})
    return rows


def time_model(ckpt_dir: Path, frame: np.ndarray, codes: dict, rounds: int, backbones) -> list[dict]:
    """Seconds per frame of parsing + VToonify (no video I/O, no detection) for float32 and the mixed bfloat16
    path, alternating in one process (``--model_timing``: a cheaper check than the command-line runs)."""
    from pipeline.stylize import frames_to_tensor, parse_frames

    x = frames_to_tensor([frame], torch.device("cpu"))
    parser32 = load_bisenet(ckpt_dir / "faceparsing.pth")
    parser16 = load_bisenet(ckpt_dir / "faceparsing.pth").to(torch.bfloat16)

    def step(model, parser, dtype: torch.dtype, code):
        return lambda: model(torch.cat([x.to(dtype), parse_frames(parser, x.to(dtype)) / PARSING_SCALE], 1), code, d_s=0.5)

    rows = []
    for b in backbones:
        m32 = load_vtoonify(ckpt_dir / CKPT[b])
        m16 = load_vtoonify(ckpt_dir / CKPT[b]).to_mixed_precision(torch.bfloat16)
        steps = {"float32": step(m32, parser32, torch.float32, codes[b]),
                 "bfloat16": step(m16, parser16, torch.bfloat16, codes[b])}
        times = {k: [] for k in steps}
        with torch.inference_mode():
            for k, f in steps.items():
                f()  # warm-up
            for _ in range(rounds):
                for k, f in steps.items():
                    t0 = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t0)
        ratios = [a / c for a, c in zip(times["float32"], times["bfloat16"])]
        rows.append({"backbone": NAMES[b], "float32_s": [round(t, 3) for t in times["float32"]],
                     "bfloat16_s": [round(t, 3) for t in times["bfloat16"]], "speedup_rounds": [round(r, 2) for r in ratios]})
        print(json.dumps(rows[-1]), flush=True)
        del m32, m16, steps, f  # the steps hold the models: one backbone in memory at a time
    return rows


# ------------------------------------------------------------------------------------------ report
def to_markdown(meta: dict, profile: list[dict], timing: list[dict]) -> str:
    lines = [f"Machine: {meta['machine']}; torch {meta['torch']}, {meta['threads']} threads; video {meta['video']}.", ""]
    if profile:
        stages = [k for k in profile[0] if k not in ("backbone", "variant", "psnr_db")]
        stages = ["parsing logits"] + [k for k in dict.fromkeys(k for r in profile for k in r)
                                       if k not in ("backbone", "variant", "psnr_db", "parsing logits")]
        lines += ["Error against float32, one frame (relative RMS error per stage; PSNR of the uint8 output):", "",
                  "| backbone | variant | " + " | ".join(stages) + " | PSNR dB |",
                  "|---|---|" + "---|" * (len(stages) + 1)]
        for r in profile:
            cells = [f"{r[k]:.2e}" if k in r else "" for k in stages]
            lines.append(f"| {r['backbone']} | {r['variant']} | " + " | ".join(cells) + f" | {r['psnr_db']} |")
        lines.append("")
    if timing:
        short, long = meta["clip_frames"]
        lines += [f"`style_transfer.py --video --scale_image --cpu`, per frame = (t({long} frames) - t({short} frames)) / "
                  f"{long - short}, median of {meta['rounds']} interleaved rounds (speed-up: median of same-round ratios):",
                  "",
                  "| backbone | precision | s/frame | speed-up vs float32 (per round) | PSNR vs float32 | peak RSS GiB |",
                  "|---|---|---|---|---|---|"]
        for r in timing:
            psnr_db = "" if r["psnr_vs_fp32_db"] is None else f"{r['psnr_vs_fp32_db']} dB"
            lines.append(f"| {r['backbone']} | {r['config']} | "
                         f"{r['s_per_frame']} ({', '.join(map(str, r['s_per_frame_rounds']))}) | "
                         f"x{r['speedup_vs_fp32']} ({', '.join(map(str, r['speedup_rounds']))}) | "
                         f"{psnr_db} | {r['peak_rss_gib']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, required=True, help="a portrait video (e.g. the original's sample 529.mp4)")
    ap.add_argument("--ckpt_dir", type=Path, default=Path("/tmp/vtoonify_face_ckpt"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bf16")
    ap.add_argument("--backbones", nargs="+", default=list(CKPT), choices=list(CKPT))
    ap.add_argument("--rounds", type=int, default=1, help="interleaved timing rounds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clip_frames", type=int, nargs=2, default=(2, 6), metavar=("SHORT", "LONG"),
                    help="frames of the two timed clips: per frame = (t(LONG) - t(SHORT)) / (LONG - SHORT)")
    ap.add_argument("--skip_profile", action="store_true")
    ap.add_argument("--skip_timing", action="store_true")
    ap.add_argument("--model_timing", action="store_true",
                    help="also time parsing + VToonify alone, float32 and bfloat16 alternating (--rounds rounds)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    write_face_checkpoints(args.ckpt_dir)
    meta = {"machine": cpu_model_name() or platform.processor(), "torch": torch.__version__, "threads": args.threads,
            "video": args.video.name, "rounds": args.rounds, "clip_frames": list(args.clip_frames)}
    profile, timing, model_timing = [], [], []
    if not args.skip_profile or args.model_timing:
        frame, codes = profile_inputs(args.ckpt_dir, args.video, args.backbones)
    if args.model_timing:
        model_timing = time_model(args.ckpt_dir, frame, codes, args.rounds, args.backbones)
    if not args.skip_profile:
        for b in args.backbones:
            profile += profile_backbone(b, args.ckpt_dir, frame, codes[b])
    if not args.skip_timing:
        with tempfile.TemporaryDirectory() as tmp:
            timing = time_backbones(args.ckpt_dir, args.video, args.rounds, Path(tmp), args.backbones, args.clip_frames)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bf16_accuracy.json").write_text(json.dumps({"meta": meta, "profile": profile, "timing": timing,
                                                                   "model_timing": model_timing}, indent=1))
    md = to_markdown(meta, profile, timing)
    (args.out / "bf16_accuracy.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
