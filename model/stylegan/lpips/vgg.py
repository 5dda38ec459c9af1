"""VGG16 convolutional trunk with torchvision-compatible parameter names, and its weight loader.

:class:`VGG16Features` reproduces the layer layout of ``torchvision.models.vgg16().features`` without
depending on torchvision: its ``state_dict`` keys are exactly torchvision's ``features.<i>.weight`` /
``features.<i>.bias`` (conv layers at indices 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28; ReLU and
max-pool modules, which hold no parameters, at the other indices 0..30). torchvision's ImageNet file
``vgg16-397923af.pth`` can therefore be loaded with :func:`load_vgg16_weights`.

Nothing is downloaded: a freshly constructed :class:`VGG16Features` is randomly initialised (the way
torchvision initialises an untrained VGG) and the features it computes are meaningless until weights
are loaded.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Union

import torch
from torch import Tensor, nn

from model.checkpoint import CheckpointError, extract_state_dict, load_state_dict_strict, safe_load

__all__ = ["VGG16_CONFIG", "VGG16_TAPS", "VGG16_TAP_NAMES", "VGG16_TAP_CHANNELS", "VGG16Features", "load_vgg16_weights"]

#: Layer configuration of VGG16 ("D" in the VGG paper): output channels of each 3x3 conv, "M" = 2x2 max-pool.
VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)

#: Indices in ``features`` of the ReLU modules whose outputs :meth:`VGG16Features.forward` returns.
VGG16_TAPS: tuple[int, ...] = (3, 8, 15, 22, 29)
#: Conventional names of those activations.
VGG16_TAP_NAMES: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
#: Channel count of each returned activation.
VGG16_TAP_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)

# A weights file path or an already loaded state_dict (a runtime alias, hence Union for Python 3.9).
WeightsSource = Union[str, "os.PathLike[str]", Mapping[str, Tensor]]


def _build_features(config: tuple[int | str, ...], taps: tuple[int, ...]) -> nn.Sequential:
    """The ``features`` Sequential of a VGG: conv3x3(pad 1) + ReLU per channel entry, MaxPool2d(2) per "M".

    ReLUs whose outputs are returned (indices in ``taps``) are not in-place, so that later layers cannot
    overwrite a tensor already handed to the caller; the others are in-place to save memory.
    """
    layers: list[nn.Module] = []
    in_ch = 3
    for entry in config:
        if entry == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out_ch = int(entry)
            layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1))
            layers.append(nn.ReLU(inplace=len(layers) not in taps))
            in_ch = out_ch
    return nn.Sequential(*layers)


class VGG16Features(nn.Module):
    """The convolutional part of VGG16, returning the five activations LPIPS compares.

    Attributes:
        features: ``nn.Sequential`` laid out exactly like torchvision's ``vgg16().features`` (31 modules),
            so that ``state_dict()`` has torchvision's ``features.*`` keys and shapes.

    The module is randomly initialised (Kaiming-normal conv weights, zero biases, as torchvision does
    for an untrained VGG); load real weights with :func:`load_vgg16_weights`. Inputs are expected to be
    normalised the way the weights were trained (for ImageNet weights: RGB, mean/std normalised; LPIPS
    does this with its own scaling layer).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _build_features(VGG16_CONFIG, VGG16_TAPS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random initialisation: Kaiming-normal (fan-out, ReLU gain) conv weights and zero biases."""
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Run the trunk on ``x`` (B,3,H,W) and return ``[relu1_2, relu2_2, relu3_3, relu4_3, relu5_3]``.

        Their shapes are (B,64,H,W), (B,128,H/2,W/2), (B,256,H/4,W/4), (B,512,H/8,W/8) and
        (B,512,H/16,W/16) (sizes floored at each pool). The final max-pool (index 30) is not run.
        """
        outs: list[Tensor] = []
        last = VGG16_TAPS[-1]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG16_TAPS:
                outs.append(x)
                if i == last:
                    break
        return outs


def _find_submodule(module: nn.Module, cls: type, what: str) -> nn.Module:
    """``module`` itself if it is a ``cls``, else its unique ``cls`` submodule."""
    if isinstance(module, cls):
        return module
    found = [m for m in module.modules() if isinstance(m, cls)]
    if len(found) != 1:
        raise TypeError(f"expected a {cls.__name__} or a module containing exactly one, got {type(module).__name__} "
                        f"({len(found)} found) when loading {what}")
    return found[0]


def _state_dict_from(source: WeightsSource, what: str) -> tuple[OrderedDict[str, Tensor], str]:
    """A flat state_dict from a file path (read with :func:`model.checkpoint.safe_load`) or a mapping."""
    if isinstance(source, Mapping):
        name = f"<{what} state_dict>"
        obj = source
    else:
        name = os.fspath(source)
        obj = safe_load(source)
    sd, _ = extract_state_dict(obj, source=name)
    return sd, name


def load_vgg16_weights(module: nn.Module, source: WeightsSource) -> None:
    """Load VGG16 convolutional weights (torchvision's ``vgg16-397923af.pth`` format) into ``module``.

    Args:
        module: a :class:`VGG16Features`, or a module containing exactly one (e.g. an LPIPS network).
        source: path of the weights file, read with :func:`model.checkpoint.safe_load` (tensors and plain
            containers only, nothing is executed), or an already loaded state_dict.

    The file is a bare state_dict of the whole torchvision VGG16. Its ``classifier.*`` entries (the
    fully connected head) are ignored, since only the convolutional trunk is used; every other key must
    match ``features.*`` exactly, in name and shape. A ``{'state_dict': ...}`` wrapper and a
    DistributedDataParallel ``module.`` prefix are accepted.

    Raises:
        model.checkpoint.CheckpointError: the file cannot be read, or (as its subclass
            ``CheckpointMismatchError``) keys are missing, unexpected or wrongly shaped; the message
            names them.
    """
    target = _find_submodule(module, VGG16Features, "VGG16 weights")
    sd, name = _state_dict_from(source, "VGG16")
    sd = OrderedDict((k, v) for k, v in sd.items() if not k.startswith("classifier."))
    if sd and all(k.startswith("lin") and ".model." in k for k in sd):
        raise CheckpointError(f"{name}: this is an LPIPS linear-layer file (lin*.model.1.weight keys), not VGG16 "
                              "weights; pass it as lpips_path / to load_lpips_weights")
    if not sd:
        raise CheckpointError(f"{name}: no VGG16 'features.*' weights in this file")
    with torch.no_grad():
        load_state_dict_strict(target, sd, source=f"{name} (VGG16 features)")
