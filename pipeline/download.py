"""Fetch the released VToonify checkpoints that a chosen backbone and style need.

The authors publish their weights in the Hugging Face model repository ``PKUWilliamYang/VToonify``
under ``models/``, laid out exactly like the local ``checkpoint/`` folder::

    models/encoder.pt                          ->  checkpoint/encoder.pt
    models/vtoonify_d_cartoon/vtoonify_s_d.pt  ->  checkpoint/vtoonify_d_cartoon/vtoonify_s_d.pt

* :func:`files_for` lists the files (relative to ``checkpoint/``) that one configuration needs.
* :func:`fetch` downloads those that are missing, one at a time, and never leaves a half-written file
  under its final name; a failure becomes a :class:`DownloadError` that says how to retry.
* :func:`missing_file_message` is the hint the inference script prints when a checkpoint is absent.
* ``python -m pipeline.download --help`` is the command-line front end (:func:`main`).

The inference files (VToonify-D/-T models, exemplar style codes, ``encoder.pt``,
``faceparsing.pth``) are the ones the inference script loads. The training-only "teacher" files
(``stylegan2-ffhq-config-f.pt``, ``directions.npy``, ``<style>/generator.pt``,
``<style>/refined_exstyle_code.npy``, ``<style>/finetune-000600.pt``) are fetched on a best-effort
basis: the official training scripts expect them at these paths, but not every style's teacher is
guaranteed to be published in this repository; a missing one is reported as a :class:`DownloadError`.

``huggingface_hub`` is only needed to download (it is imported when :func:`fetch` first uses it).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "BACKBONES",
    "CHECKPOINT_DIR",
    "DEFAULT_REPO",
    "STYLES",
    "DownloadError",
    "Downloader",
    "d_checkpoint_name",
    "download_command",
    "fetch",
    "files_for",
    "guess_style_from_path",
    "main",
    "manual_download_url",
    "missing_file_message",
]

DEFAULT_REPO = "PKUWilliamYang/VToonify"
#: Where the inference and training scripts look for weights (relative to the repository root).
CHECKPOINT_DIR = Path("checkpoint")
#: Folder of the Hugging Face repository that mirrors ``checkpoint/``.
REMOTE_DIR = "models"

BACKBONES = ("dualstylegan", "toonify")
#: Released styles per backbone: VToonify-D (DualStyleGAN) and VToonify-T (Toonify).
STYLES: Mapping[str, tuple[str, ...]] = {
    "dualstylegan": ("cartoon", "caricature", "arcane", "comic", "pixar", "illustration"),
    "toonify": ("cartoon", "caricature", "arcane", "comic", "pixar"),
}
DEFAULT_BACKBONE = "dualstylegan"
DEFAULT_STYLE = "cartoon"

_MODEL_DIR_PREFIX = {"dualstylegan": "vtoonify_d_", "toonify": "vtoonify_t_"}
_MODEL_DIR = re.compile(r"vtoonify_(?P<kind>[dt])_(?P<style>[a-z]+)")
_BACKBONE_OF_KIND = {"d": "dualstylegan", "t": "toonify"}
# vtoonify_s[<style id>]_d[<degree>][_c].pt, see d_checkpoint_name()
_D_CHECKPOINT = re.compile(r"vtoonify_s(?P<style_id>\d{3})?_d(?P<degree>0\.\d|1\.0)?(?P<color>_c)?\.pt")

_INFERENCE_SHARED = ("encoder.pt", "faceparsing.pth")
_EXSTYLE = "exstyle_code.npy"
_T_MODEL = "vtoonify.pt"
_FFHQ_STYLEGAN = "stylegan2-ffhq-config-f.pt"
_DIRECTIONS = "directions.npy"
_DUALSTYLEGAN_TEACHER = ("generator.pt", "refined_exstyle_code.npy")
_TOONIFY_TEACHER = "finetune-000600.pt"

#: ``downloader(repo_id, filename, *, revision=..., local_dir=...) -> path of the downloaded file``;
#: :func:`huggingface_hub.hf_hub_download` has this signature.
Downloader = Callable[..., "str | os.PathLike[str]"]


class DownloadError(RuntimeError):
    """A checkpoint could not be downloaded; the message says how to retry or fetch it by hand.

    Attributes:
        relpath: the file, relative to the checkpoint folder.
        command: a shell command that retries the download, or ``None`` for an unknown file.
    """

    def __init__(self, message: str, relpath: str, command: str | None) -> None:
        super().__init__(message)
        self.relpath = relpath
        self.command = command


# --------------------------------------------------------------------------------------------------
# Which files a configuration needs


def _check_style(backbone: str, style: str) -> None:
    if backbone not in STYLES:
        raise ValueError(f"unknown backbone {backbone!r}; valid backbones: {', '.join(BACKBONES)}")
    if style not in STYLES[backbone]:
        raise ValueError(
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
            raise ValueError(f"style_id must be in [0, 999], got {style_id}")
        style_part = f"{style_id:03d}"
    degree_part = ""
    if style_degree is not None:
        if not 0.0 <= style_degree <= 1.0:
            raise ValueError(f"style_degree must be in [0, 1], got {style_degree}")
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
    folder = _MODEL_DIR_PREFIX[backbone] + style
    files = list(_INFERENCE_SHARED)
    if backbone == "dualstylegan":
        files += [f"{folder}/{d_checkpoint_name(style_id, style_degree, color_transfer)}", f"{folder}/{_EXSTYLE}"]
    else:
        files.append(f"{folder}/{_T_MODEL}")
    if training:
        files.append(_DIRECTIONS)
        if backbone == "dualstylegan":
            files += [f"{style}/{name}" for name in _DUALSTYLEGAN_TEACHER]
        else:
            files += [_FFHQ_STYLEGAN, f"{style}/{_TOONIFY_TEACHER}"]
    return files


# --------------------------------------------------------------------------------------------------
# From a file back to the command that downloads it


@dataclass(frozen=True)
class _Selection:
    """The options of one ``python -m pipeline.download`` invocation (the arguments of files_for)."""

    backbone: str = DEFAULT_BACKBONE
    style: str = DEFAULT_STYLE
    color_transfer: bool = False
    style_id: int | None = None
    style_degree: float | None = None
    training: bool = False


def _options_of(rel: PurePosixPath) -> dict[str, Any] | None:
    """The options implied by a released file (relative path); ``None`` if it is not one.

    Files shared by all styles imply no backbone or style (an empty dict, or only ``training``).
    """
    if len(rel.parts) == 1:
        return {
            "encoder.pt": {},
            "faceparsing.pth": {},
            _DIRECTIONS: {"training": True},
            _FFHQ_STYLEGAN: {"backbone": "toonify", "training": True},
        }.get(rel.name)
    if len(rel.parts) != 2:
        return None
    folder, name = rel.parts
    model_dir = _MODEL_DIR.fullmatch(folder)
    if model_dir:
        backbone, style = _BACKBONE_OF_KIND[model_dir["kind"]], model_dir["style"]
        if style not in STYLES[backbone]:
            return None
        options: dict[str, Any] = {"backbone": backbone, "style": style}
        if backbone == "toonify":
            return options if name == _T_MODEL else None
        if name == _EXSTYLE:
            return options
        checkpoint = _D_CHECKPOINT.fullmatch(name)
        if checkpoint is None:
            return None
        return options | {
            "color_transfer": checkpoint["color"] is not None,
            "style_id": None if checkpoint["style_id"] is None else int(checkpoint["style_id"]),
            "style_degree": None if checkpoint["degree"] is None else float(checkpoint["degree"]),
        }
    if name in _DUALSTYLEGAN_TEACHER and folder in STYLES["dualstylegan"]:
        return {"backbone": "dualstylegan", "style": folder, "training": True}
    if name == _TOONIFY_TEACHER and folder in STYLES["toonify"]:
        return {"backbone": "toonify", "style": folder, "training": True}
    return None


def _selection_for(rel: PurePosixPath, backbone: str | None = None, style: str | None = None) -> _Selection | None:
    """A selection whose :func:`files_for` contains ``rel``, preferring the given backbone and style
    for files that all styles share; ``None`` if ``rel`` is not a released file."""
    options = _options_of(rel)
    if options is None:
        return None
    backbone = options.pop("backbone", backbone if backbone in STYLES else DEFAULT_BACKBONE)
    style = options.pop("style", style if style in STYLES[backbone] else DEFAULT_STYLE)
    return _Selection(backbone=backbone, style=style, **options)


def _released_relpath(path: Path) -> PurePosixPath | None:
    """The trailing part of ``path`` that names a released file (``vtoonify_d_cartoon/vtoonify_s_d.pt``,
    ``encoder.pt`` ...), or ``None``."""
    parts = path.parts
    for n in (2, 1):
        if len(parts) >= n and _options_of(PurePosixPath(*parts[-n:])) is not None:
            return PurePosixPath(*parts[-n:])
    return None


def guess_style_from_path(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """``(backbone, style)`` of a checkpoint path, or ``None`` if the path does not tell.

    A file in a model folder (``.../vtoonify_d_cartoon/anything.pt`` -> ``('dualstylegan',
    'cartoon')``, ``.../vtoonify_t_pixar/vtoonify.pt`` -> ``('toonify', 'pixar')``) or a released
    teacher (``.../cartoon/generator.pt`` -> DualStyleGAN, ``.../cartoon/finetune-000600.pt`` ->
    Toonify) is recognised when its style is a released one for that backbone.
    """
    path = Path(path)
    model_dir = _MODEL_DIR.fullmatch(path.parent.name)
    if model_dir:
        backbone, style = _BACKBONE_OF_KIND[model_dir["kind"]], model_dir["style"]
        return (backbone, style) if style in STYLES[backbone] else None
    options = _options_of(PurePosixPath(path.parent.name, path.name))
    if options and "style" in options:
        return options["backbone"], options["style"]
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
    """The ``python -m pipeline.download ...`` command line that fetches this configuration.

    Options at their default values are left out, except ``--backbone`` and ``--style``.
    """
    args = ["python", "-m", "pipeline.download", "--backbone", backbone, "--style", style]
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


def _command_for(selection: _Selection, **where: Any) -> str:
    return download_command(**vars(selection), **where)


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
        selection = _selection_for(rel, backbone, style)
        lines += [
            "Download it (with the other files this style needs) by running:",
            f"    {_command_for(selection, dest=dest)}",
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


# --------------------------------------------------------------------------------------------------
# Downloading


def _hub_download(repo_id: str, filename: str, *, revision: str | None, local_dir: str | os.PathLike[str]) -> str:
    """The default downloader: :func:`huggingface_hub.hf_hub_download`, imported on first use."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise ImportError(
            "Downloading checkpoints needs the huggingface_hub package: pip install huggingface_hub"
        ) from e
    return hf_hub_download(repo_id, filename=filename, revision=revision, local_dir=local_dir)


