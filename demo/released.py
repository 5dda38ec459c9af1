"""The released styles in the demo: listed beside the local models, fetched into the checkpoint folder when picked.

:func:`with_released_styles` adds to an :class:`~demo.config.AppConfig` every released variant
(:func:`hub.catalog.released_variants`) whose files are not all in the checkpoint folder, labelled as it will be
once there (``VToonify-D comic (vtoonify_s_d.pt)``); :func:`model_choices` gives the page's list, where those not
downloaded yet carry a marker such as ``(download, 305.1 MB)``. :func:`fetch_released` downloads one
(:func:`hub.catalog.fetch_style`: its own files only, the helper networks are the app's), reporting each file to a
progress callback. The sizes come from the hub in a background thread (:class:`SizeLookup`): nothing waits for
the network, and offline they are ``size unknown``. ``app.py --no_download`` (or ``VTOONIFY_NO_DOWNLOAD=1``)
leaves the released styles out.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from demo.config import AppConfig, ModelEntry, model_label
from hub import fetching
from hub.catalog import fetch_style, released_variants
from hub.first_run import downloads_disabled, human_size

__all__ = ["SizeLookup", "fetch_released", "missing_files", "model_choices", "released_entries", "with_released_styles"]

#: ``progress(fraction, desc=...)``: ``gr.Progress`` or any callable with that signature.
Progress = Callable[..., Any]


def released_entries(ckpt_dir: str | os.PathLike, local: Iterable[ModelEntry] = ()) -> tuple[ModelEntry, ...]:
    """The released variants whose model is not among the ``local`` models, as entries of ``ckpt_dir`` to fetch
    (a model whose companion file is missing is not local either: picking it fetches the companion). A variant
    whose label a local model already has (the same style given with ``--ckpt``) is left out."""
    root = Path(ckpt_dir)
    local = list(local)
    paths = {m.ckpt.resolve() for m in local}
    labels = {m.label for m in local}
    entries = []
    for variant in released_variants():
        path = root / variant.model
        label = model_label(path)
        if path.resolve() not in paths and label not in labels:
            entries.append(ModelEntry(label, path, released=variant))
    return tuple(entries)


def with_released_styles(config: AppConfig, ckpt_dir: str | os.PathLike, no_download: bool = False) -> AppConfig:
    """``config`` offering also the released styles not in ``ckpt_dir`` (see :func:`released_entries`), unless
    downloads are turned off (``no_download``, ``app.py --no_download``, or :data:`hub.first_run.NO_DOWNLOAD_ENV`)."""
    if downloads_disabled(no_download):
        return replace(config, downloadable=())
    return replace(config, downloadable=released_entries(ckpt_dir, config.models))


def _root(entry: ModelEntry) -> Path:
    """The checkpoint folder of a released entry (its model is ``<folder>/vtoonify_<k>_<style>/<file>``)."""
    return entry.ckpt.parents[1]


def missing_files(entry: ModelEntry) -> list[str]:
    """The files of a released entry's own (not the helpers) missing from its checkpoint folder; empty for a local one."""
    if entry.released is None:
        return []
    return [rel for rel in entry.released.own_files if not (_root(entry) / rel).is_file()]


def fetch_released(entry: ModelEntry, progress: Progress | None = None) -> bool:
    """Download the missing files of a released entry into its checkpoint folder; whether anything was missing.

    ``progress(fraction, desc=...)`` hears of each file before it is downloaded. Concurrent calls for one style
    download each file once (:func:`hub.fetching.fetch` takes turns); a file is whole under its name or absent.
    Raises :class:`hub.fetching.DownloadError` (offline, the hub failed), :class:`common.errors.MissingFileError`
    (downloads turned off), ``OSError`` (a full disk) or ``ImportError`` (no huggingface_hub).
    """
    if not missing_files(entry):
        return False
    variant = entry.released

    def on_file(index: int, count: int, rel: str) -> None:
        progress(index / count, desc=f"Downloading {rel} ({index + 1} of {count})")

    fetch_style(variant.backbone, variant.style, variant.color_transfer, _root(entry), download=True, progress=True,
                shared=False, on_file=None if progress is None else on_file)
    return True


class SizeLookup:
    """The sizes on the hub of the files to fetch, asked once in a background thread (:func:`hub.fetching.remote_sizes`),
    so that nothing waits for the network; ``{}`` until it answers, and offline."""

    def __init__(self, rels: Iterable[str]):
        rels = list(dict.fromkeys(rels))
        self._sizes: dict[str, int] = {}
        self._done = threading.Event()
        if rels:
            threading.Thread(target=self._ask, args=(rels,), name="vtoonify-hub-sizes", daemon=True).start()
        else:
            self._done.set()

    def _ask(self, rels: list[str]) -> None:
        try:
            self._sizes = fetching.remote_sizes(rels)
        finally:
            self._done.set()

    def get(self, wait: float = 0.0) -> dict[str, int]:
        """The sizes known, after waiting at most ``wait`` seconds for the hub's answer."""
        return dict(self._sizes) if self._done.wait(wait) else {}


def _marker(entry: ModelEntry, sizes: dict[str, int]) -> str:
    missing = missing_files(entry)
    if not missing:
        return ""
    known = [sizes[rel] for rel in missing if rel in sizes]
    return f" (download, {human_size(sum(known)) if len(known) == len(missing) else 'size unknown'})"


def model_choices(config: AppConfig, sizes: dict[str, int]) -> list[tuple[str, str]]:
    """``(shown name, label)`` of every model, the local ones first: a released one not downloaded yet is shown with
    ``(download, <size>)`` (``size unknown`` when ``sizes`` does not have all its missing files)."""
    return [(m.label, m.label) for m in config.models] + [(m.label + _marker(m, sizes), m.label)
                                                          for m in config.downloadable]
