"""The export cache: each checkpoint is exported to ONNX once, on first use by an ONNX engine, and reused after.

An entry is ``<folder>/<checkpoint name>-<key>.onnx`` (+ ``.onnx.data``), where the key hashes the checkpoint's
content (SHA-256), :data:`pipeline.engines.export.EXPORT_FORMAT` and the versions of torch, onnx and onnxscript
(the exporter). The file does not depend on the runtime or the precision (ONNX Runtime and OpenVINO load the same
float32 file; OpenVINO applies bfloat16 when it compiles it), so one entry serves every engine and ``--dtype``. A
changed checkpoint has another key and is exported again.

Building an entry holds an exclusive lock (``fcntl.flock`` on ``<entry>.lock``, where the platform has it), so two
processes that need the same entry export it once: the second waits and then finds it. The entry itself is
written atomically (see :func:`pipeline.engines.export.export_onnx`), so a reader never sees part of it, with or
without the lock; a process loading an entry holds a shared lock on it meanwhile (:meth:`ExportCache.open`). Each
export prints a one-line notice with the time it took.

Pruning: each use of an entry sets its ``.onnx`` file's modification time (its last use). After each export, the
entries of the folder unused for :data:`PRUNE_AFTER_DAYS` days (those of an older checkpoint or exporter, of a
style no longer run) are removed, each only when its lock can be taken at once (nobody is building or loading it;
its ``.lock`` file stays, as every lock file does). Before each export, the temporary files and folders that
exports killed mid-way (SIGKILL, a machine that went down) left in the folder are removed when the process that
wrote them is gone and their entry's lock is free (so a writer on another machine or in another container sharing
the folder, whose process this one cannot see, keeps them; :func:`common.atomic.sweep_stale_folder`). Any file in
the folder may also be deleted by hand while no tool runs.

The folder is ``$VTOONIFY_CACHE/engines``, else ``$XDG_CACHE_HOME/vtoonify/engines``, else
``~/.cache/vtoonify/engines``. The cache is an optimisation: a folder that cannot be written is a warning, and
the entry is built in a per-user folder under the system's temporary folder instead.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from importlib import metadata
from pathlib import Path

import torch

from common.atomic import cache_root, file_lock, sweep_stale_folder

__all__ = ["PRUNE_AFTER_DAYS", "ExportCache", "default_cache_dir"]

#: Entries unused for this many days are removed after the next export into their folder.
PRUNE_AFTER_DAYS = 30.0
#: The name of an entry's model file: ``<checkpoint name>-<key>.onnx``.
_ENTRY = re.compile(r".+-[0-9a-f]{24}\.onnx")


def default_cache_dir() -> Path:
    """Where exported engines are cached: ``cache_root() / 'engines'``."""
    return cache_root() / "engines"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


class ExportCache:
    """Exported ONNX files of checkpoints, keyed by content (see the module docstring).

    ``folder``: the cache folder (default :func:`default_cache_dir`). ``notice``: called with the one-line
    notice of each export and pruning (default: printed to stderr). ``prune_after_days``: see :data:`PRUNE_AFTER_DAYS`.
    """

    def __init__(self, folder: str | os.PathLike | None = None, notice=None, prune_after_days: float = PRUNE_AFTER_DAYS):
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.notice = notice if notice is not None else (lambda line: print(line, file=sys.stderr))
        self.prune_after_days = prune_after_days
        self.exports = 0  # exports this object ran (the tests count them)

    def key(self, ckpt: str | os.PathLike) -> str:
        """The cache key of ``ckpt``'s export: its content and the exporter's versions."""
        from pipeline.engines.export import EXPORT_FORMAT, file_sha256

        parts = {"checkpoint": file_sha256(ckpt), "format": EXPORT_FORMAT, "torch": torch.__version__,
                 "onnx": _version("onnx"), "onnxscript": _version("onnxscript")}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]

    def entry(self, ckpt: str | os.PathLike, folder: Path | None = None) -> Path:
        """The ``.onnx`` path of ``ckpt``'s entry (in ``folder``, default the cache folder); it may not exist yet."""
        return (folder or self.folder) / f"{Path(ckpt).stem}-{self.key(ckpt)}.onnx"

    def get(self, ckpt: str | os.PathLike, check: str = "auto") -> Path:
        """The exported ``.onnx`` file of the checkpoint ``ckpt``, exported now if no entry has it.

        ``check``: the runtime that checks a new export against PyTorch (as in :func:`export_onnx`). Load it
        within :meth:`open` instead where pruning by another process must not remove it first.
        """
        path = self.entry(ckpt)
        if _complete(path):
            _touch(path)
            return path
        try:
            return self._build(ckpt, path, check)
        except OSError as e:
            fallback = Path(tempfile.gettempdir()) / f"vtoonify-engines-{getattr(os, 'getuid', lambda: 'user')()}"
            warnings.warn(f"the engine cache {self.folder} cannot be written ({e.__class__.__name__}: {e}); "
                          f"exporting into {fallback} instead", RuntimeWarning, stacklevel=2)
            fallback.mkdir(mode=0o700, exist_ok=True)
            return self._build(ckpt, self.entry(ckpt, fallback), check)

    @contextmanager
    def open(self, ckpt: str | os.PathLike, check: str = "auto") -> Iterator[Path]:
        """``with cache.open(ckpt) as path: load(path)``: :meth:`get`, the entry held under a shared lock for the
        block, so that no pruning removes it while it is loaded."""
        for _ in range(3):
            path = self.get(ckpt, check)
            with _shared(path):
                if _complete(path):  # not pruned between get() and the lock
                    yield path
                    return
        # another process pruning the folder at each try: an OSError, reported as one line like a disk error
        raise OSError(f"the engine cache entry {path} was removed three times while it was being opened; "
                      f"set VTOONIFY_CACHE to a folder of its own")

    def _build(self, ckpt, path: Path, check: str) -> Path:
        from pipeline.engines.export import export_onnx

        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path):  # <entry>.lock
            if _complete(path):  # another process exported it while this one waited
                _touch(path)
                return path
            # what exports killed mid-way left (their processes gone), each under its entry's lock
            sweep_stale_folder(path.parent, guard=lambda target: _entry_free(target, own=path))
            started = time.perf_counter()
            result = export_onnx(ckpt, path, check=check)
            self.exports += 1
            self.notice(f"first use of {ckpt} with an ONNX engine: {result.summary()} "
                        f"(cached; {time.perf_counter() - started:.1f} s in all)")
            self.prune(path.parent, keep=path)
        return path

    def prune(self, folder: Path | None = None, keep: Path | None = None) -> list[Path]:
        """Remove the entries of ``folder`` (default the cache folder) other than ``keep`` unused for
        ``prune_after_days`` days, each only if its lock can be taken at once (see the module docstring); an
        entry's data file left without its model (an export killed between the two renames) goes the same way.
        Returns the removed entries' model paths; a file that cannot be removed is left (pruning never fails)."""
        from pipeline.engines.export import data_path

        folder = folder or self.folder
        cutoff = time.time() - self.prune_after_days * 86400
        removed, freed = [], 0
        try:
            models = {p.with_name(p.name.removesuffix(".data")) for p in folder.glob("*.onnx*")
                      if p.name.endswith((".onnx", ".onnx.data"))}
        except OSError:
            return removed
        for model in sorted(models):
            if model == keep or not _ENTRY.fullmatch(model.name) or not _unused_since(model, cutoff):
                continue
            try:
                with file_lock(model, blocking=False) as held:
                    if not held or not _unused_since(model, cutoff):  # being built or loaded, or used just now
                        continue
                    for f in (model, data_path(model)):  # the model first: a reader finds no entry, not half of one
                        if f.exists():
                            freed += f.stat().st_size
                            f.unlink()
                    removed.append(model)
            except OSError:
                continue
        if removed:
            self.notice(f"removed {len(removed)} engine export(s) unused for {self.prune_after_days:g} days from "
                        f"{folder} ({freed / 1e6:.1f} MB)")
        return removed


