"""Reference pictures of a style teacher: found, FFHQ-aligned once into a cache, unusable ones listed.

Every picture is aligned at the teacher's resolution with :func:`pipeline.exstyle.align_exemplar` (the
FFHQ alignment the inference pipeline uses, or a resize with ``aligned=True``) and stored as
``<cache>/<stem>-<hash>.png``, ``hash`` being that of the file's bytes, the size and the mode; a later run
(or ``--resume``) reads the cached copy (a damaged one is aligned again). Pictures are read by
:func:`common.images.read_rgb`; those it refuses (not an image, truncated, over the size limit, HDR), or where
dlib finds no face, are returned as ``(name, reason)`` and never stop the run; a set with no usable picture raises
:class:`NoUsableImages` before anything else is done.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from common.atomic import atomic_output
from common.errors import InputError
from common.images import read_rgb
from model.errors import UserError
from pipeline.exstyle import ExemplarError, align_exemplar, read_exemplar

__all__ = ["IMAGE_SUFFIXES", "NoUsableImages", "References", "list_images", "align_references"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


class NoUsableImages(UserError, ValueError):
    """No picture of the set can be used (none found, or no face in any)."""


@dataclass
class References:
    names: list[str]
    images: np.ndarray  # (N, size, size, 3) uint8, aligned
    skipped: list[tuple[str, str]]  # (name, reason)


def list_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files given directly, and the image files of the folders given (sorted by name, not recursive)."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise NoUsableImages(f"--images: {path} does not exist")
    if not found:
        raise NoUsableImages(f"--images: no image files in {', '.join(map(str, inputs))}")
    return found


def _cache_name(path: Path, size: int, aligned: bool) -> str:
    h = hashlib.sha256(path.read_bytes())
    h.update(f"{size}-{aligned}".encode())
    return f"{path.stem}-{h.hexdigest()[:16]}.png"


def _read_cached(cached: Path, size: int) -> np.ndarray | None:
    """The aligned picture cached at ``cached``; ``None`` if there is none or it cannot be used (aligned again)."""
    if not cached.is_file():
        return None
    try:
        face = read_rgb(cached)
    except InputError:
        return None
    return face if face.shape[:2] == (size, size) else None


def align_references(paths: Sequence[Path], cache_dir: Path, size: int, aligned: bool = False,
                     detector: Any = None) -> References:
    """Align ``paths`` at ``size`` px (cached under ``cache_dir``); see the module docstring."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    names, images, skipped = [], [], []
    for path in paths:
        cached = cache_dir / _cache_name(path, size, aligned)
        face = _read_cached(cached, size)
        if face is None:
            try:
                face = align_exemplar(read_exemplar(path), detector, aligned, path.name, size, flag="--aligned")
            except ExemplarError as e:
                skipped.append((path.name, str(e).removeprefix(f"{path.name}: ").removeprefix(f"{path}: ")))
                continue
            with atomic_output(cached) as tmp:
                Image.fromarray(face).save(tmp, format="PNG")
        names.append(path.name)
        images.append(face)
    if not images:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped)
        raise NoUsableImages(f"none of the {len(paths)} pictures can be used ({reasons})")
    return References(names, np.stack(images), skipped)
