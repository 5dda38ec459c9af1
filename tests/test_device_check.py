"""benchmarks/device_check.py in its small mode (tiny models, CPU): every section runs and the report holds
finite, meaningful numbers; plus known answers of its PSNR, goal and weight rules."""
from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import benchmarks.device_check as device_check
from model.fill import default_fill_table, fill_module

EXPECTED_ROWS = {(b, s, d, "eager") for b in ("VToonify-D", "VToonify-T") for s in ("64x64->256x256", "48x40->192x160")
                 for d in ("fp32", "fp16", "bf16")} | {
    (b, "64x64->256x256", "fp16", "reduce-overhead") for b in ("VToonify-D", "VToonify-T")}  # --small compiles one size


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("device_check")


@pytest.fixture(scope="module")
def small_report(small_dir, frozen_helpers):
    out = small_dir
    code = device_check.main(["--small", "--out", str(out), "--ckpt_dir", str(out / "ckpt"), "--train_steps", "1",
                              "--faceparsing_path", str(frozen_helpers["faceparsing"]),
                              "--style_encoder_path", str(frozen_helpers["encoder"])])
    return code, json.loads((out / "device_check.json").read_text()), (out / "device_check.md").read_text()


def test_small_mode_succeeds_with_every_section(small_report):
    code, report, _ = small_report
    assert code == 0
    assert set(report) == {"meta", "op_tests", "throughput", "throughput_skipped", "training", "gpu_engines", "goal"}
    assert report["meta"]["small"] is True and report["meta"]["device"] == "cpu"
    assert report["throughput_skipped"] == []


def test_small_mode_runs_the_op_tests(small_report):
    ops = small_report[1]["op_tests"]
    # one CPU test of the build rules passes; the kernel test needs a GPU and is skipped here
    assert ops["returncode"] == 0 and ops["failed"] == 0
    assert ops["passed"] >= 1 and ops["passed"] + ops["skipped"] >= 2
    if not torch.cuda.is_available():
        assert ops["skipped"] >= 1


def test_throughput_rows_are_complete_and_finite(small_report):
    rows = small_report[1]["throughput"]
    assert {(r["backbone"], r["size"], r["dtype"], r["compile"]) for r in rows} == EXPECTED_ROWS
    assert len(rows) == len(EXPECTED_ROWS)
    for r in rows:
        for key in ("fps", "fps_with_parse", "first_call_s", "peak_memory_gib", "contrast"):
            assert isinstance(r[key], (int, float)) and math.isfinite(r[key]) and r[key] > 0, (key, r)
        assert r["batch"] == 2 and r["cuda_ops"] is False
        # the frames show an image, not a flat field (a flat output would make every PSNR high)
        assert r["contrast"] > 20, r


def test_psnr_against_fp32(small_report):
    rows = small_report[1]["throughput"]
    for r in rows:
        if r["dtype"] == "fp32":
            assert r["psnr_vs_fp32"] == "inf", r  # the fp32 reference against itself
        else:
            assert isinstance(r["psnr_vs_fp32"], float) and math.isfinite(r["psnr_vs_fp32"]), r
    bf16 = [r["psnr_vs_fp32"] for r in rows if r["dtype"] == "bf16"]
    fp16 = [r["psnr_vs_fp32"] for r in rows if r["dtype"] == "fp16"]
    # bfloat16 keeps 8 mantissa bits, float16 11: bf16 is visibly off fp32 but close, fp16 closer
    assert all(25 < p < 60 for p in bf16), bf16
    assert all(p > 35 for p in fp16), fp16
    assert np.mean(fp16) > np.mean(bf16)


def test_training_smoke_run_of_both_backbones(small_report):
    train = small_report[1]["training"]
    assert [t["backbone"] for t in train] == ["VToonify-D", "VToonify-T"]
    for t in train:
        assert t["returncode"] == 0, t.get("tail")
        assert t["steps"] == 1 and t["logged_steps"] == 1 and t["losses_finite"] is True
        assert t["amp"] == "off (CPU)"
        assert t["last_losses"] and all(math.isfinite(v) for v in t["last_losses"].values())
        assert math.isfinite(t["s_per_step"]) and t["s_per_step"] > 0


def test_goal_and_markdown(small_report):
    _, report, markdown = small_report
    goal = report["goal"]
    assert goal["applicable"] is False and goal["verdict"] == "FAIL"  # tiny CPU models are far below 50 frames/s
    assert goal["fps"] == max(r["fps"] for r in report["throughput"]
                              if r["backbone"] == "VToonify-D" and r["size"].startswith("64x64") and r["dtype"] == "fp16")
    assert "## Throughput" in markdown and "## Training smoke run" in markdown and "## CUDA op tests" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| VToonify-")]
    assert len(table) == len(report["throughput"]) + len(report["training"])
    assert "**FAIL**" in markdown and "not applicable" in markdown


