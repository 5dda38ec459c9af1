"""What a training run writes: released-format models and the resumable training state.

* :func:`save_model` writes ``checkpoint/<name>/<released name>``: ``{'g_ema': encoder state_dict}`` for
  stage 1, ``{'g_ema': VToonify state_dict, 'config': VToonify constructor arguments}`` for stage 2
  (``model.checkpoint.load_vtoonify`` builds the model from ``config`` when it is present).
* :func:`write_state` / :func:`read_state` write and read the resumable training state that
  :meth:`Trainer.state_dict() <training.loop.Trainer.state_dict>` builds and
  :meth:`~training.loop.Trainer.load_state_dict` consumes: everything a killed run needs to continue bit
  for bit, plus the settings that shape the run (:data:`RUN_FLAGS`). Reading checks that the state fits
  the run (:func:`check_compatible`): another stage, backbone, number of processes or other settings are
  refused with a one-line error, and so is a state with non-finite weights (a diverged run).

Every file goes through :func:`common.atomic.atomic_output`: it appears whole, or not at all.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from common.atomic import atomic_output
from hub.download import d_checkpoint_name
from model.checkpoint import safe_load
from training.divergence import is_finite
from training.setup import TrainingSetupError

if TYPE_CHECKING:
    from training.loop import Trainer

__all__ = ["RUN_FLAGS", "checkpoint_name", "run_dir", "state_path", "atomic_save", "copy_file", "save_model",
           "run_settings", "stage", "check_compatible", "write_state", "read_state", "truncate_losses"]

#: The flags that shape a run's models and data stream; a resumed run must use the same values.
RUN_FLAGS = ("backbone", "pretrain", "iter", "batch", "lr", "start_iter", "seed", "amp", "adv_loss", "grec_loss",
             "perc_loss", "tmp_loss", "msk_loss", "fix_degree", "fix_style", "fix_color", "style_id", "style_degree", "weight")

def checkpoint_name(args: argparse.Namespace, iteration: int | None = None) -> str:
    """Released naming: ``vtoonify_s[XXX]_d[Y.Y][_c].pt`` (D), ``vtoonify.pt`` (T), ``pretrain.pt``;
    ``_%05d`` (``-%05d`` for ``pretrain``) before ``.pt`` for an intermediate save at ``iteration``."""
    if args.pretrain:
        return "pretrain.pt" if iteration is None else f"pretrain-{iteration:05d}.pt"
    if args.backbone == "dualstylegan":
        name = d_checkpoint_name(args.style_id if args.fix_style else None,
                                 args.style_degree if args.fix_degree else None, color_transfer=not args.fix_color)
    else:
        name = "vtoonify.pt"
    return name if iteration is None else f"{name[:-len('.pt')]}_{iteration:05d}.pt"


def run_dir(args: argparse.Namespace) -> Path:
    return Path(args.checkpoint_dir) / args.name


def state_path(args: argparse.Namespace) -> Path:
    """``checkpoint/<name>/pretrain_state.pt`` (stage 1) or ``train_state.pt`` (stage 2)."""
    return run_dir(args) / ("pretrain_state.pt" if args.pretrain else "train_state.pt")


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` that leaves either the previous file or the complete new one."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def copy_file(src: str | Path, dst: Path) -> None:
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)


def save_model(trainer: "Trainer", iteration: int | None) -> Path:
    """The EMA model in the released format, named as the released files (``_%05d`` for ``iteration``)."""
    args = trainer.args
    path = run_dir(args) / checkpoint_name(args, iteration)
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.pretrain:
        atomic_save({"g_ema": trainer.g_ema.encoder.state_dict()}, path)
    else:
        atomic_save({"g_ema": trainer.g_ema.state_dict(), "config": dict(trainer.config)}, path)
    return path


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in RUN_FLAGS}


def stage(args: argparse.Namespace) -> str:
    """``pretrain`` (stage 1) or ``main`` (stage 2), as training states record it."""
    return "pretrain" if args.pretrain else "main"


def write_state(state: dict[str, Any], args: argparse.Namespace) -> Path:
    """Write a :meth:`Trainer.state_dict() <training.loop.Trainer.state_dict>` to :func:`state_path` (atomic)."""
    path = state_path(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(state, path)
    return path


def _flag(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"--{key} {'on' if value else 'off'}"
    if isinstance(value, list):
        return f"--{key} {' '.join(map(str, value))}"
    return f"--{key} {value}"


def check_compatible(state: dict, args: argparse.Namespace, world: int, path: Path) -> None:
    """Refuse (one line) a state of another stage or backbone, world size or run settings."""
    expected = stage(args)
    if state.get("stage") != expected or state.get("backbone") != args.backbone:
        raise TrainingSetupError(f"{path} is a {state.get('backbone')} {state.get('stage')} state, "
                                 f"not {args.backbone} {expected}")
    if state["world_size"] != world:
        raise TrainingSetupError(f"{path} was saved by {state['world_size']} processes; resume with the same number")
    saved = state.get("settings")
    if saved is None:  # written before the settings were recorded
        return
    now = run_settings(args)
    differ = [k for k in RUN_FLAGS if k in saved and saved[k] != now[k]]
    if differ:
        what = ", ".join(f"{_flag(k, saved[k])} (now {_flag(k, now[k]).split(' ', 1)[1]})" for k in differ)
        raise TrainingSetupError(f"{path} was saved by a run with {what}; resume with the same flags or start a new --name")


def read_state(path: Path, args: argparse.Namespace, world: int, device: torch.device) -> dict[str, Any]:
    """The training state in ``path`` (tensors on ``device``), after checking that it fits the run of ``args``
    on ``world`` processes and holds finite weights."""
    state = safe_load(path, map_location=device)
    check_compatible(state, args, world, path)
    if not is_finite(state):
        raise TrainingSetupError(f"{path} holds non-finite weights (saved by a diverged run); resume from an earlier "
                                 "copy or start a new --name")
    return state


def truncate_losses(path: Path, first_iteration: int) -> None:
    """Drop the rows of a losses CSV from ``first_iteration`` on (rows a killed run logged after its last state
    save, and a torn last line); the resumed run appends them again."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [ln for ln in lines[1:] if ln.endswith("\n") and _row_iteration(ln) < first_iteration]
    if kept != lines:
        with atomic_output(path) as tmp:
            tmp.write_text("".join(kept))


def _row_iteration(line: str) -> float:
    try:
        return int(line.split(",", 1)[0])
    except ValueError:
        return float("inf")
