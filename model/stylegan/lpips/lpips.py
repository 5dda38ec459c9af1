"""LPIPS v0.1 ("net-lin", VGG16) perceptual distance (Zhang et al., CVPR 2018), used as a training loss.

For images ``x0``, ``x1`` in [-1, 1] of shape (B,3,H,W)::

    z = (x - shift) / scale                                    # ScalingLayer, per RGB channel
    f_l = VGG16 activation l of z,  l = relu1_2 ... relu5_3    # VGG16Features
    n_l = f_l / (sqrt(sum_c f_l**2) + 1e-10)                   # unit length along channels
    d(x0, x1) = sum_l mean_{h,w} sum_c w_l[c] * (n_l(x0) - n_l(x1))**2

with ``shift = [-.030, -.088, -.188]``, ``scale = [.458, .448, .450]`` and ``w_l`` the 1x1 "lin" weights
(no bias). The result has shape (B,1,1,1) (or (B,1,H,W) with ``spatial=True``).

Weights are never downloaded. They come from two user-supplied files:

* the VGG16 trunk: torchvision's ImageNet ``vgg16-397923af.pth`` (see :func:`load_vgg16_weights`);
* the lin heads: the LPIPS package's ``weights/v0.1/vgg.pth`` with keys ``lin0.model.1.weight`` ...
  ``lin4.model.1.weight`` (see :func:`load_lpips_weights`).

Without them the network is randomly initialised and its distances are meaningless (useful for tests).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.checkpoint import CheckpointError, load_state_dict_strict

from .vgg import VGG16_TAP_CHANNELS, VGG16Features, WeightsSource, _find_submodule, _state_dict_from, load_vgg16_weights

__all__ = ["ScalingLayer", "NetLinLayer", "LPIPS", "PerceptualLoss", "load_lpips_weights", "normalize_channels"]

#: Per-channel shift and scale mapping [-1, 1] RGB to the ImageNet normalisation VGG16 was trained with.
LPIPS_SHIFT: tuple[float, float, float] = (-0.030, -0.088, -0.188)
LPIPS_SCALE: tuple[float, float, float] = (0.458, 0.448, 0.450)
#: Added to the channel norm before dividing (LPIPS's ``normalize_tensor``).
NORM_EPS: float = 1e-10

_warned_random_weights = False


def normalize_channels(x: Tensor, eps: float = NORM_EPS) -> Tensor:
    """Divide ``x`` (B,C,H,W) by its Euclidean norm over channels: ``x / (sqrt(sum_c x**2) + eps)``."""
    return x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + eps)


class ScalingLayer(nn.Module):
    """``(x - shift) / scale`` per RGB channel, turning [-1, 1] images into ImageNet-normalised ones.

    ``shift`` and ``scale`` are non-persistent buffers: constants that follow ``.to(device/dtype)`` but
    are not part of the state_dict (no weights file carries them).
    """

    shift: Tensor
    scale: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale


class NetLinLayer(nn.Module):
    """Per-layer LPIPS head: Dropout then a bias-free 1x1 conv from ``channels`` to 1.

    The layout (``model.0`` = Dropout, ``model.1`` = conv) gives the parameter name
    ``model.1.weight`` of shape (1, C, 1, 1) used by the released weights. The dropout is only active
    in training mode. The weight is initialised to ones, i.e. an unweighted sum over channels (the
    "baseline" variant of the LPIPS paper), until trained weights are loaded.
    """

    def __init__(self, channels: int, use_dropout: bool = True) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Dropout() if use_dropout else nn.Identity(),
            nn.Conv2d(channels, 1, kernel_size=1, stride=1, padding=0, bias=False),
        )
        nn.init.ones_(self.model[1].weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """LPIPS v0.1 'net-lin' distance with a VGG16 trunk.

    Args:
        spatial: if True, :meth:`forward` returns a (B,1,H,W) distance map (each layer's map bilinearly
            resized to the input size, ``align_corners=False``, then summed) instead of (B,1,1,1).
        use_dropout: keep the Dropout in each lin head (as the released model does; inactive in eval mode).

    Submodules: ``scaling_layer`` (:class:`ScalingLayer`), ``net`` (:class:`VGG16Features`) and ``lin0``
    ... ``lin4`` (:class:`NetLinLayer`, 64/128/256/512/512 channels). The state_dict is therefore
    ``net.features.*`` (torchvision's keys under ``net.``) plus ``lin<i>.model.1.weight`` (the LPIPS file's
    keys). The module is built in eval mode and randomly initialised; load weights with
    :func:`load_vgg16_weights` and :func:`load_lpips_weights`, or use :class:`PerceptualLoss`.
    """

    def __init__(self, spatial: bool = False, use_dropout: bool = True) -> None:
        super().__init__()
        self.spatial = spatial
        self.scaling_layer = ScalingLayer()
        self.net = VGG16Features()
        self.lin0 = NetLinLayer(VGG16_TAP_CHANNELS[0], use_dropout)
        self.lin1 = NetLinLayer(VGG16_TAP_CHANNELS[1], use_dropout)
        self.lin2 = NetLinLayer(VGG16_TAP_CHANNELS[2], use_dropout)
        self.lin3 = NetLinLayer(VGG16_TAP_CHANNELS[3], use_dropout)
        self.lin4 = NetLinLayer(VGG16_TAP_CHANNELS[4], use_dropout)
        self.eval()

    @property
    def lins(self) -> list[NetLinLayer]:
        """The five lin heads, in layer order (a plain list, so no duplicate state_dict keys)."""
        return [self.lin0, self.lin1, self.lin2, self.lin3, self.lin4]

    def forward(self, in0: Tensor, in1: Tensor, ret_per_layer: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Distance between ``in0`` and ``in1`` (B,3,H,W) in [-1, 1].

        Returns (B,1,1,1), or (B,1,H,W) if ``spatial``; with ``ret_per_layer=True`` returns
        ``(total, [per-layer terms])``. The two inputs go through the trunk separately, so
        ``d(x, x)`` is exactly 0 and ``d(x, y) == d(y, x)`` bit for bit.
        """
        if in0.shape != in1.shape:
            raise ValueError(f"LPIPS inputs must have the same shape, got {tuple(in0.shape)} and {tuple(in1.shape)}")
        feats0 = self.net(self.scaling_layer(in0))
        feats1 = self.net(self.scaling_layer(in1))
        per_layer: list[Tensor] = []
        for lin, f0, f1 in zip(self.lins, feats0, feats1):
            diff = (normalize_channels(f0) - normalize_channels(f1)) ** 2
            d = lin(diff)
            if self.spatial:
                d = F.interpolate(d, size=in0.shape[-2:], mode="bilinear", align_corners=False)
            else:
                d = d.mean(dim=(2, 3), keepdim=True)
            per_layer.append(d)
        total = per_layer[0]
        for d in per_layer[1:]:
            total = total + d
        return (total, per_layer) if ret_per_layer else total


