"""Choosing between the reference (pure PyTorch) and the CUDA implementation of a custom op.

Every op takes ``impl=None|'auto'|'ref'|'cuda'``. ``None`` reads the environment variable
``VTOONIFY_OPS`` (default ``'auto'``). ``'auto'`` uses the CUDA kernel for CUDA tensors when the
extension builds (a failed build warns once and falls back), and the reference path otherwise.
``'ref'`` always uses the reference path; ``'cuda'`` requires the kernel and fails loudly without it.

Inside ``torch.compile`` every op takes the reference path whatever ``impl`` says: the compiler cannot trace
into the extension (it would break the graph) and generates fused kernels from the reference ops itself.
"""
from __future__ import annotations

import os
from typing import Callable

import torch

IMPLS = ("auto", "ref", "cuda")
ENV_VAR = "VTOONIFY_OPS"


def requested_impl(impl: str | None) -> str:
    """The implementation asked for by the argument or, when it is None, by ``$VTOONIFY_OPS``."""
    value = impl if impl is not None else os.environ.get(ENV_VAR, "auto")
    value = value.strip().lower()
    if value not in IMPLS:
        source = "impl" if impl is not None else f"${ENV_VAR}"
        raise ValueError(f"{source} must be one of {IMPLS}, got {value!r}")
    return value


def use_cuda_kernel(x: torch.Tensor, impl: str | None, available: Callable[[], bool], op: str) -> bool:
    """Whether ``op`` should run its CUDA kernel on ``x``."""
    want = requested_impl(impl)
    if want == "ref" or torch.compiler.is_compiling():
        return False
    if want == "auto":
        return x.is_cuda and available()
    if not x.is_cuda:
        raise ValueError(f"{op}: impl='cuda' needs a CUDA tensor, got one on {x.device}")
    if not available():
        raise RuntimeError(
            f"{op}: impl='cuda' was requested but the CUDA extension is unavailable "
            f"(${ENV_VAR}=ref disables it; otherwise its build failed, see the warning above)"
        )
    return True
