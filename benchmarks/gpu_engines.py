"""The device check's ``gpu_engines`` block: one VToonify-D forward (model only, batch 1) per engine on a CUDA GPU.

Rows, each at 256x256 -> 1024x1024 and at the sample video's 392x360 -> 1568x1440 (``benchmarks/device_check.py``
passes the sizes), in this order (a model is loaded once for both sizes):

* ``torch`` fp32, eager: the reference of every PSNR;
* ``torch`` fp16, eager (``VToonify.to_mixed_precision``);
* ``onnxruntime`` fp32 on ONNX Runtime's CUDA provider (``--engine onnxruntime`` on CUDA);
* ``tensorrt`` fp16 on ONNX Runtime's TensorRT provider (``--engine tensorrt --dtype float16``);
* ``torch`` fp16 with ``torch.compile`` (``reduce-overhead`` on CUDA: CUDA graphs).

Per row: ``load_s`` (model load; for the ONNX engines the export into ``<ckpt_dir>/engine_cache`` on first use),
``first_call_s`` (the compile or TensorRT engine build for a new shape happens here), ``best_s`` (best of
``repeat`` calls after the first, CUDA synchronised), ``fps`` (1 / best_s), ``psnr_vs_torch_fp32`` (dB, uint8
frames) and ``status``: ``ok``, ``not installed: ...`` (the engine's one-line error: onnxruntime-gpu or tensorrt
missing, which is the case on a machine that cannot install them), ``no CUDA device``, ``skipped: time budget``
or ``failed: ...`` (the exception's first line; the block never stops the device check).

Without CUDA (``device_check.py --small``) the torch rows run on the tiny model on the CPU as a dry run of this
code (compiled with dynamo's ``eager`` backend), and the ONNX Runtime rows say ``no CUDA device``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bf16_accuracy import psnr_uint8, to_uint8
from benchmarks.engines import face_input
from model.errors import UserError
from pipeline.engines.runtimes import EngineNotInstalledError

__all__ = ["ENGINE_ROWS", "gpu_engine_rows"]

#: (engine, dtype, compiled) of each row, in the order they run.
ENGINE_ROWS = (("torch", "fp32", False), ("torch", "fp16", False), ("onnxruntime", "fp32", False),
               ("tensorrt", "fp16", False), ("torch", "fp16", True))
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def _load(engine: str, dtype: torch.dtype, compiled: bool, ckpt: Path, device: torch.device, cache: Path,
          compile_kwargs: dict):
    """The callable ``(x, style) -> image`` of one row."""
    from model.checkpoint import load_vtoonify
    from pipeline.engines import get_engine

    if engine == "torch":
        model = load_vtoonify(ckpt, device=device)
        if dtype != torch.float32:
            model = model.to_mixed_precision(dtype)
        run = torch.compile(model, **compile_kwargs) if compiled else model

        def call(x, style):
            if compiled and device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()  # a new step for reduce-overhead's CUDA graphs
            return run(x, style, d_s=0.5).clone()  # clone: a CUDA graph's output buffer is reused by the next call
        return call
    stand_in = get_engine(engine, dtype, cache_dir=cache, device=device).vtoonify(ckpt)
    return lambda x, style: stand_in(x, style, d_s=0.5)


def gpu_engine_rows(ckpt: Path, device: torch.device, sizes: dict[str, tuple[int, int]], repeat: int,
                    deadline: float, cache: Path, compile_sizes=None, compile_kwargs: dict | None = None) -> list[dict]:
    """The rows of :data:`ENGINE_ROWS` at each of ``sizes`` (name -> (h, w)); see the module docstring.

    ``compile_sizes``: the size names the compiled row runs at (default all); ``compile_kwargs``: what
    ``torch.compile`` is given (default ``mode='reduce-overhead'``). Rows that would start after ``deadline``
    (``time.monotonic()``) are ``skipped: time budget``.
    """
    compile_kwargs = compile_kwargs if compile_kwargs is not None else {"mode": "reduce-overhead"}
    from model.checkpoint import load_vtoonify

    n_latent = load_vtoonify(ckpt, mmap=True).stylegan().n_latent  # 18 at the released size (weights mapped, not read)
    inputs = {name: (x, style[:, :n_latent]) for name, (x, style) in
              ((name, face_input(h, w)) for name, (h, w) in sizes.items())}
    rows, references = [], {}
    for engine, dtype_name, compiled in ENGINE_ROWS:
        dtype = _DTYPES[dtype_name]
        names = [n for n in sizes if not compiled or compile_sizes is None or n in compile_sizes]
        base = [{"engine": engine, "dtype": dtype_name, "compile": "compiled" if compiled else "eager",
                 "size": f"{sizes[n][1]}x{sizes[n][0]}->{4 * sizes[n][1]}x{4 * sizes[n][0]}"} for n in names]
        if engine != "torch" and device.type != "cuda":
            rows += [dict(b, status="no CUDA device") for b in base]
            continue
        if time.monotonic() > deadline:
            rows += [dict(b, status="skipped: time budget") for b in base]
            continue
        t0 = time.perf_counter()
        try:
            run = _load(engine, dtype, compiled, ckpt, device, cache, compile_kwargs)
        except EngineNotInstalledError as e:
            rows += [dict(b, status=f"not installed: {e}") for b in base]
            continue
        except UserError as e:  # the device or the precision refused
            rows += [dict(b, status=f"refused: {e}") for b in base]
            continue
        except Exception as e:  # a broken engine is a row of the report, not the end of the device check
            rows += [dict(b, status=f"failed: {_one_line(e)}") for b in base]
            continue
        load_s = time.perf_counter() - t0
        for name, row in zip(names, base):
            if time.monotonic() > deadline:
                rows.append(dict(row, status="skipped: time budget"))
                continue
            rows.append(_measure(run, row, inputs[name], device, repeat, load_s, references, name))
            print(json.dumps(rows[-1]), flush=True)
        del run
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _measure(run, row: dict, inputs, device: torch.device, repeat: int, load_s: float, references: dict,
             size_name: str) -> dict:
    x, style = (t.to(device) for t in inputs)
    try:
        with torch.inference_mode():
            t0 = time.perf_counter()
            y = run(x, style)
            _sync(device)
            first = time.perf_counter() - t0
            out = to_uint8(y.float().cpu())
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                run(x, style)
                _sync(device)
                times.append(time.perf_counter() - t0)
    except Exception as e:
        return dict(row, status=f"failed: {_one_line(e)}")
    if row["engine"] == "torch" and row["dtype"] == "fp32" and row["compile"] == "eager":
        references[size_name] = out
    reference = references.get(size_name)
    best = min(times) if times else first
    return dict(row, status="ok", load_s=round(load_s, 2), first_call_s=round(first, 3), best_s=round(best, 4),
                fps=round(1 / best, 3), psnr_vs_torch_fp32=None if reference is None else round(psnr_uint8(out, reference), 2),
                contrast=round(float(np.std(out)), 2))