def _failure_types() -> tuple[type[Exception], ...]:
    """Exceptions that mean "this file could not be downloaded".

    huggingface_hub's HTTP errors (``HfHubHTTPError`` and its not-found subclasses), offline mode
    (``OfflineModeIsEnabled``) and ``LocalEntryNotFoundError`` all derive from :class:`OSError`, as do
    connection and disk errors; an invalid repository id or revision (``HFValidationError``) and a
    failed Xet transfer (``XetDownloadError``) do not.
    """
    try:
        from huggingface_hub import errors
    except ImportError:
        return (OSError,)
    extra = tuple(getattr(errors, name) for name in ("HFValidationError", "XetDownloadError") if hasattr(errors, name))
    return (OSError, *extra)


@contextmanager
def _hub_progress_bars_disabled() -> Iterator[None]:
    """Silence huggingface_hub's progress bars for the block (if it is installed), then restore them."""
    try:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    except ImportError:
        yield
        return
    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def _checked_relpath(rel: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if not path.parts or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"not a path inside the checkpoint folder: {rel!r}")
    return path


def _move_into_place(downloaded: Path, staging: Path, target: Path) -> None:
    """Atomically put the downloaded file at ``target`` (``staging`` is on the same file system).

    A file the downloader keeps for itself (a link into its cache, as older huggingface_hub versions
    make for large files, or any path outside ``staging``) is copied into ``staging`` first.
    """
    if downloaded.is_symlink() or not downloaded.resolve().is_relative_to(staging.resolve()):
        copy = staging / f".{target.name}.copy"
        shutil.copyfile(downloaded, copy)
        downloaded = copy
    os.replace(downloaded, target)


