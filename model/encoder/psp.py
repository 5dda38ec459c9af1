"""Load the pSp style encoder ``encoder.pt`` as a ready-to-use Z+ encoder.

``encoder.pt`` is a dict ``{'opts': <pSp training options>, 'state_dict': {...}, 'latent_avg': Tensor}``
whose ``encoder.*`` entries are a :class:`GradualStyleEncoder` (the ``decoder.*`` StyleGAN2 entries are
ignored). :func:`load_psp_standalone` returns it as a :class:`ZPlusEncoder` in eval mode, which adds
``latent_avg`` to every output, so ``encoder(x)`` for an aligned 256x256 face in [-1, 1] is a
``(B, 18, 512)`` **Z+** code (VToonify maps it to W+ with ``zplus2wplus``).
"""
from __future__ import annotations

import argparse
import math
import os
from collections import OrderedDict
from typing import Any, Mapping

import torch
from torch import Tensor

from model.checkpoint import CheckpointError, build_from_state_dict, safe_load

from .encoders.psp_encoders import GradualStyleEncoder

__all__ = ["ZPlusEncoder", "load_psp_standalone"]

_PREFIX = "encoder."


def _options(raw: Any, source: str) -> dict[str, Any]:
    """The checkpoint's ``opts`` as a fresh dict, with ``output_size`` defaulted and ``n_styles`` derived."""
    if isinstance(raw, argparse.Namespace):
        opts = dict(vars(raw))
    elif isinstance(raw, Mapping):
        opts = dict(raw)
    else:
        raise CheckpointError(f"{source}: 'opts' must be a dict or argparse.Namespace, got {type(raw).__name__}")
    if "input_nc" not in opts:
        raise CheckpointError(f"{source}: 'opts' has no 'input_nc' (number of input channels of the pSp encoder)")
    opts.setdefault("output_size", 1024)
    opts["n_styles"] = int(math.log2(opts["output_size"])) * 2 - 2
    return opts


class ZPlusEncoder(GradualStyleEncoder):
    """A :class:`GradualStyleEncoder` whose codes are offset by ``latent_avg``: ``forward(x)`` is a Z+ code.

    ``latent_avg`` (broadcastable to ``(B, n_styles, 512)``) is a non-persistent buffer: it follows
    ``.to()`` but ``state_dict()`` keeps exactly the encoder's keys (those of ``encoder.*`` in the file).
    """

    latent_avg: Tensor

    def __init__(self, latent_avg: Tensor, num_layers: int = 50, mode: str = "ir_se", opts: Any = None) -> None:
        super().__init__(num_layers, mode, opts)
        self.register_buffer("latent_avg", latent_avg, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + self.latent_avg


def load_psp_standalone(checkpoint_path: str | os.PathLike, device: str | torch.device = "cpu") -> ZPlusEncoder:
    """Load ``encoder.pt`` into a :class:`ZPlusEncoder` (a :class:`GradualStyleEncoder` that outputs Z+ codes).

    The encoder is loaded strictly (every ``encoder.*`` key must match), put in eval mode and moved to
    ``device``. ``latent_avg`` is kept as a non-persistent buffer (so it follows ``.to()`` but stays out
    of ``state_dict()``) and added to every output: ``encoder(x)`` has shape
    ``(B, n_styles, 512)`` with ``n_styles = 2 * log2(opts['output_size']) - 2`` (18 for 1024).

    Raises:
        CheckpointError: the file is unreadable, lacks ``'opts'``/``'state_dict'``/``'latent_avg'``, its
            opts lack ``input_nc``, ``latent_avg`` has an incompatible shape, or the weights do not match
            (:class:`~model.checkpoint.CheckpointMismatchError`, naming the keys).
    """
    source = os.fspath(checkpoint_path)
    ckpt = safe_load(checkpoint_path, map_location="cpu", mmap=True)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{source}: expected a dict checkpoint, got {type(ckpt).__name__}")
    missing = [k for k in ("opts", "state_dict", "latent_avg") if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{source}: not a pSp encoder checkpoint: missing {', '.join(repr(k) for k in missing)} "
            f"(top-level keys: {sorted(map(str, ckpt))[:10]})"
        )
    opts = _options(ckpt["opts"], source)
    state_dict = ckpt["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{source}: 'state_dict' must be a dict of tensors, got {type(state_dict).__name__}")
    latent_avg = ckpt["latent_avg"]
    if not isinstance(latent_avg, Tensor):
        raise CheckpointError(f"{source}: 'latent_avg' must be a tensor, got {type(latent_avg).__name__}")

    n_styles = opts["n_styles"]
    try:
        torch.broadcast_shapes(latent_avg.shape, (1, n_styles, 512))
    except RuntimeError:
        raise CheckpointError(
            f"{source}: 'latent_avg' of shape {tuple(latent_avg.shape)} cannot be added to codes of shape "
            f"(B, {n_styles}, 512)"
        ) from None

    enc_sd = OrderedDict((k[len(_PREFIX):], v) for k, v in state_dict.items() if k.startswith(_PREFIX))
    if not enc_sd:
        raise CheckpointError(f"{source}: 'state_dict' has no '{_PREFIX}*' entries (not a pSp checkpoint?)")

    # Built without random init and loaded by assignment: the file's tensors become the parameters (no copy).
    latent_avg = latent_avg.detach().to(torch.float32)
    encoder = build_from_state_dict(lambda: ZPlusEncoder(latent_avg, 50, "ir_se", opts), enc_sd, expected_kind="psp",
                                    source=f"{source} ['state_dict'] encoder.*")
    del ckpt, state_dict  # the decoder.* entries are not needed
    return encoder.eval().to(device)
