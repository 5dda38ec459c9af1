"""How much memory stylising a frame takes, checked before any work so that a large input cannot run the
machine out of memory.

VToonify works at the full input size and returns a 4x larger picture, so its working memory grows with
the number of input pixels: :func:`estimate_bytes` is ``batch * pixels * bytes-per-pixel`` (the padded
frame, see :data:`BYTES_PER_PIXEL`) on top of the loaded networks. :func:`check_memory` compares it with
what the device has free (``MemAvailable`` of ``/proc/meminfo`` on the CPU, ``torch.cuda.mem_get_info`` on
a GPU), or with ``VTOONIFY_MAX_MEMORY`` when set (bytes, or with a K/M/G/T suffix), and refuses with a
:class:`MemoryLimitError` that states the estimate and the fix: ``--scale_image`` (crop around the face)
or ``--max_side N`` (the longest side that fits).
"""
from __future__ import annotations

import math
import os

import torch

from model.errors import UserError

__all__ = ["BYTES_PER_PIXEL", "MAX_MEMORY_ENV", "MemoryLimitError", "available_bytes", "check_memory",
           "estimate_bytes", "largest_side"]

#: Working memory per input pixel of one frame in float32, with the released network sizes (VToonify
#: forward plus BiSeNet at 2x), measured as the growth of the peak RSS of one forward on CPU at 256x256 and
#: 512x384 (the per-pixel part; the rest is the loaded networks, which are already in memory when the
#: check runs). Half precision halves the activations.
BYTES_PER_PIXEL = {"dualstylegan": 16_000, "toonify": 16_000}
MAX_MEMORY_ENV = "VTOONIFY_MAX_MEMORY"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class MemoryLimitError(UserError, MemoryError):
    """The requested size needs more memory than the machine has; the message says how to make it fit."""


def estimate_bytes(size: tuple[int, int], backbone: str, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
    """Working memory (bytes) of stylising ``batch`` frames of ``size`` = (h, w), padded to multiples of 8."""
    h, w = (-(-side // 8) * 8 for side in size)
    per_pixel = BYTES_PER_PIXEL.get(backbone, max(BYTES_PER_PIXEL.values()))
    if dtype in (torch.float16, torch.bfloat16):
        per_pixel //= 2
    return batch * h * w * per_pixel


def _parse_bytes(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1] if text and text[-1] in _UNITS else ""
    try:
        return int(float(text[: len(text) - len(unit)]) * _UNITS[unit])
    except ValueError:
        raise UserError(f"{MAX_MEMORY_ENV}={text!r}: give a number of bytes, e.g. 8G or 500M") from None


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory the stylisation may use: ``VTOONIFY_MAX_MEMORY`` if set, else what the device has free."""
    if os.environ.get(MAX_MEMORY_ENV):
        return _parse_bytes(os.environ[MAX_MEMORY_ENV])
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None  # unknown (not Linux): no check


def largest_side(size: tuple[int, int], backbone: str, batch: int, limit: int,
                 dtype: torch.dtype = torch.float32) -> int:
    """The longest side to which ``size`` can be shrunk (keeping its aspect ratio) to fit in ``limit`` bytes."""
    h, w = size
    side = max(h, w)
    scale = math.sqrt(limit / max(estimate_bytes(size, backbone, batch, dtype), 1))
    side = max(8, int(side * scale) // 8 * 8)
    while side > 8 and estimate_bytes((max(1, h * side // max(h, w)), max(1, w * side // max(h, w))), backbone,
                                      batch, dtype) > limit:
        side -= 8
    return side


def check_memory(size: tuple[int, int], backbone: str, batch: int = 1, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
    """Raise :class:`MemoryLimitError` if stylising ``batch`` frames of ``size`` = (h, w) would not fit."""
    limit = available_bytes(device)
    if limit is None:
        return
    need = estimate_bytes(size, backbone, batch, dtype)
    if need <= limit:
        return
    h, w = size
    gib = 2**30
    fit = largest_side(size, backbone, batch, limit, dtype)
    raise MemoryLimitError(
        f"a {w}x{h} input needs about {need / gib:.1f} GiB to stylise{f' ({batch} frames per batch)' if batch > 1 else ''}"
        f" (its result is {4 * w}x{4 * h}), but {limit / gib:.1f} GiB are available; use --scale_image to crop "
        f"around the face, or --max_side {fit} to shrink the input" + (", or a smaller --batch_size" if batch > 1 else ""))
