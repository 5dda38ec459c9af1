"""Any picture as a VToonify-D exemplar: its Z+ style code, optionally refined, cached, or added to a bank.

VToonify-D is driven by an exemplar's extrinsic code: a (1, 18, 512) **Z+** code that the pipeline maps
to W+ with ``VToonify.zplus2wplus`` (:meth:`pipeline.stylize.VToonifyPipeline.exstyle`). The released
``exstyle_code.npy`` files hold the pSp encoder's Z+ codes of the style images (refined per style). This
module makes such a code for any image:

1. **Alignment**: the exemplar is FFHQ-aligned to 256x256 with the same :func:`pipeline.faces.align_face`
   the pipeline uses for content faces. Art that is already an aligned face square (a 1024 or 256 crop,
   as DualStyleGAN's style datasets are) is only resized (``aligned=True``, ``--style_aligned``): dlib
   often finds no face in a drawing, and the error then says so.
2. **Encoding**: the pSp encoder (:func:`model.encoder.psp.load_psp_standalone`, which adds
   ``latent_avg``) gives the Z+ code ``z0`` of the aligned exemplar ``x``.
3. **Refinement** (optional, ``refine`` steps of Adam): the extrinsic code ``z`` (initialised to ``z0``) is
   optimised so that DualStyleGAN, with the exemplar's own code ``z0`` as intrinsic style and ``z`` on
   its extrinsic path at full degree on every row (``interp_weights = [1] * n_latent``, fixed noise),
   reconstructs the exemplar::

       loss(z) = LPIPS(avgpool_256(G(z0 | zplus2wplus(z))), x) + reg * mean((z - z0) ** 2)

4. **Cache**: the code is stored under ``<cache>/<key>.npy`` (a plain float32 array, written atomically),
   ``key`` = SHA-256 of the decoded pixels, the options and fingerprints of the networks involved, so a
   second run with the same picture and models reads it back without running pSp or the refinement.
   The cache folder is ``$VTOONIFY_CACHE/exstyle``, else ``$XDG_CACHE_HOME/vtoonify/exstyle``, else
   ``~/.cache/vtoonify/exstyle``.

Adding codes to a model's bank (the released format, readable by the original code's
``np.load(path, allow_pickle=True).item()``)::

    python -m pipeline.exstyle add art1.png art2.jpg --to checkpoint/vtoonify_d_cartoon/exstyle_code.npy

The new styles are appended after the existing ones, so their ``--style_id`` values are printed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from common.atomic import atomic_output, cache_root, file_lock, store_cache
from common.errors import InputError
from common.images import read_rgb
from common.options import ranged
from hub.released import released_path
from model.errors import UserError
from model.stylegan.model import apply_mapping
from pipeline.faces import align_face
from pipeline.styles import fit_rows, load_exstyle_codes, save_exstyle_codes

__all__ = [
    "ExemplarError",
    "ExemplarEncoder",
    "read_exemplar",
    "align_exemplar",
    "reconstruction_loss",
    "refine_code",
    "module_fingerprint",
    "default_cache_dir",
    "add_to_bank",
    "exemplar_code",
    "perceptual_factory",
    "main",
]

#: Side of the aligned face the pSp encoder takes, and of the images the reconstruction loss compares.
ALIGNED_SIZE = 256
#: Default Adam step size and latent-regulariser weight of the refinement.
REFINE_LR = 0.01
REFINE_REG = 1.0
_CACHE_VERSION = 1


class ExemplarError(UserError, ValueError):
    """The style image cannot be used (not an image, no face found, wrong model)."""


# -------------------------------------------------------------------------------------------- inputs
def read_exemplar(image: Any, name: str | None = None) -> np.ndarray:
    """The exemplar as an RGB uint8 array (:func:`common.images.read_rgb`); what cannot be read raises
    :class:`ExemplarError`."""
    label = name or (os.fspath(image) if isinstance(image, (str, os.PathLike)) else "style image")
    if isinstance(image, (str, os.PathLike)) and not Path(image).is_file():
        raise ExemplarError(f"style image not found: {label}")
    try:
        return read_rgb(image, label)
    except (InputError, OSError) as e:
        raise ExemplarError(str(e)) from None


def align_exemplar(rgb: np.ndarray, detector: Any, aligned: bool = False, name: str = "style image",
                   size: int = ALIGNED_SIZE, flag: str = "--style_aligned") -> np.ndarray:
    """The ``size`` x ``size`` FFHQ-aligned exemplar (RGB uint8).

    ``aligned=True``: the image is already an aligned face square and is only resized (LANCZOS).
    ``flag`` is the command-line option the messages suggest.
    """
    if aligned:
        h, w = rgb.shape[:2]
        if abs(h - w) > 0.02 * max(h, w):
            raise ExemplarError(f"{name}: {flag} expects a square aligned face, got {w}x{h}")
        if (h, w) == (size, size):
            return np.ascontiguousarray(rgb)
        return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.LANCZOS))
    face = align_face(rgb, detector, output_size=size, transform_size=size)
    if face is None:
        raise ExemplarError(f"{name}: dlib found no face in the image; if it is already an aligned face "
                            f"crop (square, e.g. 1024 or 256 px), pass {flag}")
    return np.asarray(face)


def _to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """RGB uint8 -> (1, 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).to(device).permute(2, 0, 1)[None].float() / 255
    return x * 2 - 1