def test_gpu_engines_block_runs_the_torch_rows_on_the_cpu_and_skips_the_onnx_runtime_rows(small_report):
    _, report, markdown = small_report
    rows = report["gpu_engines"]
    sizes = ("64x64->256x256", "48x40->192x160")
    assert [(r["engine"], r["dtype"], r["compile"], r["size"]) for r in rows] == [
        *(("torch", "fp32", "eager", s) for s in sizes), *(("torch", "fp16", "eager", s) for s in sizes),
        *(("onnxruntime", "fp32", "eager", s) for s in sizes), *(("tensorrt", "fp16", "eager", s) for s in sizes),
        ("torch", "fp16", "compiled", sizes[0])]  # --small compiles at one size
    for r in rows:
        if r["engine"] != "torch":
            assert r["status"] == "no CUDA device" and "best_s" not in r, r
            continue
        assert r["status"] == "ok", r
        for key in ("best_s", "fps", "first_call_s", "load_s"):
            assert isinstance(r[key], (int, float)) and math.isfinite(r[key]) and r[key] > 0, (key, r)
        assert r["fps"] == pytest.approx(1 / r["best_s"], rel=0.02, abs=0.005) and r["contrast"] > 20, r
        if r["dtype"] == "fp32":
            assert r["psnr_vs_torch_fp32"] == "inf", r
        else:  # float16 keeps 11 mantissa bits: close to float32, not equal
            assert 35 < r["psnr_vs_torch_fp32"] < 100, r
    table = [line for line in markdown.split("## GPU engines")[1].splitlines() if line.startswith("| torch")
             or line.startswith("| onnxruntime") or line.startswith("| tensorrt")]
    assert len(table) == len(rows) and "no CUDA device" in markdown


def test_gpu_engines_block_reports_missing_gpu_packages_and_never_raises(tmp_path):
    """Asked for CUDA on this machine: ONNX Runtime's CPU wheel has no CUDA/TensorRT provider (``not installed``,
    the engine's one-line error, before any export), and the torch rows fail to load (``failed``)."""
    from conftest import write_tiny_checkpoints

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    ckpt = write_tiny_checkpoints(tmp_path, "gpu")["d"]
    rows = device_check.gpu_engine_rows(ckpt, torch.device("cuda"), {"256": (64, 64)}, 1, math.inf, tmp_path / "cache")
    status = {(r["engine"], r["dtype"], r["compile"]): r["status"] for r in rows}
    assert len(status) == len(rows) == 5
    assert status["onnxruntime", "fp32", "eager"].startswith(
        "not installed: --engine onnxruntime on a CUDA GPU needs ONNX Runtime's CUDAExecutionProvider")
    assert status["tensorrt", "fp16", "eager"].startswith("not installed: --engine tensorrt on a CUDA GPU needs")
    assert all(status[k].startswith("failed: ") for k in status if k[0] == "torch"), status
    assert not (tmp_path / "cache").exists()  # nothing exported


def test_psnr_known_answers():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    assert device_check.psnr(a, a) == math.inf
    assert device_check.psnr(a, a + 1) == pytest.approx(20 * math.log10(255))
    b = a.copy()
    b[0] = 16  # MSE 128
    assert device_check.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 128))


def _row(dtype, fps, psnr, compile="eager", size="256x256->1024x1024", backbone="VToonify-D"):
    return {"backbone": backbone, "size": size, "dtype": dtype, "compile": compile, "fps": fps, "psnr_vs_fp32": psnr}


def test_goal_verdict():
    fast_fp16 = _row("fp16", 60.0, 38.0, "reduce-overhead")
    assert device_check.goal([fast_fp16, _row("fp16", 30.0, 38.0)], 50, 35, True)["verdict"] == "PASS"
    assert device_check.goal([fast_fp16], 50, 35, True)["compile"] == "reduce-overhead"
    # fast enough but too far from fp32, or accurate but too slow, or only other rows fast: FAIL
    assert device_check.goal([_row("fp16", 80.0, 34.0)], 50, 35, True)["verdict"] == "FAIL"
    assert device_check.goal([_row("fp16", 49.0, 40.0)], 50, 35, True)["verdict"] == "FAIL"
    others = [_row("bf16", 90.0, 40.0), _row("fp16", 90.0, 40.0, backbone="VToonify-T"),
              _row("fp16", 90.0, 40.0, size="392x360->1568x1440"), _row("fp16", 10.0, 40.0)]
    assert device_check.goal(others, 50, 35, True)["verdict"] == "FAIL"
    assert device_check.goal([], 50, 35, True)["verdict"] == "FAIL"


