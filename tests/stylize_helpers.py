"""Shared by the end-to-end tests (test_style_transfer.py, test_video_pipeline.py, test_multiface.py, ...): the
fill-rule checkpoint folder, the pipeline on it, the inputs, and recorders of what the pipeline writes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import N_STYLES, make_pipeline, model_path  # noqa: F401 - re-exported for the tests
from style_transfer import main

# The plumbing tests (frame counts, audio, threads, shards, given maps, options reaching the pipeline) stylise
# 192-px crops, --padding 96 on every side instead of the default 200: what they check does not depend on the
# crop size, and ~3.5x fewer pixels per frame keep the suite short. The default recipe is pinned by the image
# tests below and by tests/test_pipeline_golden.py.
PAD = [96, 96, 96, 96]
PAD_ARGS = ("--padding", *map(str, PAD))


def run(ckpt: Path, out: Path, *extra: str, backbone: str = "dualstylegan") -> int:
    args = ["--ckpt", str(model_path(ckpt, backbone)), "--style_encoder_path", str(ckpt / "encoder.pt"), "--faceparsing_path",
            str(ckpt / "faceparsing.pth"), "--output_path", str(out), "--backbone", backbone, "--cpu", "--no_progress",
            "--style_id", "1", *extra]
    return main(args)


def record_writes(monkeypatch) -> dict[Path, list[np.ndarray]]:
    """Every frame handed to a VideoWriter (copied), by the writer's final path; the frames are still written."""
    from pipeline import video

    written: dict[Path, list[np.ndarray]] = {}
    original = video.VideoWriter.write

    def recording(self, frame):
        written.setdefault(self.path, []).append(np.array(frame))
        return original(self, frame)

    monkeypatch.setattr(video.VideoWriter, "write", recording)
    return written


def record_parsing(monkeypatch) -> list:
    """The parsing logits each ``stylize_tensor`` call is given (one (B, 19, H, W) float32 copy per call)."""
    from pipeline import stylize

    seen: list = []
    original = stylize.VToonifyPipeline.stylize_tensor

    def recording(self, x, style, style_degree=0.5, parsing=None):
        if parsing is None:
            parsing = self.parse(x)
        seen.append(parsing.float().clone())
        return original(self, x, style, style_degree, parsing)

    monkeypatch.setattr(stylize.VToonifyPipeline, "stylize_tensor", recording)
    return seen


def jpeg_bytes(rgb: np.ndarray, folder: Path, name: str = "expected.jpg") -> bytes:
    """The bytes style_transfer.py writes for the RGB image ``rgb`` (same writer, same encoder)."""
    from pipeline.stylize import atomic_imwrite

    folder.mkdir(parents=True, exist_ok=True)
    atomic_imwrite(folder / name, rgb)
    return (folder / name).read_bytes()


def compile_with(monkeypatch, backend) -> None:
    """Make torch.compile (as the pipeline calls it) use ``backend``, a fast stand-in for inductor."""
    import torch

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, **{**kw, "mode": None, "backend": backend}))
    torch._dynamo.reset()


def _count_frames(path: Path) -> int:
    from pipeline.video import VideoReader

    with VideoReader(path) as r:
        return sum(1 for _ in r)
