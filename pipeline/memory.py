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

__all__ = ["BYTES_PER_PIXEL", "FIXED_BYTES", "MAX_MEMORY_ENV", "MemoryLimitError", "available_bytes", "check_memory",
           "estimate_bytes", "frames_batched", "largest_side", "width_scale"]

#: Working memory per input pixel of one frame in float32, with the released network sizes (VToonify
#: forward plus BiSeNet at 2x): the slope of the growth of the peak RSS of one CPU forward over the loaded
#: networks, measured at 128x128, 256x256 and 384x256 (VToonify-D: 252, 655 and 950 MiB, i.e. 8.9 kB per
#: pixel plus about 110 MiB; VToonify-T at 128x128 and 384x256: 158 and 731 MiB, 7.3 kB per pixel), rounded
#: up. Half precision halves the activations.
BYTES_PER_PIXEL = {"dualstylegan": 9_000, "toonify": 7_500}
#: Parameters of the released VToonify models. A model of other widths (the tests' tiny ones) scales the
#: per-pixel memory by ``sqrt(its parameters / these)``: activations grow with the channel width,
#: parameters with its square (:func:`width_scale`).
RELEASED_PARAMETERS = {"dualstylegan": 163_812_547, "toonify": 78_828_991}
#: The part that does not grow with the frame (allocator and library work buffers), rounded up.
FIXED_BYTES = 128 * 2**20
MAX_MEMORY_ENV = "VTOONIFY_MAX_MEMORY"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class MemoryLimitError(UserError, MemoryError):
    """The requested size needs more memory than the machine has; the message says how to make it fit."""


def width_scale(model: torch.nn.Module, backbone: str) -> float:
    """How much narrower ``model`` is than the released model of ``backbone`` (1 for the released size)."""
    params = sum(p.numel() for p in model.parameters())
    return min(1.0, math.sqrt(params / RELEASED_PARAMETERS.get(backbone, params or 1)))


def estimate_bytes(size: tuple[int, int], backbone: str, batch: int = 1, dtype: torch.dtype = torch.float32,
                   scale: float = 1.0) -> int:
    """Working memory (bytes) of stylising ``batch`` frames of ``size`` = (h, w), padded to multiples of 8,
    with a model ``scale`` times as wide as the released one (:func:`width_scale`)."""
    h, w = (-(-side // 8) * 8 for side in size)
    per_pixel = BYTES_PER_PIXEL.get(backbone, max(BYTES_PER_PIXEL.values())) * scale
    if dtype in (torch.float16, torch.bfloat16):
        per_pixel //= 2
    return int(FIXED_BYTES + batch * h * w * per_pixel)


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
                 dtype: torch.dtype = torch.float32, scale: float = 1.0) -> int:
    """The longest side to which ``size`` can be shrunk (keeping its aspect ratio) to fit in ``limit`` bytes."""
    h, w = size
    longest = max(h, w)

    def need(side: int) -> int:
        return estimate_bytes((max(1, h * side // longest), max(1, w * side // longest)), backbone, batch, dtype, scale)

    ratio = math.sqrt(max(limit - FIXED_BYTES, 0) / max(need(longest) - FIXED_BYTES, 1))
    side = max(8, int(longest * ratio) // 8 * 8)
    while side > 8 and need(side) > limit:
        side -= 8
    return side


def frames_batched(batch_size: int, frame_count: int | None) -> int:
    """The frames one forward pass really holds: ``batch_size``, or fewer when the video has fewer frames
    (``frame_count`` 0 or None: unknown, ``batch_size``)."""
    return max(1, min(batch_size, frame_count)) if frame_count else batch_size


def check_memory(size: tuple[int, int], backbone: str, batch: int = 1, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, scale: float = 1.0, *, scale_image: bool = False,
                 max_side: int | None = None) -> None:
    """Raise :class:`MemoryLimitError` if stylising ``batch`` frames of ``size`` = (h, w) would not fit. The message
    suggests only what is not given already (``scale_image``: the input is already cropped around the face;
    ``max_side``: the side already asked for)."""
    limit = available_bytes(device)
    if limit is None:
        return
    need = estimate_bytes(size, backbone, batch, dtype, scale)
    if need <= limit:
        return
    h, w = size
    gib = 2**30
    fit = largest_side(size, backbone, batch, limit, dtype, scale)
    fixes = [] if scale_image else ["use --scale_image to crop around the face"]
    fixes.append(f"--max_side {fit} to shrink the input" if max_side is None else f"lower --max_side to {fit}")
    if batch > 1:
        fixes.append(f"a --batch_size under {batch}")
    raise MemoryLimitError(
        f"a {w}x{h} input needs about {need / gib:.1f} GiB to stylise{f' ({batch} frames per batch)' if batch > 1 else ''}"
        f" (its result is {4 * w}x{4 * h}), but {limit / gib:.1f} GiB are available; "
        + ", or ".join(fixes))
