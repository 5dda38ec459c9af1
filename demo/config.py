"""What the web demo serves: its models (found in a checkpoint folder or given), helper networks and limits."""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import OptionError
from hub.catalog import ReleasedVariant
from hub.released import BACKBONE_FILES, DEFAULT_STYLE, SHARED_FILES, model_folder
from pipeline.engines.runtimes import check_engine_name

__all__ = [
    "DEFAULT_STYLE_ID",
    "MAX_CACHED_THUMBNAILS",
    "MAX_UNCROPPED_SIDE",
    "RESULT_MAX_AGE",
    "THUMBNAIL_SIZE",
    "AppConfig",
    "ModelEntry",
    "ModelInfo",
    "discover_models",
    "helper_paths",
    "model_label",
    "over_limits",
    "too_large",
]

log = logging.getLogger("vtoonify.app")

#: Style shown first for VToonify-D models that have it (the original script's default).
DEFAULT_STYLE_ID = 26
#: Side of the style thumbnails, in pixels.
THUMBNAIL_SIZE = 128
#: Without cropping, inputs are stylised at full size into a 4x larger result; beyond this side that is
#: too heavy for a demo (a 4000x3000 photo would become 16000x12000).
MAX_UNCROPPED_SIDE = 1024
#: Thumbnails kept in memory (about 50 KB each).
MAX_CACHED_THUMBNAILS = 512
#: Seconds after which result files are deleted (Gradio serves its own copies, pruned after the same time).
RESULT_MAX_AGE = 3600


# ------------------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class ModelEntry:
    """One VToonify checkpoint offered on the page.

    ``exstyle_path`` defaults to ``exstyle_code.npy`` next to ``ckpt`` (VToonify-D); VToonify-T needs none.
    ``released``: a released style not (wholly) on disk when the app started, fetched when picked
    (:mod:`demo.released`); ``ckpt`` is then ``<checkpoint folder>/<released.model>``.
    """

    label: str
    ckpt: Path
    exstyle_path: Path | None = None
    released: ReleasedVariant | None = None

    @property
    def color_transfer_model(self) -> bool:
        """Whether the file is named as trained with colour transfer (``vtoonify_s_d_c.pt``, ``..._c_02000.pt``)."""
        return re.search(r"_c(_\d+)?$", self.ckpt.stem) is not None


def model_label(path: Path) -> str:
    """``VToonify-D cartoon (vtoonify_s_d.pt)`` for a file in a released-layout folder, else the path."""
    found = model_folder(path.parent.name, released_only=False)
    if found is None:
        return str(path)
    backbone, style = found
    return f"VToonify-{BACKBONE_FILES[backbone].kind.upper()} {style} ({path.name})"


def discover_models(ckpt_dir: str | os.PathLike) -> list[ModelEntry]:
    """The models of a checkpoint folder in the released layout (:data:`hub.released.BACKBONE_FILES`).

    VToonify-D: ``vtoonify_d_<style>/vtoonify_s_d*.pt`` (adjustable style and degree; fixed-style files
    ``vtoonify_sNNN_dD.D.pt`` are left out), only where the folder has its ``exstyle_code.npy``.
    VToonify-T: ``vtoonify_t_<style>/vtoonify.pt``. VToonify-D comes first, the cartoon style (the
    original's default) first among them; any style name is accepted (user-trained models too).
    """
    root = Path(ckpt_dir)

    def order(path: Path) -> tuple:
        return path.parent.name.split("_", 2)[2] != DEFAULT_STYLE, path.parent.name, path.name

    entries = []
    for table in BACKBONE_FILES.values():
        found = []
        for path in root.glob(f"{table.folder_prefix}*/{table.model_glob}"):
            missing = [name for name in table.companions if not (path.parent / name).is_file()]
            if missing:
                log.warning("skipping %s: no %s next to it", path, " or ".join(missing))
                continue
            found.append(path)
        entries += [ModelEntry(model_label(p), p) for p in sorted(found, key=order)]
    return entries