class _LinHeads(nn.Module):
    """A view over an LPIPS module's five lin heads (shared, not copied) with exactly the file's keys."""

    def __init__(self, lpips: LPIPS) -> None:
        super().__init__()
        for i, lin in enumerate(lpips.lins):
            self.add_module(f"lin{i}", lin)


def load_lpips_weights(module: nn.Module, source: WeightsSource) -> None:
    """Load the LPIPS v0.1 VGG linear heads (``weights/v0.1/vgg.pth``) into ``module``.

    Args:
        module: an :class:`LPIPS`, or a module containing exactly one (e.g. a :class:`PerceptualLoss`).
        source: path of the file, read with :func:`model.checkpoint.safe_load`, or a loaded state_dict.

    The file must contain exactly ``lin0.model.1.weight`` ... ``lin4.model.1.weight`` with shapes
    (1, C, 1, 1), C = 64, 128, 256, 512, 512.

    Raises:
        model.checkpoint.CheckpointError: unreadable file, or (``CheckpointMismatchError``) missing,
            unexpected or wrongly shaped keys, named in the message.
    """
    target = _find_submodule(module, LPIPS, "LPIPS weights")
    sd, name = _state_dict_from(source, "LPIPS")
    if any(k.startswith("features.") for k in sd) and not any(k.startswith("lin") for k in sd):
        raise CheckpointError(f"{name}: this is a VGG16 weights file (features.* keys), not the LPIPS linear "
                              "layers; pass it as vgg_path / to load_vgg16_weights")
    with torch.no_grad():
        load_state_dict_strict(_LinHeads(target), sd, source=f"{name} (LPIPS lin layers)")


