"""Export VToonify (both backbones) and the BiSeNet face parser to ONNX.

    python -m pipeline.engines.export checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt [--output FILE.onnx]
    python -m pipeline.engines.export checkpoint/faceparsing.pth

What a file holds (one file serves every exemplar and every degree; batch, height and width are dynamic):

* VToonify-D: inputs ``x`` (B, 22, H, W) float32 (RGB in [-1, 1] and the parsing logits / 16, H and W
  multiples of 8), ``style`` (B, 18, 512) W+ code, ``d_s`` (B,) style degree; output ``image`` (B, 3, 4H, 4W).
* VToonify-T: inputs ``x`` and ``style`` (the degree has no effect on VToonify-T); output ``image``.
* BiSeNet: input ``image`` (B, 3, H, W) (H, W multiples of 8), output ``logits`` (B, 19, H/8, W/8): the main
  head before resizing (:meth:`model.bisenet.model.BiSeNet.head_logits`); resize them with
  :func:`model.bisenet.model.resize_logits` (bilinear, ``align_corners=True``) as the pipeline does.

The weights are always written as external data (``FILE.onnx.data`` beside ``FILE.onnx``; the ONNX protobuf is
limited to 2 GB): keep the two files together. Both appear whole or not at all: the data file is moved into
place first, the model that names it last. The file records its provenance in its metadata
(``vtoonify.kind``, ``vtoonify.backbone``, ``vtoonify.checkpoint_sha256``, ``vtoonify.export_format``).

After the export the file is run on a sample input by ONNX Runtime or OpenVINO (float32) and the largest
absolute difference from the PyTorch model is printed (``--check none`` skips it). The exporter is PyTorch's
``torch.onnx.export(..., dynamo=True)`` (it needs ``onnx`` and ``onnxscript``, which the ``onnxruntime`` and
``openvino`` extras install); the TorchScript exporter cannot translate the model (``aten::linalg_vecdot``).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from common.atomic import atomic_output, sweep_stale, temporary_path
from common.errors import OptionError
from model.checkpoint import (
    CheckpointError,
    detect_checkpoint_kind,
    extract_state_dict,
    load_bisenet,
    load_vtoonify,
    safe_load,
)
from pipeline.engines.runtimes import EXTRAS, EngineNotInstalledError, import_runtime, open_runner

__all__ = ["EXPORT_FORMAT", "ExportResult", "checkpoint_kind", "export_onnx", "file_sha256", "main"]

#: Bumped whenever what an exported file holds changes (inputs, outputs, wrappers): part of the cache key.
EXPORT_FORMAT = 2  # 2: instance norms exported as one recognisable pattern (OpenVINO's MVN)

#: How far the exported file may be from the PyTorch model (largest absolute difference, relative to
#: max(1, largest |output|)) before the export is treated as broken (float32 runtimes stay near 1e-6).
CHECK_TOLERANCE = 1e-3

CHECK_CHOICES = ("auto", "onnxruntime", "openvino", "none")


class _DualStyleGANGraph(nn.Module):
    """VToonify-D with the degree as a (B,) tensor input."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, style: torch.Tensor, d_s: torch.Tensor) -> torch.Tensor:
        return self.model(x, style, d_s=d_s.reshape(-1, 1))


class _ToonifyGraph(_DualStyleGANGraph):
    """VToonify-T (no degree)."""

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.model(x, style)


class _ParserGraph(_DualStyleGANGraph):
    """BiSeNet's main head before resizing."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.head_logits(image)


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and how it checked: ``max_abs_diff`` is ``None`` without a check."""

    path: Path
    kind: str  # 'vtoonify_dualstylegan', 'vtoonify_toonify' or 'bisenet'
    seconds: float
    check_engine: str | None = None
    sample_shape: tuple[int, ...] | None = None
    max_abs_diff: float | None = None

    @property
    def data_path(self) -> Path:
        return data_path(self.path)

    def summary(self) -> str:
        text = f"exported {self.path} (+ {self.data_path.name}) in {self.seconds:.1f} s"
        if self.max_abs_diff is not None:
            text += (f"; max |diff| against torch on a {'x'.join(map(str, self.sample_shape))} sample "
                     f"({self.check_engine}, float32): {self.max_abs_diff:.3g}")
        return text


