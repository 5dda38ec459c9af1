"""Atomic outputs: every file the project writes appears whole under its final name, or not at all.

:func:`atomic_output` yields a temporary path beside the target, unique per process and per call
(``.<name>.<pid>-<random>.partial<suffix>``, the suffix kept so that writers which pick the format from
the extension work), renames it onto the target when the block ends normally and removes it otherwise.
:func:`sweep_stale` removes the temporary files of a target left by processes that no longer exist
(killed with SIGKILL, or a machine that went down). A file that two processes may update (read, change, write back:
an exemplar bank, a cache entry) is updated under :func:`file_lock`, so neither loses the other's change.
:func:`cache_root` is the one folder of the project's caches.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent updates are not protected there
    fcntl = None

__all__ = ["atomic_output", "cache_root", "file_lock", "sweep_stale", "temporary_path"]

_MARK = ".partial"


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``path`` that no other process or call uses."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{_MARK}{path.suffix}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def sweep_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``path`` whose writing process is gone; returns what was removed."""
    path = Path(path)
    removed = []
    prefix = f".{path.name}."
    try:
        candidates = list(path.parent.glob(f".{glob_escape(path.name)}.*{_MARK}{glob_escape(path.suffix)}"))
    except OSError:
        return removed
    for tmp in candidates:
        pid_part = tmp.name[len(prefix):].split("-", 1)[0]
        if not pid_part.isdigit() or int(pid_part) == os.getpid() or _pid_alive(int(pid_part)):
            continue  # not ours to judge, or still being written
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def glob_escape(name: str) -> str:
    """``name`` with the glob metacharacters escaped."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_output(p) as tmp: write(tmp)``: ``p`` is replaced by ``tmp`` only if the block succeeds.

    The temporary file is always removed when the block raises (including ``KeyboardInterrupt``), and the
    previous content of ``p``, if any, is untouched until the rename.
    """
    path = Path(path)
    sweep_stale(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"nothing was written for {path}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock for the block on ``<path>.lock`` (created beside ``path`` if missing, never removed: a
    removed lock file could be locked by two processes at once). Another process that asks for the same lock waits;
    the lock goes with the process if it dies. Wrap the whole read-modify-write of a shared file in it."""
    lock = Path(os.fspath(path) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def cache_root() -> Path:
    """The project's cache folder: ``$VTOONIFY_CACHE``, else ``$XDG_CACHE_HOME/vtoonify``, else ``~/.cache/vtoonify``."""
    if os.environ.get("VTOONIFY_CACHE"):
        return Path(os.environ["VTOONIFY_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "vtoonify"
