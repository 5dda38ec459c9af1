"""Fine-tune an FFHQ StyleGAN2 into a style teacher (the Toonify generator VToonify-T distils).

Two recipes, one loop (:class:`TeacherTrainer`):

* **few-shot** (1-20 references, JoJoGAN's recipe): each aligned reference ``y_i`` has a W+ code ``w_i``
  (its pSp Z+ code through the mapping network). A training code takes ``w_i`` and replaces the rows
  ``swap`` by ``(1 - strength) * w_i + strength * w_rand`` with ``w_rand`` a random mapped code
  (``swap`` = rows 7.. ; with ``preserve_color`` only JoJoGAN's rows 9, 11, 15, 16, 17 that exist). The
  generator is trained so that ``G(code)`` looks like ``y_i`` under a perceptual loss: the mean L1 distance
  of the discriminator's block features when a discriminator is given (JoJoGAN), else LPIPS on 256 px.
  With ``preserve_color`` the target is also recoloured to the per-channel mean and standard deviation of
  the generated image (no gradient), so the loss has no pull on colour statistics. The mapping network
  is frozen (the latent space stays FFHQ's, which VToonify-T's blending and the pSp codes assume).
* **collection** (about 100+ pictures, Toonify's recipe): adversarial fine-tuning with the non-saturating
  logistic loss, lazy R1 on real images every ``d_reg_every`` steps, the first ``freeze_d`` blocks of the
  discriminator frozen, style mixing (0.9), the adaptive augmentation probability of StyleGAN2-ADA
  (target sign(D(real)) = 0.6) applied with :func:`model.simple_augment.random_apply_affine`, and an EMA
  of the generator.

Every step draws its randomness from ``seed``, the step number and the process's rank only, so a run resumed
from a training state at step ``k`` computes exactly what the uninterrupted run computes.

Under ``torchrun`` (``dist``: a :class:`training.dist.Dist` of several processes) every process draws its own
batch of ``batch`` pictures, the gradients are averaged over the processes after each backward pass (so the
effective batch is ``batch x processes``), the adaptive augmentation counts every process's predictions, and
rank 0 alone writes the outputs. The generators are checked to be identical on every process before each
state or teacher is saved.

A step whose loss is NaN or infinite stops the run with one line naming the step and the last good training
state, and no teacher or state holding a non-finite tensor is written (:mod:`training.divergence`).

Outputs under ``out_dir``: ``finetune-%06d.pt`` (``{'g_ema': state_dict, 'latent_avg': (512,)}``, the
released Toonify format that ``train_vtoonify.py --finetunegan_path`` and
:func:`model.checkpoint.load_stylegan2` read), ``teacher_state.pt`` (generator, EMA, discriminator,
optimisers, ADA state: ``--resume``), ``losses.csv`` and ``samples/step_%06d.jpg`` (fixed random faces
before / after, beside the references).
"""
from __future__ import annotations

import copy
import csv
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.atomic import atomic_output
from common.options import check
from common.sheets import caption, grid
from model.dualstylegan import STRUCTURE_ROWS
from model.errors import UserError
from model.simple_augment import random_apply_affine
from pipeline.styles import fit_rows
from training.dist import Dist
from training.divergence import FiniteCheck, is_finite
from training.loop import EMA_DECAY, accumulate

__all__ = ["TeacherConfig", "TeacherTrainer", "swap_rows", "mix_reference_codes", "match_colour",
           "discriminator_features", "feature_loss", "STATE_NAME", "finetune_name"]

STATE_NAME = "teacher_state.pt"
#: JoJoGAN's rows randomised with ``preserve_color`` (the others keep the reference's code).
PRESERVE_COLOR_SWAP = (9, 11, 15, 16, 17)
SAMPLE_SEED = 1234
#: The columns of ``losses.csv`` after ``step``, per mode.
CSV_COLUMNS = {"fewshot": ("perc",), "collection": ("d", "real_score", "fake_score", "ada_p", "r1", "g")}
N_SAMPLES = 4
#: The :class:`TeacherConfig` fields that are ``train_style.py`` flags of the same name, and their entry of
#: :data:`common.options.RANGES`.
CONFIG_RANGES = {"iter": "iter", "batch": "batch", "lr": "lr", "strength": "strength", "seed": "seed",
                 "sample_every": "sample_every", "state_every": "state_every", "r1": "r1", "freeze_d": "freeze_d"}


