"""The models and files of a running demo: pipelines loaded on first use and kept warm, thumbnails, a work folder."""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from demo.config import MAX_CACHED_THUMBNAILS, RESULT_MAX_AGE, THUMBNAIL_SIZE, AppConfig, ModelInfo
from demo.released import Progress, SizeLookup, fetch_released, model_choices
from pipeline.precision import FAST_DTYPE
from pipeline.registry import LRU, PipelineCache, PipelineKey
from pipeline.samples import sample_photo, synthesize_test_video
from pipeline.stylize import VToonifyPipeline, tensor_to_frames

__all__ = ["AppState", "render_exemplar"]


class AppState:
    """The app's models and files: pipelines loaded on first use and kept warm, thumbnails, a work folder.

    At most ``config.max_loaded_models`` pipelines stay loaded (a :class:`pipeline.registry.PipelineCache`: the
    least recently used one is dropped to make room). A released style not downloaded yet (``config.downloadable``)
    is fetched when first used (:meth:`fetch`). Results are written under a private temporary folder,
    removed by :meth:`close` or when the process exits. Safe to use from Gradio's worker threads.
    """

    def __init__(self, config: AppConfig):
        self.config = config
        self.workdir = Path(tempfile.mkdtemp(prefix="vtoonify_app_"))
        self._remove_workdir = weakref.finalize(self, shutil.rmtree, self.workdir, ignore_errors=True)
        self.pipelines = PipelineCache(config.max_loaded_models)
        self._names: dict[PipelineKey, str] = {}  # the label shown for each configuration ("<label> (fast)")
        self._thumbnails: LRU[tuple[str, int], np.ndarray] = LRU(MAX_CACHED_THUMBNAILS, "thumbnail")
        self._lock = threading.Lock()  # guards the sample video
        self._sample_video: Path | None = None
        self.sizes = SizeLookup(rel for entry in config.downloadable for rel in entry.released.own_files)

    @property
    def loaded(self) -> list[str]:
        """Labels of the models in memory, least recently used first."""
        return [self._names[key] for key in self.pipelines.keys()]

    def pipeline(self, label: str, fast: bool = False) -> VToonifyPipeline:
        """The pipeline of model ``label``, loading it if needed (and fetching a released one, see :meth:`fetch`);
        ``fast``: in bfloat16 (the page's "fast" toggle)."""
        entry = self.config.model(label)
        fetch_released(entry)
        dtype, name = (FAST_DTYPE, f"{label} (fast)") if fast else (self.config.dtype, label)
        options = dict(style_encoder_path=self.config.style_encoder_path, faceparsing_path=self.config.faceparsing_path,
                       exstyle_path=entry.exstyle_path, device=self.config.device, dtype=dtype, engine=self.config.engine)
        self._names[self.pipelines.key(entry.ckpt, **options)] = name
        return self.pipelines.get(entry.ckpt, **options)

    def fetch(self, label: str, progress: Progress | None = None) -> bool:
        """Download the files of model ``label`` if it is a released style not (wholly) on disk yet, into the
        checkpoint folder (:func:`demo.released.fetch_released`); whether anything was downloaded."""
        return fetch_released(self.config.model(label), progress)

    def model_choices(self, wait: float = 0.0) -> list[tuple[str, str]]:
        """``(shown name, label)`` of the models for the page's list (:func:`demo.released.model_choices`), after
        waiting at most ``wait`` seconds for the sizes of the released styles not downloaded yet."""
        return model_choices(self.config, self.sizes.get(wait))

    def model_info(self, label: str) -> ModelInfo:
        """Backbone and exemplar styles of model ``label`` (loads it)."""
        pipe = self.pipeline(label)
        return ModelInfo(pipe.backbone, tuple(pipe.exstyles), self.config.model(label).color_transfer_model)

    def thumbnail(self, label: str, style_id: int) -> np.ndarray:
        """The style thumbnail of exemplar ``style_id`` of a VToonify-D model (cached), see :func:`render_exemplar`."""
        return self._thumbnails.get_or_make((label, style_id), lambda: render_exemplar(self.pipeline(label), style_id))

    def new_job_dir(self) -> Path:
        """A fresh folder for one request's files; those of requests older than ``RESULT_MAX_AGE`` are removed."""
        cutoff = time.time() - RESULT_MAX_AGE
        for old in self.workdir.glob("job_*"):
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix="job_", dir=self.workdir))

    def sample_video(self) -> Path:
        """The bundled sample clip (made on first use): 2 s panning over the astronaut, with a tone as audio."""
        with self._lock:
            if self._sample_video is None:
                self._sample_video = synthesize_test_video(self.workdir / "astronaut_sample.mp4", sample_photo(),
                                                           n_frames=16, fps=8, size=(384, 384), motion="pan")
            return self._sample_video

    def close(self) -> None:
        """Drop the models and remove the work folder."""
        self.pipelines.clear()
        self._thumbnails.clear()
        self._remove_workdir()


@torch.inference_mode()
def render_exemplar(pipe: VToonifyPipeline, style_id: int, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """The exemplar's style code rendered by the DualStyleGAN inside a VToonify-D model, ``size`` px RGB uint8.

    The W+ code of exemplar ``style_id`` is both the intrinsic (structure) and the extrinsic (style) input,
    with full extrinsic weight and fixed noise: DualStyleGAN's reconstruction of the exemplar portrait,
    i.e. a face in that style. Rendered at the generator's resolution, then area-downscaled.
    """
    code = pipe.exstyle(style_id)
    generator = pipe.vtoonify.generator
    image, _ = generator([code], code, input_is_latent=True, use_res=True, interp_weights=[1] * generator.n_latent,
                         randomize_noise=False)
    return tensor_to_frames(F.interpolate(image.float(), size=(size, size), mode="area"))[0]
