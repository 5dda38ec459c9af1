"""The device check's report: Markdown tables and JSON without NaN/Infinity literals (benchmarks/device_check.py)."""
from __future__ import annotations

import math

__all__ = ["json_safe", "to_markdown"]


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return str(value)


def to_markdown(report: dict) -> str:
    meta, lines = report["meta"], []
    lines += [f"# Device check ({'small mode' if meta['small'] else 'full'})", "",
              f"{meta['device_name']}; torch {meta['torch']} (CUDA {meta['torch_cuda']}); {meta['seconds']:.0f} s in all.", ""]
    ops = report["op_tests"]
    lines += ["## CUDA op tests (tests/test_ops_cuda.py)", "",
              ", ".join(f"{k} {ops[k]}" for k in ("passed", "failed", "skipped", "returncode", "seconds") if k in ops)
              or f"skipped: {ops.get('skipped')}", ""]
    cols = ["backbone", "size", "dtype", "compile", "batch", "fps", "fps_with_parse", "psnr_vs_fp32", "contrast",
            "peak_memory_gib", "first_call_s", "cuda_ops"]
    lines += ["## Throughput (frames/s; PSNR in dB against eager fp32 on the same frames)", "",
              "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in report["throughput"]]
    if report["throughput_skipped"]:
        lines += ["", "Left out (time budget): " + "; ".join(report["throughput_skipped"])]
    tcols = ["backbone", "returncode", "steps", "batch", "amp", "seconds", "s_per_step", "logged_steps", "losses_finite"]
    lines += ["", "## Training smoke run (train_vtoonify.py --amp bf16)", "",
              "| " + " | ".join(tcols) + " |", "|" + "---|" * len(tcols)]
    lines += ["| " + " | ".join(_fmt(r.get(c, r.get("skipped", ""))) for c in tcols) + " |" for r in report["training"]]
    ecols = ["engine", "dtype", "compile", "size", "status", "best_s", "fps", "psnr_vs_torch_fp32", "first_call_s",
             "load_s", "contrast"]
    lines += ["", "## GPU engines (one VToonify-D forward, batch 1; best_s in seconds; PSNR in dB against torch fp32)",
              "", "| " + " | ".join(ecols) + " |", "|" + "---|" * len(ecols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)).replace("|", "/") for c in ecols) + " |"
              for r in report.get("gpu_engines", [])]
    g = report["goal"]
    lines += ["", "## Goal", "",
              f"{g['target']}: **{g['verdict']}** (fps {_fmt(g['fps'])}, PSNR {_fmt(g['psnr_vs_fp32'])} dB, "
              f"{_fmt(g['compile'])})" + ("" if g["applicable"] else " - not applicable: small mode or no CUDA device"), ""]
    return "\n".join(lines)


def json_safe(value):
    """JSON without NaN/Infinity literals: infinite PSNR becomes the string "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value
