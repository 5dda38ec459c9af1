"""Training set-up: the checks of every input before any work, the teachers, and the student VToonify.

* :func:`preflight` checks files and numeric flags (:data:`FLAG_RANGES`) and reports every problem at once;
* :func:`build_student` loads the teacher (a DualStyleGAN for VToonify-D; the FFHQ StyleGAN2 and its
  fine-tuned copy, blended row by row with ``--weight``, for VToonify-T), builds the student around it
  with the original initialisation and freezes the backbone;
* :func:`load_encoder_weights` / :func:`warm_start` fill the trainable parts from a stage-1
  ``pretrain.pt`` or from a released VToonify checkpoint (``--init_from``);
* :func:`load_directions` / :func:`load_styles` read the attribute-edit directions and the exemplar codes.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

from common.options import RANGES
from model.checkpoint import (
    CheckpointError,
    detect_checkpoint_kind,
    extract_state_dict,
    infer_generator_config,
    load_dualstylegan,
    load_stylegan2,
    safe_load,
)
from model.dualstylegan import STRUCTURE_ROWS
from model.errors import UserError
from model.stylegan.model import Generator
from model.vtoonify import VToonify

__all__ = [
    "TrainingSetupError", "TRAINABLE_STAGE1", "TRAINABLE_STAGE2", "FLAG_RANGES", "flag_type", "preflight",
    "weights_init", "init_fusion_identity", "latent_row", "blend_models", "load_encoder_weights", "generator_config",
    "Student", "build_student", "warm_start", "load_directions", "load_styles",
]

#: The student's parts that stage 1 trains (the rest is frozen or unused there) ...
TRAINABLE_STAGE1 = ("encoder",)
#: ... and those stage 2 trains (and ``--init_from`` warm-starts): everything but the frozen generator.
TRAINABLE_STAGE2 = ("encoder", "fusion_out", "fusion_skip")

_BACKBONES = {"vtoonify_dualstylegan": "dualstylegan", "vtoonify_toonify": "toonify"}
_NAMES = {"dualstylegan": "VToonify-D", "toonify": "VToonify-T"}


class TrainingSetupError(UserError, RuntimeError):
    """Something the run needs is missing or inconsistent (reported before any work starts)."""


#: Every numeric flag of ``train_vtoonify.py`` and its entry of :data:`common.options.RANGES`.
FLAG_RANGES = {
    "iter": "iter", "batch": "batch", "lr": "lr", "local_rank": "local_rank", "start_iter": "start_iter",
    "save_every": "save_every", "save_begin": "save_begin", "log_every": "log_every", "adv_loss": "loss_weight",
    "grec_loss": "loss_weight", "perc_loss": "loss_weight", "tmp_loss": "loss_weight", "msk_loss": "loss_weight",
    "style_id": "style_id", "style_degree": "style_degree", "weight": "weight", "seed": "seed",
    "state_every": "state_every", "stop_at": "stop_at",
}


def flag_type(flag: str):
    """The argparse ``type=`` of ``--<flag>`` (a key of :data:`FLAG_RANGES`): a value out of its range is a
    usage error that states the range."""
    return RANGES[FLAG_RANGES[flag]].parser(f"--{flag}")


# -------------------------------------------------------------------------------------------- checks
def preflight(args: argparse.Namespace) -> None:
    """Check every input before any work starts; report all problems at once."""
    problems = []
    dual = args.backbone == "dualstylegan"
    init_from = getattr(args, "init_from", None)
    needed = {"--stylegan_path": args.stylegan_path, "--direction_path": args.direction_path,
              "--faceparsing_path": args.faceparsing_path}
    if not dual:
        needed["--finetunegan_path"] = args.finetunegan_path
    if dual:
        needed["--exstyle_path"] = args.exstyle_path
    if init_from is not None:
        needed["--init_from"] = init_from
    if not args.pretrain:
        needed["--style_encoder_path"] = args.style_encoder_path
        if init_from is None:  # --init_from brings its own encoder
            needed["--encoder_path (stage-1 result; run with --pretrain first)"] = args.encoder_path
        if args.perc_loss > 0:
            needed["--vgg_path (or --perc_loss 0)"] = args.vgg_path
            needed["--lpips_path (or --perc_loss 0)"] = args.lpips_path
    for flag, path in needed.items():
        if not os.path.isfile(path):
            problems.append(f"{flag}: file not found: {path}")
    out_of_range = set()
    for flag, key in FLAG_RANGES.items():  # the parser checks them too; this is for a Namespace built in Python
        value = getattr(args, flag, None)
        bad = [v for v in (value if isinstance(value, list) else [value]) if v is not None and not RANGES[key].contains(v)]
        if bad:
            out_of_range.add(flag)
            problems.append(RANGES[key].message(f"--{flag}", bad[0]))
    if "batch" not in out_of_range and not args.pretrain and args.batch % min(args.batch, 4):
        problems.append(f"--batch {args.batch}: the discriminator's minibatch-stddev layer needs a batch divisible by "
                        f"min(batch, 4) (e.g. 1, 2, 3, 4, 8, 12 ...)")
    if dual and args.fix_style and not 0 <= args.style_id <= 999:  # the released file name has three digits
        problems.append(f"--style_id must be in [0, 999] with --fix_style, got {args.style_id}")
    if problems:
        raise TrainingSetupError("cannot start training:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------------------- initialisation
def weights_init(m: nn.Module) -> None:
    """The original initialisation: Kaiming-normal (fan_in) weights, zero biases, for Conv/Linear classes."""
    name = type(m).__name__
    if ("Conv" in name or "Linear" in name) and isinstance(getattr(m, "weight", None), torch.Tensor):
        nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
        if isinstance(getattr(m, "bias", None), torch.Tensor):
            nn.init.zeros_(m.bias)


@torch.no_grad()
def init_fusion_identity(generator: VToonify) -> None:
    """Start every fusion as "pass the generator path through": weights x0.01 plus an identity centre tap."""
    for fusion in generator.fusion_out:
        conv = fusion.conv if generator.backbone == "dualstylegan" else fusion
        conv.weight.mul_(0.01)
        c = conv.weight.shape[0]
        conv.weight[torch.arange(c), torch.arange(c), 1, 1] += 1.0
    for conv in generator.fusion_skip:
        conv.weight.mul_(0.01)
        conv.weight[torch.arange(3), torch.arange(3), 1, 1] += 1.0


def latent_row(key: str) -> int | None:
    """The W+ row a StyleGAN2 generator parameter belongs to (None: shared, e.g. mapping, constant, noise)."""
    parts = key.split(".")
    if parts[0] == "conv1":
        return 0
    if parts[0] == "to_rgb1":
        return 1
    if parts[0] == "convs":
        return int(parts[1]) + 1
    if parts[0] == "to_rgbs":
        return 2 * int(parts[1]) + 3
    return None


@torch.no_grad()
def blend_models(finetuned: Generator, base: Generator, weight: list[float]) -> Generator:
    """Per-layer blend: row r takes ``base * (1 - weight[r]) + finetuned * weight[r]``; the rest from ``base``."""
    blended = copy.deepcopy(base)
    sd_ft, sd = finetuned.state_dict(), blended.state_dict()
    for key, value in sd.items():
        row = latent_row(key)
        if row is not None and value.is_floating_point():
            value.copy_(value * (1 - weight[row]) + sd_ft[key] * weight[row])
    return blended


def generator_config(cfg: Mapping, backbone: str) -> dict:
    """VToonify's constructor arguments for a teacher generator of config ``cfg`` (:func:`infer_generator_config`)."""
    size = cfg["size"]
    in_size = size // 4
    return dict(in_size=in_size, out_size=size, style_channels=cfg["style_dim"], num_mlps=cfg["n_mlp"],
                channel_multiplier=cfg["channel_multiplier"], channel_max=cfg["channel_max"],
                num_res_layers=2 * (int(math.log2(in_size)) - 5), backbone=backbone)


