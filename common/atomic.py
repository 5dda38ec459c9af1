"""Atomic outputs: every file the project writes appears whole under its final name, or not at all.

:func:`atomic_output` yields a temporary path beside the target, unique per process and per call
(``.<name>.<pid>-<random>.partial<suffix>``, the suffix kept so that writers which pick the format from
the extension work), renames it onto the target when the block ends normally and removes it otherwise.
:func:`sweep_stale` removes the temporary files (or folders) of a target left by processes that no longer exist
(killed with SIGKILL, or a machine that went down); :func:`sweep_stale_folder` those of every target in a folder.
A file that two processes may update (read, change, write back: an exemplar bank, a cache entry) is updated under
:func:`file_lock`, so neither loses the other's change (readers may share a lock).
:func:`cache_root` is the one folder of the project's caches.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

from common.errors import OptionError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent updates are not protected there
    fcntl = None

__all__ = ["atomic_output", "atomic_outputs", "cache_root", "check_writable_folder", "file_lock", "folder_lock",
           "new_folders_removed", "store_cache", "sweep_stale", "sweep_stale_folder", "temporary_path"]

_MARK = ".partial"
#: The longest file name (bytes) of the usual file systems (ext4, XFS, btrfs, APFS, NTFS in characters).
NAME_MAX = 255
#: What a temporary name adds around its target's name: ``.`` + ``.<pid>-<8 hex>`` + ``.partial`` + the suffix.
_TEMP_EXTRA = 1 + 1 + 10 + 1 + 8 + len(_MARK)


def _temp_stem(path: Path) -> str:
    """The part of ``path``'s name in its temporary names: the name itself, or, when a temporary name would pass
    :data:`NAME_MAX` bytes, its start and a hash of the whole name (still unique per target)."""
    budget = NAME_MAX - _TEMP_EXTRA - len(os.fsencode(path.suffix))
    if len(os.fsencode(path.name)) <= budget:
        return path.name
    digest = hashlib.sha1(os.fsencode(path.name)).hexdigest()[:12]
    start = os.fsencode(path.name)[: budget - len(digest) - 1].decode("utf-8", "ignore")
    return f"{start}~{digest}"


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``path`` that no other process or call uses, within :data:`NAME_MAX` bytes
    whenever ``path``'s own name is."""
    path = Path(path)
    return path.with_name(f".{_temp_stem(path)}.{os.getpid()}-{secrets.token_hex(4)}{_MARK}{path.suffix}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove_stale(tmp: Path, pid_part: str) -> bool:
    """Remove the temporary ``tmp`` (a file, or a folder with what is in it) if the process ``pid_part`` that
    wrote it is gone; whether it was removed."""
    if not pid_part.isdigit() or int(pid_part) == os.getpid() or _pid_alive(int(pid_part)):
        return False  # not ours to judge, or still being written
    try:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp)
        else:
            tmp.unlink()
    except OSError:
        return False
    return True


