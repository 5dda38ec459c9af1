"""Custom ops of StyleGAN2: ``upfirdn2d``, ``fused_leaky_relu`` / ``FusedLeakyReLU`` and ``conv2d_gradfix``.

Each op has an exact pure-PyTorch reference path that runs on every device, and a CUDA kernel that is
compiled with ninja on first use on a CUDA machine (cached by source hash) and never attempted on a
CPU-only one. Select with the ``impl=`` argument or ``VTOONIFY_OPS=auto|ref|cuda``.
"""
from . import conv2d_gradfix
from .fused_act import FusedLeakyReLU, fused_leaky_relu
from .upfirdn2d import upfirdn2d

__all__ = ["upfirdn2d", "fused_leaky_relu", "FusedLeakyReLU", "conv2d_gradfix"]
