"""Train VToonify: encoder pre-training (``--pretrain``) and distillation, for both backbones.

One script replaces the original's ``train_vtoonify_d.py`` / ``train_vtoonify_t.py`` (same flags, same
defaults, same algorithm: spec §6). Training data is synthesised by StyleGAN itself; nothing is read
from disk but the teacher and helper networks.

    # stage 1: the encoder regresses the frozen generator's 32x32 features
    python train_vtoonify.py --backbone dualstylegan --iter 30000 --batch 1 --pretrain
    # stage 2: adversarial + MSE + LPIPS + mask + temporal distillation from DualStyleGAN
    python train_vtoonify.py --backbone dualstylegan --iter 2000 --batch 4 --fix_color
    # several GPUs / nodes
    torchrun --nproc_per_node 8 train_vtoonify.py --backbone toonify --iter 2000 --batch 4

Additions: ``--seed``, a real ``--resume`` (generator, discriminator, EMA, optimisers, iteration and RNG
states: a killed run continues bit for bit), ``--device``, ``--amp``, explicit LPIPS/VGG weight files,
teacher sizes inferred from the files, checks of every input before any work, and ``torchrun``
(``LOCAL_RANK``/``RANK``/``WORLD_SIZE``; NCCL on CUDA, gloo on CPU). Saved models use the released
format (``{'g_ema': state_dict}``, plus the constructor arguments under ``'config'``), so
``style_transfer.py`` loads them directly.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from model.checkpoint import (
    CheckpointError,
    detect_checkpoint_kind,
    extract_state_dict,
    infer_generator_config,
    load_bisenet,
    load_dualstylegan,
    load_state_dict_strict,
    load_stylegan2,
    safe_load,
)
from model.stylegan.model import Downsample, Generator
from pipeline.styles import fit_rows
from model.vtoonify import ConditionalDiscriminator, VToonify

EMA_DECAY = 0.5 ** (32 / (10 * 1000))
STRUCTURE_ROWS = 7


class TrainingSetupError(RuntimeError):
    """Something the run needs is missing or inconsistent (reported before any work starts)."""


# ---------------------------------------------------------------------------------------------- flags
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train VToonify", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backbone", default="dualstylegan", choices=["dualstylegan", "toonify"])
    # common flags of the original scripts
    p.add_argument("--iter", type=int, default=2000, help="total training iterations")
    p.add_argument("--batch", type=int, default=8, help="batch size per process")
    p.add_argument("--lr", type=float, default=0.0001)
    p.add_argument("--local_rank", "--local-rank", type=int, default=0, help="ignored: the rank comes from LOCAL_RANK")
    p.add_argument("--start_iter", type=int, default=0, help="shifts the schedules only, as in the original (use --resume)")
    p.add_argument("--save_every", type=int, default=30000)
    p.add_argument("--save_begin", type=int, default=30000)
    p.add_argument("--log_every", type=int, default=200)
    p.add_argument("--adv_loss", type=float, default=0.01)
    p.add_argument("--grec_loss", type=float, default=0.1)
    p.add_argument("--perc_loss", type=float, default=0.01)
    p.add_argument("--tmp_loss", type=float, default=1.0)
    p.add_argument("--msk_loss", type=float, default=0.0005, help="fusion-mask loss (VToonify-D)")
    p.add_argument("--encoder_path", type=str, default=None, help="stage-1 result (default checkpoint/<name>/pretrain.pt)")
    p.add_argument("--direction_path", type=str, default="./checkpoint/directions.npy")
    p.add_argument("--faceparsing_path", type=str, default="./checkpoint/faceparsing.pth")
    p.add_argument("--style_encoder_path", type=str, default="./checkpoint/encoder.pt")
    p.add_argument("--pretrain", action="store_true", help="stage 1: pre-train the encoder only")
    p.add_argument("--stylegan_path", type=str, default=None,
                   help="D: DualStyleGAN generator.pt (default ./checkpoint/cartoon/generator.pt); "
                        "T: FFHQ StyleGAN2 (default ./checkpoint/stylegan2-ffhq-config-f.pt)")
    p.add_argument("--name", type=str, default=None, help="run name (default vtoonify_d_cartoon / vtoonify_t_cartoon)")
    # VToonify-D
    p.add_argument("--fix_degree", action="store_true", help="D: train for one style degree")
    p.add_argument("--fix_style", action="store_true", help="D: train for one exemplar style")
    p.add_argument("--fix_color", action="store_true", help="D: keep the content's colours")
    p.add_argument("--exstyle_path", type=str, default="./checkpoint/cartoon/refined_exstyle_code.npy")
    p.add_argument("--style_id", type=int, default=26)
    p.add_argument("--style_degree", type=float, default=0.5)
    # VToonify-T
    p.add_argument("--finetunegan_path", type=str, default="./checkpoint/cartoon/finetune-000600.pt")
    p.add_argument("--weight", type=float, nargs=18, default=[1.0] * 9 + [0.0] * 9,
                   help="T: per-W+-row blending weight of the fine-tuned generator")
    # additions
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue from a training-state file (default checkpoint/<name>/<stage>_state.pt)")
    p.add_argument("--state_every", type=int, default=100, help="iterations between training-state saves (for --resume)")
    p.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="mixed precision on CUDA")
    p.add_argument("--vgg_path", type=str, default="./checkpoint/vgg16.pth", help="torchvision ImageNet VGG16 weights (LPIPS)")
    p.add_argument("--lpips_path", type=str, default="./checkpoint/lpips_vgg.pth", help="LPIPS v0.1 VGG linear heads")
    p.add_argument("--checkpoint_dir", type=str, default="./checkpoint")
    p.add_argument("--log_dir", type=str, default="./log")
    p.add_argument("--no_progress", action="store_true")
    p.add_argument("--stop_at", type=int, default=None, help=argparse.SUPPRESS)  # simulate a kill (tests)
    return p


def finalize_args(args: argparse.Namespace) -> argparse.Namespace:
    dual = args.backbone == "dualstylegan"
    if args.stylegan_path is None:
        args.stylegan_path = "./checkpoint/cartoon/generator.pt" if dual else "./checkpoint/stylegan2-ffhq-config-f.pt"
    if args.name is None:
        args.name = "vtoonify_d_cartoon" if dual else "vtoonify_t_cartoon"
    if args.encoder_path is None:
        args.encoder_path = os.path.join(args.checkpoint_dir, args.name, "pretrain.pt")
    return args


def checkpoint_name(args: argparse.Namespace, iteration: int | None = None) -> str:
    """Released naming: ``vtoonify_s[XXX]_d[Y.Y][_c].pt`` (D), ``vtoonify.pt`` (T), ``pretrain.pt``."""
    if args.pretrain:
        return "pretrain.pt" if iteration is None else f"pretrain-{iteration:05d}.pt"
    if args.backbone == "dualstylegan":
        stem = "vtoonify_s" + (f"{args.style_id:03d}" if args.fix_style else "") + "_d"
        stem += f"{args.style_degree:1.1f}" if args.fix_degree else ""
        stem += "" if args.fix_color else "_c"
    else:
        stem = "vtoonify"
    return f"{stem}.pt" if iteration is None else f"{stem}_{iteration:05d}.pt"


# ------------------------------------------------------------------------------------- distributed
class Dist:
    """Process-group facts from ``torchrun``'s environment (a plain run is rank 0 of 1)."""

    def __init__(self, device_arg: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device_arg == "auto":
            device_arg = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device_arg)
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise TrainingSetupError("--device cuda requested but CUDA is not available")
            self.device = torch.device("cuda", self.local_rank if self.world > 1 else (self.device.index or 0))
            torch.cuda.set_device(self.device)
        if self.world > 1:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo", init_method="env://",
                                    rank=self.rank, world_size=self.world)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        keys = sorted(values)
        stacked = torch.stack([values[k].detach().float() for k in keys])
        if self.world > 1:
            dist.all_reduce(stacked)
            stacked /= self.world
        return {k: float(v) for k, v in zip(keys, stacked.tolist())}

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------------ helpers
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