# ---------------------------------------------------------------------------------------- refinement
def _reconstruct(generator: torch.nn.Module, instyle: torch.Tensor, exstyle: torch.Tensor) -> torch.Tensor:
    """DualStyleGAN's image for intrinsic Z+ code ``instyle`` and extrinsic Z+ code ``exstyle`` at full
    degree on every row, with the generator's fixed noise, pooled to 256 px."""
    wplus = apply_mapping(generator.generator.style, exstyle)  # zplus2wplus
    img, _ = generator([instyle], wplus, z_plus_latent=True, use_res=True, randomize_noise=False,
                       interp_weights=[1.0] * generator.n_latent)
    return F.adaptive_avg_pool2d(img, ALIGNED_SIZE) if img.shape[-1] != ALIGNED_SIZE else img


def reconstruction_loss(generator: torch.nn.Module, perceptual: torch.nn.Module, target: torch.Tensor,
                        z0: torch.Tensor, z: torch.Tensor, reg: float = REFINE_REG) -> torch.Tensor:
    """``LPIPS(G(z0 | z), target) + reg * mean((z - z0)**2)`` (see the module docstring)."""
    rec = _reconstruct(generator, z0, z)
    return perceptual(rec, target).sum() + reg * (z - z0).pow(2).mean()


def refine_code(generator: torch.nn.Module, perceptual: torch.nn.Module, target: torch.Tensor, z0: torch.Tensor,
                steps: int, lr: float = REFINE_LR, reg: float = REFINE_REG, progress: bool = True) -> torch.Tensor:
    """``steps`` Adam steps on the extrinsic code from ``z0``; returns the refined (1, n_latent, 512) code."""
    from tqdm.auto import tqdm

    z0 = z0.detach()
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    with torch.inference_mode(False), torch.enable_grad(), \
            tqdm(range(steps), desc="refining style code", unit="step", disable=not progress) as bar:
        for _ in bar:
            opt.zero_grad(set_to_none=True)
            loss = reconstruction_loss(generator, perceptual, target, z0, z, reg)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return z.detach()