class PerceptualLoss(nn.Module):
    """LPIPS perceptual loss, named and called like the original ``lpips.PerceptualLoss``.

    Args:
        model: only ``'net-lin'`` (LPIPS with learned linear heads) is supported.
        net: only ``'vgg'`` is supported.
        use_gpu: accepted for compatibility and ignored: the module is device-agnostic; move it with
            ``.to(device)`` like any module.
        vgg_path: torchvision's VGG16 ImageNet weights (``vgg16-397923af.pth``) as a path or state_dict.
        lpips_path: the LPIPS v0.1 VGG lin weights (``vgg.pth``) as a path or state_dict.
        spatial: return a (B,1,H,W) distance map instead of (B,1,1,1).

    The network is frozen: parameters have ``requires_grad=False`` and it stays in eval mode even if
    ``.train()`` is called (e.g. through a parent module); gradients still flow to the inputs. If either
    weight source is None a warning is issued (once per process): the distances are then meaningless
    and only useful for tests.
    """

    def __init__(
        self,
        model: str = "net-lin",
        net: str = "vgg",
        use_gpu: bool = False,
        vgg_path: WeightsSource | None = None,
        lpips_path: WeightsSource | None = None,
        spatial: bool = False,
    ) -> None:
        super().__init__()
        if model != "net-lin":
            raise ValueError(f"PerceptualLoss: model={model!r} is not supported (only 'net-lin')")
        if net != "vgg":
            raise ValueError(f"PerceptualLoss: net={net!r} is not supported (only 'vgg')")
        self.model_name = model
        self.net_name = net
        self.use_gpu = use_gpu
        self.spatial = spatial
        self.model = LPIPS(spatial=spatial)
        if vgg_path is not None:
            load_vgg16_weights(self.model, vgg_path)
        if lpips_path is not None:
            load_lpips_weights(self.model, lpips_path)
        if vgg_path is None or lpips_path is None:
            _warn_random_weights(vgg_path is None, lpips_path is None)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Kept in eval mode whatever ``mode`` is: the loss network is frozen (no dropout)."""
        return super().train(False)

    def forward(self, pred: Tensor, target: Tensor, normalize: bool = False) -> Tensor:
        """LPIPS distance between ``pred`` and ``target`` (B,3,H,W), shape (B,1,1,1) (or (B,1,H,W)).

        Inputs are in [-1, 1], or in [0, 1] with ``normalize=True`` (mapped by ``2x - 1``).
        """
        if normalize:
            pred = 2 * pred - 1
            target = 2 * target - 1
        return self.model(target, pred)


def _warn_random_weights(vgg_missing: bool, lin_missing: bool) -> None:
    global _warned_random_weights
    if _warned_random_weights:
        return
    _warned_random_weights = True
    missing = []
    if vgg_missing:
        missing.append("vgg_path (torchvision's vgg16-397923af.pth)")
    if lin_missing:
        missing.append("lpips_path (LPIPS v0.1 weights/v0.1/vgg.pth)")
    warnings.warn(
        "PerceptualLoss: no weights given for " + " and ".join(missing) + "; those weights are "
        "random and the distances are meaningless (only useful for tests). Nothing is downloaded.",
        RuntimeWarning,
        stacklevel=3,
    )

