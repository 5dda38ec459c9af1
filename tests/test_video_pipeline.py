"""The video path end to end: torchrun shards, threads that overlap decoding and encoding, torch.compile, and the
batches against the per-image recipe."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data as skdata
from stylize_helpers import (  # noqa: F401
    PAD,
    PAD_ARGS,
    compile_with,
    make_pipeline,
    model_path,
    record_parsing,
    record_writes,
    run,
)

from conftest import free_port
from pipeline.video import VideoWriter, probe, synthesize_test_video


def test_video_split_across_two_processes(ckpt, astronaut_video, tmp_path):
    """torchrun, one contiguous frame range per process, joined without re-encoding and with the audio."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    model = ckpt / "vtoonify_d_test/vtoonify_s_d.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(root / "style_transfer.py"), "--content", str(astronaut_video), "--video", "--scale_image",
           "--ckpt", str(model),
           "--style_encoder_path", str(ckpt / "encoder.pt"), "--faceparsing_path", str(ckpt / "faceparsing.pth"),
           "--output_path", str(tmp_path / "split"), "--cpu", "--no_progress", "--style_id", "1", *PAD_ARGS]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["astro_input.mp4", "astro_vtoonify_d.mp4"]
    joined = probe(tmp_path / "split" / "astro_vtoonify_d.mp4")
    assert joined.frame_count == 6 and joined.has_audio and abs(joined.duration - 0.6) < 0.05
    # the same frames as a single-process run (H.264 at crf 18 on both sides: small differences only)
    assert run(ckpt, tmp_path / "single", "--content", str(astronaut_video), "--video", "--scale_image", *PAD_ARGS) == 0
    from pipeline.video import VideoReader

    split_video, single_video = tmp_path / "split" / "astro_vtoonify_d.mp4", tmp_path / "single" / "astro_vtoonify_d.mp4"
    with VideoReader(split_video) as a, VideoReader(single_video) as b:
        diffs = [np.abs(x.astype(np.int16) - y.astype(np.int16)).mean() for x, y in zip(a, b)]
    assert len(diffs) == 6 and max(diffs) < 3.0, diffs


def test_video_and_batches_follow_the_image_recipe(pipe_d, tmp_path, monkeypatch):
    """A video made of the image path's crop, repeated, is stylised frame by frame as the image path stylises that
    frame (same style code, same per-frame recipe); batches of 2 give the frames of batches of 1."""
    from pipeline.video import VideoReader

    crop = pipe_d.stylize_image(skdata.astronaut(), style_id=1, scale_image=True, padding=PAD).input
    path = tmp_path / "crop.mp4"
    with VideoWriter(path, 10, crop.shape[1], crop.shape[0]) as w:
        for _ in range(3):
            w.write(crop)
    written = record_writes(monkeypatch)
    outs = {}
    for batch in (1, 2):
        result = pipe_d.stylize_video(path, tmp_path / f"b{batch}", style_id=1, scale_image=False, batch_size=batch,
                                      progress=False)
        outs[batch] = written[result.output_path]
    with VideoReader(path) as reader:
        decoded = list(reader)
    assert all(np.array_equal(a, b) for a, b in zip(written[tmp_path / "b1" / "crop_input.mp4"], decoded))
    image = pipe_d.stylize_image(decoded[0], style_id=1)  # the image path on the first frame
    assert np.array_equal(outs[1][0], image.output)
    style = pipe_d.style_code(decoded[0], 1)
    for frame, out in zip(decoded[1:], outs[1][1:]):
        assert np.array_equal(out, pipe_d.stylize_frames([frame], style)[0])
    for a, b in zip(outs[1], outs[2]):
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.01  # batched convolutions may round differently


@pytest.fixture(scope="module")
def short_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "short.mp4"
    return synthesize_test_video(path, skdata.astronaut(), n_frames=3, fps=10, size=(384, 384), motion="zoom")


def _shard(pipe, video: Path, out: Path, world: int, votes=lambda rank, ok: ok, **kwargs):
    """The ranks of a sharded run one after another in this process (rank 0, which joins, last)."""
    from pipeline.stylize import stylize_video_sharded

    results = {}
    for rank in reversed(range(world)):
        results[rank] = stylize_video_sharded(pipe, video, out, rank, world, lambda ok: votes(rank, ok), style_id=1,
                                              progress=False, padding=PAD, **kwargs)
    return results