class TeacherStateError(UserError, ValueError):
    """The training state does not belong to this run."""


@dataclass
class TeacherConfig:
    mode: str = "fewshot"  # fewshot | collection
    iter: int = 300
    batch: int = 4
    lr: float = 2e-3
    strength: float = 1.0
    preserve_color: bool = False
    seed: int = 0
    sample_every: int = 100
    state_every: int = 50
    r1: float = 10.0
    d_reg_every: int = 16
    freeze_d: int = 4
    mixing: float = 0.9
    ada_target: float = 0.6
    ada_length: int = 10_000
    ema_decay: float = EMA_DECAY
    amp: str = "none"  # none | bf16 | fp16 (CUDA)


def finetune_name(step: int) -> str:
    return f"finetune-{step:06d}.pt"


def swap_rows(n_latent: int, preserve_color: bool) -> list[int]:
    """W+ rows that take the random code in few-shot training (see the module docstring)."""
    if preserve_color:
        rows = [r for r in PRESERVE_COLOR_SWAP if r < n_latent]
        return rows or [n_latent - 1]
    return list(range(min(STRUCTURE_ROWS, n_latent - 1), n_latent))


def mix_reference_codes(w_ref: torch.Tensor, w_rand: torch.Tensor, rows: list[int], strength: float) -> torch.Tensor:
    """``w_ref`` (B, n, C) with ``rows`` moved towards the random codes ``w_rand`` (B, C) by ``strength``."""
    code = w_ref.clone()
    code[:, rows] = (1 - strength) * w_ref[:, rows] + strength * w_rand[:, None]
    return code


def match_colour(target: torch.Tensor, like: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``target`` with the per-image, per-channel mean and standard deviation of ``like`` (both (B, 3, H, W))."""
    t_mean, t_std = target.mean((2, 3), keepdim=True), target.std((2, 3), keepdim=True)
    l_mean, l_std = like.mean((2, 3), keepdim=True), like.std((2, 3), keepdim=True)
    return (target - t_mean) / (t_std + eps) * l_std + l_mean


def discriminator_features(d: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of every block of a StyleGAN2 discriminator's body (``d.convs``)."""
    feats = []
    for block in d.convs:
        x = block(x)
        feats.append(x)
    return feats


def feature_loss(fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.l1_loss(a, b) for a, b in zip(fake_feats, real_feats)) / len(fake_feats)


def _to_rgb_uint8(x: torch.Tensor, size: int) -> list[np.ndarray]:
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) if im.shape[0] != size else im for im in x]


