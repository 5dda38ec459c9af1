"""From a missing or failed file back to the command that fetches it.

:func:`missing_file_message` is what a tool says when a checkpoint is absent; :func:`download_command`
builds the ``python -m hub.download ...`` command line of one configuration; :func:`selection_for`
finds the configuration whose files contain a given released file (from the table in
:mod:`hub.released`).
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hub.released import (
    CHECKPOINT_DIR,
    DEFAULT_BACKBONE,
    DEFAULT_REPO,
    DEFAULT_STYLE,
    REMOTE_DIR,
    STYLES,
    files_for,
    guess_style_from_path,
    released_file,
)

__all__ = ["Selection", "download_command", "manual_download_url", "missing_file_message", "selection_for",
           "selection_of_request"]


@dataclass(frozen=True)
class Selection:
    """The options of one ``python -m hub.download`` invocation (the arguments of files_for)."""

    backbone: str = DEFAULT_BACKBONE
    style: str = DEFAULT_STYLE
    color_transfer: bool = False
    style_id: int | None = None
    style_degree: float | None = None
    training: bool = False

    def files(self) -> list[str]:
        return files_for(**vars(self))

    def command(self, **where: Any) -> str:
        return download_command(**vars(self), **where)


def selection_for(rel: PurePosixPath, backbone: str | None = None, style: str | None = None) -> Selection | None:
    """A selection whose :func:`files_for` contains ``rel``, preferring the given backbone and style
    for files that all styles share; ``None`` if ``rel`` is not a released file."""
    info = released_file(rel)
    if info is None:
        return None
    options = info.files_for_options()
    backbone = options.pop("backbone", backbone if backbone in STYLES else DEFAULT_BACKBONE)
    style = options.pop("style", style if style in STYLES[backbone] else DEFAULT_STYLE)
    return Selection(backbone=backbone, style=style, **options)


def selection_of_request(rel: PurePosixPath, request: list[PurePosixPath]) -> Selection | None:
    """The options of the command that asked for ``request`` (which contains ``rel``), if they can be
    told from its files and fetch ``rel``; otherwise any selection that fetches ``rel``."""
    merged: dict[str, Any] = {}
    for other in request:
        info = released_file(other)
        merged.update(info.files_for_options() if info is not None else {})
    candidate = Selection(**merged)
    if candidate.style in STYLES[candidate.backbone] and str(rel) in candidate.files():
        return candidate
    return selection_for(rel)


def _released_relpath(path: Path) -> PurePosixPath | None:
    """The trailing part of ``path`` that names a released file (``vtoonify_d_cartoon/vtoonify_s_d.pt``,
    ``encoder.pt`` ...), or ``None``."""
    parts = path.parts
    for n in (2, 1):
        if len(parts) >= n and released_file(PurePosixPath(*parts[-n:])) is not None:
            return PurePosixPath(*parts[-n:])
    return None


def manual_download_url(repo_id: str = DEFAULT_REPO, revision: str | None = None) -> str:
    """Web page of the repository's ``models/`` folder, for downloading by hand."""
    return f"https://huggingface.co/{repo_id}/tree/{revision or 'main'}/{REMOTE_DIR}"


def download_command(
    backbone: str = DEFAULT_BACKBONE,
    style: str = DEFAULT_STYLE,
    color_transfer: bool = False,
    style_id: int | None = None,
    style_degree: float | None = None,
    training: bool = False,
    dest: str | os.PathLike[str] = CHECKPOINT_DIR,
    repo_id: str = DEFAULT_REPO,
    revision: str | None = None,
) -> str:
    """The ``python -m hub.download ...`` command line that fetches this configuration.

    Options at their default values are left out, except ``--backbone`` and ``--style``.
    """
    args = ["python", "-m", "hub.download", "--backbone", backbone, "--style", style]
    if color_transfer:
        args.append("--color_transfer")
    if style_id is not None:
        args += ["--style_id", str(style_id)]
    if style_degree is not None:
        args += ["--style_degree", str(style_degree)]
    if training:
        args.append("--training")
    if Path(dest) != CHECKPOINT_DIR:
        args += ["--dest", os.fspath(dest)]
    if repo_id != DEFAULT_REPO:
        args += ["--repo", repo_id]
    if revision is not None:
        args += ["--revision", revision]
    return shlex.join(args)


def missing_file_message(path: str | os.PathLike[str], backbone: str | None = None, style: str | None = None) -> str:
    """What to tell a user whose checkpoint ``path`` does not exist.

    Names the file and the command that fetches it (and whatever else its style needs), inferred from
    the path where possible (see :func:`guess_style_from_path`); ``backbone`` and ``style`` describe
    the run and are used for files that every style shares (``encoder.pt``, ``faceparsing.pth``) and
    for files that are not released. The folder that holds the file is passed on as ``--dest`` when it
    is not ``checkpoint/``.
    """
    path = Path(path)
    lines = [f"Checkpoint not found: {path}"]
    rel = _released_relpath(path)
    if rel is not None:
        dest = Path(*path.parts[: -len(rel.parts)])  # Path() is "."
        selection = selection_for(rel, backbone, style)
        lines += [
            "Download it (with the other files this style needs) by running:",
            f"    {selection.command(dest=dest)}",
            f"or get {REMOTE_DIR}/{rel} from {manual_download_url()} and save it as {path}",
        ]
        return "\n".join(lines)
    lines.append("It is not one of the released VToonify files: train it, or pass the path of an existing file.")
    guessed = guess_style_from_path(path)
    dest = CHECKPOINT_DIR
    if guessed is not None:  # a file in a style's folder: that folder's parent is the checkpoint folder
        (backbone, style), dest = guessed, path.parent.parent
    if backbone in STYLES and style in STYLES[backbone]:
        lines += [
            f"The released {backbone} / {style} checkpoints can be downloaded by running:",
            f"    {download_command(backbone, style, dest=dest)}",
        ]
    lines.append(f"Released checkpoints: {manual_download_url()}")
    return "\n".join(lines)
