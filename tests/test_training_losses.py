"""Known answers for the training losses, schedules, colour jitter and mixed-precision helpers (tiny tensors)."""
from __future__ import annotations

import argparse
import math
from contextlib import nullcontext

import pytest
import torch

from training import losses as L
from training.data import DEGREE_LEVELS, EDIT_ROWS, TEACHER_TRUNCATION, colour_jitter, colour_jitter_active, draw_degree_level
from training.loop import autocast_context, grad_scaler


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_adversarial_losses_known_answers():
    real, fake = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [-1.0]])
    expected_d = (softplus(0) + softplus(-1)) / 2 + (softplus(0) + softplus(-1)) / 2
    assert L.d_logistic_loss(real, fake).item() == pytest.approx(expected_d, rel=1e-6)
    # a confident, correct discriminator has a small loss; swapping real and fake makes it large
    high, low = torch.full((2, 1), 5.0), torch.full((2, 1), -5.0)
    assert L.d_logistic_loss(high, low).item() == pytest.approx(2 * softplus(-5), rel=1e-6)
    assert L.d_logistic_loss(low, high).item() == pytest.approx(2 * softplus(5), rel=1e-6)
    # the generator's non-saturating loss: mean softplus(-D(fake))
    expected_g = (softplus(0) + softplus(-2)) / 2
    assert L.g_nonsaturating_loss(torch.tensor([[0.0], [2.0]])).item() == pytest.approx(expected_g, rel=1e-6)


def test_reconstruction_and_feature_losses():
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 2.0)
    assert L.reconstruction_loss(a, b).item() == 4.0
    feat, skip = torch.zeros(1, 2, 2, 2), torch.ones(1, 3, 2, 2)
    assert L.feature_regression_loss(feat, skip, feat + 1, skip - 3).item() == 1.0 + 9.0


def test_perceptual_loss_pools_to_half_and_sums_over_the_batch():
    seen = []

    class Stub(torch.nn.Module):
        def forward(self, x, y):
            seen.append((tuple(x.shape), tuple(y.shape)))
            return torch.tensor([[1.0], [2.0]])

    fake = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert L.perceptual_loss(Stub(), fake, fake).item() == 3.0
    assert seen == [((2, 3, 4, 4), (2, 3, 4, 4))]


def test_mask_loss_caps_the_mean_mask_by_degree():
    assert L.mask_cap(0.0) == pytest.approx(1.0) and L.mask_cap(1.0) == pytest.approx(0.1)
    assert L.mask_cap(0.5) == pytest.approx(0.25 * 0.9 + 0.1)
    masks = [torch.full((1, 1, 4, 4), 0.5), torch.full((1, 1, 2, 2), 0.2), torch.zeros(1, 1, 8, 8)]
    assert L.mask_loss(masks, 1.0).item() == pytest.approx(0.4 + 0.1)  # cap 0.1
    assert L.mask_loss(masks, 0.5).item() == pytest.approx(0.5 - 0.325)  # cap 0.325: only the first mask is over
    assert L.mask_loss(masks, 0.0).item() == 0.0  # cap 1: nothing to penalise
    # the cap is on each mask's mean, not on its values
    half = torch.cat([torch.ones(1, 1, 2, 4), torch.zeros(1, 1, 2, 4)], dim=2)
    assert L.mask_loss([half], 0.5).item() == pytest.approx(0.5 - 0.325)


def test_temporal_schedule_window_and_loss():
    assert [L.temporal_ramp(i, 10) for i in (0, 5, 6, 8, 10)] == pytest.approx([0, 0, 0.2, 0.6, 1.0])
    offsets = set()
    for _ in range(300):
        window = L.temporal_window(64)
        rows, cols = window[2], window[3]
        assert rows.stop - rows.start == cols.stop - cols.start == 56
        offsets |= {rows.start, cols.start}
    assert offsets == set(range(9))  # every offset 0 .. size/8, nothing beyond
    ref = torch.zeros(1, 3, 4, 4)
    assert L.temporal_loss(ref, ref, 1.0).item() == 0.0
    assert L.temporal_loss(ref + 1, ref, 0.25).item() == 0.25


def test_named_constants():
    assert TEACHER_TRUNCATION == 0.5 and DEGREE_LEVELS == 5 and (EDIT_ROWS.start, EDIT_ROWS.stop) == (3, 7)
    draws = {draw_degree_level() for _ in range(400)}
    assert draws == {0.0, 0.2, 0.4, 0.6, 0.8, 1.0}
    assert draw_degree_level(torch.Generator().manual_seed(3)) == draw_degree_level(torch.Generator().manual_seed(3))


def test_colour_jitter_blends_only_the_colour_rows():
    wc, prev = torch.zeros(2, 18, 4), torch.ones(2, 18, 4)
    for i, expected in ((50, 0.0), (75, 0.5), (100, 1.0)):  # iters = 100: r = i / 50
        mixed = colour_jitter(wc, prev, i, 100)
        assert torch.equal(mixed[:, :7], wc[:, :7])  # structure kept
        assert torch.allclose(mixed[:, 7:], torch.full_like(mixed[:, 7:], expected))
    assert torch.equal(wc, torch.zeros(2, 18, 4))  # not modified in place


@pytest.mark.parametrize("fix_color,fix_style,idx,i,active", [
    (False, False, 1, 50, True), (False, False, 1, 49, False), (False, False, 0, 60, False),
    (True, False, 1, 60, False), (False, True, 1, 60, False),
])
def test_colour_jitter_runs_when_the_spec_says(fix_color, fix_style, idx, i, active):
    args = argparse.Namespace(iter=100, fix_color=fix_color, fix_style=fix_style)
    assert colour_jitter_active(args, idx, i) is active


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_amp_helpers():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for amp in ("none", "bf16", "fp16"):
        assert isinstance(autocast_context(amp, cpu), nullcontext)  # CPU training is full precision
        assert grad_scaler(amp, cpu) is None
    assert isinstance(autocast_context("none", cuda), nullcontext)
    assert autocast_context("bf16", cuda).fast_dtype == torch.bfloat16
    assert autocast_context("fp16", cuda).fast_dtype == torch.float16
    if torch.cuda.is_available():
        assert grad_scaler("fp16", cuda) is not None and grad_scaler("bf16", cuda) is None
