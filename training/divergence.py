"""Stopping a diverged run before anything is written from it.

A learning rate too large for the model turns the losses NaN or infinite within a few steps, and the weights
after them; a run that went on would spend the rest of its time on NaN and save models of NaN. The training
loops (:class:`training.loop.Trainer`, :class:`training.teacher.TeacherTrainer`) instead

* check every step's losses: they already bring them to the host every step (the losses CSV and the progress
  bar), averaged over the ``torchrun`` processes, so every process sees the same numbers and all stop at the
  same step, with no extra synchronisation and no collective of their own;
* check every tensor of a model or a training state before it is written (:meth:`FiniteCheck.ensure`): one
  host read per device, and under ``torchrun`` one all-reduce of the flag, so that every process stops there
  together (rank 0 writes, but the others must not go on and wait for it forever);

and stop with :class:`TrainingDiverged`, a user error the command lines print as one line naming the
iteration and the last good training state (``--resume`` continues from it).
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from model.errors import UserError

__all__ = ["TrainingDiverged", "FiniteCheck", "is_finite", "nonfinite"]


class TrainingDiverged(UserError, RuntimeError):
    """A loss or a weight became NaN or infinite; nothing from that step on was written."""


def nonfinite(values: Mapping[str, float]) -> list[str]:
    """``name=value`` of the values that are NaN or infinite (empty when all are finite)."""
    return [f"{k}={v}" for k, v in values.items() if v is not None and not math.isfinite(v)]


def _leaves(obj: Any) -> Iterator[Any]:
    if isinstance(obj, Mapping):
        for v in obj.values():
            yield from _leaves(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _leaves(v)
    else:
        yield obj


def is_finite(obj: Any) -> bool:
    """Whether every floating-point tensor and float in ``obj`` (a tensor, a ``state_dict``, nested dicts and
    lists of them, such as a training state) is finite: one host read per device the tensors are on."""
    flags: dict[torch.device, list[torch.Tensor]] = defaultdict(list)
    for leaf in _leaves(obj):
        if isinstance(leaf, torch.Tensor):
            if leaf.is_floating_point() or leaf.is_complex():
                flags[leaf.device].append(torch.isfinite(leaf).all())
        elif isinstance(leaf, float) and not math.isfinite(leaf):
            return False
    return all(bool(torch.stack(f).all()) for f in flags.values())


class FiniteCheck:
    """The checks of one training loop on the process of ``env`` (a :class:`training.dist.Dist`).

    ``unit`` names the loop's steps in messages (``iteration``, ``step``); :attr:`last_state` is
    ``(path, steps done)`` of the last training state written or loaded, named as the one to resume from.
    """

    def __init__(self, env, unit: str = "iteration"):
        self.env, self.unit = env, unit
        self.last_state: tuple[Path, int] | None = None

    def _count(self, n: int) -> str:
        return f"{n} {self.unit}{'' if n == 1 else 's'}"

    def error(self, when: str, what: str) -> TrainingDiverged:
        if self.last_state is None:
            good = "no training state had been saved yet"
        else:
            path, done = self.last_state
            good = f"last good state: {path} (after {self._count(done)}; --resume continues from it)"
        return TrainingDiverged(f"training diverged {when}: {what}; nothing from it was written; {good}")

    def losses(self, values: Mapping[str, float], at: int) -> None:
        """Raise if a loss of step ``at`` (host floats, the same on every process) is not finite."""
        bad = nonfinite(values)
        if bad:
            raise self.error(f"at {self.unit} {at}", "non-finite loss " + ", ".join(bad))

    def ensure(self, obj: Any, what: str, done: int) -> None:
        """Raise on every process if ``obj`` (about to be written after ``done`` steps) holds a non-finite value
        on any process."""
        bad = 0.0 if is_finite(obj) else 1.0
        if self.env.sum([bad])[0] > 0:
            raise self.error(f"after {self._count(done)}", f"non-finite weights in {what}")