@torch.no_grad()
def accumulate(ema: nn.Module, model: nn.Module, decay: float = EMA_DECAY) -> None:
    """``ema = decay * ema + (1 - decay) * model`` over parameters."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.mul_(decay).add_(p.detach(), alpha=1 - decay)


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


def save_image_grid(images: torch.Tensor, path: Path, nrow: int) -> None:
    """Save (N, 3, H, W) images in [-1, 1] as one grid JPEG (no torchvision)."""
    import cv2

    images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    n, _, h, w = images.shape
    ncol = math.ceil(n / nrow)
    grid = torch.zeros(3, ncol * (h + 2) + 2, nrow * (w + 2) + 2, dtype=torch.uint8)
    for k in range(n):
        r, c = divmod(k, nrow)
        grid[:, 2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = images[k]
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    cv2.imwrite(str(tmp), cv2.cvtColor(grid.permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR))
    os.replace(tmp, path)


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_encoder_weights(path: str) -> dict[str, torch.Tensor]:
    """Encoder weights from a ``pretrain.pt`` or from a full VToonify checkpoint's ``encoder.*`` entries."""
    sd, _ = extract_state_dict(safe_load(path), source=path)
    kind = detect_checkpoint_kind(sd)
    if kind in ("vtoonify_dualstylegan", "vtoonify_toonify"):
        return {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    if kind != "vtoonify_encoder":
        raise CheckpointError(f"{path}: expected a stage-1 pretrain.pt (or a VToonify checkpoint), found a {kind} state_dict")
    return sd


def _generator_config(cfg: dict, backbone: str) -> dict:
    size = cfg["size"]
    in_size = size // 4
    return dict(in_size=in_size, out_size=size, style_channels=cfg["style_dim"], num_mlps=cfg["n_mlp"],
                channel_multiplier=cfg["channel_multiplier"], channel_max=cfg["channel_max"],
                num_res_layers=2 * (int(math.log2(in_size)) - 5), backbone=backbone)


# -------------------------------------------------------------------------------------------- setup
def preflight(args: argparse.Namespace) -> None:
    """Check every input before any work starts; report all problems at once."""
    problems = []
    dual = args.backbone == "dualstylegan"
    needed = {"--stylegan_path": args.stylegan_path, "--direction_path": args.direction_path,
              "--faceparsing_path": args.faceparsing_path}
    if not dual:
        needed["--finetunegan_path"] = args.finetunegan_path
    if dual:
        needed["--exstyle_path"] = args.exstyle_path
    if not args.pretrain:
        needed["--style_encoder_path"] = args.style_encoder_path
        needed["--encoder_path (stage-1 result; run with --pretrain first)"] = args.encoder_path
        if args.perc_loss > 0:
            needed["--vgg_path (or --perc_loss 0)"] = args.vgg_path
            needed["--lpips_path (or --perc_loss 0)"] = args.lpips_path
    for flag, path in needed.items():
        if not os.path.isfile(path):
            problems.append(f"{flag}: file not found: {path}")
    if args.iter < 1:
        problems.append(f"--iter must be >= 1, got {args.iter}")
    if args.batch < 1:
        problems.append(f"--batch must be >= 1, got {args.batch}")
    elif not args.pretrain and args.batch % min(args.batch, 4):
        problems.append(f"--batch {args.batch}: the discriminator's minibatch-stddev layer needs a batch divisible by "
                        f"min(batch, 4) (e.g. 1, 2, 3, 4, 8, 12 ...)")
    if dual and not 0 <= args.style_degree <= 1:
        problems.append(f"--style_degree must be in [0, 1], got {args.style_degree}")
    if problems:
        raise TrainingSetupError("cannot start training:\n  " + "\n  ".join(problems))


class Trainer:
    def __init__(self, args: argparse.Namespace, env: Dist):
        self.args, self.env = args, env
        self.dual = args.backbone == "dualstylegan"
        device = self.device = env.device
        torch.manual_seed(args.seed)  # identical initialisation on every rank

        # --- teachers and the student -----------------------------------------------------------
        if self.dual:
            teacher = load_dualstylegan(args.stylegan_path)
            cfg = infer_generator_config(teacher.state_dict(), "generator.")
            vcfg = _generator_config(cfg, "dualstylegan")
            if teacher.res_index != vcfg["num_res_layers"]:
                raise TrainingSetupError(f"{args.stylegan_path}: DualStyleGAN res_index {teacher.res_index} does not fit a "
                                         f"{cfg['size']}px VToonify-D (needs {vcfg['num_res_layers']})")
        else:
            ffhq = load_stylegan2(args.stylegan_path)
            finetuned = load_stylegan2(args.finetunegan_path)
            cfg = infer_generator_config(ffhq.state_dict())
            if infer_generator_config(finetuned.state_dict()) != cfg:
                raise TrainingSetupError(f"{args.finetunegan_path} and {args.stylegan_path} have different architectures")
            vcfg = _generator_config(cfg, "toonify")
        self.config = vcfg
        generator = VToonify(**vcfg)
        generator.apply(weights_init)
        if self.dual:
            generator.generator.load_state_dict(teacher.state_dict())
            for k in range(len(generator.res)):
                generator.res[k].load_state_dict(teacher.res[k].state_dict())
            del teacher
        else:
            generator.generator.load_state_dict(blend_models(finetuned, ffhq, args.weight).state_dict())
            self.ffhq = ffhq.to(device)  # the content generator G0
            del finetuned
        generator.generator.requires_grad_(False)
        if self.dual:
            generator.res.requires_grad_(False)
        if not args.pretrain:
            load_state_dict_strict(generator.encoder, load_encoder_weights(args.encoder_path), source=args.encoder_path)
            init_fusion_identity(generator)
        else:
            generator.fusion_out.requires_grad_(False)
            generator.fusion_skip.requires_grad_(False)
        self.trainable_names = ["encoder"] + ([] if args.pretrain else ["fusion_out", "fusion_skip"])
        self.generator = generator.to(device).train()
        self.g_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.stylegan = self.g_ema.stylegan()  # frozen, shared by data synthesis
        self.n_latent = self.stylegan.n_latent

        # --- helpers ----------------------------------------------------------------------------
        self.parser = load_bisenet(args.faceparsing_path, device)
        self.down = Downsample([1, 3, 3, 1]).to(device)
        directions = np.load(args.direction_path, allow_pickle=False)
        if directions.ndim != 3 or directions.shape[1] < STRUCTURE_ROWS or directions.shape[2] != vcfg["style_channels"]:
            raise TrainingSetupError(f"{args.direction_path}: expected directions of shape (N, >= 7, {vcfg['style_channels']}), "
                                     f"got {directions.shape}")
        self.directions = torch.from_numpy(directions.astype(np.float32)).to(device)
        if self.dual:
            from pipeline.styles import load_exstyle_codes

            codes = load_exstyle_codes(args.exstyle_path, self.n_latent, vcfg["style_channels"])
            if not 0 <= args.style_id < len(codes):
                raise TrainingSetupError(f"--style_id {args.style_id} is not in {args.exstyle_path} ({len(codes)} styles)")
            with torch.no_grad():
                z = torch.from_numpy(np.concatenate(list(codes.values()))).to(device)
                self.styles = self.g_ema.zplus2wplus(z)
            if env.main:
                run_dir = Path(args.checkpoint_dir) / args.name
                run_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(args.exstyle_path, run_dir / "exstyle_code.npy")
        if not args.pretrain:
            from model.encoder.psp import load_psp_standalone

            self.pspencoder = load_psp_standalone(args.style_encoder_path, device).requires_grad_(False)
            self.lpips = None
            if args.perc_loss > 0:
                from model.stylegan.lpips import PerceptualLoss

                self.lpips = PerceptualLoss(vgg_path=args.vgg_path, lpips_path=args.lpips_path).to(device)
            self.discriminator = ConditionalDiscriminator(
                vcfg["in_size"], channel_multiplier=vcfg["channel_multiplier"], channel_max=vcfg["channel_max"],
                use_condition=self.dual, style_num=len(self.styles) if self.dual else None).to(device)
            self.d_optim = torch.optim.Adam(self.discriminator.parameters(), lr=args.lr, betas=(0.9, 0.99))
        self.g_optim = torch.optim.Adam([p for n in self.trainable_names for p in getattr(self.generator, n).parameters()],
                                        lr=args.lr, betas=(0.9, 0.99))
        self.g_ddp: nn.Module = self.generator
        self.d_ddp: nn.Module | None = getattr(self, "discriminator", None)
        if env.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.g_ddp = DDP(self.generator, device_ids=ids, broadcast_buffers=False)
            if self.d_ddp is not None:
                self.d_ddp = DDP(self.discriminator, device_ids=ids, broadcast_buffers=False)
        self.prev_wc: torch.Tensor | None = None
        self.sample: dict[str, Any] | None = None
        self.start = 0
        torch.manual_seed(args.seed * 1000 + env.rank)  # per-rank data stream
        if device.type == "cuda":
            torch.cuda.manual_seed(args.seed * 1000 + env.rank)
        self.scaler = torch.amp.GradScaler("cuda") if (args.amp == "fp16" and device.type == "cuda") else None

    # ------------------------------------------------------------------------------------- state
    @property
    def state_path(self) -> Path:
        return Path(self.args.checkpoint_dir) / self.args.name / ("pretrain_state.pt" if self.args.pretrain else "train_state.pt")

    def _parts(self, model: nn.Module) -> dict[str, Any]:
        return {n: getattr(model, n).state_dict() for n in self.trainable_names}

    def save_state(self, next_idx: int) -> None:
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        rngs = self.env.gather(rng)
        if not self.env.main:
            return
        state = {"iteration": next_idx, "generator": self._parts(self.generator), "g_ema": self._parts(self.g_ema),
                 "g_optim": self.g_optim.state_dict(), "rng": rngs, "prev_wc": self.prev_wc, "sample": self.sample,
                 "stage": "pretrain" if self.args.pretrain else "main", "backbone": self.args.backbone,
                 "world_size": self.env.world}
        if not self.args.pretrain:
            state["discriminator"] = self.discriminator.state_dict()
            state["d_optim"] = self.d_optim.state_dict()
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(state, self.state_path)

    def load_state(self, path: Path) -> None:
        state = safe_load(path, map_location=self.device)
        stage = "pretrain" if self.args.pretrain else "main"
        if state.get("stage") != stage or state.get("backbone") != self.args.backbone:
            raise TrainingSetupError(f"{path} is a {state.get('backbone')} {state.get('stage')} state, not {self.args.backbone} {stage}")
        if state["world_size"] != self.env.world:
            raise TrainingSetupError(f"{path} was saved by {state['world_size']} processes; resume with the same number")
        for n in self.trainable_names:
            getattr(self.generator, n).load_state_dict(state["generator"][n])
            getattr(self.g_ema, n).load_state_dict(state["g_ema"][n])
        self.g_optim.load_state_dict(state["g_optim"])
        if not self.args.pretrain:
            self.discriminator.load_state_dict(state["discriminator"])
            self.d_optim.load_state_dict(state["d_optim"])
        rng = state["rng"][self.env.rank]
        torch.set_rng_state(rng["cpu"].cpu())
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        self.prev_wc, self.sample, self.start = state["prev_wc"], state["sample"], state["iteration"]

    # -------------------------------------------------------------------------------------- data
    def autocast(self):
        if self.args.amp == "none" or self.device.type != "cuda":
            return nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16 if self.args.amp == "bf16" else torch.float16)

    @torch.no_grad()
    def sample_content_codes(self, batch: int) -> torch.Tensor:
        """W+ codes of random faces with LowRankGAN edits on rows 3-6 (before truncation)."""
        mapping = self.ffhq.style if not self.dual else self.stylegan.style
        z = torch.randn(batch, self.config["style_channels"], device=self.device)
        wc = mapping(z).unsqueeze(1).repeat(1, self.n_latent, 1)
        idx = torch.randint(0, self.directions.shape[0], (batch,), device=self.device)
        wc[:, 3:STRUCTURE_ROWS] += self.directions[idx, 3:STRUCTURE_ROWS]
        return wc

    @torch.no_grad()
    def render_content(self, wc: torch.Tensor) -> torch.Tensor:
        g = self.stylegan if self.dual else self.ffhq
        return g([wc], input_is_latent=True, truncation=0.5, truncation_latent=0)[0].clamp(-1, 1)

    @torch.no_grad()
    def parsing(self, img_half: torch.Tensor) -> torch.Tensor:
        """BiSeNet logits of an image at half the teacher size (computed there, as in training)."""
        return self.parser(2 * img_half)[0]

    @torch.no_grad()
    def model_input(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(input (B, 22, S/4, S/4), parsing at S/2) for a teacher-size image."""
        half = self.down(img)
        parsing = self.parsing(half)
        return torch.cat([self.down(half), self.down(parsing) / 16], dim=1), parsing

    @torch.no_grad()
    def style_codes_of(self, img: torch.Tensor) -> torch.Tensor:
        """W+ code of a synthetic face through the pSp encoder (E_s)."""
        x = F.adaptive_avg_pool2d(img, 256)
        return self.g_ema.zplus2wplus(fit_rows(self.pspencoder(x.float()), self.n_latent))

    def sample_degree(self, i: int) -> float:
        a = self.args
        if a.fix_degree:
            return a.style_degree
        if a.pretrain:
            return 0.0 if i <= a.iter / 4 else float(torch.rand(()))
        return float(torch.randint(0, 6, ())) / 5

    def sample_styles(self, batch: int, fixed: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if fixed:
            ind = torch.full((batch,), self.args.style_id, dtype=torch.long)
        else:
            ind = torch.randint(0, len(self.styles), (batch,))
        ind = ind.to(self.device)
        return self.styles[ind], ind

    # ------------------------------------------------------------------------------------ stage 1
    def pretrain_step(self, i: int) -> dict[str, torch.Tensor]:
        a, B = self.args, self.args.batch
        with torch.no_grad():
            ws = self.sample_content_codes(B)
            x = self.render_content(ws)
            inp, _ = self.model_input(x)
            if self.dual:
                d_s = self.sample_degree(i)
                style, _ = self.sample_styles(B, a.fix_style)
                real_feat, real_skip = self.g_ema.generator([ws], style, input_is_latent=True, return_feat=True, truncation=0.5,
                                                             truncation_latent=0, use_res=True, interp_weights=[d_s] * self.n_latent)
            else:
                d_s, style = None, None
                real_feat, real_skip = self.g_ema.generator([ws], input_is_latent=True, return_feature_ind=2 * self.g_ema.bottom_block + 2,
                                                             truncation=0.5, truncation_latent=0)
        with self.autocast():
            fake_feat, fake_skip = self.g_ddp(inp, style, d_s=d_s, return_feat=True)
            loss = F.mse_loss(fake_feat.float(), real_feat.float()) + F.mse_loss(fake_skip.float(), real_skip.float())
        self.g_step(loss)
        return {"recon": loss}

    # ------------------------------------------------------------------------------------ stage 2
    @torch.no_grad()
    def make_batch(self, idx: int, i: int) -> dict[str, Any]:
        a, B = self.args, self.args.batch
        first = idx == 0
        wc = self.sample_content_codes(B)
        xc = self.render_content(wc)
        if self.dual:
            d_s = a.style_degree if (a.fix_degree or first) else self.sample_degree(i)
            weight = [d_s] * STRUCTURE_ROWS + [0.0 if a.fix_color else 1.0] * (self.n_latent - STRUCTURE_ROWS)
            style, style_ind = self.sample_styles(B, a.fix_style or first)
            if not a.fix_color and a.fix_style:
                xl = style
            else:
                xl = torch.cat([style[:, :STRUCTURE_ROWS], self.style_codes_of(xc)[:, STRUCTURE_ROWS:]], dim=1)
            y = self.g_ema.generator([wc], xl, input_is_latent=True, truncation=0.5, truncation_latent=0, use_res=True,
                                     interp_weights=weight)[0].clamp(-1, 1)
            # colour jitter: the input's colours drift from the colour code carried by xl in the second half
            if idx > 0 and i >= a.iter / 2 and not a.fix_color and not a.fix_style and self.prev_wc is not None:
                r = i / (a.iter / 2)
                wc_mix = wc.clone()
                wc_mix[:, STRUCTURE_ROWS:] = self.prev_wc[:, STRUCTURE_ROWS:] * (r - 1) + wc[:, STRUCTURE_ROWS:] * (2 - r)
                self.prev_wc = wc
                xc = self.render_content(wc_mix)
            else:
                self.prev_wc = wc
        else:
            d_s, style_ind = None, None
            xl = torch.cat([0.5 * wc[:, :STRUCTURE_ROWS], self.style_codes_of(xc)[:, STRUCTURE_ROWS:]], dim=1)
            y = self.g_ema.generator([xl], input_is_latent=True)[0].clamp(-1, 1)
        from model.simple_augment import random_apply_affine

        aug, _ = random_apply_affine(torch.cat([xc, y], dim=1), 0.2)
        x, y = aug[:, :3], aug[:, 3:]
        inp, parsing = self.model_input(x)
        size = x.shape[-1]
        mask_full = F.adaptive_avg_pool2d(parsing, size)
        return {"x": x, "y": y, "inp": inp, "mask_full": mask_full, "xl": xl, "d_s": d_s, "style_ind": style_ind,
                "degree_label": None if d_s is None else torch.full((B, 1), d_s, device=self.device)}

    def discriminate(self, model: nn.Module, img: torch.Tensor, b: dict[str, Any]) -> torch.Tensor:
        img = F.adaptive_avg_pool2d(img, self.config["in_size"])
        if self.dual:
            return model(img, b["degree_label"], b["style_ind"])
        return model(img)

    def main_step(self, idx: int, i: int) -> dict[str, torch.Tensor]:
        a = self.args
        b = self.make_batch(idx, i)
        if self.sample is None and self.env.main:
            self.sample = {"inp": b["inp"].clone(), "y": b["y"].clone(), "xl": b["xl"].clone(), "d_s": b["d_s"]}

        # --- discriminator step --------------------------------------------------------------------
        self.discriminator.requires_grad_(True)
        with torch.no_grad(), self.autocast():
            fake = self.generator(b["inp"], b["xl"], d_s=b["d_s"])
        with self.autocast():
            fake_pred = self.discriminate(self.d_ddp, fake.float(), b)
            real_pred = self.discriminate(self.discriminator, b["y"], b)
            d_loss = (F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()) * a.adv_loss
        self.d_optim.zero_grad(set_to_none=True)
        self.backward(d_loss)
        self.optimizer_step(self.d_optim)
        self.discriminator.requires_grad_(False)

        # --- generator step ------------------------------------------------------------------------
        with self.autocast():
            if self.dual:
                fake, masks = self.g_ddp(b["inp"], b["xl"], d_s=b["d_s"], return_mask=True)
            else:
                fake, masks = self.g_ddp(b["inp"], b["xl"], d_s=None), []
            fake = fake.float()
            losses = {"adv": F.softplus(-self.discriminate(self.discriminator, fake, b)).mean() * a.adv_loss,
                      "rec": F.mse_loss(fake, b["y"]) * a.grec_loss}
            if self.lpips is not None:
                half = fake.shape[-1] // 2
                losses["perc"] = self.lpips(F.adaptive_avg_pool2d(fake, half), F.adaptive_avg_pool2d(b["y"], half)).sum() * a.perc_loss
            if self.dual and a.msk_loss > 0:
                cap = (1 - b["d_s"]) ** 2 * 0.9 + 0.1
                losses["msk"] = sum(F.relu(m.float().mean() - cap) for m in masks) * a.msk_loss
            ramp = max(idx / (a.iter / 2) - 1, 0.0)
            losses["tmp"] = fake.new_zeros(())  # the temporal loss ramps up in the second half of training
            if a.tmp_loss > 0 and ramp > 0:
                size = fake.shape[-1]
                crop = size - size // 8
                oy, ox = (int(v) for v in torch.randint(0, size // 8 + 1, (2,)))
                window = (slice(None), slice(None), slice(oy, oy + crop), slice(ox, ox + crop))
                crop_in = self.down(self.down(torch.cat([b["x"][window], b["mask_full"][window] / 16], dim=1)))
                shifted = self.generator(crop_in, b["xl"], d_s=b["d_s"]).float()
                losses["tmp"] = F.mse_loss(shifted, fake[window]) * ramp * a.tmp_loss
            g_loss = sum(losses.values())
        self.g_step(g_loss)
        losses["d"] = d_loss
        return losses

    # ---------------------------------------------------------------------------------- updates
    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def optimizer_step(self, optim: torch.optim.Optimizer) -> None:
        if self.scaler:
            self.scaler.step(optim)
            self.scaler.update()
        else:
            optim.step()

    def g_step(self, loss: torch.Tensor) -> None:
        self.g_optim.zero_grad(set_to_none=True)
        self.backward(loss)
        self.optimizer_step(self.g_optim)
        for n in self.trainable_names:
            accumulate(getattr(self.g_ema, n), getattr(self.generator, n))

    # ---------------------------------------------------------------------------------- outputs
    def save_model(self, iteration: int | None) -> Path:
        run_dir = Path(self.args.checkpoint_dir) / self.args.name
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / checkpoint_name(self.args, iteration)
        if self.args.pretrain:
            atomic_save({"g_ema": self.g_ema.encoder.state_dict()}, path)
        else:
            atomic_save({"g_ema": self.g_ema.state_dict(), "config": dict(self.config)}, path)
        return path

    @torch.no_grad()
    def log_samples(self, i: int, d_s_now: float | None) -> None:
        if self.sample is None:
            return
        s = self.sample
        rows = [s["y"]]
        degrees = [s["d_s"]] + ([d_s_now] if (self.dual and not self.args.fix_degree and d_s_now is not None) else [])
        for d in degrees:
            rows.append(self.g_ema(s["inp"], s["xl"], d_s=d))
        size = self.config["in_size"]
        grid = torch.cat([F.adaptive_avg_pool2d(r.float(), size) for r in rows])
        log_dir = Path(self.args.log_dir) / self.args.name
        log_dir.mkdir(parents=True, exist_ok=True)
        save_image_grid(grid, log_dir / f"{i + 1:05d}.jpg", nrow=s["y"].shape[0])

    def write_losses(self, i: int, values: dict[str, float]) -> None:
        path = Path(self.args.log_dir) / self.args.name / ("pretrain_losses.csv" if self.args.pretrain else "losses.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(values)
        new = not path.exists() or i == 0
        with open(path, "w" if new else "a") as f:
            if new:
                f.write("iteration," + ",".join(keys) + "\n")
            f.write(f"{i}," + ",".join(repr(values[k]) for k in keys) + "\n")

    # ------------------------------------------------------------------------------------- loop
    def run(self) -> Path | None:
        from tqdm.auto import tqdm

        a = self.args
        last_saved = None
        bar = tqdm(range(self.start, a.iter), initial=self.start, total=a.iter, disable=not self.env.main or a.no_progress,
                   dynamic_ncols=True, desc=a.name + (" pretrain" if a.pretrain else ""))
        for idx in bar:
            i = idx + a.start_iter
            if i > a.iter:
                break
            losses = self.pretrain_step(i) if a.pretrain else self.main_step(idx, i)
            values = self.env.mean(losses)
            if self.env.main:
                bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()})
                self.write_losses(i, values)
                if not a.pretrain and (i == 0 or (i + 1) % a.log_every == 0 or i + 1 == a.iter):
                    # a degree drawn from its own generator, so logging never shifts the training RNG stream
                    d_now = float(torch.randint(0, 6, (), generator=torch.Generator().manual_seed(i))) / 5
                    self.log_samples(i, d_now if self.dual else None)
                if ((i + 1) >= a.save_begin and (i + 1) % a.save_every == 0) or i + 1 == a.iter:
                    last_saved = self.save_model(None if i + 1 == a.iter else i + 1)
            if (idx + 1) % a.state_every == 0 or idx + 1 == a.iter:
                self.save_state(idx + 1)
            if a.stop_at is not None and idx + 1 == a.stop_at:
                self.env.barrier()
                return None
        self.env.barrier()
        return last_saved


def main(argv: list[str] | None = None) -> int:
    args = finalize_args(build_parser().parse_args(argv))
    try:
        preflight(args)
        env = Dist(args.device)
    except TrainingSetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        trainer = Trainer(args, env)
        if args.resume is not None:
            path = trainer.state_path if args.resume == "auto" else Path(args.resume)
            if path.exists():
                trainer.load_state(path)
            elif args.resume != "auto":
                raise TrainingSetupError(f"--resume: no training state at {path}")
        saved = trainer.run()
        if saved is not None and env.main:
            print(f"saved {saved}")
        return 0
    except (TrainingSetupError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
