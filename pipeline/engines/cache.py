"""The export cache: each checkpoint is exported to ONNX once, on first use by an ONNX engine, and reused after.

An entry is ``<folder>/<checkpoint name>-<key>.onnx`` (+ ``.onnx.data``), where the key hashes the checkpoint's
content (SHA-256), :data:`pipeline.engines.export.EXPORT_FORMAT` and the versions of torch, onnx and onnxscript
(the exporter). The file does not depend on the runtime or the precision (ONNX Runtime and OpenVINO load the same
float32 file; OpenVINO applies bfloat16 when it compiles it), so one entry serves every engine and ``--dtype``. A
changed checkpoint has another key and is exported again; old entries stay until the folder is cleared (any file
in it may be deleted at any time).

Building an entry holds an exclusive lock (``fcntl.flock`` on ``<entry>.lock``, where the platform has it), so two
processes that need the same entry export it once: the second waits and then finds it. The entry itself is
written atomically (see :func:`pipeline.engines.export.export_onnx`), so a reader never sees part of it, with or
without the lock. Each export prints a one-line notice with the time it took.

The folder is ``$VTOONIFY_CACHE/engines``, else ``$XDG_CACHE_HOME/vtoonify/engines``, else
``~/.cache/vtoonify/engines``. The cache is an optimisation: a folder that cannot be written is a warning, and
the entry is built in a per-user folder under the system's temporary folder instead.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

import torch

from common.atomic import cache_root, file_lock

__all__ = ["ExportCache", "default_cache_dir"]


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
    notice of each export (default: printed to stderr).
    """

    def __init__(self, folder: str | os.PathLike | None = None, notice=None):
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.notice = notice if notice is not None else (lambda line: print(line, file=sys.stderr))
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

        ``check``: the runtime that checks a new export against PyTorch (as in :func:`export_onnx`).
        """
        path = self.entry(ckpt)
        if _complete(path):
            return path
        try:
            return self._build(ckpt, path, check)
        except OSError as e:
            fallback = Path(tempfile.gettempdir()) / f"vtoonify-engines-{getattr(os, 'getuid', lambda: 'user')()}"
            warnings.warn(f"the engine cache {self.folder} cannot be written ({e.__class__.__name__}: {e}); "
                          f"exporting into {fallback} instead", RuntimeWarning, stacklevel=2)
            fallback.mkdir(mode=0o700, exist_ok=True)
            return self._build(ckpt, self.entry(ckpt, fallback), check)

    def _build(self, ckpt, path: Path, check: str) -> Path:
        from pipeline.engines.export import export_onnx

        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path):  # <entry>.lock
            if _complete(path):  # another process exported it while this one waited
                return path
            started = time.perf_counter()
            result = export_onnx(ckpt, path, check=check)
            self.exports += 1
            self.notice(f"first use of {ckpt} with an ONNX engine: {result.summary()} "
                        f"(cached; {time.perf_counter() - started:.1f} s in all)")
        return path


def _complete(path: Path) -> bool:
    """An entry is there when its model file is (it is moved into place after its data file)."""
    from pipeline.engines.export import data_path

    return path.is_file() and data_path(path).is_file()
