"""Deterministic "fill rule" weights for tests and benchmarks.

The released checkpoints are not redistributable, so tests and benchmarks use weights that are a pure
function of each state_dict key (see ``tests/data/golden/README.md``)::

    g = torch.Generator().manual_seed(zlib.crc32(key.encode('utf-8')))
    t = torch.randn(*shape, generator=g)            # float32
    t = t.abs() if mode == 'absnormal' else t       # BatchNorm running_var
    value = mean + std * t

Rows whose mode is ``keep`` (blur/upsample kernels, ``num_batches_tracked``) are left as constructed.
The golden reference tensors were computed with the original implementation filled by the same rule,
so a model filled here must reproduce them.

A fill table is a TSV with the columns ``key, shape, mode, mean, std``. When no table is given,
:func:`default_fill_table` derives one from the module's own initialisation: good enough for smoke
tests and benchmarks, whose cost does not depend on the values.
"""
from __future__ import annotations

import ast
import csv
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

__all__ = ["FillRow", "read_fill_table", "default_fill_table", "fill_tensor", "fill_module", "write_fill_style_encoder",
           "write_fill_face_parser"]


@dataclass(frozen=True)
class FillRow:
    key: str
    shape: tuple
    mode: str  # 'normal' | 'absnormal' | 'keep'
    mean: float
    std: float


def read_fill_table(path: str | Path) -> list[FillRow]:
    """Read a ``fill_<model>.tsv`` table."""
    rows = []
    with open(path, newline="") as f:
        for rec in csv.DictReader(f, delimiter="\t"):
            shape = tuple(ast.literal_eval(rec["shape"]))
            rows.append(FillRow(rec["key"], shape, rec["mode"], float(rec["mean"]), float(rec["std"])))
    return rows


def fill_tensor(key: str, shape: Sequence[int], mode: str, mean: float, std: float) -> torch.Tensor:
    """The float32 tensor that the fill rule assigns to ``key``."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    t = torch.randn(*shape, generator=g, dtype=torch.float32)
    if mode == "absnormal":
        t = t.abs()
    elif mode != "normal":
        raise ValueError(f"unknown fill mode {mode!r} for {key}")
    return mean + std * t


def default_fill_table(module: nn.Module) -> list[FillRow]:
    """A fill table that mimics ``module``'s own initialisation (used when no reference table exists).

    Each tensor gets the mean and standard deviation it has as constructed, so equalised-learning-rate
    weights (stored as N(0, 1)) and plain PyTorch layers both get realistic magnitudes; constant tensors
    (biases, ...) get std 0.1 so they are not constant; BatchNorm variances stay positive. Build the
    module normally (not on the ``meta`` device) before calling this.
    """
    rows = []
    for key, t in module.state_dict().items():
        shape = tuple(t.shape)
        leaf = key.rsplit(".", 1)[-1]
        if not t.is_floating_point() or leaf == "kernel":
            rows.append(FillRow(key, shape, "keep", 0.0, 0.0))
        elif leaf == "running_var":
            rows.append(FillRow(key, shape, "absnormal", 1.0, 0.1))
        else:
            mean = float(t.float().mean()) if t.numel() else 0.0
            std = float(t.float().std()) if t.numel() > 1 else 0.0
            rows.append(FillRow(key, shape, "normal", round(mean, 4), round(std, 4) if std > 1e-6 else 0.1))
    return rows


@torch.no_grad()
def fill_module(module: nn.Module, table: str | Path | Iterable[FillRow] | None = None, *, prefix: str = "") -> nn.Module:
    """Fill ``module``'s state in place from a fill table and return it.

    ``table`` is a path to a TSV, an iterable of :class:`FillRow`, or None for :func:`default_fill_table`.
    ``prefix`` is prepended to the module's own keys when looking rows up (e.g. ``'encoder.'``).
    Every key of the module must have a row and every row a key; a mismatch raises ``KeyError``.
    """
    if table is None:
        rows = default_fill_table(module)
    elif isinstance(table, (str, Path)):
        rows = read_fill_table(table)
    else:
        rows = list(table)
    by_key = {r.key: r for r in rows}
    state = module.state_dict()
    want = {prefix + k for k in state}
    missing, unexpected = sorted(want - by_key.keys()), sorted(by_key.keys() - want)
    if missing or unexpected:
        raise KeyError(f"fill table does not match the module: missing rows {missing[:5]}, unexpected rows {unexpected[:5]}")
    for k, t in state.items():
        r = by_key[prefix + k]
        if tuple(t.shape) != tuple(r.shape):
            raise ValueError(f"{k}: module shape {tuple(t.shape)} != table shape {r.shape}")
        if r.mode == "keep":
            continue
        t.copy_(fill_tensor(r.key, r.shape, r.mode, r.mean, r.std))
    return module


def write_fill_style_encoder(path: str | Path, table: str | Path | Iterable[FillRow]) -> Path:
    """Write a released-size pSp ``encoder.pt`` (``opts``, ``state_dict`` with ``encoder.*`` keys, zero
    ``latent_avg``) filled from ``table`` (rows keyed without the ``encoder.`` prefix)."""
    from model.encoder.encoders.psp_encoders import GradualStyleEncoder

    with torch.device("meta"):  # no random initialisation of ~267M parameters only to overwrite them
        encoder = GradualStyleEncoder(50, "ir_se")
    encoder = fill_module(encoder.to_empty(device="cpu"), table)
    torch.save({"opts": {"input_nc": 3, "output_size": 1024}, "latent_avg": torch.zeros(18, 512),
                "state_dict": {"encoder." + k: v for k, v in encoder.state_dict().items()}}, path)
    return Path(path)


def write_fill_face_parser(path: str | Path, table: str | Path | Iterable[FillRow]) -> Path:
    """Write a BiSeNet ``faceparsing.pth`` (a plain state_dict, 19 classes) filled from ``table``."""
    from model.bisenet.model import BiSeNet

    torch.save(fill_module(BiSeNet(19), table).state_dict(), path)
    return Path(path)