# --------------------------------------------------------------------------------------------- cache
def module_fingerprint(module: torch.nn.Module | None) -> str:
    """A cheap identity of a network's weights: names, shapes and a strided sample of every parameter and
    buffer (including non-persistent ones such as the pSp encoder's ``latent_avg``)."""
    if module is None:
        return "none"
    h = hashlib.sha256()
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    for name, t in tensors:
        flat = t.detach().reshape(-1)
        step = max(1, flat.numel() // 64)
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(flat[::step][:64].float().cpu().numpy().tobytes())
    return h.hexdigest()[:24]


def default_cache_dir() -> Path:
    """``$VTOONIFY_CACHE/exstyle``, else ``$XDG_CACHE_HOME/vtoonify/exstyle``, else ``~/.cache/vtoonify/exstyle``
    (:func:`common.atomic.cache_root`)."""
    return cache_root() / "exstyle"


# ------------------------------------------------------------------------------------------- encoder
class ExemplarEncoder:
    """Turns style images into Z+ exemplar codes (see the module docstring).

    Args:
        encoder: the pSp Z+ encoder (:func:`model.encoder.psp.load_psp_standalone`).
        detector: a :class:`pipeline.faces.FaceDetector` (or ``None`` for the default one).
        generator: the DualStyleGAN the codes are for (``VToonify(backbone='dualstylegan').generator``);
            needed only to refine.
        perceptual: the LPIPS module of the refinement, or a callable returning one (built on first use).
        n_latent: rows of the returned code (the generator's W+ rows; 18 for the released models).
        cache_dir: where codes are cached (default :func:`default_cache_dir`); ``False`` disables the cache.
    """

    def __init__(self, encoder: torch.nn.Module, detector: Any = None, generator: torch.nn.Module | None = None,
                 perceptual: Any = None, n_latent: int | None = None, cache_dir: str | os.PathLike | bool | None = None,
                 device: str | torch.device | None = None):
        self.encoder = encoder
        self.detector = detector
        self.generator = generator
        self._perceptual = perceptual
        self.n_latent = n_latent or (generator.n_latent if generator is not None else 18)
        self.cache_dir = (None if cache_dir is False
                          else Path(cache_dir) if cache_dir not in (None, True) else default_cache_dir())
        self.device = torch.device(device) if device is not None else next(encoder.parameters()).device
        self.cache_hits = 0

    @property
    def perceptual(self) -> torch.nn.Module:
        if self._perceptual is None:
            raise ExemplarError("--style_refine needs the LPIPS weights (--vgg_path and --lpips_path)")
        if not isinstance(self._perceptual, torch.nn.Module):
            self._perceptual = self._perceptual()
        return self._perceptual

    def encode(self, aligned_rgb: np.ndarray) -> torch.Tensor:
        """The pSp Z+ code (1, n_latent, 512) of a 256x256 aligned face."""
        with torch.no_grad():
            return fit_rows(self.encoder(_to_tensor(aligned_rgb, self.device)), self.n_latent).float()

    def _cache_path(self, rgb: np.ndarray, aligned: bool, refine: int, lr: float, reg: float) -> Path | None:
        if self.cache_dir is None:
            return None
        h = hashlib.sha256()
        h.update(f"{rgb.shape}".encode())
        h.update(np.ascontiguousarray(rgb).tobytes())
        options = {"v": _CACHE_VERSION, "aligned": bool(aligned), "refine": int(refine), "n_latent": self.n_latent,
                   "encoder": module_fingerprint(self.encoder)}
        if refine:
            options.update(lr=lr, reg=reg, generator=module_fingerprint(self.generator),
                           perceptual=module_fingerprint(self.perceptual))
        h.update(json.dumps(options, sort_keys=True).encode())
        return self.cache_dir / f"{h.hexdigest()}.npy"

    def code(self, image: Any, aligned: bool = False, refine: int = 0, lr: float = REFINE_LR, reg: float = REFINE_REG,
             progress: bool = True, name: str | None = None) -> np.ndarray:
        """The float32 (1, n_latent, 512) Z+ code of ``image`` (path, RGB uint8 array or PIL image)."""
        if refine < 0:
            raise ExemplarError(f"--style_refine must be >= 0, got {refine}")
        if refine and self.generator is None:
            raise ExemplarError("--style_refine needs a VToonify-D model (its DualStyleGAN)")
        label = name or (os.fspath(image) if isinstance(image, (str, os.PathLike)) else "style image")
        rgb = read_exemplar(image, label)
        cache = self._cache_path(rgb, aligned, refine, lr, reg)
        if cache is not None:
            try:  # an unreadable cache (its folder not ours) is a miss
                code = np.load(cache, allow_pickle=False)
                if code.shape == (1, self.n_latent, 512) and code.dtype == np.float32 and np.isfinite(code).all():
                    self.cache_hits += 1
                    return code
            except (OSError, ValueError):
                pass  # unreadable entry: recompute and overwrite it
        face = align_exemplar(rgb, self.detector, aligned, label)
        z = self.encode(face)
        if refine:
            target = _to_tensor(face, self.device)
            z = refine_code(self.generator, self.perceptual, target, z, refine, lr, reg, progress)
        code = z.cpu().numpy().astype(np.float32)
        if cache is not None:
            def write(tmp: Path) -> None:
                with open(tmp, "wb") as f:
                    np.save(f, code, allow_pickle=False)

            store_cache(cache, write)  # an unwritable cache folder: a warning
        return code


# ---------------------------------------------------------------------------------------------- bank
def bank_names(images: Sequence[str | os.PathLike], names: Sequence[str] | None = None) -> list[str]:
    """The bank entry names of ``images``: their file names, unless ``names`` gives them."""
    names = list(names) if names is not None else [Path(p).name for p in images]
    if len(names) != len(images):
        raise ExemplarError(f"{len(names)} names for {len(images)} images")
    return names


def add_to_bank(bank: str | os.PathLike, images: Sequence[str | os.PathLike], encoder: ExemplarEncoder,
                aligned: bool = False, refine: int = 0, names: Sequence[str] | None = None,
                progress: bool = True) -> "OrderedDict[str, np.ndarray]":
    """Append the codes of ``images`` to the exstyle file ``bank`` (created if missing); returns the new bank.

    Entries are named after the image files (``names`` overrides); a name already in the bank is an error,
    so that existing ``--style_id`` values never change meaning. Every image is encoded before the file is
    replaced (atomically), so a bad image leaves the bank untouched. The encoding runs unlocked; the read of the
    bank, the checks and the write run under the bank's :func:`~common.atomic.file_lock`, so two runs adding to one
    bank at once both keep their styles, each with its own id.
    """
    bank = Path(bank)
    names = bank_names(images, names)
    if len(set(names)) != len(names):
        raise ExemplarError("two style images have the same name; pass --names to tell them apart")

    def check_new(codes) -> None:
        for name in names:
            if name in codes:
                raise ExemplarError(f"{bank} already has a style named {name!r} (style id {list(codes).index(name)})")

    check_new(load_exstyle_codes(bank, encoder.n_latent) if bank.is_file() else {})  # before the slow encoding
    new = OrderedDict((name, encoder.code(path, aligned=aligned, refine=refine, progress=progress, name=os.fspath(path)))
                      for path, name in zip(images, names))
    bank.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(bank):
        codes = load_exstyle_codes(bank, encoder.n_latent) if bank.is_file() else OrderedDict()
        check_new(codes)  # another run may have added the name meanwhile
        codes.update(new)
        with atomic_output(bank) as tmp:
            save_exstyle_codes(tmp, codes)
    return codes


def exemplar_code(pipe: Any, style_image: Any, aligned: bool = False, refine: int = 0, progress: bool = True,
                  cache_dir: str | os.PathLike | bool | None = None, perceptual: Any = None,
                  vgg_path: str | os.PathLike = released_path("vgg16.pth"),
                  lpips_path: str | os.PathLike = released_path("lpips_vgg.pth"),
                  lr: float = REFINE_LR, reg: float = REFINE_REG) -> np.ndarray:
    """The Z+ code of ``style_image`` for a :class:`pipeline.stylize.VToonifyPipeline` (VToonify-D): its pSp
    encoder, face detector and DualStyleGAN; LPIPS from ``perceptual`` or the two weight files."""
    if pipe.backbone != "dualstylegan":
        raise ExemplarError("a style image drives VToonify-D only (this is a VToonify-T model, --backbone toonify)")
    if refine and pipe.dtype != torch.float32:
        raise ExemplarError("--style_refine runs in float32: drop --dtype/--fp16, or refine once with "
                            "`python -m pipeline.exstyle add` and use --style_id")
    generator = pipe.vtoonify.generator
    encoder = ExemplarEncoder(pipe.pspencoder, pipe.detector, generator,
                              perceptual or perceptual_factory(vgg_path, lpips_path, pipe.device),
                              generator.n_latent, cache_dir, pipe.device)
    return encoder.code(style_image, aligned=aligned, refine=refine, lr=lr, reg=reg, progress=progress)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.exstyle", description="Exemplar style codes for VToonify-D")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", help="append the codes of style images to a model's exstyle_code.npy",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("images", nargs="+", help="style images")
    a.add_argument("--to", required=True, help="the exstyle file to append to (created if missing)")
    a.add_argument("--names", nargs="+", default=None, help="entry names (default: the image file names)")
    a.add_argument("--style_aligned", action="store_true", help="the images are already aligned face squares")
    a.add_argument("--style_refine", type=ranged("style_refine"), default=0, metavar="N",
                   help="refinement steps (0 = pSp code only)")
    a.add_argument("--ckpt", default=None,
                   help="VToonify-D model whose DualStyleGAN refines the codes (default: vtoonify_s_d.pt beside --to)")
    a.add_argument("--style_encoder_path", default=released_path("encoder.pt"))
    a.add_argument("--vgg_path", default=released_path("vgg16.pth"), help="torchvision ImageNet VGG16 weights (LPIPS)")
    a.add_argument("--lpips_path", default=released_path("lpips_vgg.pth"), help="LPIPS v0.1 VGG linear heads")
    a.add_argument("--landmark_path", default=None, help="dlib 68-landmark model")
    a.add_argument("--cache_dir", default=None, help="code cache (default: the user's cache folder)")
    a.add_argument("--device", default="auto")
    a.add_argument("--no_progress", action="store_true")
    return p


def perceptual_factory(vgg_path: str | os.PathLike, lpips_path: str | os.PathLike, device: Any):
    """A callable building the LPIPS module from its two weight files (checked when it is called)."""
    def build() -> torch.nn.Module:
        from model.stylegan.lpips import PerceptualLoss

        for flag, path in (("--vgg_path", vgg_path), ("--lpips_path", lpips_path)):
            if not Path(path).is_file():
                raise ExemplarError(f"--style_refine needs {flag}: {path} not found")
        return PerceptualLoss(vgg_path=vgg_path, lpips_path=lpips_path).to(device)

    return build


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from common.devices import resolve_device
    from common.errors import USER_ERRORS
    from model.checkpoint import load_vtoonify
    from model.encoder.psp import load_psp_standalone
    from pipeline.faces import FaceDetector

    try:
        device = resolve_device(args.device)
        if not Path(args.style_encoder_path).is_file():
            raise ExemplarError(f"pSp encoder not found: {args.style_encoder_path} (--style_encoder_path)")
        generator, n_latent = None, 18
        if args.style_refine:
            ckpt = args.ckpt or str(Path(args.to).parent / "vtoonify_s_d.pt")
            if not Path(ckpt).is_file():
                raise ExemplarError(f"--style_refine needs the VToonify-D model: {ckpt} not found (--ckpt)")
            vtoonify = load_vtoonify(ckpt, backbone="dualstylegan", device=device)
            generator, n_latent = vtoonify.generator, vtoonify.generator.n_latent
        encoder = ExemplarEncoder(load_psp_standalone(args.style_encoder_path, device).requires_grad_(False),
                                  FaceDetector(args.landmark_path), generator,
                                  perceptual_factory(args.vgg_path, args.lpips_path, device), n_latent,
                                  args.cache_dir, device)
        codes = add_to_bank(args.to, args.images, encoder, args.style_aligned, args.style_refine, args.names,
                            progress=not args.no_progress)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    ids = {name: i for i, name in enumerate(codes)}  # positions in the bank as written (another run may add too)
    for name in bank_names(args.images, args.names):
        print(f"--style_id {ids[name]}: {name}")
    print(f"saved {args.to} ({len(codes)} styles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
