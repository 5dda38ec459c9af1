"""The first run on a fresh machine: fetch the released files a run needs when they are missing at their
default paths.

:func:`fetch_missing_defaults` is given the files a run will load, each marked as a default path or one
the user named. Missing defaults inside the checkpoint folder that are released files are downloaded
(:func:`hub.fetching.fetch`, with huggingface_hub's progress bars) after a one-line notice of what
is fetched and how big; a path the user gave is never replaced by a download, and a missing one stays an
error that says how to get it. ``--no_download`` or the environment variable ``VTOONIFY_NO_DOWNLOAD=1``
turn downloading off (offline machines); the missing files are then reported as before.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from hub.fetching import Downloader, FileProgress, fetch, remote_sizes
from hub.released import DEFAULT_REPO, released_file

__all__ = ["NO_DOWNLOAD_ENV", "downloads_disabled", "fetch_missing_defaults", "human_size", "released_relpath"]

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