def test_sharded_video_with_more_processes_than_frames(pipe_d, short_video, tmp_path, monkeypatch):
    """4 processes for 3 frames (rank 0 gets none): the joined video has every frame, in order, with the source's
    fps and audio, and its frames are those of a single-process run."""
    from pipeline.stylize import shard_range

    assert [shard_range(3, r, 4) for r in range(4)] == [(0, 0), (0, 1), (1, 2), (2, 3)]
    written = record_writes(monkeypatch)
    results = _shard(pipe_d, short_video, tmp_path / "split", 4)
    assert results[1] is results[2] is results[3] is None and results[0].frames == 3
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["short_input.mp4", "short_vtoonify_d.mp4"]
    segments = sorted((p, f) for p, f in written.items() if ".seg" in p.name and "vtoonify" in p.name)
    sharded = [frame for _, frames in segments for frame in frames]
    written.clear()
    single = pipe_d.stylize_video(short_video, tmp_path / "single", style_id=1, progress=False, padding=PAD)
    assert len(sharded) == 3 and all(np.array_equal(a, b) for a, b in zip(sharded, written[single.output_path]))
    src, joined = probe(short_video), probe(tmp_path / "split" / "short_vtoonify_d.mp4")
    assert joined.frame_count == 3 and joined.fps == pytest.approx(src.fps) and joined.duration == pytest.approx(0.3, abs=0.02)
    assert joined.has_audio and joined.audio_duration == pytest.approx(src.audio_duration, abs=0.03)
    assert joined.audio_duration == pytest.approx(joined.duration, abs=0.05)  # audio and video stay in step
    from pipeline.video import VideoReader

    with VideoReader(tmp_path / "split" / "short_vtoonify_d.mp4") as reader:
        decoded = list(reader)
    assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(decoded, sharded)) < 3


@pytest.mark.parametrize("failing", ["this process", "another process"])
def test_sharded_video_failure_leaves_nothing(pipe_d, short_video, tmp_path, monkeypatch, failing):
    """One rank fails: every rank raises, the segments the others wrote are removed, no final file appears."""
    from pipeline import api

    if failing == "this process":  # rank 0's own stylisation fails after rank 1 wrote its segments
        original = api.stylize_video

        def failing_on_rank0(pipe, *a, frame_range=None, **k):
            if frame_range[0] == 0:
                raise RuntimeError("simulated failure on rank 0")
            return original(pipe, *a, frame_range=frame_range, **k)

        monkeypatch.setattr(api, "stylize_video", failing_on_rank0)
        votes, match = (lambda rank, ok: ok), "simulated failure on rank 0"
    else:  # rank 0 succeeds, but the vote says another process failed
        votes, match = (lambda rank, ok: ok and rank != 0), "another process failed"
    out = tmp_path / "split"
    with pytest.raises(RuntimeError, match=match):
        _shard(pipe_d, short_video, out, 2, votes)
    assert not [p.name for p in out.iterdir()]


def test_overlapped_io_gives_the_same_video(ckpt, astronaut_video, tmp_path, monkeypatch):
    """Decoding ahead and encoding behind in threads (the default) hands the encoders exactly the frames, in the
    same order, that the serial loop does. (The frames handed over are compared: libx264's frame threads may
    make different but equally faithful choices from run to run.)"""
    from pipeline import video

    written = record_writes(monkeypatch)
    pipe = make_pipeline(ckpt)
    runs = []
    for overlap in (True, False):
        written.clear()
        result = pipe.stylize_video(astronaut_video, tmp_path / str(overlap), style_id=1, progress=False, batch_size=2,
                                    overlap=overlap, padding=PAD)
        runs.append({path.name: frames for path, frames in written.items()})
        assert result.frames == 6
        for path in (result.input_path, result.output_path):
            with video.VideoReader(path) as reader:
                decoded = list(reader)
            sent = written[path]
            assert len(decoded) == len(sent) == 6
            assert max(np.abs(d.astype(int) - s.astype(int)).mean() for d, s in zip(decoded, sent)) < 3
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) == 2
    for name in runs[0]:
        assert all(np.array_equal(a, b) for a, b in zip(runs[0][name], runs[1][name]))


def test_encoder_failure_in_the_write_thread_leaves_no_output(ckpt, astronaut_video, tmp_path, monkeypatch):
    from pipeline import video

    original, calls = video.VideoWriter.write, {"n": 0}

    def failing(self, frame):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("No space left on device")
        return original(self, frame)

    monkeypatch.setattr(video.VideoWriter, "write", failing)
    out = tmp_path / "out"
    assert run(ckpt, out, "--content", str(astronaut_video), "--video", "--scale_image", *PAD_ARGS) == 1
    assert calls["n"] == 5
    assert not out.exists()  # nothing left, not even the folder the failed run created


