"""benchmarks/benchmark.py runs end to end (tiny fill-rule models) and writes the table it promises."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
           "--dtype", "bfloat16", "--frames", "3", "--repeat", "1", "--throughput_batch", "2", "--threads", "2"]
    # the repository on the path as `pip install -e .` puts it there (the suite also runs uninstalled)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["dtype"] == "bfloat16" and data["meta"]["conv_peak_gflops"] > 0
    assert [(r["backbone"], r["size"] == "256x256->1024x1024") for r in data["rows"]] == [
        ("dualstylegan", True), ("dualstylegan", False), ("toonify", True), ("toonify", False)]
    for r in data["rows"]:  # the video row: the crop of the synthetic 400x368 clip, 4x larger out
        (w, h), (w4, h4) = (map(int, side.split("x")) for side in r["size"].split("->"))
        assert (w4, h4) == (4 * w, 4 * h) and w % 8 == 0 and h % 8 == 0
    for r in data["rows"]:
        for key in ("detect", "parse", "style_encoder", "generator", "encode", "decode", "batch_fps", "generator_gflop",
                    "conv_efficiency", "peak_memory_gib"):
            assert r[key] > 0, (key, r)
        assert r["batch"] == 2
        assert 10 < r["psnr_vs_fp32"] < 200  # bfloat16 against float32: close, not identical
        if r["size"] != "256x256->1024x1024":
            assert r["end_to_end"] > 0 and abs(r["fps"] - 1 / r["end_to_end"]) < 0.01 * r["fps"] + 1e-3
    table = (out / "results.md").read_text()
    assert "| backbone | size |" in table and table.count("| dualstylegan |") == 2
