"""Everything that needs a GPU, in one run: ``benchmarks/device_check.sh`` (at most 8 minutes on one GPU).

    bash benchmarks/device_check.sh                 # on a CUDA machine; writes to $OUT or output/device_check/
    python benchmarks/device_check.py --small       # tiny sizes on CPU in seconds (the test suite runs this)

Sections, each recorded in ``device_check.json`` and ``device_check.md`` in ``--out``:

``op_tests``
    ``tests/test_ops_cuda.py`` (the compiled CUDA kernels against the reference ops) in a subprocess:
    passed / failed / skipped counts. On a machine without a GPU the kernel tests are skipped.
``throughput``
    VToonify-D and -T at 256x256 -> 1024x1024 and at the sample video's size (392x360 -> 1568x1440), in
    float32, float16 and bfloat16, eager and with ``--compile reduce-overhead`` (the compiled runs for the
    precisions of ``--compile_dtypes`` and the sizes of ``--compile_sizes``), on batches of ``--batch`` frames.
    Per row: frames/s of the generator
    (parsing computed beforehand) and with parsing, PSNR (dB) of the uint8 frames against the eager float32
    model on the same frames, the contrast (standard deviation) of the row's frames, and the peak CUDA
    memory of the row, loaded model included (peak RSS of the process on CPU). The pipeline code is the one
    ``style_transfer.py`` runs (:class:`pipeline.stylize.VToonifyPipeline`).
``training``
    ``train_vtoonify.py`` for ``--train_steps`` iterations of both backbones with ``--amp bf16`` (bfloat16
    autocast on CUDA; autocast is off on CPU): exit status, seconds per step, last losses, all finite.
``gpu_engines``
    One VToonify-D forward (batch 1) at both sizes per engine: torch fp32 (the PSNR reference), torch fp16,
    ONNX Runtime's CUDA provider (fp32), its TensorRT provider (fp16) and torch fp16 + ``--compile
    reduce-overhead``; best of ``--repeat``, PSNR against torch fp32 (:mod:`benchmarks.gpu_engines`). An engine
    whose package is missing (onnxruntime-gpu, tensorrt) is a ``not installed`` row; the block has
    ``--gpu_engines_budget_s`` seconds (default 90) and runs after the training smoke run. With ``--small`` the
    torch rows run on the tiny model on the CPU (a dry run) and the ONNX Runtime rows say ``no CUDA device``.
``goal``
    PASS when VToonify-D 256->1024 in float16 (best of eager and compiled) reaches ``--goal_fps`` frames/s
    with a PSNR of at least ``--goal_psnr`` dB against float32 (set for an H100/H200-class GPU).

Weights are fill-rule weights of the released sizes (``model/fill.py``), written once to ``--ckpt_dir``
(nothing is downloaded), with the weights of the plain convolutions and linear layers (those whose fill
rows follow PyTorch's default initialisation) doubled: plain fill weights shrink the signal layer after
layer and give near-flat frames, on which every PSNR is high; doubled, the frames show the face and the
PSNR means something (the ``contrast`` column says how far from flat the frames are).

``--small`` uses tiny models (64x64 -> 256x256 and 48x40 -> 192x160, 32 channels at most), batches of 2,
one timed call per row, compiled rows for fp16 at the 64x64 size only, two of the op tests, 2 training steps,
CPU, and
compiles with dynamo's ``eager`` backend (the graph capture and the compiled code path of the pipeline are
exercised without generating code). A section that runs past
``--budget_s`` seconds leaves the remaining rows out and says so (``skipped``) instead of overrunning.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.device_report import json_safe, to_markdown  # noqa: E402
from benchmarks.gpu_engines import gpu_engine_rows  # noqa: E402
from benchmarks.make_fill_checkpoints import TABLES as FILL_TABLES  # noqa: E402
from benchmarks.make_fill_checkpoints import ensure_fill_helper  # noqa: E402
from metrics.runtime import peak_memory_gib  # noqa: E402
from model.fill import fill_module  # noqa: E402
from training.state import atomic_save  # noqa: E402

BACKBONES = {"dualstylegan": "VToonify-D", "toonify": "VToonify-T"}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
COMPILE_MODE = "reduce-overhead"
# (height, width) of the inputs: the generator's native 256x256 and the sample video's 392x360 frames.
SIZES = {"256": (256, 256), "video": (360, 392)}
SMALL_SIZES = {"256": (64, 64), "video": (40, 48)}
# Tiny models of --small: the released level structure and style width, tiny feature maps.
SMALL_VTOONIFY = dict(in_size=64, out_size=256, channel_multiplier=1, channel_max=32)
# --small: one CPU test of the build rules and one kernel test (skipped without a GPU) of tests/test_ops_cuda.py.
SMALL_OP_TESTS = "test_no_build_without_cuda or test_cuda_fused_golden"
CKPT_NAMES = {"dualstylegan": "vtoonify_d_check/vtoonify_s_d.pt", "toonify": "vtoonify_t_check/vtoonify.pt"}


# ------------------------------------------------------------------------------------------------ weights
@torch.no_grad()
def visible_fill(model: nn.Module, table) -> nn.Module:
    """Fill-rule weights (``table`` as :func:`model.fill.fill_module` takes it) with the weights of
    the plain ``nn.Conv2d`` / ``nn.Linear`` layers doubled, so that the signal survives every layer."""
    fill_module(model, table)
    for module in model.modules():
        if type(module) in (nn.Conv2d, nn.Linear):
            module.weight.mul_(2)
    return model


def write_models(ckpt_dir: Path, small: bool, helpers: dict[str, Path | None]) -> dict[str, Path]:
    """The VToonify checkpoints (+ exemplar codes), teachers and helper networks, written once per folder."""
    from model.vtoonify import VToonify
    from pipeline.styles import save_exstyle_codes

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    rng = np.random.default_rng(0)
    for backbone in BACKBONES:
        path = ckpt_dir / CKPT_NAMES[backbone]
        paths[backbone] = path
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        if small:
            model = visible_fill(VToonify(backbone=backbone, num_res_layers=2, **SMALL_VTOONIFY), None)
        else:
            model = visible_fill(VToonify(backbone=backbone), FILL_TABLES / f"fill_vtoonify_{backbone}.tsv")
        sd = model.state_dict()
        n_latent = model.stylegan().n_latent
        del model
        if backbone == "dualstylegan":
            save_exstyle_codes(path.parent / "exstyle_code.npy",
                               {f"style{i}.jpg": rng.standard_normal((1, n_latent, 512)).astype(np.float32) for i in range(3)})
            torch.save({"g_ema": {k[len("generator."):]: v for k, v in sd.items() if k.startswith("generator.")}},
                       ckpt_dir / "teacher_dualstylegan.pt")
        else:
            generator = {k[len("generator."):]: v for k, v in sd.items() if k.startswith("generator.")}
            torch.save({"g_ema": generator, "latent_avg": torch.zeros(512)}, ckpt_dir / "teacher_ffhq.pt")
            torch.save({"g_ema": generator}, ckpt_dir / "teacher_finetune.pt")
        atomic_save({"g_ema": sd}, path)
    if not (ckpt_dir / "directions.npy").exists():
        np.save(ckpt_dir / "directions.npy", (0.1 * rng.standard_normal((4, 18, 512))).astype(np.float32))
    if not (ckpt_dir / "vgg16.pth").exists():
        from model.stylegan.lpips import LPIPS

        lpips = fill_module(LPIPS())  # stand-ins for torchvision's VGG16 file and the LPIPS heads
        torch.save({k: v for k, v in lpips.state_dict().items() if k.startswith("lin")}, ckpt_dir / "lpips_vgg.pth")
        atomic_save({k[len("net."):]: v for k, v in lpips.state_dict().items() if k.startswith("net.")},
                     ckpt_dir / "vgg16.pth")
    for key in ("faceparsing", "encoder"):
        paths[key] = Path(helpers[key]) if helpers.get(key) is not None else ensure_fill_helper(key, folder=ckpt_dir)
    return paths


# ------------------------------------------------------------------------------------------ measurements
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def seconds_per_call(fn, device: torch.device, repeat: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeat`` calls after ``warmup`` calls (CUDA synchronised)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 arrays; infinite when they are equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def input_frames(size: tuple[int, int], batch: int) -> list[np.ndarray]:
    """``batch`` crops of the astronaut portrait around the face, resized to ``size`` (h, w), each shifted a bit."""
    import cv2
    from skimage import data

    image = data.astronaut()
    h, w = size
    frames = []
    for k in range(batch):
        top, left = 10 + 3 * k, 130 + 2 * k
        crop = image[top : top + 240, left : left + int(240 * w / h)]
        frames.append(cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA))
    return frames


@contextlib.contextmanager
def eager_backend_compile(enabled: bool):
    """While enabled, ``torch.compile`` uses dynamo's ``eager`` backend (graph capture, no code generation)."""
    if not enabled:
        yield
        return
    real = torch.compile

    def compile_eager(model, **kwargs):
        kwargs.pop("mode", None)
        return real(model, backend="eager", **kwargs)

    torch.compile = compile_eager
    try:
        yield
    finally:
        torch.compile = real


