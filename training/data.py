"""Training data, synthesised by the frozen teachers (nothing is read from disk).

A content face is a random W+ code of the content StyleGAN (the FFHQ generator: inside the DualStyleGAN
for VToonify-D, G0 for VToonify-T) with a LowRankGAN attribute edit on rows :data:`EDIT_ROWS`, rendered
with :data:`TEACHER_TRUNCATION`. Its model input is the image downsampled twice with the k4 blur plus
the BiSeNet parsing logits (computed at twice the input size) downsampled once and divided by
:data:`~model.vtoonify.PARSING_SCALE`. Stage 1 regresses the generator's features of the same code;
stage 2 pairs the content with the teacher's stylised rendering (:meth:`Synthesis.stage2_batch`).
"""
from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.dualstylegan import STRUCTURE_ROWS, interp_weights, mix_rows
from model.stylegan.model import Downsample, Generator
from model.vtoonify import PARSING_SCALE, VToonify
from pipeline.styles import fit_rows

__all__ = ["TEACHER_TRUNCATION", "DEGREE_LEVELS", "EDIT_ROWS", "draw_degree_level", "colour_jitter_active",
           "colour_jitter", "Synthesis"]

#: Every teacher rendering scales the W+ code by 0.5 (``truncation=0.5, truncation_latent=0``).
TEACHER_TRUNCATION = 0.5
#: Stage 2 draws the style degree from the levels ``k / DEGREE_LEVELS``, ``k = 0 .. DEGREE_LEVELS``.
DEGREE_LEVELS = 5
#: The W+ rows (3 .. 6) that the attribute-edit directions are added to.
EDIT_ROWS = slice(3, STRUCTURE_ROWS)


def draw_degree_level(generator: torch.Generator | None = None) -> float:
    """A style degree drawn uniformly from ``{0, 1/5, ..., 1}``."""
    return float(torch.randint(0, DEGREE_LEVELS + 1, (), generator=generator)) / DEGREE_LEVELS


def colour_jitter_active(args: argparse.Namespace, idx: int, i: int) -> bool:
    """Colour jitter runs for VToonify-D from the second half of training (``i >= iter/2``, not the first
    iteration of a run), and only when both colour and style vary (neither ``--fix_color`` nor ``--fix_style``)."""
    return idx > 0 and i >= args.iter / 2 and not args.fix_color and not args.fix_style


def colour_jitter(wc: torch.Tensor, prev_wc: torch.Tensor, i: int, iters: int) -> torch.Tensor:
    """``wc`` with its colour rows (7 ..) blended with the previous iteration's:
    ``prev * (r - 1) + wc * (2 - r)``, ``r = i / (iters / 2)`` (all ``wc`` at the middle of training,
    all ``prev`` at the end); the structure rows are kept."""
    r = i / (iters / 2)
    mixed = wc.clone()
    mixed[:, STRUCTURE_ROWS:] = prev_wc[:, STRUCTURE_ROWS:] * (r - 1) + wc[:, STRUCTURE_ROWS:] * (2 - r)
    return mixed


