"""The training loop: :class:`Trainer` runs stage 1 (encoder pre-training) or stage 2 (distillation).

Per stage-2 iteration: a discriminator step on (teacher target, student output), then a generator step
on the weighted adversarial, reconstruction, perceptual, mask and temporal losses, then the EMA update of
the trainable parts. Rank 0 writes the losses CSV, sample grids and the models; every ``--state_every``
iterations the resumable state (:meth:`Trainer.state_dict`) is saved.

A run whose losses or weights turn NaN or infinite stops at once with
:class:`~training.divergence.TrainingDiverged` (one line: the iteration and the last good state); no model
or state with a non-finite tensor is ever written (:mod:`training.divergence`).
"""
from __future__ import annotations

import argparse
import copy
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from common.atomic import atomic_output
from model.checkpoint import load_bisenet
from model.vtoonify import ConditionalDiscriminator
from training import losses as L
from training import state as S
from training.data import Synthesis, draw_degree_level
from training.dist import Dist
from training.divergence import FiniteCheck
from training.setup import TRAINABLE_STAGE1, TRAINABLE_STAGE2, build_student, load_directions, load_styles

__all__ = ["EMA_DECAY", "accumulate", "autocast_context", "grad_scaler", "save_image_grid", "Trainer"]

#: EMA decay per generator step: ``0.5 ** (32 / 10000)`` (half-life of 10k images at batch 32).
EMA_DECAY = 0.5 ** (32 / (10 * 1000))