def test_visible_fill_doubles_only_the_plain_layers():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.linear = nn.Linear(4, 2)
            self.other = nn.Parameter(torch.ones(5))

    table = default_fill_table(Net())
    plain = fill_module(Net(), table)
    doubled = device_check.visible_fill(Net(), table)
    assert torch.equal(doubled.conv.weight, 2 * plain.conv.weight)
    assert torch.equal(doubled.linear.weight, 2 * plain.linear.weight)
    assert torch.equal(doubled.conv.bias, plain.conv.bias) and torch.equal(doubled.other, plain.other)


# ------------------------------------------------------------------------------------------------------
# .ci/build_cuda.sh: the rules that need no toolchain (the build itself runs in .ci/run)
# ------------------------------------------------------------------------------------------------------
BUILD_CUDA = Path(__file__).resolve().parents[1] / ".ci" / "build_cuda.sh"


def _build_cuda(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "VTOONIFY_SKIP_CUDA_BUILD")}
    # PYTHON=false: past the skip rules the script stops at once (it would create the environment otherwise)
    return subprocess.run(["bash", str(BUILD_CUDA), *args], env={**base, "PYTHON": "false", **env}, capture_output=True,
                          text=True, timeout=60)


def test_build_cuda_is_skipped_locally_on_request(tmp_path):
    proc = _build_cuda(VTOONIFY_SKIP_CUDA_BUILD="1", VTOONIFY_CUDA_CI_CACHE=str(tmp_path / "cache"))
    assert proc.returncode == 0 and "skipped" in proc.stdout
    assert not (tmp_path / "cache").exists()


def test_build_cuda_refuses_to_skip_in_ci(tmp_path):
    proc = _build_cuda(VTOONIFY_SKIP_CUDA_BUILD="1", CI="true", VTOONIFY_CUDA_CI_CACHE=str(tmp_path / "cache"))
    assert proc.returncode == 1 and "CI never skips" in proc.stderr
    assert not (tmp_path / "cache").exists()


def test_build_cuda_flags_only_warnings_in_our_sources(tmp_path):
    """The log filter on the formats nvcc 13 and gcc 12 print (lines copied from their output)."""
    ours_nvcc = ("/repo/model/stylegan/op/cuda/upfirdn2d_kernel.cu(12): warning #177-D: variable \"unused\" was "
                 "declared but never referenced")
    ours_gcc = ("/repo/model/stylegan/op/cuda/upfirdn2d.cpp:2:21: warning: 'int old()' is deprecated "
                "[-Wdeprecated-declarations]")
    log = tmp_path / "build.log"
    log.write_text("\n".join([
        "[1/3] c++ -MMD -MF upfirdn2d.o.d -c /repo/model/stylegan/op/cuda/upfirdn2d.cpp -o upfirdn2d.o",
        ours_gcc,
        "/venv/lib/python3.11/site-packages/torch/include/c10/util/Half.h:3:1: warning: in torch's headers",
        "In file included from /repo/model/stylegan/op/cuda/upfirdn2d.cpp:1:",
        "nvcc warning : Support for offline compilation for architectures prior to '<compute/sm/lto>_75' will be removed",
        ours_nvcc,
        "Remark: The warnings can be suppressed with \"-diag-suppress <warning-number>\"",
    ]) + "\n")
    proc = _build_cuda("--check-log", str(log))
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [ours_gcc, ours_nvcc]
    log.write_text("[2/3] nvcc -c /repo/model/stylegan/op/cuda/upfirdn2d_kernel.cu\n")
    assert _build_cuda("--check-log", str(log)).stdout == ""


def test_cuda_ops_column_reports_loaded_extensions(monkeypatch):
    import types

    from model.stylegan.op import _cuda_build

    module = types.ModuleType("vtoonify_upfirdn2d")
    monkeypatch.setattr(_cuda_build, "_results", {"upfirdn2d": module, "fused_bias_act": None})
    assert _cuda_build.loaded("upfirdn2d") and not _cuda_build.loaded("fused_bias_act")
    assert device_check._cuda_ops_in_use() is False  # a failed build falls back to the reference ops
    monkeypatch.setattr(_cuda_build, "_results", {"upfirdn2d": module, "fused_bias_act": module})
    assert device_check._cuda_ops_in_use() is True
    monkeypatch.setattr(_cuda_build, "_results", {})
    assert device_check._cuda_ops_in_use() is False
