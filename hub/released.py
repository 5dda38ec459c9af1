"""The table of released VToonify files: which files exist, where they go and which run needs them.

The authors publish their weights in the Hugging Face model repository ``PKUWilliamYang/VToonify``
under ``models/``, laid out exactly like the local ``checkpoint/`` folder. :data:`BACKBONE_FILES` (one
:class:`BackboneFiles` per backbone) and :data:`SHARED_FILES` describe that layout once; everything
that needs to know a released file name reads it from here: :func:`files_for` (what a configuration
needs), :func:`released_file` / :func:`guess_style_from_path` (what a path is, for the missing-file
hints of :mod:`hub.download_hints`) and :func:`model_folder` / :data:`BACKBONE_FILES` globs (the
demo's model discovery in ``app.py``).

Inference needs ``encoder.pt`` and ``faceparsing.pth`` plus the model of one style (VToonify-D:
``vtoonify_d_<style>/vtoonify_s_d*.pt`` with its ``exstyle_code.npy``; VToonify-T:
``vtoonify_t_<style>/vtoonify.pt``). The training-only teachers (``stylegan2-ffhq-config-f.pt``,
``directions.npy``, ``<style>/generator.pt``, ``<style>/refined_exstyle_code.npy``,
``<style>/finetune-000600.pt``) are where the official training scripts expect them, but not every
style's teacher is guaranteed to be published.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from common.errors import OptionError

__all__ = [
    "own_files",
    "BACKBONES",
    "BACKBONE_FILES",
    "CHECKPOINT_DIR",
    "DEFAULT_BACKBONE",
    "DEFAULT_REPO",
    "DEFAULT_STYLE",
    "REMOTE_DIR",
    "SHARED_FILES",
    "STYLES",
    "BackboneFiles",
    "ReleasedFile",
    "d_checkpoint_name",
    "files_for",
    "guess_style_from_path",
    "model_folder",
    "default_model",
    "released_file",
    "released_path",
]

DEFAULT_REPO = "PKUWilliamYang/VToonify"
#: Where the inference and training scripts look for weights (relative to the repository root).
CHECKPOINT_DIR = Path("checkpoint")
#: Folder of the Hugging Face repository that mirrors ``checkpoint/``.
REMOTE_DIR = "models"


@dataclass(frozen=True)
class BackboneFiles:
    """The released files of one backbone.

    Attributes:
        name: ``'dualstylegan'`` (VToonify-D) or ``'toonify'`` (VToonify-T).
        kind: the letter of its model folders, ``vtoonify_<kind>_<style>``.
        styles: the released styles.
        model: the default model file in a style's folder.
        model_glob: the model files of a folder that the demo offers (adjustable style and degree).
        companions: files the model needs beside it in its folder (the exemplar style codes of VToonify-D).
        teachers: training-only files in the ``<style>/`` folder.
        training_shared: training-only files shared by all styles.
    """

    name: str
    kind: str
    styles: tuple[str, ...]
    model: str
    model_glob: str
    companions: tuple[str, ...] = ()
    teachers: tuple[str, ...] = ()
    training_shared: tuple[str, ...] = ()

    @property
    def folder_prefix(self) -> str:
        return f"vtoonify_{self.kind}_"

    def folder(self, style: str) -> str:
        return self.folder_prefix + style


#: Files every inference run needs, in the checkpoint folder itself.
SHARED_FILES = ("encoder.pt", "faceparsing.pth")
_DIRECTIONS = "directions.npy"
_FFHQ_STYLEGAN = "stylegan2-ffhq-config-f.pt"

#: The released layout, one entry per backbone (the first is the default of style_transfer.py).
BACKBONE_FILES: Mapping[str, BackboneFiles] = {
    "dualstylegan": BackboneFiles(
        name="dualstylegan", kind="d", styles=("cartoon", "caricature", "arcane", "comic", "pixar", "illustration"),
        model="vtoonify_s_d.pt", model_glob="vtoonify_s_d*.pt", companions=("exstyle_code.npy",),
        teachers=("generator.pt", "refined_exstyle_code.npy"), training_shared=(_DIRECTIONS,)),
    "toonify": BackboneFiles(
        name="toonify", kind="t", styles=("cartoon", "caricature", "arcane", "comic", "pixar"),
        model="vtoonify.pt", model_glob="vtoonify.pt", teachers=("finetune-000600.pt",),
        training_shared=(_DIRECTIONS, _FFHQ_STYLEGAN)),
}
BACKBONES = tuple(BACKBONE_FILES)
#: Released styles per backbone.
STYLES: Mapping[str, tuple[str, ...]] = {name: b.styles for name, b in BACKBONE_FILES.items()}
DEFAULT_BACKBONE = "dualstylegan"
DEFAULT_STYLE = "cartoon"

_BACKBONE_OF_KIND = {b.kind: b.name for b in BACKBONE_FILES.values()}
_MODEL_FOLDER = re.compile(r"vtoonify_(?P<kind>[a-z])_(?P<style>.+)")
# vtoonify_s[<style id>]_d[<degree>][_c].pt, see d_checkpoint_name()
_D_CHECKPOINT = re.compile(r"vtoonify_s(?P<style_id>\d{3})?_d(?P<degree>0\.\d|1\.0)?(?P<color>_c)?\.pt")


@dataclass(frozen=True)
class ReleasedFile:
    """What a released file is: the :func:`files_for` options whose list contains it.

    ``backbone``/``style`` are ``None`` for files every style shares; ``options`` holds the remaining
    :func:`files_for` arguments it implies (``color_transfer``, ``style_id``, ``style_degree``, ``training``).
    """

    relpath: PurePosixPath
    backbone: str | None = None
    style: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def files_for_options(self) -> dict[str, Any]:
        """The :func:`files_for` keyword arguments this file implies (possibly empty)."""
        where = {k: v for k, v in (("backbone", self.backbone), ("style", self.style)) if v is not None}
        return where | dict(self.options)


def _check_style(backbone: str, style: str) -> None:
    if backbone not in STYLES:
        raise OptionError(f"unknown backbone {backbone!r}; valid backbones: {', '.join(BACKBONES)}")
    if style not in STYLES[backbone]:
        raise OptionError(
            f"unknown style {style!r} for backbone {backbone!r}; valid styles: {', '.join(STYLES[backbone])}"
        )


def d_checkpoint_name(style_id: int | None = None, style_degree: float | None = None, color_transfer: bool = False) -> str:
    """File name of a VToonify-D checkpoint, following the naming of the official training script.

    ``vtoonify_s`` + style id (``%03d``, only for a model trained on one fixed style) + ``_d`` +
    degree (``%.1f``, only for a model trained on one fixed degree) + ``_c`` (only for a model with
    colour transfer) + ``.pt``. Examples: ``vtoonify_s_d.pt`` (any style and degree, colours of the
    content kept), ``vtoonify_s_d_c.pt`` (with colour transfer), ``vtoonify_s026_d0.5.pt`` (style 26 at
    degree 0.5), ``vtoonify_s054_d_c.pt`` (style 54, any degree, colour transfer).

    Raises:
        ValueError: ``style_id`` is negative or has more than three digits, or ``style_degree`` is
            outside [0, 1].
    """
    style_part = ""
    if style_id is not None:
        if not 0 <= style_id <= 999:
            raise OptionError(f"style_id must be in [0, 999], got {style_id}")
        style_part = f"{style_id:03d}"
    degree_part = ""
    if style_degree is not None:
        if not 0.0 <= style_degree <= 1.0:
            raise OptionError(f"style_degree must be in [0, 1], got {style_degree}")
        degree_part = f"{style_degree:.1f}"
    return f"vtoonify_s{style_part}_d{degree_part}{'_c' if color_transfer else ''}.pt"


def files_for(
    backbone: str = DEFAULT_BACKBONE,
    style: str = DEFAULT_STYLE,
    color_transfer: bool = False,
    style_id: int | None = None,
    style_degree: float | None = None,
    training: bool = False,
) -> list[str]:
    """Files (POSIX paths relative to the checkpoint folder) needed to run one configuration.

    Inference always needs ``encoder.pt`` and ``faceparsing.pth``. VToonify-D (``'dualstylegan'``)
    adds its model ``vtoonify_d_<style>/<d_checkpoint_name(...)>`` and the exemplar style codes
    ``vtoonify_d_<style>/exstyle_code.npy``; ``style_id`` / ``style_degree`` select a model trained on
    that fixed style / degree, ``color_transfer`` the colour-transfer variant (see
    :func:`d_checkpoint_name`). VToonify-T (``'toonify'``) adds ``vtoonify_t_<style>/vtoonify.pt`` and,
    like the inference script, ignores the style options.

    ``training=True`` adds the teachers of the training scripts (best effort, see the module doc):
    ``directions.npy`` and, for VToonify-D, the DualStyleGAN ``<style>/generator.pt`` with its
    ``<style>/refined_exstyle_code.npy``; for VToonify-T, ``stylegan2-ffhq-config-f.pt`` and the
    fine-tuned Toonify generator ``<style>/finetune-000600.pt``. (VToonify-D training needs no FFHQ
    StyleGAN: the DualStyleGAN checkpoint contains its own.)

    Raises:
        ValueError: unknown backbone or style (the message lists the valid ones), or an invalid
            ``style_id`` / ``style_degree``.
    """
    _check_style(backbone, style)
    table = BACKBONE_FILES[backbone]
    folder = table.folder(style)
    files = list(SHARED_FILES)
    model = d_checkpoint_name(style_id, style_degree, color_transfer) if backbone == "dualstylegan" else table.model
    files.append(f"{folder}/{model}")
    files += [f"{folder}/{name}" for name in table.companions]
    if training:
        files += list(table.training_shared)
        files += [f"{style}/{name}" for name in table.teachers]
    return files


def model_folder(name: str, released_only: bool = True) -> tuple[str, str] | None:
    """``(backbone, style)`` of a model folder name (``vtoonify_d_cartoon`` -> ``('dualstylegan', 'cartoon')``).

    With ``released_only=False`` any style name is accepted (a user-trained ``vtoonify_d_mystyle``).
    """
    match = _MODEL_FOLDER.fullmatch(name)
    if match is None or match["kind"] not in _BACKBONE_OF_KIND:
        return None
    backbone, style = _BACKBONE_OF_KIND[match["kind"]], match["style"]
    if released_only and style not in STYLES[backbone]:
        return None
    return backbone, style


def _shared_file(name: str) -> ReleasedFile | None:
    rel = PurePosixPath(name)
    if name in SHARED_FILES:
        return ReleasedFile(rel, options={})
    users = [b for b in BACKBONE_FILES.values() if name in b.training_shared]
    if not users:
        return None
    # A training file only one backbone uses implies that backbone.
    return ReleasedFile(rel, users[0].name if len(users) == 1 else None, None, {"training": True})


def released_file(rel: str | PurePosixPath) -> ReleasedFile | None:
    """What the released file ``rel`` (relative to the checkpoint folder) is, or ``None`` if it is not one."""
    rel = PurePosixPath(rel)
    if len(rel.parts) == 1:
        return _shared_file(rel.name)
    if len(rel.parts) != 2:
        return None
    folder, name = rel.parts
    found = model_folder(folder)
    if found is not None:
        backbone, style = found
        table = BACKBONE_FILES[backbone]
        if name in table.companions:
            return ReleasedFile(rel, backbone, style, {})
        if backbone != "dualstylegan":
            return ReleasedFile(rel, backbone, style, {}) if name == table.model else None
        checkpoint = _D_CHECKPOINT.fullmatch(name)
        if checkpoint is None:
            return None
        return ReleasedFile(rel, backbone, style, {
            "color_transfer": checkpoint["color"] is not None,
            "style_id": None if checkpoint["style_id"] is None else int(checkpoint["style_id"]),
            "style_degree": None if checkpoint["degree"] is None else float(checkpoint["degree"]),
        })
    for table in BACKBONE_FILES.values():
        if name in table.teachers and folder in table.styles:
            return ReleasedFile(rel, table.name, folder, {"training": True})
    return None


def guess_style_from_path(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """``(backbone, style)`` of a checkpoint path, or ``None`` if the path does not tell.

    A file in a model folder (``.../vtoonify_d_cartoon/anything.pt`` -> ``('dualstylegan',
    'cartoon')``, ``.../vtoonify_t_pixar/vtoonify.pt`` -> ``('toonify', 'pixar')``) or a released
    teacher (``.../cartoon/generator.pt`` -> DualStyleGAN, ``.../cartoon/finetune-000600.pt`` ->
    Toonify) is recognised when its style is a released one for that backbone.
    """
    path = Path(path)
    found = model_folder(path.parent.name)
    if found is not None:
        return found
    info = released_file(PurePosixPath(path.parent.name, path.name))
    if info is not None and info.style is not None:
        return info.backbone, info.style
    return None


def released_path(rel: str) -> str:
    """``./checkpoint/<rel>``: where the tools look for the released file ``rel`` (a :func:`~hub.released.files_for`
    entry) by default, relative to the working directory as in the original scripts."""
    return os.path.join(".", CHECKPOINT_DIR, rel)


def own_files(files: Sequence[str]) -> Sequence[str]:
    """A :func:`files_for` list without the helpers every style shares (:data:`SHARED_FILES`, which come first):
    the model, then its companions."""
    return files[len(SHARED_FILES):]


def default_model(backbone: str = DEFAULT_BACKBONE, color_transfer: bool = False, style: str = DEFAULT_STYLE) -> str:
    """The released model of ``backbone`` and ``style`` (default: the default style), e.g.
    ``./checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt``."""
    return released_path(own_files(files_for(backbone, style, color_transfer=color_transfer))[0])