def data_path(onnx_path: str | os.PathLike) -> Path:
    """The external-data file of an exported ``.onnx`` file."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + ".data")


_HASHES: dict[tuple, str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's content (remembered per process while the file's path, mtime and size stay)."""
    from pipeline.faces import file_version

    version = file_version(path)
    if version not in _HASHES:
        import hashlib

        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASHES[version] = h.hexdigest()
    return _HASHES[version]


def checkpoint_kind(path: str | os.PathLike) -> str:
    """``'vtoonify_dualstylegan'``, ``'vtoonify_toonify'`` or ``'bisenet'``: what ``path`` holds (the weights are
    mapped, not read); any other file is a :class:`CheckpointError`."""
    sd, _ = extract_state_dict(safe_load(path, mmap=True), source=str(path))
    kind = detect_checkpoint_kind(sd)
    if kind not in ("vtoonify_dualstylegan", "vtoonify_toonify", "bisenet"):
        raise CheckpointError(f"{path}: cannot export this file: it is not a VToonify or BiSeNet checkpoint "
                              f"(its keys look like {kind!r})")
    return kind


def _graph(kind: str, ckpt: Path, backbone: str | None) -> tuple[nn.Module, dict]:
    """The module to export and its named example inputs (batch 2: a batch of 1 would be specialised)."""
    if kind == "bisenet":
        return _ParserGraph(load_bisenet(ckpt, mmap=True)), {"image": torch.zeros(2, 3, 64, 64)}
    model = load_vtoonify(ckpt, backbone=backbone, mmap=True)
    inputs = {"x": torch.zeros(2, model.encoder[0][0].in_channels, 64, 64),
              "style": torch.zeros(2, model.stylegan().n_latent, model.style_channels)}
    if model.backbone == "toonify":
        return _ToonifyGraph(model), inputs
    return _DualStyleGANGraph(model), {**inputs, "d_s": torch.full((2,), 0.5)}


def _dynamic_shapes(inputs: dict) -> dict:
    batch = torch.export.Dim("batch", min=1)
    shapes = {}
    for name, t in inputs.items():
        shapes[name] = {0: batch}
        if t.dim() == 4:  # images: height and width multiples of 8
            shapes[name].update({2: 8 * torch.export.Dim("height8", min=1), 3: 8 * torch.export.Dim("width8", min=1)})
    return shapes