def _selection_of_request(rel: PurePosixPath, request: list[PurePosixPath]) -> _Selection | None:
    """The options of the command that asked for ``request`` (which contains ``rel``), if they can be
    told from its files and fetch ``rel``; otherwise any selection that fetches ``rel``."""
    merged: dict[str, Any] = {}
    for other in request:
        merged.update(_options_of(other) or {})
    candidate = _Selection(**merged)
    if candidate.style in STYLES[candidate.backbone] and str(rel) in files_for(**vars(candidate)):
        return candidate
    return _selection_for(rel)


def _download_error(
    rel: PurePosixPath, request: list[PurePosixPath], dest: Path, repo_id: str, revision: str | None, cause: Exception
) -> DownloadError:
    selection = _selection_of_request(rel, request)
    command = None if selection is None else _command_for(selection, dest=dest, repo_id=repo_id, revision=revision)
    manual = f"download {REMOTE_DIR}/{rel} from {manual_download_url(repo_id, revision)} and save it as {dest / rel}"
    hint = f"To get it, {manual}." if command is None else f"Retry with:\n    {command}\nor {manual}."
    message = f"Could not download {REMOTE_DIR}/{rel} from {repo_id} ({type(cause).__name__}: {cause}).\n{hint}"
    return DownloadError(message, str(rel), command)