@contextmanager
def _entry_free(target: Path | None, own: Path) -> Iterator[bool]:
    """Whether a temporary of ``target`` (an entry's model, data file or scratch folder) may be removed: its entry's
    lock is free (taken without waiting, held for the removal), or it is ``own``, whose lock the caller holds."""
    if target is None:
        yield False
        return
    entry = target.with_name(target.name.removesuffix(".d").removesuffix(".data"))
    if entry == own:
        yield True
        return
    with file_lock(entry, blocking=False) as held:
        yield held


def _unused_since(model: Path, cutoff: float) -> bool:
    """Whether the entry of ``model`` was last used (or written) before ``cutoff``: its model file, or its data
    file when the model is missing."""
    from pipeline.engines.export import data_path

    for f in (model, data_path(model)):
        try:
            return f.stat().st_mtime < cutoff
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return False


def _touch(path: Path) -> None:
    """Mark the entry ``path`` as used now (its modification time); a folder we cannot write in is left as it is."""
    try:
        os.utime(path)
    except OSError:
        pass


@contextmanager
def _shared(path: Path) -> Iterator[None]:
    """A shared lock on the entry for the block, where its lock file can be made (a folder we may not write in is
    pruned by nobody, so it needs none)."""
    with ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path, shared=True))
        except OSError:
            pass
        yield


def _complete(path: Path) -> bool:
    """An entry is there when its model file is (it is moved into place after its data file)."""
    from pipeline.engines.export import data_path

    return path.is_file() and data_path(path).is_file()