def _sample(inputs: dict, size: int) -> dict[str, torch.Tensor]:
    """A deterministic batch-1 sample with ``size`` x ``size`` images for the check."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, t in inputs.items():
        shape = (1, t.shape[1], size, size) if t.dim() == 4 else (1, *t.shape[1:])
        out[name] = torch.rand(shape, generator=g) if name == "d_s" else torch.randn(shape, generator=g).clamp_(-3, 3)
    return out


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's progress lines, its warnings about torchvision and PyTorch's deprecation warnings are not
    the user's business."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [log.level for log in loggers]
    with warnings.catch_warnings(), open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        warnings.simplefilter("ignore")
        for log in loggers:
            log.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for log, level in zip(loggers, levels):
                log.setLevel(level)


def _require_exporter() -> None:
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            extras = " or ".join(f'".[{e}]"' for e in EXTRAS.values())
            raise EngineNotInstalledError(f"exporting to ONNX needs the Python package {module!r}, which is not installed; "
                                          f"install it with pip install -e {extras}") from None


def _pick_check_engine(check: str) -> str | None:
    if check not in CHECK_CHOICES:
        raise OptionError(f"check must be one of {', '.join(CHECK_CHOICES)}, got {check!r}")
    if check == "none":
        return None
    if check != "auto":
        import_runtime(check)
        return check
    for engine in EXTRAS:
        try:
            import_runtime(engine)
            return engine
        except EngineNotInstalledError:
            continue
    return None


def export_onnx(ckpt: str | os.PathLike, output: str | os.PathLike, *, backbone: str | None = None,
                check: str = "auto", check_size: int = 64) -> ExportResult:
    """Export the VToonify or BiSeNet checkpoint ``ckpt`` to ``output`` (+ ``output.data``), then check it.

    ``backbone`` checks a VToonify file's backbone (as ``load_vtoonify`` does). ``check``: ``'auto'`` (ONNX
    Runtime, else OpenVINO, else no check), ``'onnxruntime'``, ``'openvino'`` or ``'none'``; ``check_size``: the
    sample's height and width (a multiple of 8). A file further than :data:`CHECK_TOLERANCE` from the PyTorch
    model is removed and a ``RuntimeError`` raised (a bug of the exporter, not the user's).
    """
    ckpt, output = Path(ckpt), Path(output)
    if check_size < 8 or check_size % 8:
        raise OptionError(f"check_size must be a positive multiple of 8, got {check_size}")
    if output.suffix != ".onnx":
        raise OptionError(f"the output must be a .onnx file, got {output}")
    _require_exporter()
    check_engine = _pick_check_engine(check)
    t0 = time.perf_counter()
    kind = checkpoint_kind(ckpt)
    module, inputs = _graph(kind, ckpt, backbone)
    with _quiet_exporter():
        program = torch.onnx.export(module, tuple(inputs.values()), dynamo=True, dynamic_shapes=_dynamic_shapes(inputs),
                                    input_names=list(inputs), output_names=["logits" if kind == "bisenet" else "image"],
                                    optimize=True, verbose=False)
    program.model.metadata_props.update({
        "vtoonify.kind": "bisenet" if kind == "bisenet" else "vtoonify",
        "vtoonify.backbone": kind.removeprefix("vtoonify_") if kind != "bisenet" else "",
        "vtoonify.checkpoint_sha256": file_sha256(ckpt),
        "vtoonify.export_format": str(EXPORT_FORMAT),
    })
    output.parent.mkdir(parents=True, exist_ok=True)
    _save(program, output)
    result = ExportResult(output, kind, time.perf_counter() - t0)
    if check_engine is not None:
        sample = _sample(inputs, check_size)
        with torch.inference_mode():
            ref = module(*sample.values()).float().numpy()
        out = open_runner(output, check_engine)({k: v.numpy() for k, v in sample.items()})[0]
        result.check_engine, result.sample_shape = check_engine, tuple(next(iter(sample.values())).shape)
        result.max_abs_diff = float(np.abs(out - ref).max()) if out.shape == ref.shape else float("inf")
        if not result.max_abs_diff <= CHECK_TOLERANCE * max(1.0, float(np.abs(ref).max())):
            output.unlink(missing_ok=True)
            raise RuntimeError(f"the exported {output} does not match the PyTorch model: {result.summary()}")
    return result


def _save(program, output: Path) -> None:
    """Write ``output`` and its data file: the data moved into place first, the model that names it last, each by
    an atomic rename (a reader that finds ``output`` finds its data whole). The exporter writes both into a scratch
    folder ``.<output>.d.<pid>-<random>.partial.d``; one left by a killed process is removed by the next save."""
    scratch_of = output.with_name(output.name + ".d")
    sweep_stale(scratch_of)  # the scratch folders of exports killed mid-way (their processes gone)
    with atomic_output(output) as tmp:
        scratch = temporary_path(scratch_of)  # a private folder beside the target (same file system), named by pid
        scratch.mkdir()
        try:
            program.save(scratch / output.name, external_data=True)
            os.replace(scratch / data_path(output).name, data_path(output))
            os.replace(scratch / output.name, tmp)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.engines.export",
        description="Export a VToonify checkpoint (VToonify-D or -T) or the BiSeNet face parser (faceparsing.pth) to ONNX "
        "with dynamic batch, height and width, the weights in FILE.onnx.data beside it; then print the largest difference "
        "from PyTorch on a sample input.")
    parser.add_argument("checkpoint", type=Path, help="vtoonify_s*.pt / vtoonify_t*.pt / faceparsing.pth")
    parser.add_argument("--output", type=Path, help="the .onnx file to write (default: the checkpoint's name with .onnx)")
    parser.add_argument("--backbone", choices=("dualstylegan", "toonify"),
                        help="check that a VToonify checkpoint has this backbone (default: take the file's)")
    parser.add_argument("--check", choices=CHECK_CHOICES, default="auto",
                        help="runtime that runs the sample after the export (default: onnxruntime if installed, else "
                        "openvino, else none)")
    parser.add_argument("--check_size", type=int, default=64, help="the sample's height and width (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (also the future ``vtoonify export``); returns the exit status."""
    from pipeline.cli import run_cli

    args = _parser().parse_args(argv)
    output = args.output if args.output is not None else args.checkpoint.with_suffix(".onnx")
    return run_cli(lambda: export_onnx(args.checkpoint, output, backbone=args.backbone, check=args.check,
                                       check_size=args.check_size),
                   lambda result: print(result.summary()))


if __name__ == "__main__":
    sys.exit(main())