def helper_paths(ckpt_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``(style encoder, face parser)`` in a checkpoint folder: ``encoder.pt`` and ``faceparsing.pth``."""
    encoder, parser = (Path(ckpt_dir) / name for name in SHARED_FILES)
    return encoder, parser


@dataclass(frozen=True)
class AppConfig:
    """What the app serves and how (see ``python app.py --help``)."""

    models: tuple[ModelEntry, ...]
    style_encoder_path: Path
    faceparsing_path: Path
    device: str = "auto"
    dtype: str | None = None
    max_video_seconds: float | None = 10.0  # None: no limit
    max_video_frames: int | None = None  # None: no limit
    max_loaded_models: int = 2
    #: Released styles not on disk, offered after ``models`` and fetched when picked (see :mod:`demo.released`).
    downloadable: tuple[ModelEntry, ...] = ()
    engine: str = "torch"  # what runs VToonify and the face parser (--engine: torch, onnxruntime, openvino)

    def __post_init__(self) -> None:
        if not self.models:
            raise OptionError("no VToonify model to serve")
        labels = [m.label for m in self.models + self.downloadable]
        if len(set(labels)) != len(labels):
            raise OptionError(f"model labels must be unique, got {labels}")
        if self.max_loaded_models < 1:
            raise OptionError(f"max_loaded_models must be at least 1, got {self.max_loaded_models}")
        check_engine_name(self.engine)

    @classmethod
    def from_checkpoint_dir(cls, ckpt_dir: str | os.PathLike, ckpts: Sequence[str | os.PathLike] = (),
                            style_encoder_path: str | os.PathLike | None = None,
                            faceparsing_path: str | os.PathLike | None = None, **options: Any) -> AppConfig:
        """The models given in ``ckpts`` (first) and those found in ``ckpt_dir``; the helper networks
        default to ``<ckpt_dir>/encoder.pt`` and ``<ckpt_dir>/faceparsing.pth``."""
        root = Path(ckpt_dir)
        paths: list[Path] = []
        for path in [Path(p) for p in ckpts] + [m.ckpt for m in discover_models(root)]:
            if all(path.resolve() != known.resolve() for known in paths):
                paths.append(path)
        if not paths:
            from hub.download_hints import download_command

            raise OptionError(f"no VToonify model found in {root} (looked for vtoonify_d_*/vtoonify_s_d*.pt with "
                              f"exstyle_code.npy, and vtoonify_t_*/vtoonify.pt); download one with "
                              f"`{download_command()}`, or pass --ckpt PATH")
        labels = [model_label(p) for p in paths]
        models = [ModelEntry(label if labels.count(label) == 1 else str(p), p) for label, p in zip(labels, paths)]
        encoder, parser = helper_paths(root)
        return cls(models=tuple(models),
                   style_encoder_path=Path(style_encoder_path) if style_encoder_path else encoder,
                   faceparsing_path=Path(faceparsing_path) if faceparsing_path else parser,
                   **options)

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.models]

    def model(self, label: str) -> ModelEntry:
        for entry in self.models + self.downloadable:
            if entry.label == label:
                return entry
        raise OptionError(f"unknown model {label!r}; choose one of: "
                          f"{', '.join(m.label for m in self.models + self.downloadable)}")

    def missing_files(self) -> list[Path]:
        """Files the configuration names that do not exist."""
        needed = [self.style_encoder_path, self.faceparsing_path] + [m.ckpt for m in self.models]
        return [p for p in needed if not p.is_file()]


@dataclass(frozen=True)
class ModelInfo:
    """What the page needs to know about a loaded model."""

    backbone: str  # "dualstylegan" (VToonify-D) or "toonify" (VToonify-T)
    style_names: tuple[str, ...]  # exemplar names in style-id order; empty for VToonify-T
    color_transfer_model: bool

    @property
    def is_dual(self) -> bool:
        return self.backbone == "dualstylegan"

    @property
    def default_style_id(self) -> int:
        return DEFAULT_STYLE_ID if DEFAULT_STYLE_ID < len(self.style_names) else 0


# ------------------------------------------------------------------------------------------------ limits
def over_limits(config: AppConfig, duration: float, frames: int) -> str | None:
    """Why a video of ``duration`` seconds and ``frames`` frames is refused, or None."""
    if config.max_video_seconds is not None and duration > config.max_video_seconds:
        return (f"This video is {duration:.1f} s long; this app takes videos up to {config.max_video_seconds:g} s "
                f"(start it with --max_video_seconds to change the limit). Trim the video and upload it again.")
    if config.max_video_frames is not None and frames > config.max_video_frames:
        return (f"This video has {frames} frames; this app takes videos up to {config.max_video_frames} frames "
                f"(start it with --max_video_frames to change the limit). Trim the video and upload it again.")
    return None


def too_large(width: int, height: int, scale_image: bool) -> str | None:
    """Why an uncropped input of ``width`` x ``height`` is refused (its 4x result would be too large), or None."""
    if scale_image or max(width, height) <= MAX_UNCROPPED_SIDE:
        return None
    return (f"This input is {width}x{height}: without cropping the result would be {4 * width}x{4 * height}. "
            f"Turn on 'Crop around the face', or use an input at most {MAX_UNCROPPED_SIDE} px on its longer side.")