def sweep_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (or folders) of ``path`` whose writing process is gone; returns what was removed."""
    path = Path(path)
    stem = _temp_stem(path)
    prefix = f".{stem}."
    try:
        candidates = list(path.parent.glob(f".{glob_escape(stem)}.*{_MARK}{glob_escape(path.suffix)}"))
    except OSError:
        return []
    return [tmp for tmp in candidates if _remove_stale(tmp, tmp.name[len(prefix):].split("-", 1)[0])]


_TEMP_NAME = re.compile(r"^\.(.+)\.(\d+)-[0-9a-f]{8}" + re.escape(_MARK) + r"[^/]*$")
_SHORTENED = re.compile(r"~[0-9a-f]{12}$")  # a stem that _temp_stem cut and hashed: its target is not known


def sweep_stale_folder(folder: str | os.PathLike,
                       guard: Callable[[Path | None], AbstractContextManager[bool]] | None = None) -> list[Path]:
    """:func:`sweep_stale` for every target in ``folder``: removes each temporary name of :func:`temporary_path`'s
    form (file or folder) whose writing process is gone; returns what was removed.

    ``guard(target)`` (the temporary's target path, None when its name was shortened) is entered around each
    removal and yields whether it may happen: e.g. that target's lock taken without waiting, so that a writer this
    machine cannot see (another machine or container sharing the folder) keeps its temporaries."""
    folder = Path(folder)
    try:
        candidates = [p for p in folder.iterdir() if _TEMP_NAME.match(p.name)]
    except OSError:
        return []
    removed = []
    for tmp in candidates:
        stem, pid = _TEMP_NAME.match(tmp.name).groups()
        if guard is None:
            if _remove_stale(tmp, pid):
                removed.append(tmp)
            continue
        with guard(None if _SHORTENED.search(stem) else folder / stem) as allowed:
            if allowed and _remove_stale(tmp, pid):
                removed.append(tmp)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with the glob metacharacters escaped."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_output(p) as tmp: write(tmp)``: ``p`` is replaced by ``tmp`` only if the block succeeds.

    The temporary file is always removed when the block raises (including ``KeyboardInterrupt``), and the
    previous content of ``p``, if any, is untouched until the rename. An error about the temporary file (a full
    disk, a denied permission) names ``p``, the user's output, instead.
    """
    path = Path(path)
    sweep_stale(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"nothing was written for {path}")
        os.replace(tmp, path)
    except Exception as e:
        renamed = _naming_output(e, tmp, path)
        if renamed is None:
            raise
        raise renamed from None
    finally:
        tmp.unlink(missing_ok=True)


def _naming_output(error: Exception, tmp: Path, path: Path) -> Exception | None:
    """``error`` with ``tmp`` replaced by ``path`` in its file name or message; ``None`` if it does not name ``tmp``."""
    if isinstance(error, OSError) and error.filename is not None and os.fspath(error.filename) in (str(tmp), tmp.name):
        try:
            return type(error)(error.errno, error.strerror, str(path))
        except TypeError:  # a subclass with another signature (PyAV's errors)
            return OSError(error.errno, error.strerror, str(path))
    text = str(error)
    if tmp.name not in text:
        return None
    text = text.replace(str(tmp), str(path)).replace(tmp.name, path.name)
    try:
        return type(error)(text)
    except TypeError:
        return OSError(text) if isinstance(error, OSError) else None


@contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """:func:`atomic_output` for files that belong together (an input copy and its result): every file is written
    before any is renamed, so a failure (a full disk) leaves none of them, not half of the set."""
    with ExitStack() as stack:
        yield [stack.enter_context(atomic_output(path)) for path in paths]


def check_writable_folder(folder: str | os.PathLike, flag: str) -> None:
    """An :class:`~common.errors.OptionError` (one line, before any work) unless the results can be written in
    ``folder``: an existing folder we may write in, or one we may create (its nearest existing parent writable)."""
    folder = Path(folder)
    if folder.is_symlink() and not folder.exists():
        raise OptionError(f"{flag} {folder} is a symbolic link to {os.readlink(folder)}, which does not exist")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        if existing == folder:
            raise OptionError(f"{flag} {folder} is a file; give the folder for the results (it is created if it does "
                              "not exist)")
        raise OptionError(f"{flag} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "this folder" if existing == folder else f"{existing}, where it would be created"
        raise OptionError(f"{flag} {folder}: no permission to write in {what}")


@contextmanager
def new_folders_removed(folder: str | os.PathLike) -> Iterator[None]:
    """The folders of ``folder`` that do not exist yet are removed again, when still empty, if the block fails:
    a failed run leaves no empty folder behind."""
    new = []
    current = Path(folder).absolute()
    while not current.exists() and not current.is_symlink() and current != current.parent:
        new.append(current)
        current = current.parent
    try:
        yield
    except BaseException:
        for created in new:  # the deepest first
            try:
                created.rmdir()
            except OSError:
                pass  # not created after all, or not empty: left alone
        raise


def store_cache(path: str | os.PathLike, write: Callable[[Path], None]) -> bool:
    """Write a cache entry with ``write(temporary path)`` atomically; a cache folder that cannot be written is one
    warning line on stderr, not a failure (a cache only saves time). Returns whether the entry was stored."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            write(tmp)
    except OSError as e:
        print(f"warning: cache not written ({e}); the run goes on without it", file=sys.stderr)
        return False
    return True


@contextmanager
def file_lock(path: str | os.PathLike, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """Hold a lock for the block on ``<path>.lock`` (created beside ``path`` if missing, never removed: a removed
    lock file could be locked by two processes at once): exclusive, or ``shared`` (readers: any number at once, never
    beside an exclusive holder). Another process that asks for a conflicting lock waits; the lock goes with the
    process if it dies. Wrap the whole read-modify-write of a shared file in it. With ``blocking=False`` the block
    runs at once and gets ``False`` when another process holds a conflicting lock (then nothing is held), else
    ``True``."""
    lock = Path(os.fspath(path) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as f:
        if fcntl is None:
            yield True
            return
        try:
            fcntl.flock(f.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock for the block on the existing ``folder`` itself (no lock file is left in it): another
    process or thread that asks for the same folder waits; the lock goes with the process if it dies. Where the file
    system cannot lock a folder (some network file systems; Windows) the block runs unlocked."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked = True
        except OSError:  # cannot be locked here: unlocked, as on Windows
            locked = False
        try:
            yield
        finally:
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def cache_root() -> Path:
    """The project's cache folder: ``$VTOONIFY_CACHE``, else ``$XDG_CACHE_HOME/vtoonify``, else ``~/.cache/vtoonify``."""
    if os.environ.get("VTOONIFY_CACHE"):
        return Path(os.environ["VTOONIFY_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "vtoonify"
