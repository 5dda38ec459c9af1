"""torch.hub entry points: ``torch.hub.load("<clone or williamyang1991/VToonify>", "vtoonify", style="arcane")``.

The released files are downloaded into ``./checkpoint`` on first use (see
:meth:`pipeline.stylize.VToonifyPipeline.from_pretrained`); the repository must be installed (``pip install -e .``)
or its requirements present.
"""
from __future__ import annotations

dependencies = ["torch", "numpy", "cv2", "av", "dlib", "huggingface_hub"]


def vtoonify(style: str = "cartoon", backbone: str = "dualstylegan", color_transfer: bool = False, device: str = "auto",
             dtype: str | None = None, **kwargs):
    """A :class:`pipeline.stylize.VToonifyPipeline` with the released model of ``style`` (see ``from_pretrained``)."""
    from pipeline.stylize import VToonifyPipeline

    return VToonifyPipeline.from_pretrained(style=style, backbone=backbone, color_transfer=color_transfer, device=device,
                                            dtype=dtype, **kwargs)
