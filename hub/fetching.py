"""Downloading released files from the Hugging Face hub into the checkpoint folder.

:func:`fetch` downloads the files that are missing, one at a time, and never leaves a half-written file
under its final name (:func:`common.atomic.atomic_output`); a failure becomes a :class:`DownloadError`
that names the file and the command that retries. ``huggingface_hub`` is only needed to download (it is
imported when :func:`fetch` first uses it).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path, PurePosixPath

from common.atomic import atomic_output, folder_lock, new_folders_removed
from common.errors import OptionError
from hub.download_hints import manual_download_url, selection_of_request
from hub.released import CHECKPOINT_DIR, DEFAULT_REPO, REMOTE_DIR
from model.errors import UserError

__all__ = ["DownloadError", "Downloader", "FileProgress", "check_hub_reachable", "fetch", "hub_download", "remote_sizes"]

#: ``downloader(repo_id, filename, *, revision=..., local_dir=...) -> path of the downloaded file``;
#: :func:`huggingface_hub.hf_hub_download` has this signature.
Downloader = Callable[..., "str | os.PathLike[str]"]
#: ``on_file(index, count, relpath)``: called before the file ``relpath``, the ``index``-th (from 0) of the ``count``
#: files of a request, is downloaded (a progress bar's hook; huggingface_hub's own bars show the bytes).
FileProgress = Callable[[int, int, str], None]


class DownloadError(UserError, RuntimeError):
    """A checkpoint could not be downloaded; the message says how to retry or fetch it by hand.

    Attributes:
        relpath: the file, relative to the checkpoint folder.
        command: a shell command that retries the download, or ``None`` for an unknown file.
    """

    def __init__(self, message: str, relpath: str, command: str | None) -> None:
        super().__init__(message)
        self.relpath = relpath
        self.command = command


def hub_download(repo_id: str, filename: str, *, revision: str | None, local_dir: str | os.PathLike[str]) -> str:
    """The default downloader: :func:`huggingface_hub.hf_hub_download`, imported on first use."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise ImportError(
            "Downloading checkpoints needs the huggingface_hub package: pip install huggingface_hub"
        ) from e
    if getattr(hf_hub_download, "__module__", "").startswith("huggingface_hub"):  # not a test double
        check_hub_reachable()  # fail at once offline instead of after huggingface_hub's retries
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
        raise OptionError(f"not a path inside the checkpoint folder: {rel!r}")
    return path


def _move_to(downloaded: Path, staging: Path, tmp: Path) -> None:
    """Put the downloaded file at ``tmp`` (on the same file system as ``staging``).

    A file the downloader keeps for itself (a link into its cache, as older huggingface_hub versions
    make for large files, or any path outside ``staging``) is copied instead of moved.
    """
    if downloaded.is_symlink() or not downloaded.resolve().is_relative_to(staging.resolve()):
        shutil.copyfile(downloaded, tmp)
    else:
        os.replace(downloaded, tmp)


def _download_error(
    rel: PurePosixPath, request: list[PurePosixPath], dest: Path, repo_id: str, revision: str | None, cause: Exception
) -> DownloadError:
    selection = selection_of_request(rel, request)
    command = None if selection is None else selection.command(dest=dest, repo_id=repo_id, revision=revision)
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
    on_file: FileProgress | None = None,
) -> list[Path]:
    """Download ``models/<rel>`` of the Hugging Face repository to ``dest/<rel>`` for each ``rel``.

    Files already present are kept unless ``force``. Each file is downloaded into a temporary folder
    next to its destination and renamed into place only once complete, so an interrupted or failed
    download never leaves a partial file under the final name. Downloads into one ``dest`` take turns
    (:func:`common.atomic.folder_lock` on ``dest``, across threads and processes), and a file another
    caller fetched while this one waited is not fetched again.

    Args:
        relpaths: paths relative to the checkpoint folder, e.g. from :func:`hub.released.files_for`.
        dest: the local checkpoint folder.
        repo_id: Hugging Face model repository.
        revision: branch, tag or commit of the repository (default: its main branch).
        force: download again even if the file exists.
        progress: report each file on stderr and let huggingface_hub draw its progress bars.
        downloader: the function that downloads one file, called as
            ``downloader(repo_id, filename, revision=..., local_dir=...)`` and returning the path of the
            downloaded file; defaults to :func:`huggingface_hub.hf_hub_download`.
        on_file: called before each file is downloaded (see :data:`FileProgress`).

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
    download = downloader or hub_download
    errors = _failure_types()
    paths: list[Path] = []
    # a failure leaves no new empty folder: neither the checkpoint folder nor a style's
    with nullcontext() if progress else _hub_progress_bars_disabled(), new_folders_removed(dest):
        for index, rel in enumerate(rels):
            target = dest.joinpath(*rel.parts)
            paths.append(target)
            if target.is_file() and not force:
                if progress:
                    print(f"present   {target}", file=sys.stderr)
                continue
            dest.mkdir(parents=True, exist_ok=True)
            with folder_lock(dest), new_folders_removed(target.parent):  # a failure leaves no new empty folder
                if target.is_file() and not force:  # fetched by another caller while this one waited
                    continue
                if on_file is not None:
                    on_file(index, len(rels), str(rel))
                if progress:
                    print(f"fetching  {REMOTE_DIR}/{rel} -> {target}", file=sys.stderr)
                target.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as staging, \
                        atomic_output(target) as tmp:
                    try:
                        downloaded = download(repo_id, f"{REMOTE_DIR}/{rel}", revision=revision, local_dir=staging)
                    except errors as e:
                        raise _download_error(rel, rels, dest, repo_id, revision, e) from e
                    _move_to(Path(downloaded), Path(staging), tmp)
    return paths


def remote_sizes(rels: Iterable[str], repo_id: str = DEFAULT_REPO, revision: str | None = None) -> dict[str, int]:
    """Sizes in bytes of ``models/<rel>`` on the hub, as far as they can be learnt (empty when offline)."""
    try:
        check_hub_reachable()
        from huggingface_hub import HfApi

        infos = HfApi().get_paths_info(repo_id, [f"{REMOTE_DIR}/{rel}" for rel in rels], revision=revision)
    except Exception:  # noqa: BLE001 - the size is only for the notice; the download reports real failures
        return {}
    return {info.path[len(REMOTE_DIR) + 1:]: info.size for info in infos if getattr(info, "size", None) is not None}


def check_hub_reachable() -> None:
    """Raise ``socket.gaierror`` at once when the hub's host name does not resolve (no network, no DNS).

    huggingface_hub retries connection errors for tens of seconds; a name that does not resolve will not
    start resolving during those retries. Skipped in huggingface_hub's offline mode (``HF_HUB_OFFLINE``),
    which fails at once by itself.
    """
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except socket.gaierror as e:
        raise socket.gaierror(e.errno, f"cannot resolve {host} ({e.strerror}): no network connection?") from None
