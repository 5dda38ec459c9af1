"""BiSeNet face parser (19 CelebAMask-HQ classes) used by VToonify to build its parsing-map input.

Public names: :class:`~model.bisenet.model.BiSeNet`.
"""
from .model import BiSeNet

__all__ = ["BiSeNet"]
