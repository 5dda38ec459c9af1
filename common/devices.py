"""Devices and precisions: the one reading of ``--device``, ``--dtype`` and torchrun's process environment.

:func:`resolve_device` turns ``auto`` / ``cpu`` / ``cuda`` / ``cuda:1`` into a device (an unknown name or a CUDA
device on a machine without one is a one-line :class:`~common.errors.DeviceError`); under ``torchrun`` a bare
``cuda`` becomes the GPU of the process's ``LOCAL_RANK``. :func:`resolve_dtype` reads the precision names.
"""
from __future__ import annotations

import os

import torch

from common.errors import DeviceError, OptionError

__all__ = ["DTYPES", "local_rank", "resolve_device", "resolve_dtype", "world_size"]

#: Precision names accepted by ``--dtype`` and the Python API.
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def world_size() -> int:
    """Processes of this launch (``WORLD_SIZE`` set by torchrun; 1 for a plain run)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK`` set by torchrun; 0 for a plain run)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(device: str | torch.device | None = "auto", rank: int | None = None) -> torch.device:
    """``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda'``, ``'cuda:1'`` ... as a device.

    ``rank``: a bare ``cuda`` (or ``auto`` on a CUDA machine) becomes ``cuda:<rank>`` (torchrun's ``LOCAL_RANK``:
    one GPU per process); ``None`` keeps CUDA's current device.
    """
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {str(device)!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise DeviceError(f"device {str(device)!r} is not supported: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device} was requested but no CUDA device is available (use --device cpu)")
        if device.index is None and rank is not None:
            device = torch.device("cuda", rank)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu" and not getattr(torch, device.type).is_available():
        raise DeviceError(f"--device {device} was requested but it is not available (use --device cpu)")
    return device


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device | None = None) -> torch.dtype:
    """float32 by default; float16/bfloat16 on request (on CPU float16 is very slow, and bfloat16 is fast only
    with native bfloat16 arithmetic: see :mod:`pipeline.precision`). ``device`` is accepted for the old signature."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise OptionError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]
