"""The valid range of every numeric option, in one place for the command line, the Python API and the demo.

:data:`RANGES` maps an option name to its :class:`Range`. The command-line tools parse with
:meth:`Range.parser` (an out-of-range value is a usage error that states the range), the pipeline checks
its arguments with :func:`check` (an :class:`~common.errors.OptionError` that states the range), and
the demo's sliders take their limits from the same table.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common.errors import OptionError

__all__ = ["COMPILE_MODES", "ENGINES", "ENGINE_HELP", "FACE_MODES", "RANGES", "Range", "add_engine_argument", "check",
           "check_all", "ranged"]


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (``low < value`` with ``low_open``; either bound may be ``None``: unbounded);
    ``integer`` values are whole numbers. NaN and infinities lie in no range."""

    low: float | None
    high: float | None
    integer: bool
    what: str = ""
    low_open: bool = False

    def describe(self) -> str:
        low, high = (None if v is None else (str(int(v)) if self.integer else f"{v:g}") for v in (self.low, self.high))
        if low is not None and high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}]"
        if low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"<= {high}"

    def contains(self, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and value != int(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return above and (self.high is None or value <= self.high)

    def message(self, name: str | None, value: object) -> str:
        """``<name> must be <range> (<what>), got <value>`` (without the name for argparse, which adds it)."""
        kind = "an integer " if self.integer else ""
        text = f"must be {kind}{self.describe()}{f' ({self.what})' if self.what else ''}, got {value}"
        return f"{name} {text}" if name else text

    def parser(self, flag: str) -> Callable[[str], float | int]:
        """An argparse ``type=`` for ``flag``: the number, or a usage error (``argument <flag>: must be ...``)."""
        def parse(text: str) -> float | int:
            try:
                value = int(text) if self.integer else float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(self.message(None, repr(text))) from None
            if not self.contains(value):
                raise argparse.ArgumentTypeError(self.message(None, text))
            return value

        parse.__name__ = "integer" if self.integer else "number"
        parse.range = self  # type: ignore[attr-defined]  # tests/test_options.py: every numeric flag is ranged here
        return parse


#: Every numeric option of every entry point (style_transfer.py, evaluate.py, figures.py, smooth_parsing_map.py,
#: app.py, ``python -m pipeline.exstyle``, ``python -m hub.download``), the pipeline and the demo, and of the
#: training scripts (train_vtoonify.py, train_style.py; an option of another name takes the entry of its kind,
#: e.g. ``--distill_iter`` that of ``iter``, every ``--*_loss`` that of ``loss_weight``).
RANGES: dict[str, Range] = {
    "style_id": Range(0, None, True, "an exemplar of the model's style file"),
    "style_degree": Range(0.0, 1.0, False, "0: the face as it is, 1: the full style"),
    "padding": Range(0, 10_000, True, "pixels around the eye centre, after rescaling"),
    "batch_size": Range(1, 1024, True, "frames per forward pass"),
    "smooth_parsing": Range(0, 64, True, "half window in frames; 0 = off"),
    "max_side": Range(8, 100_000, True, "pixels"),
    "window_size": Range(0, 64, True, "half window in frames"),
    "max_faces": Range(1, 64, True, "faces stylised per frame, the largest first"),
    "style_refine": Range(0, 10_000, True, "optimisation steps; 0 = the pSp code only"),
    # evaluate.py
    "max_frames": Range(1, None, True, "frames"),
    "baseline_size": Range(64, 4096, True, "pixels"),
    "static_threshold": Range(0.0, 1.0, False, "grey change of a static pixel"),
    # figures.py
    "panel": Range(16, 4096, True, "pixels"),
    "columns": Range(1, 64, True, "panels per row"),
    "steps": Range(2, 64, True, "colour interpolation steps"),
    "start": Range(0, None, True, "frame number"),
    "stride": Range(1, 100_000, True, "every n-th frame"),
    "frames": Range(1, 10_000, True, "frames"),
    "strip_frames": Range(1, 64, True, "frames"),
    # app.py
    "port": Range(1, 65_535, True, "TCP port"),
    "max_video_seconds": Range(0.0, 86_400.0, False, "seconds; 0 = no limit"),
    "max_video_frames": Range(1, None, True, "frames"),
    "max_loaded_models": Range(1, 64, True, "models in memory"),
    # training
    "iter": Range(1, None, True, "training iterations"),
    "batch": Range(1, 1024, True, "samples per process and step"),
    "lr": Range(0.0, None, False, "the optimiser's learning rate", low_open=True),
    "loss_weight": Range(0.0, None, False, "the weight of that loss; 0 = off"),
    "weight": Range(0.0, 1.0, False, "per W+ row, 0: the FFHQ generator, 1: the fine-tuned one"),
    "seed": Range(0, 2**32 - 1, True, "random seed"),
    "start_iter": Range(0, None, True, "shifts the schedules"),
    "save_every": Range(1, None, True, "iterations between model saves"),
    "save_begin": Range(0, None, True, "the first iteration that saves a model"),
    "log_every": Range(1, None, True, "iterations between sample grids"),
    "state_every": Range(1, None, True, "iterations between training-state saves"),
    "stop_at": Range(1, None, True, "iteration to stop at"),
    "local_rank": Range(0, None, True, "ignored: the rank comes from LOCAL_RANK"),
    "strength": Range(0.0, 1.0, False, "0: the references' codes, 1: random codes on the swapped rows"),
    "freeze_d": Range(0, None, True, "discriminator blocks kept frozen"),
    "r1": Range(0.0, None, False, "R1 weight; 0 = off"),
    "sample_every": Range(0, None, True, "steps between sample sheets; 0 = only at the end"),
    "output_scale": Range(1, 4, False, "size of the pasted-back output, times the input's"),
}

#: The values of ``--compile`` (``torch.compile`` modes of the VToonify forward).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: The values of ``--engine`` (:mod:`pipeline.engines`; ``tensorrt`` is ONNX Runtime's TensorRT provider, CUDA only).
ENGINES = ("torch", "onnxruntime", "openvino", "tensorrt")
#: The help of ``--engine``, the same in every tool that takes it (:func:`add_engine_argument`).
ENGINE_HELP = ("what runs VToonify and the face parser: torch, or onnxruntime (CPU; CUDA with onnxruntime-gpu) / openvino "
               "(CPU) / tensorrt (CUDA: ONNX Runtime's TensorRT provider, float16 with --dtype float16), exported to ONNX on "
               "first use into ~/.cache/vtoonify/engines ($VTOONIFY_CACHE); with --dtype bfloat16, openvino computes in "
               "bfloat16. Install an engine with pip install -e \".[openvino]\" (or .[onnxruntime], on a GPU .[gpu] or "
               ".[tensorrt]) (default: %(default)s)")
#: The values of ``--faces``.
FACE_MODES = ("largest", "all")


def ranged(name: str, flag: str | None = None) -> Callable[[str], float | int]:
    """The argparse ``type=`` of option ``name`` (``flag`` defaults to ``--<name>``), from :data:`RANGES`."""
    return RANGES[name].parser(flag or f"--{name}")


def add_engine_argument(parser: argparse.ArgumentParser) -> argparse.Action:
    """Declare ``--engine`` (one of :data:`ENGINES`, default ``torch``; an unknown name is a usage error that lists
    them) on ``parser``: style_transfer.py, app.py, figures.py and evaluate.py take it alike."""
    return parser.add_argument("--engine", type=str, default="torch", choices=ENGINES, help=ENGINE_HELP)


def check(name: str, value: object, flag: str | None = None) -> object:
    """``value`` if it lies in ``RANGES[name]``, else an :class:`OptionError` naming ``flag`` (default ``name``)."""
    if not RANGES[name].contains(value):  # type: ignore[arg-type]
        raise OptionError(RANGES[name].message(flag or name, value))
    return value


def check_all(name: str, values: Sequence[object], flag: str | None = None) -> Sequence[object]:
    """:func:`check` for each of ``values`` (e.g. the four paddings)."""
    for value in values:
        check(name, value, flag)
    return values
