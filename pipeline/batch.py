"""Many inputs in one run: find the files, tell photos from videos by their content, stylise them one by one.

:func:`discover` expands the ``--content`` arguments (files, folders searched recursively, glob patterns) into
:class:`BatchInput` items, each with the folder its outputs go to relative to the output folder (``a/x.jpg`` and
``b/x.jpg`` from ``photos/`` give ``<out>/a/x_*`` and ``<out>/b/x_*``). :func:`media_kind` decides from a file's
first bytes (and FFmpeg's probe) whether it is a photo or a video. :func:`run_batch` stylises the items with one
pipeline, one at a time (memory does not grow with the count), reports a failing file in one line and goes on,
skips inputs whose outputs are already whole with ``skip_existing`` and returns a :class:`BatchReport`.
"""
from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import USER_ERRORS, InputError, MissingFileError
from pipeline.videoio.reading import open_input, video_stream

__all__ = ["BatchInput", "BatchReport", "discover", "has_glob", "media_kind", "run_batch"]

#: Leading bytes of the still-image formats OpenCV and Pillow read.
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
#: Extensions of the files a folder or glob is expected to hold; other files whose content is no photo or video
#: are passed over (a notes.txt beside the photos is not a failure).
MEDIA_SUFFIXES = frozenset(".jpg .jpeg .png .bmp .webp .tif .tiff .gif .mp4 .mov .m4v .avi .mkv .webm .mpg .mpeg".split())


@dataclass(frozen=True)
class BatchInput:
    """One input file and the folder of its outputs, relative to the output folder (``''``: the folder itself)."""

    path: Path
    subdir: str = ""
    named: bool = True  # given by name (a failure if it is no photo or video), not found in a folder or a glob


@dataclass
class BatchReport:
    done: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed"]
        lines += [f"  skipped {path}: {why}" for path, why in self.skipped]
        lines += [f"  failed {path}: {why}" for path, why in self.failed]
        return "\n".join(lines)


def has_glob(arg: str) -> bool:
    return glob.has_magic(arg)


def _glob_root(pattern: str) -> Path:
    """The folder part of ``pattern`` before its first wildcard (what the outputs' folders are relative to)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _files_of(arg: str) -> tuple[Path, list[Path]]:
    """The folder ``arg``'s outputs are relative to, and its files."""
    path = Path(arg)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _visible(p, path))
        if not files:
            raise InputError(f"--content {arg} is a folder with no files in it; give photos, videos or folders of them")
        return path, files
    if path.is_file():
        return path.parent, [path]
    if has_glob(arg):
        files = sorted(Path(p) for p in glob.glob(arg, recursive=True) if os.path.isfile(p))
        if not files:
            raise MissingFileError(f"--content {arg}: no file matches")
        return _glob_root(arg), files
    raise MissingFileError(f"content not found: {arg}")


def discover(args: Sequence[str]) -> list[BatchInput]:
    """The input files of ``args`` (files, folders searched recursively, glob patterns; hidden files skipped),
    each once, in the order given (a folder's and a glob's files sorted). Each keeps its folder relative to the
    deepest folder that holds all the arguments (``photos/`` -> ``photos/a/x.jpg`` is ``a``; ``a/x.jpg b/x.jpg``
    -> ``a`` and ``b``)."""
    expanded = [(arg, *_files_of(arg)) for arg in args]
    common = Path(os.path.commonpath([os.path.abspath(root) for _, root, _ in expanded]))
    found: dict[str, BatchInput] = {}
    for arg, _, files in expanded:
        named = Path(arg).is_file()
        for path in files:
            subdir = Path(os.path.abspath(path)).parent.relative_to(common).as_posix()
            found.setdefault(os.path.abspath(path), BatchInput(path, "" if subdir == "." else subdir, named))
    return list(found.values())


def media_kind(path: str | os.PathLike) -> str | None:
    """``'image'``, ``'video'`` or ``None`` (neither, or unreadable), from the file's content, not its name."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    try:
        with open_input(path) as container:
            video_stream(container)
    except USER_ERRORS:
        return None
    return "video"


def _outputs_whole(paths: Iterable[Path]) -> bool:
    """Every output exists (they are written atomically, so an existing one is whole)."""
    return all(p.is_file() for p in paths)


@dataclass(frozen=True)
class BatchJob:
    """What :func:`run_batch` does per kind: ``stylize(item, kind, out_dir, name) -> written paths`` and
    ``outputs(out_dir, name, kind) -> the paths it would write`` (for ``skip_existing``)."""

    stylize: Callable[[BatchInput, str, Path, str], list[Path]]
    outputs: Callable[[Path, str, str], Sequence[Path]]


def _out_name(item: BatchInput) -> str:
    return item.path.stem


def _plan(items: Sequence[BatchInput], output_dir: Path, force_video: bool, report: BatchReport
          ) -> list[tuple[BatchInput, str, Path]]:
    """Kinds and output folders of the items; the ones that are no photo or video, or whose outputs would
    collide with an earlier input's, go to the report."""
    planned, claimed = [], {}
    for item in items:
        kind = "video" if force_video else media_kind(item.path)
        if kind is None:
            if item.named or item.path.suffix.lower() in MEDIA_SUFFIXES:
                report.failed.append((item.path, "not a readable photo or video (damaged or another kind of file)"))
            else:
                report.skipped.append((item.path, "not a photo or video"))
            continue
        out_dir = output_dir / item.subdir
        key = (out_dir, _out_name(item), kind == "video")
        if key in claimed:
            report.failed.append((item.path, f"its outputs would overwrite those of {claimed[key]}; rename one"))
            continue
        claimed[key] = item.path
        planned.append((item, kind, out_dir))
    return planned


def run_batch(items: Sequence[BatchInput], output_dir: str | os.PathLike, job: BatchJob, *, force_video: bool = False,
              skip_existing: bool = False, progress: bool = True) -> BatchReport:
    """Stylise ``items`` one by one with ``job``; a user error (no face, damaged file ...) fails that item only."""
    from tqdm import tqdm

    report = BatchReport()
    output_dir = Path(output_dir)
    planned = _plan(items, output_dir, force_video, report)
    for path, why in report.failed:
        tqdm.write(f"failed {path}: {why}", file=sys.stderr)
    bar = tqdm(planned, desc="files", unit="file", disable=not progress, position=0)
    for item, kind, out_dir in bar:
        name = _out_name(item)
        if skip_existing and _outputs_whole(job.outputs(out_dir, name, kind)):
            report.skipped.append((item.path, "outputs exist"))
            continue
        try:
            written = job.stylize(item, kind, out_dir, name)
        except USER_ERRORS as e:
            tqdm.write(f"failed {item.path}: {e}", file=sys.stderr)
            report.failed.append((item.path, str(e)))
            continue
        report.done.append(item.path)
        report.written += written
    bar.close()
    return report