@torch.no_grad()
def accumulate(ema: nn.Module, model: nn.Module, decay: float = EMA_DECAY) -> None:
    """``ema = decay * ema + (1 - decay) * model`` over parameters."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.mul_(decay).add_(p.detach(), alpha=1 - decay)


def autocast_context(amp: str, device: torch.device):
    """``--amp bf16|fp16``: autocast to that dtype on CUDA; ``none``, or any other device: full precision."""
    if amp == "none" or device.type != "cuda":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler for ``--amp fp16`` on CUDA (bf16 needs none)."""
    return torch.amp.GradScaler("cuda") if (amp == "fp16" and device.type == "cuda") else None


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
    with atomic_output(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(grid.permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")


class Trainer:
    """One training run (stage 1 with ``args.pretrain``, else stage 2) on the process of ``env``."""

    def __init__(self, args: argparse.Namespace, env: Dist):
        self.args, self.env = args, env
        self.dual = args.backbone == "dualstylegan"
        device = self.device = env.device
        torch.manual_seed(args.seed)  # identical initialisation on every rank

        student = build_student(args)
        self.config = student.config
        self.trainable_names = list(TRAINABLE_STAGE1 if args.pretrain else TRAINABLE_STAGE2)
        self.generator = student.generator.to(device).train()
        self.g_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        content = None if student.content_generator is None else student.content_generator.to(device)

        # --- frozen helpers and data ---------------------------------------------------------------
        parser = load_bisenet(args.faceparsing_path, device)
        directions = load_directions(args.direction_path, self.config["style_channels"], device)
        self.styles = None
        if self.dual:
            self.styles = load_styles(args, self.g_ema, device)
            if env.main:
                S.run_dir(args).mkdir(parents=True, exist_ok=True)
                S.copy_file(args.exstyle_path, S.run_dir(args) / "exstyle_code.npy")
        pspencoder, self.lpips = None, None
        if not args.pretrain:
            from model.encoder.psp import load_psp_standalone

            pspencoder = load_psp_standalone(args.style_encoder_path, device).requires_grad_(False)
            if args.perc_loss > 0:
                from model.stylegan.lpips import PerceptualLoss

                self.lpips = PerceptualLoss(vgg_path=args.vgg_path, lpips_path=args.lpips_path).to(device)
            self.discriminator = ConditionalDiscriminator(
                self.config["in_size"], channel_multiplier=self.config["channel_multiplier"],
                channel_max=self.config["channel_max"], use_condition=self.dual,
                style_num=len(self.styles) if self.dual else None).to(device)
            self.d_optim = torch.optim.Adam(self.discriminator.parameters(), lr=args.lr, betas=(0.9, 0.99))
        self.data = Synthesis(args, self.g_ema, content, parser, directions, self.styles, pspencoder)
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
        self.sample: dict[str, Any] | None = None
        self.start = 0
        self.iteration = 0  # iterations done (the state's "iteration"; --start_iter not counted)
        self.finite = FiniteCheck(env, "iteration")
        torch.manual_seed(args.seed * 1000 + env.rank)  # per-rank data stream
        if device.type == "cuda":
            torch.cuda.manual_seed(args.seed * 1000 + env.rank)
        self.scaler = grad_scaler(args.amp, device)

    # ------------------------------------------------------------------------------ data (delegated)
    @property
    def n_latent(self) -> int:
        return self.data.n_latent

    @property
    def prev_wc(self) -> torch.Tensor | None:
        return self.data.prev_wc

    def sample_content_codes(self, batch: int) -> torch.Tensor:
        return self.data.sample_content_codes(batch)

    def render_content(self, wc: torch.Tensor) -> torch.Tensor:
        return self.data.render_content(wc)

    def model_input(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.model_input(img)

    def make_batch(self, idx: int, i: int) -> dict[str, Any]:
        return self.data.stage2_batch(idx, i)

    def autocast(self):
        return autocast_context(self.args.amp, self.device)

    # ---------------------------------------------------------------------------------- state
    @property
    def state_path(self) -> Path:
        return S.state_path(self.args)

    def state_dict(self) -> dict[str, Any]:
        """Everything a killed run needs to continue bit for bit after :attr:`iteration` iterations: the trainable
        parts of the student and its EMA, the discriminator, both optimisers, every process's RNG states, the
        colour-jitter code and the logged sample, plus the stage, backbone, number of processes and run settings
        that :func:`training.state.check_compatible` checks on resume.

        Under ``torchrun`` every process must call it (the RNG states are gathered from all); each gets the dict.
        """
        args, env = self.args, self.env
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state = {"iteration": self.iteration, "generator": self._parts(self.generator),
                 "g_ema": self._parts(self.g_ema), "g_optim": self.g_optim.state_dict(), "rng": env.gather(rng),
                 "prev_wc": self.data.prev_wc, "sample": self.sample, "stage": S.stage(args), "backbone": args.backbone,
                 "world_size": env.world, "settings": S.run_settings(args)}
        if not args.pretrain:
            state["discriminator"] = self.discriminator.state_dict()
            state["d_optim"] = self.d_optim.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (of a compatible run: :func:`training.state.read_state` checks)."""
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
        self.data.prev_wc, self.sample = state["prev_wc"], state["sample"]
        self.start = self.iteration = state["iteration"]

    def _parts(self, model: nn.Module) -> dict[str, Any]:
        return {n: getattr(model, n).state_dict() for n in self.trainable_names}

    def save_state(self, next_idx: int | None = None) -> None:
        """Write :meth:`state_dict` (after ``next_idx`` iterations, default :attr:`iteration`) once it is checked
        finite on every process; rank 0 writes. Every process must call it."""
        if next_idx is not None:
            self.iteration = next_idx
        state = self.state_dict()
        self.finite.ensure(state, "the training state", self.iteration)
        if self.env.main:
            S.write_state(state, self.args)
        self.finite.last_state = (self.state_path, self.iteration)

    def load_state(self, path: Path) -> None:
        """Continue from the training state in ``path`` (refused, in one line, if it does not fit this run)."""
        self.load_state_dict(S.read_state(path, self.args, self.env.world, self.device))
        self.finite.last_state = (Path(path), self.iteration)

    def save_model(self, iteration: int | None) -> Path | None:
        """Write the EMA model (released format; ``_%05d`` for ``iteration``) once it is checked finite on every
        process; rank 0 writes and returns its path (the others ``None``). Every process must call it."""
        self.finite.ensure(self.g_ema.state_dict(), "the EMA model", self.iteration)
        return S.save_model(self, iteration) if self.env.main else None

    # ------------------------------------------------------------------------------------ stage 1
    def pretrain_step(self, i: int) -> dict[str, torch.Tensor]:
        b = self.data.stage1_batch(i)
        with self.autocast():
            fake_feat, fake_skip = self.g_ddp(b["inp"], b["style"], d_s=b["d_s"], return_feat=True)
            loss = L.feature_regression_loss(fake_feat, fake_skip, b["feat"], b["skip"])
        self.g_step(loss)
        return {"recon": loss}

    # ------------------------------------------------------------------------------------ stage 2
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
            d_loss = L.d_logistic_loss(real_pred, fake_pred) * a.adv_loss
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
            losses = {"adv": L.g_nonsaturating_loss(self.discriminate(self.discriminator, fake, b)) * a.adv_loss,
                      "rec": L.reconstruction_loss(fake, b["y"]) * a.grec_loss}
            if self.lpips is not None:
                losses["perc"] = L.perceptual_loss(self.lpips, fake, b["y"]) * a.perc_loss
            if self.dual and a.msk_loss > 0:
                losses["msk"] = L.mask_loss(masks, b["d_s"]) * a.msk_loss
            ramp = L.temporal_ramp(idx, a.iter)
            losses["tmp"] = fake.new_zeros(())  # the temporal loss ramps up in the second half of training
            if a.tmp_loss > 0 and ramp > 0:
                window = L.temporal_window(fake.shape[-1])
                shifted_x = self.data.shifted_input(b["x"], b["mask_full"], window)
                shifted = self.generator(shifted_x, b["xl"], d_s=b["d_s"]).float()
                losses["tmp"] = L.temporal_loss(shifted, fake[window], ramp) * a.tmp_loss
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
    @property
    def log_dir(self) -> Path:
        return Path(self.args.log_dir) / self.args.name

    @property
    def losses_path(self) -> Path:
        return self.log_dir / ("pretrain_losses.csv" if self.args.pretrain else "losses.csv")

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
        self.log_dir.mkdir(parents=True, exist_ok=True)
        save_image_grid(grid, self.log_dir / f"{i + 1:05d}.jpg", nrow=s["y"].shape[0])

    def write_losses(self, i: int, values: dict[str, float]) -> None:
        """Append iteration ``i``'s losses to the CSV (a new file, with its header, at iteration 0)."""
        path = self.losses_path
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(values)
        new = not path.exists() or i == 0
        with open(path, "w" if new else "a") as f:
            if new:
                f.write("iteration," + ",".join(keys) + "\n")
            f.write(f"{i}," + ",".join(repr(values[k]) for k in keys) + "\n")

    # ------------------------------------------------------------------------------------- loop
    def run(self) -> Path | None:
        """Train from ``self.start`` to ``--iter``; returns the path of the last model saved (rank 0; ``None`` on the
        others). Raises :class:`~training.divergence.TrainingDiverged` on every process at the first non-finite
        loss, or before writing a model or state with a non-finite weight."""
        from tqdm.auto import tqdm

        a = self.args
        last_saved = None
        if self.env.main and self.start > 0:
            S.truncate_losses(self.losses_path, self.start + a.start_iter)
        with tqdm(range(self.start, a.iter), initial=self.start, total=a.iter, disable=not self.env.main or a.no_progress,
                  dynamic_ncols=True, desc=a.name + (" pretrain" if a.pretrain else "")) as bar:  # closed on an error too
            for idx in bar:
                i = idx + a.start_iter
                if i > a.iter:
                    break
                losses = self.pretrain_step(i) if a.pretrain else self.main_step(idx, i)
                values = self.env.mean(losses)  # on the host, the same on every process
                if self.env.main:
                    bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()})
                    self.write_losses(i, values)
                self.finite.losses(values, i)
                self.iteration = idx + 1
                if self.env.main and not a.pretrain and (i == 0 or (i + 1) % a.log_every == 0 or i + 1 == a.iter):
                    # a degree drawn from its own generator, so logging never shifts the training RNG stream
                    d_now = draw_degree_level(torch.Generator().manual_seed(i))
                    self.log_samples(i, d_now if self.dual else None)
                if ((i + 1) >= a.save_begin and (i + 1) % a.save_every == 0) or i + 1 == a.iter:
                    last_saved = self.save_model(None if i + 1 == a.iter else i + 1)
                if (idx + 1) % a.state_every == 0 or idx + 1 == a.iter:
                    self.save_state()
                if a.stop_at is not None and idx + 1 == a.stop_at:
                    self.env.barrier()
                    return None
        self.env.barrier()
        return last_saved
