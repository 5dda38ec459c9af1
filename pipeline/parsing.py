"""Face parsing for the model's input: BiSeNet logits at the frame size, or precomputed maps from a file."""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from common.errors import InputError

__all__ = ["N_CLASSES", "ParsingMaps", "parse_frames"]

#: Classes of the CelebAMask-HQ face parser (BiSeNet).
N_CLASSES = 19


@torch.inference_mode()
def parse_frames(parser: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """19-channel BiSeNet logits of frames ``x`` (B, 3, H, W) in [-1, 1], at the frame size: BiSeNet at 2x, then
    nearest decimation (computed directly at the kept pixels, :meth:`BiSeNet.parse_logits`). The per-frame
    parsing of the pipeline; ``smooth_parsing_map.py`` uses it too."""
    x2 = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    x2 = (2 * x2).contiguous(memory_format=torch.channels_last)  # faster convolutions on CPU and GPU
    return parser.parse_logits(x2, every=2).contiguous()


class ParsingMaps:
    """Precomputed ``(N, 19, H, W)`` parsing logits of a video (``--parsing_map_path``), memory-mapped (never
    unpickled); each map is checked when it is used (finite values), with the file named in the error."""

    def __init__(self, path: str | os.PathLike):
        self.path = path
        try:
            maps = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: not a parsing-map .npy array ({e})") from e
        if maps.ndim != 4 or maps.shape[1] != N_CLASSES:
            raise InputError(f"{path}: expected (frames, {N_CLASSES}, H, W) parsing maps, got shape {maps.shape}")
        if not np.issubdtype(maps.dtype, np.floating):
            raise InputError(f"{path}: parsing maps must be floating point, got {maps.dtype}")
        self.maps = maps

    @property
    def shape(self) -> tuple[int, ...]:
        return self.maps.shape

    def __len__(self) -> int:
        return len(self.maps)

    def check_size(self, size: tuple[int, int]) -> None:
        """The maps must have the padded size of the cropped frames ``size = (h, w)``."""
        h, w = size
        if tuple(self.maps.shape[-2:]) != (h + (-h) % 8, w + (-w) % 8):
            raise InputError(f"{self.path}: parsing maps are {tuple(self.maps.shape[-2:])}, the cropped frames are {(h, w)}")

    def __getitem__(self, index: int) -> np.ndarray:
        if index >= len(self.maps):
            raise InputError(f"{self.path} has {len(self.maps)} maps but the video has more frames")
        m = np.array(self.maps[index], dtype=np.float32)
        if not np.isfinite(m).all():
            raise InputError(f"{self.path}: the parsing map of frame {index} holds non-finite values (NaN or inf)")
        return m