def test_compiled_pipeline_traces_whole_and_compiles_once_per_video(ckpt, short_video, tmp_path, monkeypatch):
    """--compile: the VToonify step is one graph (fullgraph=True, no breaks), the short last batch is padded so it
    reuses that graph, and the frames match the eager pipeline. torch.compile is run with a counting eager
    backend here (inductor's C++ build takes minutes on CI); on a machine with a compiler use the real one."""
    import torch

    from pipeline import stylize
    from style_transfer import build_parser

    assert build_parser().parse_args(["--compile"]).compile == "default"
    assert tuple(build_parser()._option_string_actions["--compile"].choices) == stylize.COMPILE_MODES
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append([tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor)])
        return gm.forward

    compile_with(monkeypatch, counting_backend)
    written = record_writes(monkeypatch)
    with pytest.raises(ValueError, match="compile must be"):
        make_pipeline(ckpt, compile="fastest")
    compiled, eager = make_pipeline(ckpt, compile="default"), make_pipeline(ckpt)
    results = [pipe.stylize_video(short_video, tmp_path / name, style_id=1, progress=False, batch_size=2, padding=PAD)
               for name, pipe in (("compiled", compiled), ("eager", eager))]
    assert [r.frames for r in results] == [3, 3]
    assert len(graphs) == 1 and graphs[0][0][0] == 2  # 3 frames = a batch of 2 + a batch of 1 padded to 2
    a, b = (written[r.output_path] for r in results)
    assert len(a) == len(b) == 3
    assert max(np.abs(x.astype(int) - y.astype(int)).max() for x, y in zip(a, b)) <= 1
    # other style degrees reuse the graph (the degree is a tensor input, not a constant baked into it)
    frames = written[results[1].input_path][:2]  # two crops: the graph's shape
    style = eager.exstyle(1)
    for degree in (0.2, 0.9):
        torch.testing.assert_close(compiled.stylize_frames(frames, style, degree)[0].astype(np.float32),
                                   eager.stylize_frames(frames, style, degree)[0].astype(np.float32), rtol=0, atol=1)
    assert len(graphs) == 1
    assert not np.array_equal(*(compiled.stylize_frames(frames, style, d)[0] for d in (0.2, 0.9)))
    torch._dynamo.reset()


def test_compile_failure_falls_back_to_eager_with_a_warning(ckpt, astronaut_jpg, monkeypatch):
    """No C++ compiler (CPU) or no Triton (GPU): --compile warns once and the job finishes uncompiled."""
    import torch

    def broken_backend(gm, example_inputs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    compile_with(monkeypatch, broken_backend)
    compiled = make_pipeline(ckpt, "toonify", compile="default")
    rgb = skdata.astronaut()
    with pytest.warns(RuntimeWarning, match="compile='default' failed .*C\\+\\+ compiler.*running without compilation"):
        a = compiled.stylize_image(rgb, scale_image=True, padding=PAD)
    assert compiled.compile is None
    b = make_pipeline(ckpt, "toonify").stylize_image(rgb, scale_image=True, padding=PAD)
    assert np.array_equal(a.output, b.output)
    torch._dynamo.reset()


def _cxx_compiler() -> str | None:
    import os
    import shutil

    return next((shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c and shutil.which(c)), None)


@pytest.mark.skipif(_cxx_compiler() is None, reason="torch.compile (inductor) needs a C++ compiler on CPU; none found")
def test_real_compile_matches_eager():
    """One real inductor compile (as --compile runs it: fullgraph, static shapes) of a small StyleGAN block with the
    project's custom ops (modulated conv, upfirdn2d blur, fused bias + leaky ReLU), compared with eager."""
    import torch

    from model.stylegan.model import StyledConv, ToRGB

    torch._dynamo.reset()

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = StyledConv(8, 8, 3, 16, upsample=True)
            self.rgb = ToRGB(8, 16)

        def forward(self, x, style, noise):
            return self.rgb(self.conv(x, style, noise=noise), style)

    block = Block().eval()
    g = torch.Generator().manual_seed(0)
    x, style, noise = (torch.randn(2, 8, 8, 8, generator=g), torch.randn(2, 16, generator=g),
                       torch.randn(2, 1, 16, 16, generator=g))
    with torch.inference_mode():
        eager = block(x, style, noise)
        compiled = torch.compile(block, mode="default", fullgraph=True, dynamic=False)
        out = compiled(x, style, noise)
        again = compiled(x * 2, style, noise)  # same shapes: the same compiled code
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(again, block(x * 2, style, noise), rtol=1e-5, atol=1e-5)
    assert not torch.equal(out, again)
    torch._dynamo.reset()
