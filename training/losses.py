"""The training losses, unweighted (``train_vtoonify.py``'s ``--*_loss`` flags weight them).

Stage 1: :func:`feature_regression_loss`. Stage 2: the non-saturating logistic GAN losses
(:func:`d_logistic_loss`, :func:`g_nonsaturating_loss`), the MSE reconstruction at the teacher size, LPIPS
at half of it (:func:`perceptual_loss`), the fusion-mask cap of VToonify-D (:func:`mask_loss`) and the
crop-consistency temporal loss (:func:`temporal_window`, :func:`temporal_ramp`, :func:`temporal_loss`).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["feature_regression_loss", "d_logistic_loss", "g_nonsaturating_loss", "reconstruction_loss", "perceptual_loss",
           "mask_cap", "mask_loss", "temporal_ramp", "temporal_window", "temporal_loss"]


def feature_regression_loss(feat: torch.Tensor, skip: torch.Tensor,
                            real_feat: torch.Tensor, real_skip: torch.Tensor) -> torch.Tensor:
    """Stage 1: ``MSE(feat) + MSE(skip)`` against the frozen generator's features (in float32)."""
    return F.mse_loss(feat.float(), real_feat.float()) + F.mse_loss(skip.float(), real_skip.float())


def d_logistic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """Discriminator: ``mean softplus(-real) + mean softplus(fake)``."""
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """Generator: ``mean softplus(-D(fake))``."""
    return F.softplus(-fake_pred).mean()


def reconstruction_loss(fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE at the teacher size."""
    return F.mse_loss(fake, target)


def perceptual_loss(lpips: nn.Module, fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """LPIPS of the two images average-pooled to half their size, summed over the batch."""
    half = fake.shape[-1] // 2
    return lpips(F.adaptive_avg_pool2d(fake, half), F.adaptive_avg_pool2d(target, half)).sum()


def mask_cap(d_s: float) -> float:
    """The largest mean fusion-mask value the mask loss lets through: ``(1 - d_s)^2 * 0.9 + 0.1``."""
    return (1 - d_s) ** 2 * 0.9 + 0.1


def mask_loss(masks: Sequence[torch.Tensor], d_s: float) -> torch.Tensor:
    """VToonify-D's fusion masks: ``sum_k relu(mean(m_k) - cap(d_s))`` (a lower cap for a higher degree)."""
    cap = mask_cap(d_s)
    return sum(F.relu(m.float().mean() - cap) for m in masks)


def temporal_ramp(idx: int, iters: int) -> float:
    """The temporal loss weight: 0 in the first half of training, then linear up to 1 at the end."""
    return max(idx / (iters / 2) - 1, 0.0)


def temporal_window(size: int) -> tuple[slice, ...]:
    """A random ``size - size//8`` square crop of a (B, C, size, size) tensor (offsets drawn from torch's RNG)."""
    crop = size - size // 8
    oy, ox = (int(v) for v in torch.randint(0, size // 8 + 1, (2,)))
    return (slice(None), slice(None), slice(oy, oy + crop), slice(ox, ox + crop))


def temporal_loss(shifted: torch.Tensor, reference: torch.Tensor, ramp: float) -> torch.Tensor:
    """``MSE(G(shifted crop input), crop of G(input)) * ramp``: the output must follow a sub-pixel shift."""
    return F.mse_loss(shifted, reference) * ramp