def throughput_plan(args) -> list[tuple[str, str, str, str | None]]:
    """(backbone, size, dtype, compile mode) of every throughput row, in the order they run: all eager rows
    first (fp32 first: it is the PSNR reference), then the compiled ones (the goal's row first), so that a
    time budget cuts the most expensive rows. Rows of one model follow each other (it is loaded once)."""
    dtypes = sorted(set(args.dtypes) | {"fp32"}, key=list(DTYPES).index)
    eager = [(b, s, d, None) for b in args.backbones for d in dtypes for s in args.sizes]
    sizes = [s for s in args.sizes if s in args.compile_sizes]
    compiled = [(b, s, d, COMPILE_MODE) for d in args.compile_dtypes for b in args.backbones for s in sizes]
    return eager + compiled


def throughput(args, plan, paths: dict[str, Path], device: torch.device, deadline: float,
               references: dict) -> tuple[list[dict], list[str]]:
    """The throughput rows of ``plan`` (see the module docstring) and the labels of those left out.

    ``references`` maps (backbone, size) to the eager fp32 frames; filled by the fp32 rows, read by the others.
    """
    from pipeline.stylize import VToonifyPipeline, frames_to_tensor, tensor_to_frames

    rows, skipped = [], []
    sizes = SMALL_SIZES if args.small else SIZES
    loaded, pipe = None, None
    for backbone, size_name, dtype_name, compile_mode in plan:
        h, w = sizes[size_name]
        label = f"{BACKBONES[backbone]} {w}x{h} {dtype_name} {compile_mode or 'eager'}"
        if time.monotonic() > deadline:
            skipped.append(label)
            continue
        dtype = DTYPES[dtype_name]
        frames = input_frames((h, w), args.batch)
        fake_compile = args.small and compile_mode is not None
        if loaded != (backbone, dtype_name, compile_mode):
            pipe = None  # one model in memory at a time
            if device.type == "cuda":
                torch.cuda.empty_cache()
            with eager_backend_compile(fake_compile):
                pipe = VToonifyPipeline(paths[backbone], backbone=backbone, style_encoder_path=paths["encoder"],
                                        faceparsing_path=paths["faceparsing"], device=device, dtype=dtype,
                                        keep_style_encoder=False, compile=compile_mode)
            loaded = (backbone, dtype_name, compile_mode)
        reset_peak(device)
        t0 = time.perf_counter()
        with torch.inference_mode(), eager_backend_compile(fake_compile):
            style = _style_code(pipe, backbone)
            x = frames_to_tensor(frames, device, dtype)
            parsing = pipe.parse(x)
            y = pipe.stylize_tensor(x, style, 0.5, parsing)  # a compiled model is compiled here
            out = np.stack(tensor_to_frames(y))
            first_call = time.perf_counter() - t0
            # partial binds the arguments now (x and parsing are deleted at the end of the row)
            generator = seconds_per_call(partial(pipe.stylize_tensor, x, style, 0.5, parsing), device, args.repeat)
            with_parse = seconds_per_call(partial(pipe.stylize_tensor, x, style, 0.5), device, args.repeat, warmup=0)
        if dtype_name == "fp32" and compile_mode is None:
            references[backbone, size_name] = out
        reference = references.get((backbone, size_name))
        row = {
            "backbone": BACKBONES[backbone], "size": size_label(h, w), "dtype": dtype_name,
            "compile": compile_mode or "eager", "batch": args.batch,
            "fps": round(args.batch / generator, 3), "fps_with_parse": round(args.batch / with_parse, 3),
            "first_call_s": round(first_call, 3),
            "psnr_vs_fp32": None if reference is None else round(psnr(out, reference), 2),
            "contrast": round(float(out.astype(np.float64).std()), 2),
            "peak_memory_gib": round(peak_memory_gib(device), 3),
            "cuda_ops": _cuda_ops_in_use(),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        del x, parsing, y
    return rows, skipped


def _style_code(pipe, backbone: str) -> torch.Tensor:
    """A W+ code: exemplar 0 for VToonify-D, a fixed random code mapped to W+ for VToonify-T."""
    if backbone == "dualstylegan":
        return pipe.exstyle(0)
    z = torch.randn(1, pipe.n_latent, 512, generator=torch.Generator().manual_seed(0))
    return pipe.zplus2wplus(z.to(pipe.device, pipe.dtype))


def _cuda_ops_in_use() -> bool:
    from model.stylegan.op import _cuda_build

    return all(_cuda_build.loaded(name) for name in _cuda_build.EXTENSIONS)


# ------------------------------------------------------------------------------------------------ sections
def op_tests(args, tmp: Path, deadline: float) -> dict:
    """tests/test_ops_cuda.py and tests/test_cuda_build.py in a subprocess; counts from their JUnit report."""
    if time.monotonic() > deadline:
        return {"skipped": "time budget"}
    report = tmp / "op_tests.xml"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_ops_cuda.py"), str(ROOT / "tests" / "test_cuda_build.py"),
                           f"--junitxml={report}",
                           *(["-k", args.op_tests_k] if args.op_tests_k else [])],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=min(600.0, max(10.0, deadline - time.monotonic())))
    result = {"returncode": proc.returncode, "seconds": round(time.perf_counter() - t0, 1)}
    if report.exists():
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        tests, failures, errors, skips = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        result.update(passed=tests - failures - errors - skips, failed=failures + errors, skipped=skips)
    if proc.returncode != 0:
        result["tail"] = proc.stdout[-3000:] + proc.stderr[-2000:]
    return result


