"""The released styles by name: what ``--style NAME`` loads and what ``--list_styles`` shows.

:func:`released_variants` lists every released model (backbone, style, colour transfer or not) with the files it
needs, from the one table of :mod:`hub.released`; :func:`style_table` prints them with their sizes on the hub
(``unknown`` offline) and whether each file is already in the checkpoint folder.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hub.fetching import FileProgress, remote_sizes
from hub.first_run import human_size
from hub.released import BACKBONE_FILES, CHECKPOINT_DIR, SHARED_FILES, files_for, own_files

__all__ = ["ReleasedVariant", "fetch_style", "released_variants", "style_table"]


@dataclass(frozen=True)
class ReleasedVariant:
    backbone: str
    style: str
    color_transfer: bool
    files: tuple[str, ...]  # relative to the checkpoint folder, the shared helpers first

    @property
    def model(self) -> str:
        return self.own_files[0]

    @property
    def own_files(self) -> tuple[str, ...]:
        """The files of this style only (not the helpers every style shares)."""
        return own_files(self.files)


def released_variants() -> list[ReleasedVariant]:
    """Every released model: VToonify-D styles without and with colour transfer, then VToonify-T styles."""
    variants = []
    for name, table in BACKBONE_FILES.items():
        for style in table.styles:
            for color in (False, True) if name == "dualstylegan" else (False,):
                variants.append(ReleasedVariant(name, style, color, tuple(files_for(name, style, color_transfer=color))))
    return variants


def style_table(checkpoint_dir: str | os.PathLike = CHECKPOINT_DIR,
                sizes_of: Callable[[Iterable[str]], dict[str, int]] | None = None) -> str:
    """The released styles, one line per file (the shared helpers first), with size (``sizes_of``, default: asking
    the hub) and local presence."""
    variants = released_variants()
    rels = list(dict.fromkeys([*SHARED_FILES, *(f for v in variants for f in v.own_files)]))
    sizes = (sizes_of or remote_sizes)(rels)
    root = Path(checkpoint_dir)

    def row(first: str, rel: str) -> str:
        size = human_size(sizes[rel]) if rel in sizes else "unknown"
        return f"{first:<52} {rel:<44} {size:>9}  {'local' if (root / rel).is_file() else 'missing'}"

    lines = [f"{'--style (with --backbone, --color_transfer)':<52} {'file in ' + str(root):<44} {'size':>9}  here?"]
    lines += [row("(every style)", rel) for rel in SHARED_FILES]
    for v in variants:
        label = f"{v.style} --backbone {v.backbone}" + (" --color_transfer" if v.color_transfer else "")
        lines += [row(label if i == 0 else "", rel) for i, rel in enumerate(v.own_files)]
    if not sizes:
        lines.append("(sizes unknown: the hub could not be reached)")
    return "\n".join(lines)


def fetch_style(backbone: str, style: str, color_transfer: bool = False,
                checkpoint_dir: str | os.PathLike = CHECKPOINT_DIR, download: bool = True,
                progress: bool = True, shared: bool = True, on_file: FileProgress | None = None) -> list[Path]:
    """The local paths of a released style's files (the helpers first, then its model and its companions; without
    the helpers when not ``shared``), downloading the missing ones (unless ``download`` is false or downloads are
    turned off; ``on_file``: see :data:`hub.fetching.FileProgress`); a missing file that could not be fetched raises
    :class:`common.errors.MissingFileError` naming the command that fetches it."""
    from hub.first_run import require_files

    rels = files_for(backbone, style, color_transfer=color_transfer)
    paths = [Path(checkpoint_dir, rel) for rel in (rels if shared else own_files(rels))]
    require_files(paths, checkpoint_dir, defaults=paths, backbone=backbone, style=style, no_download=not download,
                  progress=progress, on_file=on_file)
    return paths