def fetch(
    relpaths: Iterable[str],
    dest: str | os.PathLike[str] = CHECKPOINT_DIR,
    repo_id: str = DEFAULT_REPO,
    revision: str | None = None,
    force: bool = False,
    progress: bool = True,
    downloader: Downloader | None = None,
) -> list[Path]:
    """Download ``models/<rel>`` of the Hugging Face repository to ``dest/<rel>`` for each ``rel``.

    Files already present are kept unless ``force``. Each file is downloaded into a temporary folder
    next to its destination and renamed into place only once complete, so an interrupted or failed
    download never leaves a partial file under the final name.

    Args:
        relpaths: paths relative to the checkpoint folder, e.g. from :func:`files_for`.
        dest: the local checkpoint folder.
        repo_id: Hugging Face model repository.
        revision: branch, tag or commit of the repository (default: its main branch).
        force: download again even if the file exists.
        progress: report each file on stderr and let huggingface_hub draw its progress bars.
        downloader: the function that downloads one file, called as
            ``downloader(repo_id, filename, revision=..., local_dir=...)`` and returning the path of the
            downloaded file; defaults to :func:`huggingface_hub.hf_hub_download`.

    Returns:
        The local path of every requested file, in order.

    Raises:
        DownloadError: a file could not be downloaded. The message names it, a command that retries
            (with the options of the whole request where its files tell them) and the page to download
            it by hand. Files fetched before it stay in place.
        ImportError: huggingface_hub is needed but not installed.
        ValueError: a path is absolute or leaves the checkpoint folder.
    """
    dest = Path(dest)
    rels = [_checked_relpath(rel) for rel in relpaths]
    download = downloader or _hub_download
    errors = _failure_types()
    paths: list[Path] = []
    with nullcontext() if progress else _hub_progress_bars_disabled():
        for rel in rels:
            target = dest.joinpath(*rel.parts)
            paths.append(target)
            if target.is_file() and not force:
                if progress:
                    print(f"present   {target}", file=sys.stderr)
                continue
            if progress:
                print(f"fetching  {REMOTE_DIR}/{rel} -> {target}", file=sys.stderr)
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as staging:
                try:
                    downloaded = download(repo_id, f"{REMOTE_DIR}/{rel}", revision=revision, local_dir=staging)
                except errors as e:
                    raise _download_error(rel, rels, dest, repo_id, revision, e) from e
                _move_into_place(Path(downloaded), Path(staging), target)
    return paths


# --------------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.download",
        description=f"Download the VToonify checkpoints one style needs from the Hugging Face repository "
        f"{DEFAULT_REPO} into the checkpoint folder. Files already there are kept.",
    )
    parser.add_argument("--backbone", choices=BACKBONES, default=DEFAULT_BACKBONE,
                        help="dualstylegan = VToonify-D, toonify = VToonify-T (default: %(default)s)")
    parser.add_argument("--style", default=DEFAULT_STYLE,
                        help=f"D: {', '.join(STYLES['dualstylegan'])}; T: {', '.join(STYLES['toonify'])} "
                        "(default: %(default)s)")
    parser.add_argument("--color_transfer", action="store_true", help="D: the colour-transfer model (vtoonify_s_d_c.pt)")
    parser.add_argument("--style_id", type=int, help="D: the model trained on this fixed style (e.g. 26)")
    parser.add_argument("--style_degree", type=float, help="D: the model trained on this fixed degree (e.g. 0.5)")
    parser.add_argument("--training", action="store_true", help="also fetch the training teachers (best effort)")
    parser.add_argument("--dest", type=Path, default=CHECKPOINT_DIR, help="checkpoint folder (default: %(default)s)")
    parser.add_argument("--repo", default=DEFAULT_REPO, help="Hugging Face model repository (default: %(default)s)")
    parser.add_argument("--revision", help="branch, tag or commit of the repository (default: main)")
    parser.add_argument("--force", action="store_true", help="download again files that are already present")
    parser.add_argument("--list", action="store_true", help="print what would be fetched and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 download failure, 2 bad usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        rels = files_for(args.backbone, args.style, args.color_transfer, args.style_id, args.style_degree, args.training)
    except ValueError as e:
        parser.error(str(e))
    if args.list:
        for rel in rels:
            target = args.dest / rel
            print(f"{'present' if target.is_file() and not args.force else 'fetch':<8} {target}")
        return 0
    try:
        paths = fetch(rels, args.dest, args.repo, args.revision, args.force)
    except (DownloadError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(paths)} file(s) ready in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