# ------------------------------------------------------------------------------------------- weights
def load_encoder_weights(path: str) -> dict[str, torch.Tensor]:
    """Encoder weights from a ``pretrain.pt`` or from a full VToonify checkpoint's ``encoder.*`` entries."""
    sd, _ = extract_state_dict(safe_load(path), source=path)
    kind = detect_checkpoint_kind(sd)
    if kind in _BACKBONES:
        return {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    if kind != "vtoonify_encoder":
        raise CheckpointError(f"{path}: expected a stage-1 pretrain.pt (or a VToonify checkpoint), found a {kind} state_dict")
    return sd


@torch.no_grad()
def warm_start(generator: VToonify, path: str, parts: tuple[str, ...] = TRAINABLE_STAGE2) -> None:
    """Copy ``parts`` (default: encoder and fusion layers) of a released VToonify checkpoint into ``generator``.

    The file must be a full VToonify checkpoint of the same backbone and architecture as ``generator``;
    anything else raises a one-line :class:`TrainingSetupError`.
    """
    sd, _ = extract_state_dict(safe_load(path), source=path)
    kind = detect_checkpoint_kind(sd)
    if kind not in _BACKBONES:
        hint = " (a stage-1 result goes to --encoder_path)" if kind == "vtoonify_encoder" else ""
        raise TrainingSetupError(f"--init_from {path}: not a VToonify checkpoint (found a {kind} state_dict){hint}")
    if _BACKBONES[kind] != generator.backbone:
        raise TrainingSetupError(f"--init_from {path}: a {_NAMES[_BACKBONES[kind]]} checkpoint, but this run trains "
                                 f"{_NAMES[generator.backbone]} (--backbone {generator.backbone})")
    for part in parts:
        own = getattr(generator, part).state_dict()
        theirs = {k[len(part) + 1:]: v for k, v in sd.items() if k.startswith(part + ".")}
        if set(own) != set(theirs):
            diff = sorted(set(own) ^ set(theirs))
            raise TrainingSetupError(f"--init_from {path}: architecture mismatch: {part} has {len(theirs)} tensors in the "
                                     f"file, {len(own)} in the student built from --stylegan_path (e.g. {part}.{diff[0]})")
        for k, v in own.items():
            if v.shape != theirs[k].shape:
                raise TrainingSetupError(f"--init_from {path}: architecture mismatch: {part}.{k} is "
                                         f"{tuple(theirs[k].shape)} in the file, {tuple(v.shape)} in the student built "
                                         "from --stylegan_path")
        getattr(generator, part).load_state_dict(theirs)


# ------------------------------------------------------------------------------------------- student
@dataclass
class Student:
    """The student VToonify (backbone frozen), its constructor arguments, and VToonify-T's content generator."""

    generator: VToonify
    config: dict
    content_generator: Generator | None  # G0, the FFHQ StyleGAN2 (VToonify-T); None for VToonify-D


def build_student(args: argparse.Namespace) -> Student:
    """Load the teacher(s) and build the student on the CPU, with the original initialisation.

    Uses the global RNG (``weights_init``): seed it first for the same initialisation on every rank.
    """
    dual = args.backbone == "dualstylegan"
    if dual:
        teacher = load_dualstylegan(args.stylegan_path)
        cfg = infer_generator_config(teacher.state_dict(), "generator.")
        vcfg = generator_config(cfg, "dualstylegan")
        if teacher.res_index != vcfg["num_res_layers"]:
            raise TrainingSetupError(f"{args.stylegan_path}: DualStyleGAN res_index {teacher.res_index} does not fit a "
                                     f"{cfg['size']}px VToonify-D (needs {vcfg['num_res_layers']})")
    else:
        ffhq = load_stylegan2(args.stylegan_path)
        finetuned = load_stylegan2(args.finetunegan_path)
        cfg = infer_generator_config(ffhq.state_dict())
        if infer_generator_config(finetuned.state_dict()) != cfg:
            raise TrainingSetupError(f"{args.finetunegan_path} and {args.stylegan_path} have different architectures")
        vcfg = generator_config(cfg, "toonify")
    try:
        generator = VToonify(**vcfg)
    except ValueError as e:
        raise TrainingSetupError(f"{args.stylegan_path}: a {cfg['size']}px teacher cannot drive a VToonify ({e})") from e
    generator.apply(weights_init)
    if dual:
        generator.generator.load_state_dict(teacher.state_dict())
        for k in range(len(generator.res)):
            generator.res[k].load_state_dict(teacher.res[k].state_dict())
        content = None
    else:
        generator.generator.load_state_dict(blend_models(finetuned, ffhq, args.weight).state_dict())
        content = ffhq
    generator.generator.requires_grad_(False)
    if dual:
        generator.res.requires_grad_(False)
    init_from = getattr(args, "init_from", None)
    if not args.pretrain:
        if init_from is not None:
            warm_start(generator, init_from, TRAINABLE_STAGE2)
        else:
            from model.checkpoint import load_state_dict_strict

            load_state_dict_strict(generator.encoder, load_encoder_weights(args.encoder_path), source=args.encoder_path)
            init_fusion_identity(generator)
    else:
        if init_from is not None:
            warm_start(generator, init_from, TRAINABLE_STAGE1)
        generator.fusion_out.requires_grad_(False)
        generator.fusion_skip.requires_grad_(False)
    return Student(generator, vcfg, content)


def load_directions(path: str, style_channels: int, device: torch.device) -> torch.Tensor:
    """The LowRankGAN attribute-edit directions, (N, >= 7, style_channels) float32 on ``device``."""
    try:
        directions = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise TrainingSetupError(f"{path}: not a .npy array of directions ({e})") from e
    if directions.ndim != 3 or directions.shape[1] < STRUCTURE_ROWS or directions.shape[2] != style_channels:
        raise TrainingSetupError(f"{path}: expected directions of shape (N, >= {STRUCTURE_ROWS}, {style_channels}), "
                                 f"got {directions.shape}")
    return torch.from_numpy(directions.astype(np.float32)).to(device)


def load_styles(args: argparse.Namespace, g_ema: VToonify, device: torch.device) -> torch.Tensor:
    """VToonify-D's exemplar codes from ``--exstyle_path`` as (N_styles, n_latent, C) W+ codes (g_ema's mapping)."""
    from pipeline.styles import load_exstyle_codes

    n_latent = g_ema.stylegan().n_latent
    codes = load_exstyle_codes(args.exstyle_path, n_latent, g_ema.style_channels)
    if not 0 <= args.style_id < len(codes):
        raise TrainingSetupError(f"--style_id {args.style_id} is not in {args.exstyle_path} ({len(codes)} styles)")
    with torch.no_grad():
        z = torch.from_numpy(np.concatenate(list(codes.values()))).to(device)
        return g_ema.zplus2wplus(z)