def training(args, paths: dict[str, Path], device: torch.device, tmp: Path, deadline: float) -> list[dict]:
    """``train_vtoonify.py --amp bf16`` for ``--train_steps`` iterations per backbone (subprocesses)."""
    rows = []
    ckpt_dir = Path(args.ckpt_dir)
    for backbone in args.backbones:
        if time.monotonic() > deadline:
            rows.append({"backbone": BACKBONES[backbone], "skipped": "time budget"})
            continue
        run = tmp / f"train_{backbone}"
        cmd = [sys.executable, str(ROOT / "train_vtoonify.py"), "--backbone", backbone, "--device", device.type,
               "--amp", "bf16", "--iter", str(args.train_steps), "--batch", str(args.train_batch), "--no_progress",
               "--log_every", str(max(1, args.train_steps // 2)), "--save_every", str(10**9), "--save_begin", str(10**9),
               "--checkpoint_dir", str(run / "checkpoint"), "--log_dir", str(run / "log"), "--name", "run",
               "--encoder_path", str(paths[backbone]), "--direction_path", str(ckpt_dir / "directions.npy"),
               "--faceparsing_path", str(paths["faceparsing"]), "--style_encoder_path", str(paths["encoder"]),
               "--vgg_path", str(ckpt_dir / "vgg16.pth"), "--lpips_path", str(ckpt_dir / "lpips_vgg.pth")]
        if backbone == "dualstylegan":
            cmd += ["--stylegan_path", str(ckpt_dir / "teacher_dualstylegan.pt"),
                    "--exstyle_path", str(paths[backbone].parent / "exstyle_code.npy"), "--style_id", "0"]
        else:
            cmd += ["--stylegan_path", str(ckpt_dir / "teacher_ffhq.pt"),
                    "--finetunegan_path", str(ckpt_dir / "teacher_finetune.pt")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=min(3600.0, max(10.0, deadline - time.monotonic() + 60)))
        seconds = time.perf_counter() - t0
        row = {"backbone": BACKBONES[backbone], "returncode": proc.returncode, "steps": args.train_steps,
               "batch": args.train_batch, "amp": "bf16" if device.type == "cuda" else "off (CPU)",
               "seconds": round(seconds, 1), "s_per_step": round(seconds / args.train_steps, 3)}
        losses_csv = run / "log" / "run" / "losses.csv"
        if losses_csv.exists():
            lines = losses_csv.read_text().splitlines()
            header, values = lines[0].split(","), [[float(v) for v in line.split(",")] for line in lines[1:]]
            row["logged_steps"] = len(values)
            row["losses_finite"] = bool(values) and all(math.isfinite(v) for r in values for v in r)
            row["last_losses"] = ({k: round(v, 5) for k, v in zip(header, values[-1]) if k not in ("iter", "step")}
                                  if values else {})
        else:
            row["logged_steps"], row["losses_finite"] = 0, False
        if proc.returncode != 0:
            row["tail"] = proc.stdout[-2000:] + proc.stderr[-3000:]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "tail"}), flush=True)
    return rows


