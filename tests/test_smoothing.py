"""Tests of the flow-guided temporal smoothing of parsing maps (pipeline/smoothing.py)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from pipeline.smoothing import ParsingSmoother, backward_warp, smooth_parsing_sequence, temporal_weights

CHANNELS = 19


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """The astronaut test image, RGB uint8 (512, 512, 3)."""
    return data.astronaut()


def to_frame(rgb: np.ndarray) -> torch.Tensor:
    """HWC uint8 RGB -> (3, H, W) float in [-1, 1], the smoother's input convention."""
    return torch.from_numpy(rgb.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1).contiguous()


def logit_field(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random (H, W, 19) logit field with structure a few pixels wide."""
    noise = np.random.default_rng(seed).standard_normal((height, width, CHANNELS)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 3) * 20


def to_parsing(field: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(field)).permute(2, 0, 1).contiguous()


def static_frame(astronaut: np.ndarray, size: int = 64) -> torch.Tensor:
    return to_frame(cv2.resize(astronaut[40:300, 150:410], (size, size), interpolation=cv2.INTER_AREA))


def test_temporal_weights() -> None:
    assert temporal_weights(0) == [1.0]
    w = 3
    expected = [math.exp(-((k - w) ** 2) / (2 * (w + 0.5) ** 2)) for k in range(2 * w + 1)]
    assert temporal_weights(w) == pytest.approx(expected)


def test_backward_warp_matches_grid_sample_align_corners() -> None:
    torch.manual_seed(0)
    height, width, depth = 20, 24, 5
    source = torch.randn(height, width, depth)
    flow = torch.randn(height, width, 2) * 4
    warped, coverage = backward_warp(source, flow)

    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij")
    grid = torch.stack(
        (2 * (xs + flow[..., 0].double()) / (width - 1) - 1, 2 * (ys + flow[..., 1].double()) / (height - 1) - 1), dim=-1
    )
    inputs = torch.cat((source.double(), torch.ones(height, width, 1, dtype=torch.float64)), dim=2).permute(2, 0, 1)[None]
    reference = F.grid_sample(inputs, grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    torch.testing.assert_close(warped, reference[:depth].permute(1, 2, 0).float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(coverage, reference[depth].float(), atol=1e-5, rtol=0)


def test_backward_warp_zero_and_integer_flow() -> None:
    source = torch.randn(10, 12, 3)
    warped, coverage = backward_warp(source, torch.zeros(10, 12, 2))
    assert torch.equal(warped, source) and torch.equal(coverage, torch.ones(10, 12))

    flow = torch.zeros(10, 12, 2)
    flow[..., 0] = 2  # sample two pixels to the right
    warped, coverage = backward_warp(source, flow)
    assert torch.equal(warped[:, :-2], source[:, 2:])
    assert torch.equal(warped[:, -2:], torch.zeros(10, 2, 3))
    assert torch.equal(coverage[:, :-2], torch.ones(10, 10)) and torch.equal(coverage[:, -2:], torch.zeros(10, 2))


def test_static_sequence_is_unchanged(astronaut: np.ndarray) -> None:
    frame = static_frame(astronaut)
    parsing = to_parsing(logit_field(64, 64))
    n = 5
    out = smooth_parsing_sequence([frame.clone() for _ in range(n)], [parsing.clone() for _ in range(n)], window_size=2)
    assert out.shape == (n, CHANNELS, 64, 64) and out.dtype == torch.float32
    torch.testing.assert_close(out, parsing.expand(n, -1, -1, -1), atol=1e-5, rtol=0)


def test_translation_is_compensated_by_the_flow(astronaut: np.ndarray) -> None:
    size, step, w = 80, 2, 5
    n = 2 * w + 1
    field = logit_field(512, 512)
    top, left = 60, 150
    frames = [to_frame(astronaut[top:top + size, left + step * t:left + step * t + size]) for t in range(n)]
    parsings = [to_parsing(field[top:top + size, left + step * t:left + step * t + size]) for t in range(n)]

    smoother = ParsingSmoother(window_size=w)
    outputs = [output for t in range(n) for output in smoother.push(frames[t], parsings[t])]
    middle, border = w, 16
    assert outputs[-1][0] == middle  # the middle frame is ready once its last neighbour is pushed
    smoothed = outputs[-1][1]

    inner = (slice(None), slice(border, -border), slice(border, -border))
    wt = torch.tensor(temporal_weights(w))
    naive = (torch.stack(parsings) * wt[:, None, None, None]).sum(0) / wt.sum()
    error = (smoothed - parsings[middle])[inner].abs().mean().item()
    naive_error = (naive - parsings[middle])[inner].abs().mean().item()
    scale = parsings[middle][inner].abs().mean().item()
    assert error < naive_error / 3
    assert error < 0.05 * scale


def test_flicker_is_reduced(astronaut: np.ndarray) -> None:
    frame = static_frame(astronaut)
    base = to_parsing(logit_field(64, 64))
    generator = torch.Generator().manual_seed(1)
    n = 16
    noisy = [base + torch.randn(base.shape, generator=generator) for _ in range(n)]

    out = smooth_parsing_sequence([frame.clone() for _ in range(n)], noisy, window_size=3)

    before = torch.stack(noisy).var(dim=0).mean().item()
    after = out.var(dim=0).mean().item()
    assert after < before / 3


@pytest.mark.parametrize("n", [6, 3, 2])
def test_padding_repeats_the_first_and_last_frames_in_order(astronaut: np.ndarray, n: int) -> None:
    # Identical frames give zero flow and unit photometric weights, so each output is the temporal
    # weighted mean of the window's parsing maps, and constant maps reveal which frames fill each slot.
    frame = static_frame(astronaut)
    w = 2
    parsings = [torch.full((CHANNELS, 64, 64), float(t)) for t in range(n)]
    out = smooth_parsing_sequence([frame.clone() for _ in range(n)], parsings, window_size=w)

    # The first w frames, the sequence, the last w frames (e.g. 0 1 | 0 1 2 3 4 5 | 4 5 for n = 6);
    # frame i sees padded positions i..i+2w.
    indices = list(range(n))
    padded = indices[:w] + indices + indices[-w:]
    wt = temporal_weights(w)
    for i in range(n):
        expected = sum(wk * padded[i + k] for k, wk in enumerate(wt)) / sum(wt)
        torch.testing.assert_close(out[i], torch.full_like(out[i], expected), atol=1e-5, rtol=0)


def test_streaming_order_count_latency_and_bounded_memory(astronaut: np.ndarray) -> None:
    w, n, size, step = 2, 7, 48, 1
    field = logit_field(128, 160)
    frames = [to_frame(astronaut[100:100 + size, 200 + step * t:200 + step * t + size]) for t in range(n)]
    parsings = [to_parsing(field[20:20 + size, 30 + step * t:30 + step * t + size]) for t in range(n)]
    smoother = ParsingSmoother(window_size=w)
    assert smoother.capacity == 2 * w + 1

    runs = []
    for _ in range(2):  # flush resets the smoother, which then takes a new sequence
        emitted = []
        for t in range(n):
            ready = smoother.push(frames[t], parsings[t])
            assert [index for index, _ in ready] == ([t - w] if t >= w else [])
            assert smoother.num_buffered <= smoother.capacity
            emitted.extend(ready)
        emitted.extend(smoother.flush())
        assert smoother.num_buffered == 0
        assert [index for index, _ in emitted] == list(range(n))
        assert all(m.shape == (CHANNELS, size, size) for _, m in emitted)
        runs.append(torch.stack([m for _, m in emitted]))
    assert torch.equal(runs[0], runs[1])


def test_short_sequences_are_handled(astronaut: np.ndarray) -> None:
    frame = static_frame(astronaut)
    parsing = to_parsing(logit_field(64, 64))
    smoother = ParsingSmoother(window_size=5)
    assert smoother.push(frame, parsing) == []
    ((index, smoothed),) = smoother.flush()
    assert index == 0
    torch.testing.assert_close(smoothed, parsing, atol=1e-5, rtol=0)
    assert smoother.flush() == []


def test_window_size_zero_returns_inputs(astronaut: np.ndarray) -> None:
    frame = static_frame(astronaut)
    smoother = ParsingSmoother(window_size=0)
    for t in range(3):
        parsing = to_parsing(logit_field(64, 64, seed=t))
        ((index, smoothed),) = smoother.push(frame, parsing)
        assert index == t and torch.equal(smoothed, parsing)
    assert smoother.flush() == []


def test_bad_inputs_raise() -> None:
    frame = torch.zeros(3, 32, 32)
    parsing = torch.zeros(CHANNELS, 32, 32)
    with pytest.raises(ValueError):
        ParsingSmoother().push(frame, torch.zeros(CHANNELS, 32, 30))
    with pytest.raises(ValueError):
        ParsingSmoother().push(frame[None], parsing)
    with pytest.raises(ValueError):
        ParsingSmoother().push(frame, parsing[0])
    with pytest.raises(ValueError):
        ParsingSmoother().push(torch.zeros(1, 32, 32), parsing)
    with pytest.raises(ValueError):
        ParsingSmoother().push(torch.zeros(3, 8, 8), torch.zeros(CHANNELS, 8, 8))
    smoother = ParsingSmoother()
    smoother.push(frame, parsing)
    with pytest.raises(ValueError):
        smoother.push(torch.zeros(3, 40, 32), torch.zeros(CHANNELS, 40, 32))
    with pytest.raises(TypeError):
        ParsingSmoother().push(torch.zeros(3, 32, 32, dtype=torch.uint8), parsing)
    with pytest.raises(ValueError):
        smooth_parsing_sequence([frame, frame], [parsing])
    with pytest.raises(ValueError):
        ParsingSmoother(window_size=-1)
    with pytest.raises(ValueError):
        ParsingSmoother(sigma_color=0)
    with pytest.raises(ValueError):
        ParsingSmoother(flow_preset="slow")
