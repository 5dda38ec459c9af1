"""The first run on a fresh machine: fetch the released files a run needs when they are missing at their
default paths.

:func:`fetch_missing_defaults` is given the files a run will load, each marked as a default path or one
the user named. Missing defaults inside the checkpoint folder that are released files are downloaded
(:func:`hub.fetching.fetch`, with huggingface_hub's progress bars) after a one-line notice of what
is fetched and how big; a path the user gave is never replaced by a download, and a missing one stays an
error that says how to get it. ``--no_download`` or the environment variable ``VTOONIFY_NO_DOWNLOAD=1``
turn downloading off (offline machines); the missing files are then reported as before.

:func:`require_files` is the one "fetch the missing defaults, then fail on the first file still missing" of the
tools (``style_transfer.py``, :func:`pipeline.registry.require_files`, :func:`hub.catalog.fetch_style`): the error is
a :class:`common.errors.MissingFileError` with the command that downloads that file.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from common.errors import MissingFileError
from hub.download_hints import missing_file_message
from hub.fetching import Downloader, FileProgress, fetch, remote_sizes
from hub.released import DEFAULT_REPO, released_file

__all__ = ["NO_DOWNLOAD_ENV", "downloads_disabled", "fetch_missing_defaults", "human_size", "released_relpath",
           "require_files"]

#: Set to 1 (or true/yes/on) to never download at run time.
NO_DOWNLOAD_ENV = "VTOONIFY_NO_DOWNLOAD"


def downloads_disabled(no_download: bool = False) -> bool:
    """``no_download`` (the ``--no_download`` flag) or :data:`NO_DOWNLOAD_ENV` set to a true value."""
    return no_download or os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def released_relpath(path: str | os.PathLike, checkpoint_dir: str | os.PathLike) -> PurePosixPath | None:
    """``path`` relative to ``checkpoint_dir`` if it is a released file there, else ``None``."""
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(checkpoint_dir))
    except ValueError:
        return None
    rel = PurePosixPath(*rel.parts)
    return rel if released_file(rel) is not None else None


def human_size(n: int) -> str:
    """``n`` bytes in words: ``1.2 GB``, ``305.0 MB`` ..."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def fetch_missing_defaults(defaults: Sequence[str | os.PathLike], checkpoint_dir: str | os.PathLike,
                           no_download: bool = False, progress: bool = True,
                           downloader: Downloader | None = None, on_file: FileProgress | None = None) -> list[Path]:
    """Download the files of ``defaults`` (default paths of a run) that are missing and released
    (``on_file``: see :data:`hub.fetching.FileProgress`).

    Returns the paths fetched (empty when nothing was missing or downloading is off). Files that are not
    released files under ``checkpoint_dir`` are left alone (the caller reports them missing).
    """
    wanted = []
    for path in defaults:
        rel = released_relpath(path, checkpoint_dir)
        if rel is not None and not Path(path).is_file() and str(rel) not in wanted:
            wanted.append(str(rel))
    if not wanted or downloads_disabled(no_download):
        return []
    sizes = remote_sizes(wanted) if downloader is None else {}
    total = f", {human_size(sum(sizes.values()))}" if sizes and len(sizes) == len(wanted) else ""
    print(f"first run: downloading {len(wanted)} missing file(s){total} from {DEFAULT_REPO} into {checkpoint_dir} "
          f"({', '.join(wanted)}); --no_download or {NO_DOWNLOAD_ENV}=1 turns this off", file=sys.stderr)
    return fetch(wanted, checkpoint_dir, progress=progress, downloader=downloader, on_file=on_file)


def require_files(paths: Sequence[str | os.PathLike | None], checkpoint_dir: str | os.PathLike | None = None,
                  defaults: Sequence[str | os.PathLike] = (), *, backbone: str | None = None, style: str | None = None,
                  no_download: bool = False, progress: bool = True,
                  on_file: FileProgress | None = None) -> None:
    """Fetch the missing released files among ``defaults`` (default paths of a run, under ``checkpoint_dir``; see
    :func:`fetch_missing_defaults`), then raise :class:`MissingFileError` for the first of ``paths`` (``None``:
    skipped) that is not a file, its message naming the command that downloads it for ``backbone`` / ``style``
    (:func:`hub.download_hints.missing_file_message`). ``on_file``: see :data:`hub.fetching.FileProgress`."""
    if defaults:
        fetch_missing_defaults(defaults, checkpoint_dir, no_download=no_download, progress=progress, on_file=on_file)
    for path in paths:
        if path is not None and not os.path.isfile(path):
            raise MissingFileError(missing_file_message(path, backbone=backbone, style=style))