class Synthesis:
    """Batch synthesis for both stages from the frozen networks.

    ``g_ema`` is the EMA student (its frozen generator is the teacher: the DualStyleGAN, or the blended
    G1 of VToonify-T); ``content_generator`` is G0 for VToonify-T, None for VToonify-D. ``prev_wc`` (the
    previous iteration's content code, used by the colour jitter) is part of the resumable state.
    """

    def __init__(self, args: argparse.Namespace, g_ema: VToonify, content_generator: Generator | None, parser: nn.Module,
                 directions: torch.Tensor, styles: torch.Tensor | None = None, pspencoder: nn.Module | None = None):
        self.args = args
        self.dual = args.backbone == "dualstylegan"
        self.g_ema = g_ema
        self.stylegan = g_ema.stylegan()
        self.content = self.stylegan if self.dual else content_generator
        self.n_latent = self.stylegan.n_latent
        self.style_channels = g_ema.style_channels
        self.device = directions.device
        self.parser = parser
        self.down = Downsample([1, 3, 3, 1]).to(self.device)
        self.directions = directions
        self.styles = styles
        self.pspencoder = pspencoder
        self.prev_wc: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------ primitives
    @torch.no_grad()
    def sample_content_codes(self, batch: int) -> torch.Tensor:
        """W+ codes of random faces with attribute edits on rows 3-6 (before truncation)."""
        z = torch.randn(batch, self.style_channels, device=self.device)
        wc = self.content.style(z).unsqueeze(1).repeat(1, self.n_latent, 1)
        idx = torch.randint(0, self.directions.shape[0], (batch,), device=self.device)
        wc[:, EDIT_ROWS] += self.directions[idx, EDIT_ROWS]
        return wc

    @torch.no_grad()
    def render_content(self, wc: torch.Tensor) -> torch.Tensor:
        return self.content([wc], input_is_latent=True, truncation=TEACHER_TRUNCATION, truncation_latent=0)[0].clamp(-1, 1)

    @torch.no_grad()
    def parsing(self, img_half: torch.Tensor) -> torch.Tensor:
        """BiSeNet logits of an image at half the teacher size (computed there, as in training)."""
        return self.parser(2 * img_half)[0]

    @torch.no_grad()
    def model_input(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(input (B, 22, S/4, S/4), parsing at S/2) for a teacher-size image."""
        half = self.down(img)
        parsing = self.parsing(half)
        return torch.cat([self.down(half), self.down(parsing) / PARSING_SCALE], dim=1), parsing

    @torch.no_grad()
    def shifted_input(self, x: torch.Tensor, mask_full: torch.Tensor, window: tuple[slice, ...]) -> torch.Tensor:
        """The model input of a crop of the teacher-size image ``x`` and its teacher-size parsing ``mask_full``
        (the crop offset is taken at full size, so the downsampled input is sub-pixel shifted)."""
        return self.down(self.down(torch.cat([x[window], mask_full[window] / PARSING_SCALE], dim=1)))

    @torch.no_grad()
    def style_codes_of(self, img: torch.Tensor) -> torch.Tensor:
        """W+ code of a synthetic face through the pSp encoder (E_s)."""
        x = F.adaptive_avg_pool2d(img, 256)
        return self.g_ema.zplus2wplus(fit_rows(self.pspencoder(x.float()), self.n_latent))

    def sample_degree(self, i: int) -> float:
        """Stage 1: 0 for the first quarter, then U(0, 1); stage 2: a level k/5; ``--style_degree`` with ``--fix_degree``."""
        a = self.args
        if a.fix_degree:
            return a.style_degree
        if a.pretrain:
            return 0.0 if i <= a.iter / 4 else float(torch.rand(()))
        return draw_degree_level()

    def sample_styles(self, batch: int, fixed: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Exemplar W+ codes and their indices: ``--style_id`` for the whole batch if ``fixed``, else random."""
        if fixed:
            ind = torch.full((batch,), self.args.style_id, dtype=torch.long)
        else:
            ind = torch.randint(0, len(self.styles), (batch,))
        ind = ind.to(self.device)
        return self.styles[ind], ind

    # --------------------------------------------------------------------------------------- stage 1
    @torch.no_grad()
    def stage1_batch(self, i: int) -> dict[str, Any]:
        """Input, style condition and the frozen generator's 32x32 feature/skip targets for the same face."""
        B = self.args.batch
        ws = self.sample_content_codes(B)
        inp, _ = self.model_input(self.render_content(ws))
        if self.dual:
            d_s = self.sample_degree(i)
            style, _ = self.sample_styles(B, self.args.fix_style)
            feat, skip = self.g_ema.generator([ws], style, input_is_latent=True, return_feat=True,
                                              truncation=TEACHER_TRUNCATION, truncation_latent=0, use_res=True,
                                              interp_weights=[d_s] * self.n_latent)
        else:
            d_s, style = None, None
            feat, skip = self.g_ema.generator([ws], input_is_latent=True, return_feature_ind=2 * self.g_ema.bottom_block + 2,
                                              truncation=TEACHER_TRUNCATION, truncation_latent=0)
        return {"inp": inp, "style": style, "d_s": d_s, "feat": feat, "skip": skip}

    # --------------------------------------------------------------------------------------- stage 2
    @torch.no_grad()
    def stage2_style(self, wc: torch.Tensor, xc: torch.Tensor, first: bool) -> tuple[float | None, list[float] | None,
                                                                                      torch.Tensor, torch.Tensor | None]:
        """(d_s, interp_weights, style code xl, style indices) of a stage-2 batch of content codes ``wc``
        rendered as ``xc``.

        VToonify-D: the degree is ``--style_degree`` with ``--fix_degree`` or on the first iteration, else
        a level k/5; the exemplar is ``--style_id`` with ``--fix_style`` or on the first iteration, else
        random per sample; ``xl`` is the exemplar's full code when only the style is fixed (colour
        transfer from a fixed exemplar), else its structure rows with the content's own pSp code on the
        colour rows; the colour rows are interpolated with weight 0 with ``--fix_color``, else 1.
        VToonify-T: ``xl`` is the content code's structure rows scaled by the truncation, and the content's
        pSp code on the colour rows.
        """
        a, B = self.args, self.args.batch
        if not self.dual:
            return None, None, mix_rows(TEACHER_TRUNCATION * wc, self.style_codes_of(xc)), None
        d_s = a.style_degree if (a.fix_degree or first) else draw_degree_level()
        weight = interp_weights(d_s, color_transfer=not a.fix_color, n_latent=self.n_latent)
        style, style_ind = self.sample_styles(B, a.fix_style or first)
        xl = style if (not a.fix_color and a.fix_style) else mix_rows(style, self.style_codes_of(xc))
        return d_s, weight, xl, style_ind

    @torch.no_grad()
    def stage2_batch(self, idx: int, i: int) -> dict[str, Any]:
        """A stage-2 batch: content ``x`` and teacher target ``y`` (jointly augmented), the model input, the
        teacher-size parsing ``mask_full``, the style code ``xl``, ``d_s``, style indices and degree label."""
        from model.simple_augment import random_apply_affine

        B = self.args.batch
        wc = self.sample_content_codes(B)
        xc = self.render_content(wc)
        d_s, weight, xl, style_ind = self.stage2_style(wc, xc, first=idx == 0)
        if self.dual:
            y = self.g_ema.generator([wc], xl, input_is_latent=True, truncation=TEACHER_TRUNCATION, truncation_latent=0,
                                     use_res=True, interp_weights=weight)[0].clamp(-1, 1)
            # colour jitter: the input's colours drift from the colour code carried by xl in the second half
            if colour_jitter_active(self.args, idx, i) and self.prev_wc is not None:
                xc = self.render_content(colour_jitter(wc, self.prev_wc, i, self.args.iter))
            self.prev_wc = wc
        else:
            y = self.g_ema.generator([xl], input_is_latent=True)[0].clamp(-1, 1)
        aug, _ = random_apply_affine(torch.cat([xc, y], dim=1), 0.2)
        x, y = aug[:, :3], aug[:, 3:]
        inp, parsing = self.model_input(x)
        mask_full = F.adaptive_avg_pool2d(parsing, x.shape[-1])
        return {"x": x, "y": y, "inp": inp, "mask_full": mask_full, "xl": xl, "d_s": d_s, "style_ind": style_ind,
                "degree_label": None if d_s is None else torch.full((B, 1), d_s, device=self.device)}
