"""Loaded pipelines, one home: a small thread-safe LRU cache, and the released files the tools default to.

:class:`PipelineCache` hands out :class:`~pipeline.stylize.VToonifyPipeline` objects, loading each
configuration once (keyed by the resolved checkpoint path and the pipeline's options) and keeping the
``max_size`` most recently used; the web demo (``demo.state.AppState``, ``--max_loaded_models``) and
``figures.py`` use it. Before a load it checks that the checkpoint and the helper networks exist and says
how to download a missing one (:func:`require_files`, which ``evaluate.py`` calls too). :class:`LRU` is the
cache underneath, for anything else worth keeping a few of (the demo's style thumbnails).

:func:`released_path` / :func:`default_model` are the default file paths of the tools, under
:data:`hub.released.CHECKPOINT_DIR` and named by the released-files table.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, NamedTuple, TypeVar

from common.errors import OptionError
from hub import first_run
from hub.released import default_model, guess_style_from_path, released_path  # noqa: F401  (re-exported)
from pipeline.stylize import VToonifyPipeline

__all__ = ["LRU", "PipelineCache", "PipelineKey", "default_model", "released_path", "require_files"]

log = logging.getLogger("vtoonify.registry")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


# --------------------------------------------------------------------------------------------- LRU cache
class LRU(Generic[K, V]):
    """At most ``max_size`` values, the least recently used dropped first; safe to share between threads.

    :meth:`get_or_make` holds the cache's lock while it makes a value, so that two threads asking for the same
    key make it once (and a model is never loaded twice at the same time); room is made *before* the new value
    is made, so that the dropped one can be freed first.
    """

    def __init__(self, max_size: int, name: str = "item"):
        if max_size < 1:
            raise OptionError(f"a cache must hold at least 1 {name}, got max_size={max_size}")
        self.max_size, self.name = max_size, name
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.RLock()

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The value of ``key`` (now the most recently used), made with ``make()`` when it is not cached."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            while len(self._items) >= self.max_size:
                dropped, _ = self._items.popitem(last=False)
                log.info("dropping %s %s", self.name, dropped)
            value = self._items[key] = make()
            return value

    def keys(self) -> list[K]:
        """The cached keys, least recently used first."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


# ----------------------------------------------------------------------------------------------- pipelines
class PipelineKey(NamedTuple):
    """What makes two pipelines the same: the checkpoint's resolved path, the backbone asked for, the engine that
    runs it (``'torch'`` when not given) and the other :class:`~pipeline.stylize.VToonifyPipeline` arguments
    (``*_path`` values resolved too), sorted by name."""

    ckpt: str
    backbone: str | None
    engine: str
    options: tuple[tuple[str, Any], ...]


def _resolved(name: str, value: Any) -> Any:
    if value is not None and (isinstance(value, os.PathLike) or name.endswith("_path")):
        return os.path.realpath(value)
    return value


def require_files(ckpt: str | os.PathLike, *helpers: str | os.PathLike | None, backbone: str | None = None) -> None:
    """Raise :class:`MissingFileError` naming the first of ``ckpt`` and ``helpers`` (``None``: skipped) that does not
    exist, with the command that downloads it (for the style the checkpoint's path tells, else ``backbone``'s)."""
    guessed_backbone, style = guess_style_from_path(ckpt) or (backbone, None)
    first_run.require_files((ckpt, *helpers), backbone=guessed_backbone, style=style)


class PipelineCache:
    """The ``max_size`` most recently used pipelines, each configuration loaded once (thread-safe).

    ``cache.get(ckpt, style_encoder_path=..., faceparsing_path=..., device=..., dtype=..., engine=...)`` returns the
    pipeline of that configuration; the same arguments (the same file by any path; no ``engine`` and
    ``engine='torch'`` alike) give the same object, any other option (``engine``, ``dtype``, ``exstyle_path`` ...)
    another pipeline. A pipeline holds its VToonify and
    parser (the pSp encoder is shared between pipelines of one process), so ``max_size`` bounds the memory.
    """

    def __init__(self, max_size: int = 2):
        self._lru: LRU[PipelineKey, VToonifyPipeline] = LRU(max_size, "pipeline")

    @property
    def max_size(self) -> int:
        return self._lru.max_size

    @staticmethod
    def key(ckpt: str | os.PathLike, backbone: str | None = None, **pipeline_kwargs: Any) -> PipelineKey:
        """The cache key of ``get(ckpt, backbone, **pipeline_kwargs)``; an unknown ``engine`` is a one-line
        :class:`~common.errors.OptionError`."""
        from pipeline.engines.runtimes import check_engine_name

        engine = check_engine_name(pipeline_kwargs.pop("engine", "torch"))
        options = tuple(sorted((name, _resolved(name, value)) for name, value in pipeline_kwargs.items()))
        return PipelineKey(os.path.realpath(ckpt), backbone, engine, options)

    def get(self, ckpt: str | os.PathLike, backbone: str | None = None, **pipeline_kwargs: Any) -> VToonifyPipeline:
        """The :class:`~pipeline.stylize.VToonifyPipeline` of ``ckpt`` with these arguments, loaded on first use
        (after :func:`require_files` on the checkpoint and the helper networks)."""

        def load() -> VToonifyPipeline:
            log.info("loading %s", ckpt)
            return VToonifyPipeline(ckpt, backbone=backbone, **pipeline_kwargs)

        key = self.key(ckpt, backbone, **pipeline_kwargs)
        if key not in self._lru:  # before any pipeline is dropped to make room
            require_files(ckpt, pipeline_kwargs.get("style_encoder_path"), pipeline_kwargs.get("faceparsing_path"),
                          backbone=backbone)
        return self._lru.get_or_make(key, load)

    def keys(self) -> list[PipelineKey]:
        """The keys of the loaded pipelines, least recently used first."""
        return self._lru.keys()

    def clear(self) -> None:
        """Drop every pipeline (they are freed once no caller holds them)."""
        self._lru.clear()

    def __len__(self) -> int:
        return len(self._lru)