class TeacherTrainer:
    """Fine-tunes ``generator`` (an FFHQ StyleGAN2 ``Generator``) toward ``references``.

    Args:
        config: :class:`TeacherConfig`.
        generator: the FFHQ generator (its weights are the starting point; it is copied, not modified).
        discriminator: the FFHQ discriminator, or ``None`` (few-shot then uses ``perceptual``).
        references: (N, S, S, 3) uint8 aligned pictures at the generator's resolution ``S``.
        names: their names (for the sheets).
        invert: few-shot only: maps (N, 3, 256, 256) images in [-1, 1] to (N, >= n_latent, C) Z+ codes
            (the pSp encoder).
        perceptual: few-shot without discriminator: an LPIPS module (or a callable building it).
        out_dir: where the outputs go (see the module docstring).
        device: where to train (ignored when ``dist`` is given: its device is used).
        dist: the processes of a ``torchrun`` launch (default: this process alone).
    """

    def __init__(self, config: TeacherConfig, generator: nn.Module, discriminator: nn.Module | None,
                 references: np.ndarray, names: list[str], out_dir: str | Path,
                 invert: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 perceptual: nn.Module | Callable[[], nn.Module] | None = None,
                 device: str | torch.device = "cpu", progress: bool = True, dist: Dist | None = None):
        if config.mode not in ("fewshot", "collection"):
            raise UserError(f"--mode must be fewshot or collection, got {config.mode!r}")
        for field, key in CONFIG_RANGES.items():
            check(key, getattr(config, field), f"--{field}")
        if config.mode == "collection" and discriminator is None:
            raise UserError("--mode collection needs a discriminator: --stylegan_path must hold 'd' "
                            "(stylegan2-ffhq-config-f.pt does)")
        if config.mode == "fewshot" and discriminator is None and perceptual is None:
            raise UserError("few-shot training without a discriminator in --stylegan_path needs LPIPS "
                            "(--vgg_path and --lpips_path)")
        self.env = dist if dist is not None else Dist.single(device)
        self.cfg, self.names, self.progress = config, list(names), progress and self.env.main
        self.device = self.env.device
        self.out_dir = Path(out_dir)
        if self.env.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.g0 = copy.deepcopy(generator).to(self.device).eval().requires_grad_(False)  # the untouched FFHQ generator
        self.g = copy.deepcopy(generator).to(self.device).train().requires_grad_(True)
        self.g.style.requires_grad_(False)  # the mapping network stays FFHQ's
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False)
        self.size, self.n_latent = self.g.size, self.g.n_latent
        self.d = copy.deepcopy(discriminator).to(self.device) if discriminator is not None else None
        self._perceptual = perceptual
        x = torch.from_numpy(np.ascontiguousarray(references)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        if x.shape[-1] != self.size:
            raise UserError(f"references are {x.shape[-1]} px, the generator {self.size} px")
        self.targets = x.to(self.device)
        g_params = [p for p in self.g.parameters() if p.requires_grad]
        if config.mode == "fewshot":
            if invert is None:
                raise UserError("few-shot training needs the pSp encoder (--style_encoder_path)")
            with torch.no_grad():
                z = invert(F.interpolate(self.targets, size=256, mode="area") if self.size > 256 else
                           F.interpolate(self.targets, size=256, mode="bilinear", align_corners=False)
                           if self.size < 256 else self.targets)
                z = fit_rows(z.float(), self.n_latent)
                self.w_ref = torch.stack([self.g0.style(z[:, r]) for r in range(self.n_latent)], 1)
            self.rows = swap_rows(self.n_latent, config.preserve_color)
            if self.d is not None:
                self.d.eval().requires_grad_(False)
            self.g_optim = torch.optim.Adam(g_params, lr=config.lr, betas=(0.0, 0.99))
            self.d_optim = None
        else:
            self.w_ref = None
            for i, block in enumerate(self.d.convs):
                block.requires_grad_(i >= config.freeze_d)
            self.d.train()
            ratio = config.d_reg_every / (config.d_reg_every + 1)
            self.g_optim = torch.optim.Adam(g_params, lr=config.lr, betas=(0.0, 0.99))
            self.d_optim = torch.optim.Adam([p for p in self.d.parameters() if p.requires_grad], lr=config.lr * ratio,
                                            betas=(0.0, 0.99 ** ratio))
        self.ada_p, self.ada_signs, self.ada_count = 0.0, 0.0, 0
        self.step = 0
        self.finite = FiniteCheck(self.env, "step")
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.amp == "fp16" and self.device.type == "cuda")
        gen = torch.Generator().manual_seed(SAMPLE_SEED)
        self.sample_z = torch.randn(N_SAMPLES, self.g.style_dim, generator=gen).to(self.device)
        with torch.no_grad():
            self.sample_before = _to_rgb_uint8(self.g0([self.sample_z], randomize_noise=False)[0], min(self.size, 256))

    # ------------------------------------------------------------------------------------------ pieces
    @property
    def perceptual(self) -> nn.Module:
        if self._perceptual is not None and not isinstance(self._perceptual, nn.Module):
            self._perceptual = self._perceptual().to(self.device)
        return self._perceptual

    def _autocast(self):
        enabled = self.cfg.amp != "none" and self.device.type == "cuda"
        dtype = torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype, enabled=enabled)

    def _seed(self, step: int) -> None:
        s = (self.cfg.seed * 1_000_003 + step) % (2 ** 63)
        if self.env.rank:  # every process its own stream (rank 0's is that of a single-process run)
            s = (s * 7_919 + self.env.rank * 104_729) % (2 ** 63)
        torch.manual_seed(s)
        random.seed(s)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return random_apply_affine(x, self.ada_p)[0] if self.ada_p > 0 else x

    def _backward(self, loss: torch.Tensor, optim: torch.optim.Optimizer) -> None:
        optim.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.env.average_gradients(p for group in optim.param_groups for p in group["params"])
        self.scaler.step(optim)
        self.scaler.update()

    def fewshot_step(self) -> dict[str, float]:
        cfg = self.cfg
        idx = torch.randint(len(self.targets), (cfg.batch,)).to(self.device)
        with torch.no_grad():
            w_rand = self.g0.style(torch.randn(cfg.batch, self.g.style_dim, device=self.device))
        code = mix_reference_codes(self.w_ref[idx], w_rand, self.rows, cfg.strength)
        with self._autocast():
            fake = self.g([code], input_is_latent=True)[0]
            target = self.targets[idx]
            if cfg.preserve_color:
                target = match_colour(target, fake.detach().float())
            if self.d is not None:
                with torch.no_grad():
                    real_feats = discriminator_features(self.d, target)
                loss = feature_loss(discriminator_features(self.d, fake), real_feats)
            else:
                pool = (lambda t: F.adaptive_avg_pool2d(t, 256)) if self.size > 256 else (lambda t: t)
                loss = self.perceptual(pool(fake), pool(target)).mean()
        self._backward(loss, self.g_optim)
        self.g_ema.load_state_dict(self.g.state_dict())  # few-shot keeps no average: the teacher is the generator
        return self.env.mean({"perc": loss.detach()})

    def _noise(self, batch: int) -> list[torch.Tensor]:
        if random.random() < self.cfg.mixing:
            return list(torch.randn(2, batch, self.g.style_dim, device=self.device).unbind(0))
        return [torch.randn(batch, self.g.style_dim, device=self.device)]

    def collection_step(self) -> dict[str, float]:
        cfg, step = self.cfg, self.step
        idx = torch.randint(len(self.targets), (cfg.batch,)).to(self.device)
        flip = torch.rand(cfg.batch, device=self.device) < 0.5
        real = torch.where(flip[:, None, None, None], self.targets[idx].flip(3), self.targets[idx])
        # discriminator
        self.d.requires_grad_(True)
        for i, block in enumerate(self.d.convs):
            block.requires_grad_(i >= cfg.freeze_d)
        self.g.requires_grad_(False)
        with torch.no_grad(), self._autocast():
            fake = self.g(self._noise(cfg.batch))[0]
        with self._autocast():
            fake_pred = self.d(self._augment(fake.float()))
            real_pred = self.d(self._augment(real))
            d_loss = F.softplus(fake_pred).mean() + F.softplus(-real_pred).mean()
        self._backward(d_loss, self.d_optim)
        losses = {"d": d_loss.detach(), "real_score": real_pred.detach().mean(), "fake_score": fake_pred.detach().mean()}
        # adaptive augmentation probability (from the real predictions of every process)
        signs, count = self.env.sum([torch.sign(real_pred.detach().float()).sum().item(), real_pred.shape[0]])
        self.ada_signs += signs
        self.ada_count += int(count)
        if (step + 1) % 4 == 0:
            rt = self.ada_signs / self.ada_count
            self.ada_p = float(min(max(self.ada_p + np.sign(rt - cfg.ada_target) * self.ada_count / cfg.ada_length, 0.0),
                                   1.0 - 1e-6))
            self.ada_signs, self.ada_count = 0.0, 0
        # lazy R1
        if step % cfg.d_reg_every == 0:
            real_r = real.detach().requires_grad_(True)
            pred = self.d(self._augment(real_r))
            (grad,) = torch.autograd.grad(pred.sum(), real_r, create_graph=True)
            r1 = grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()
            self._backward(cfg.r1 / 2 * r1 * cfg.d_reg_every, self.d_optim)
            losses["r1"] = r1.detach()
        # generator
        self.d.requires_grad_(False)
        self.g.requires_grad_(True)
        self.g.style.requires_grad_(False)
        with self._autocast():
            fake = self.g(self._noise(cfg.batch))[0]
            g_loss = F.softplus(-self.d(self._augment(fake.float()))).mean()
        self._backward(g_loss, self.g_optim)
        losses["g"] = g_loss.detach()
        with torch.no_grad():
            accumulate(self.g_ema, self.g, cfg.ema_decay)
        return {**self.env.mean(losses), "ada_p": self.ada_p}  # losses.csv orders them (CSV_COLUMNS)

    # -------------------------------------------------------------------------------------------- state
    @property
    def state_path(self) -> Path:
        return self.out_dir / STATE_NAME

    def _identity(self) -> dict:
        keep = ("mode", "batch", "lr", "strength", "preserve_color", "seed", "r1", "d_reg_every", "freeze_d", "mixing",
                "ada_target", "ada_length", "ema_decay")
        identity = {"config": {k: asdict(self.cfg)[k] for k in keep}, "size": self.size, "references": self.names}
        if self.env.world > 1:  # the effective batch and the random streams depend on it
            identity["processes"] = self.env.world
        return identity

    def state_dict(self) -> dict:
        """Everything a killed run needs to continue exactly after :attr:`step` steps: generator, EMA, optimisers,
        discriminator, adaptive-augmentation state, and the identity of the run (config, size, references,
        processes) that :meth:`load_state` checks."""
        state = {"step": self.step, "identity": self._identity(), "g": self.g.state_dict(), "g_ema": self.g_ema.state_dict(),
                 "g_optim": self.g_optim.state_dict(), "ada": [self.ada_p, self.ada_signs, self.ada_count]}
        if self.d is not None:
            state["d"] = self.d.state_dict()
        if self.d_optim is not None:
            state["d_optim"] = self.d_optim.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict` (of this run: :meth:`load_state` checks its identity)."""
        self.step = int(state["step"])
        self.g.load_state_dict(state["g"])
        self.g_ema.load_state_dict(state["g_ema"])
        self.g_optim.load_state_dict(state["g_optim"])
        if self.d is not None and "d" in state:
            self.d.load_state_dict(state["d"])
        if self.d_optim is not None:
            self.d_optim.load_state_dict(state["d_optim"])
        self.ada_p, self.ada_signs, self.ada_count = float(state["ada"][0]), float(state["ada"][1]), int(state["ada"][2])

    def save_state(self) -> None:
        """``teacher_state.pt`` (rank 0 writes it; every process checks first that the state is finite and that its
        generator is rank 0's)."""
        state = self.state_dict()
        self.finite.ensure(state, "the training state", self.step)
        self.env.check_in_sync(self.g, "the generator")
        if self.env.main:
            with atomic_output(self.state_path) as tmp:
                torch.save(state, tmp)
        self.finite.last_state = (self.state_path, self.step)

    def load_state(self, path: str | Path | None = None) -> None:
        path = Path(path) if path is not None else self.state_path
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("identity") != self._identity():
            raise TeacherStateError(f"{path} is the state of another run (other references, options or number of "
                                    f"torchrun processes); use another --name, or delete it to start again")
        if not is_finite(state):
            raise TeacherStateError(f"{path} holds non-finite weights (saved by a diverged run); use another --name, "
                                    "or delete it to start again")
        self.load_state_dict(state)
        self.finite.last_state = (path, self.step)

    # ------------------------------------------------------------------------------------------ outputs
    def _csv(self, row: dict[str, float]) -> None:
        """One row of ``losses.csv`` in the mode's columns (empty where a step has no such value: R1 is lazy)."""
        if not self.env.main:
            return
        path = self.out_dir / "losses.csv"
        new = not path.exists()
        columns = CSV_COLUMNS[self.cfg.mode]
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", *columns])
            writer.writerow([self.step, *("" if row.get(c) is None else f"{row[c]:.6g}" for c in columns)])

    def _truncate_csv(self) -> None:
        """Drop the rows of steps >= the resumed step (written after the state was saved)."""
        path = self.out_dir / "losses.csv"
        if not self.env.main or not path.exists():
            return
        if self.step == 0:  # a fresh run
            path.unlink()
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= self.step]
        with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)

    @torch.no_grad()
    def sample_sheet(self) -> Path | None:
        """``samples/step_%06d.jpg``: fixed random faces before (FFHQ) and after, and the references (rank 0;
        ``None`` on the others)."""
        if not self.env.main:
            return None
        side = min(self.size, 256)
        after = _to_rgb_uint8(self.g_ema([self.sample_z], randomize_noise=False)[0], side)
        refs = _to_rgb_uint8(self.targets[:8], side)
        rows = [[caption(im, "FFHQ") for im in self.sample_before], [caption(im, f"step {self.step}") for im in after],
                [caption(im, name[:20]) for im, name in zip(refs, self.names)]]
        path = self.out_dir / "samples" / f"step_{self.step:06d}.jpg"
        path.parent.mkdir(exist_ok=True)
        with atomic_output(path) as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(grid(rows), cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write {path}")
        return path

    def save_teacher(self) -> Path:
        """``finetune-%06d.pt`` with ``{'g_ema', 'latent_avg'}`` (released Toonify format), written by rank 0;
        every process returns its path once it is written (after checking it is finite on every process)."""
        self.finite.ensure(self.g_ema.state_dict(), "the teacher (g_ema)", self.step)
        self.env.check_in_sync(self.g_ema, "the teacher (g_ema)")
        path = self.out_dir / finetune_name(self.step)
        if self.env.main:
            self._write_teacher(path)
        self.env.barrier()
        return path

    def _write_teacher(self, path: Path) -> None:
        gen = torch.Generator(device="cpu").manual_seed(SAMPLE_SEED)
        with torch.no_grad():
            z = torch.randn(4096, self.g.style_dim, generator=gen).to(self.device)
            latent_avg = self.g_ema.style(z).mean(0)
        with atomic_output(path) as tmp:
            torch.save({"g_ema": {k: v.detach().cpu() for k, v in self.g_ema.state_dict().items()},
                        "latent_avg": latent_avg.cpu()}, tmp)

    def run(self, stop_at: int | None = None) -> Path | None:
        """Train to ``config.iter`` steps (from the loaded state, if any); returns the teacher's path, or
        ``None`` when stopped at ``stop_at`` (the state is saved there). Raises
        :class:`~training.divergence.TrainingDiverged` on every process at the first non-finite loss, or before
        writing a state or teacher with a non-finite weight."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        self._truncate_csv()
        step_fn = self.fewshot_step if cfg.mode == "fewshot" else self.collection_step
        with tqdm(total=cfg.iter, initial=self.step, desc=f"teacher ({cfg.mode})", unit="step",
                  disable=not self.progress) as bar:
            while self.step < cfg.iter:
                self._seed(self.step)
                losses = step_fn()
                self.step += 1
                self._csv(losses)
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
                self.finite.losses(losses, self.step)  # host floats, the same on every process
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self.sample_sheet()
                if self.step % cfg.state_every == 0 or self.step == cfg.iter or self.step == stop_at:
                    self.save_state()
                if stop_at is not None and self.step >= stop_at and self.step < cfg.iter:
                    self.env.barrier()
                    return None
        if not cfg.sample_every or cfg.iter % cfg.sample_every:
            self.sample_sheet()
        return self.save_teacher()
