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

__all__ = ["COMPILE_MODES", "FACE_MODES", "RANGES", "Range", "check", "check_all"]


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (either bound may be ``None``: unbounded); ``integer`` values are whole numbers."""

    low: float | None
    high: float | None
    integer: bool
    what: str = ""

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f">= {self.low:g}"
        return f"<= {self.high:g}"

    def contains(self, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.integer and value != int(value):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

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
        return parse


#: Every numeric option of style_transfer.py, the pipeline and the demo.
RANGES: dict[str, Range] = {
    "style_id": Range(0, None, True, "an exemplar of the model's style file"),
    "style_degree": Range(0.0, 1.0, False, "0: the face as it is, 1: the full style"),
    "padding": Range(0, 10_000, True, "pixels around the eye centre, after rescaling"),
    "batch_size": Range(1, 1024, True, "frames per forward pass"),
    "smooth_parsing": Range(0, 64, True, "half window in frames; 0 = off"),
    "max_side": Range(8, 100_000, True, "pixels"),
    "window_size": Range(0, 64, True, "half window in frames"),
    "max_faces": Range(1, 64, True, "faces stylised per frame, the largest first"),
    "output_scale": Range(1, 4, False, "size of the pasted-back output, times the input's"),
}

#: The values of ``--compile`` (``torch.compile`` modes of the VToonify forward).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: The values of ``--faces``.
FACE_MODES = ("largest", "all")


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