def size_label(h: int, w: int) -> str:
    return f"{w}x{h}->{4 * w}x{4 * h}"


def goal(rows: list[dict], fps: float, min_psnr: float, applicable: bool, size: str = size_label(*SIZES["256"])) -> dict:
    """The goal verdict on the VToonify-D fp16 rows of ``size``: the fastest row with PSNR >= ``min_psnr``
    against fp32 must reach ``fps`` frames/s."""
    candidates = [r for r in rows if r["backbone"] == "VToonify-D" and r["size"] == size and r["dtype"] == "fp16"]
    good = [r for r in candidates if r["psnr_vs_fp32"] is not None and r["psnr_vs_fp32"] >= min_psnr]
    best = max(good or candidates, key=lambda r: r["fps"], default=None)
    passed = bool(good) and best["fps"] >= fps
    return {"target": f">= {fps:g} frames/s of VToonify-D 256->1024 in fp16 with PSNR >= {min_psnr:g} dB vs fp32",
            "applicable": applicable, "fps": best and best["fps"], "psnr_vs_fp32": best and best["psnr_vs_fp32"],
            "compile": best and best["compile"], "verdict": "PASS" if passed else "FAIL"}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="tiny models on CPU in seconds (what the test suite runs)")
    ap.add_argument("--out", default=None, help="output folder (default: $OUT if set, else output/device_check)")
    ap.add_argument("--device", default=None, help="default: cuda, or cpu with --small")
    ap.add_argument("--ckpt_dir", default=None,
                    help="where the fill-rule checkpoints are written once (default /tmp/vtoonify_device_check[_small])")
    ap.add_argument("--faceparsing_path", default=None,
                    help="an existing BiSeNet faceparsing.pth (default: written to --ckpt_dir)")
    ap.add_argument("--style_encoder_path", default=None, help="an existing pSp encoder.pt (default: written to --ckpt_dir)")
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    ap.add_argument("--compile_dtypes", nargs="*", default=None, choices=list(DTYPES),
                    help=f"precisions also run with --compile {COMPILE_MODE} (default fp16 bf16; fp16 with --small)")
    ap.add_argument("--compile_sizes", nargs="*", default=None, choices=list(SIZES),
                    help="sizes also run compiled (default all; 256 with --small: each compile is a dynamo trace)")
    ap.add_argument("--batch", type=int, default=None, help="frames per forward (default 8; 2 with --small)")
    ap.add_argument("--repeat", type=int, default=None, help="timed calls per row (default 10; 1 with --small)")
    ap.add_argument("--train_steps", type=int, default=None,
                    help="training iterations per backbone (default 20; 2 with --small)")
    ap.add_argument("--train_batch", type=int, default=None, help="training batch (default 4; 2 with --small)")
    ap.add_argument("--skip_op_tests", action="store_true")
    ap.add_argument("--skip_training", action="store_true")
    ap.add_argument("--skip_gpu_engines", action="store_true")
    ap.add_argument("--gpu_engines_budget_s", type=float, default=90.0,
                    help="seconds for the gpu_engines block (rows that would start later are left out)")
    ap.add_argument("--budget_s", type=float, default=None,
                    help="rows and runs that would start after this many seconds are left out "
                         "(default 420; none with --small)")
    ap.add_argument("--op_tests_k", default=None,
                    help="pytest -k selection of tests/test_ops_cuda.py (default all; two tests with --small)")
    ap.add_argument("--goal_fps", type=float, default=50.0)
    ap.add_argument("--goal_psnr", type=float, default=35.0)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    small = args.small
    args.batch = args.batch or (2 if small else 8)
    args.repeat = args.repeat or (1 if small else 10)
    args.compile_dtypes = args.compile_dtypes if args.compile_dtypes is not None else (["fp16"] if small else ["fp16", "bf16"])
    args.compile_sizes = args.compile_sizes if args.compile_sizes is not None else (["256"] if small else list(SIZES))
    args.budget_s = args.budget_s if args.budget_s is not None else (math.inf if small else 420.0)
    if small and args.op_tests_k is None:
        args.op_tests_k = SMALL_OP_TESTS
    args.train_steps = args.train_steps or (2 if small else 20)
    args.train_batch = args.train_batch or (2 if small else 4)
    args.ckpt_dir = args.ckpt_dir or str(Path(tempfile.gettempdir())
                                         / ("vtoonify_device_check_small" if small else "vtoonify_device_check"))
    out = Path(args.out or os.environ.get("OUT") or ROOT / "output" / "device_check")
    device = torch.device(args.device or ("cpu" if small else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("device_check: no CUDA device (use --small for the CPU mode)", file=sys.stderr)
        return 2
    start = time.monotonic()
    deadline = start + args.budget_s
    paths = write_models(Path(args.ckpt_dir), small,
                         {"faceparsing": args.faceparsing_path, "encoder": args.style_encoder_path})
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ops = {"skipped": "--skip_op_tests"} if args.skip_op_tests else op_tests(args, tmp, deadline)
        # eager rows, then the training smoke run, then the compiled rows (the slowest to start)
        plan, references = throughput_plan(args), {}
        eager = [item for item in plan if item[3] is None]
        rows, skipped = throughput(args, eager, paths, device, deadline, references)
        train = [] if args.skip_training else training(args, paths, device, tmp, deadline)
        engines = [] if args.skip_gpu_engines else gpu_engine_rows(
            paths["dualstylegan"], device, SMALL_SIZES if small else SIZES, args.repeat,
            min(deadline, time.monotonic() + args.gpu_engines_budget_s), Path(args.ckpt_dir) / "engine_cache",
            compile_sizes=args.compile_sizes, compile_kwargs={"backend": "eager"} if small else {"mode": COMPILE_MODE})
        more, more_skipped = throughput(args, plan[len(eager):], paths, device, deadline, references)
        rows, skipped = rows + more, skipped + more_skipped
    report = {
        "meta": {"small": small, "device": str(device),
                 "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                                 else platform.processor() or platform.machine()),
                 "torch": torch.__version__, "torch_cuda": torch.version.cuda, "threads": torch.get_num_threads(),
                 "seconds": round(time.monotonic() - start, 1)},
        "op_tests": ops, "throughput": rows, "throughput_skipped": skipped, "training": train, "gpu_engines": engines,
        "goal": goal(rows, args.goal_fps, args.goal_psnr, applicable=device.type == "cuda" and not small,
                     size=size_label(*(SMALL_SIZES if small else SIZES)["256"])),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_check.json").write_text(json.dumps(json_safe(report), indent=1))
    (out / "device_check.md").write_text(to_markdown(report))
    print(to_markdown(report))
    g = report["goal"]
    print(f"device_check: goal {g['verdict']}{'' if g['applicable'] else ' (not applicable here)'}; "
          f"wrote {out}/device_check.json and .md")
    failed = (ops.get("failed", 0) or ops.get("returncode", 0) not in (0, 5)
              or any(r.get("returncode", 0) != 0 for r in train)
              or any(not r.get("losses_finite", True) for r in train if "skipped" not in r))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
