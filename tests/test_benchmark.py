"""benchmarks/benchmark.py runs end to end (tiny fill-rule models) and writes the table it promises."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import write_tiny_checkpoints

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_script_writes_json_and_markdown(tmp_path, frozen_helpers):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    write_tiny_checkpoints(ckpt, "fill")
    for name in ("encoder", "faceparsing"):
        (ckpt / frozen_helpers[name].name).symlink_to(frozen_helpers[name])
    out = tmp_path / "results"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "benchmark.py"), "--ckpt_dir", str(ckpt), "--out", str(out),
           "--dtype", "bfloat16", "--frames", "3", "--repeat", "1", "--warmup", "0", "--throughput_batch", "2",
           "--threads", str(torch.get_num_threads()),  # this worker's share of the cores (conftest), not more
           "--backbones", "dualstylegan"]  # the rows of both backbones come from one function: one is enough here
    # the repository on the path as `pip install -e .` puts it there (the suite also runs uninstalled)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["dtype"] == "bfloat16" and data["meta"]["conv_peak_gflops"] > 0
    assert [(r["backbone"], r["size"] == "256x256->1024x1024") for r in data["rows"]] == [
        ("dualstylegan", True), ("dualstylegan", False)]
    for r in data["rows"]:  # the video row: the crop of the synthetic 400x368 clip, 4x larger out
        (w, h), (w4, h4) = (map(int, side.split("x")) for side in r["size"].split("->"))
        assert (w4, h4) == (4 * w, 4 * h) and w % 8 == 0 and h % 8 == 0
    for r in data["rows"]:
        for key in ("detect", "parse", "style_encoder", "generator", "encode", "decode", "batch_fps", "generator_gflop",
                    "conv_efficiency", "peak_memory_gib"):
            assert r[key] > 0, (key, r)
        assert r["batch"] == 2
        assert 20 < r["psnr_vs_fp32"] < 200, r  # bfloat16 against float32: close, not identical (noise: < 12 dB)
        if r["size"] != "256x256->1024x1024":
            # one extra frame, timed once: a number where it is above the noise, else empty, never negative
            assert r["end_to_end"] is None and r["fps"] is None or r["end_to_end"] > 0 and r["fps"] > 0, r
    # the generator is fully convolutional: its FLOPs grow with the pixel count of the row's input size
    small, video = data["rows"]
    (w, h), _ = (map(int, side.split("x")) for side in video["size"].split("->"))
    assert video["generator_gflop"] / small["generator_gflop"] == pytest.approx(w * h / 256**2, rel=0.01)
    table = (out / "results.md").read_text()
    assert "| backbone | size |" in table and table.count("| dualstylegan |") == 2 and "| toonify |" not in table


def test_per_frame_seconds_known_answers():
    """end_to_end: the cost of the extra frames, None (not a negative time) where the runs' noise hides it."""
    from benchmarks.benchmark import per_frame_seconds

    assert per_frame_seconds(10.0, 4.0, 5) == pytest.approx(2.0)
    assert per_frame_seconds(4.0, 4.0, 5) is None and per_frame_seconds(3.0, 8.6, 3) is None
    with pytest.raises(ValueError, match="more than 2"):
        per_frame_seconds(3.0, 2.0, 2)


def test_psnr_vs_float32_known_answers(tmp_path):
    """The benchmark's accuracy column: infinite for the float32 result itself, high for a result within a
    fraction of a grey level, low for noise."""
    from benchmarks.benchmark import psnr_vs_float32

    paths = write_tiny_checkpoints(tmp_path, "fill")
    from model.checkpoint import load_vtoonify

    model = load_vtoonify(paths["d"])
    g = torch.Generator().manual_seed(0)
    inputs, style = torch.randn(1, 22, 64, 64, generator=g), torch.randn(1, 18, 512, generator=g)
    with torch.inference_mode():
        y = model(inputs, style, d_s=0.5).clamp(-1, 1)
    assert psnr_vs_float32(None, paths["d"], inputs, style, y, "cpu") == float("inf")
    nearby = (y + 0.002 * torch.randn(y.shape, generator=g)).clamp(-1, 1)
    near = psnr_vs_float32(None, paths["d"], inputs, style, nearby, "cpu")
    noise = psnr_vs_float32(None, paths["d"], inputs, style, torch.rand(y.shape, generator=g) * 2 - 1, "cpu")
    assert 45 < near < 80 and noise < 12, (near, noise)

