"""Building blocks of the IR-SE-50 backbone used by the pSp style encoder.

* :class:`SEModule` -- squeeze-and-excitation channel gate: global mean -> 1x1 conv (``C -> C/r``, no
  bias) -> ReLU -> 1x1 conv (``C/r -> C``, no bias) -> sigmoid -> scale the input.
* :class:`BottleneckIR` / :class:`BottleneckIRSE` -- "improved residual" units (ArcFace style):
  residual = BN -> conv3x3 (stride 1) -> PReLU -> conv3x3 (stride ``s``) -> BN [-> SE];
  shortcut = ``MaxPool2d(1, s)`` (a pure subsampling, no parameters) when the width is unchanged,
  otherwise a 1x1 conv with stride ``s`` + BN. Output = residual + shortcut (no activation after).
* :func:`get_blocks` -- the unit layout: a list of stages, each a list of :class:`BlockSpec`; the first
  unit of every stage has stride 2.

Parameter names (``shortcut_layer.*``, ``res_layer.{0..5}.*``, ``fc1``/``fc2``) match ``encoder.pt``.
"""
from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

__all__ = ["BlockSpec", "get_blocks", "SEModule", "BottleneckIR", "BottleneckIRSE"]


class BlockSpec(NamedTuple):
    """One residual unit: input channels, output channels (``depth``) and stride."""

    in_channel: int
    depth: int
    stride: int


def _stage(in_channel: int, depth: int, num_units: int, stride: int = 2) -> list[BlockSpec]:
    return [BlockSpec(in_channel, depth, stride)] + [BlockSpec(depth, depth, 1) for _ in range(num_units - 1)]


# (in_channel, depth, num_units) per stage for each supported depth.
_LAYOUTS: dict[int, list[tuple[int, int, int]]] = {
    50: [(64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3)],
}


def get_blocks(num_layers: int) -> list[list[BlockSpec]]:
    """Stage layout of the IR(-SE) backbone with ``num_layers`` layers (only 50 is supported)."""
    if num_layers not in _LAYOUTS:
        raise ValueError(f"unsupported IR-SE backbone depth {num_layers}; supported: {sorted(_LAYOUTS)}")
    return [_stage(i, d, n) for i, d, n in _LAYOUTS[num_layers]]


class SEModule(nn.Module):
    """Squeeze-and-excitation gate with bias-free 1x1 convs and reduction ``reduction``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.fc2(self.fc1(x.mean(dim=(2, 3), keepdim=True)).relu_()).sigmoid_()
        return x * gate


def _shortcut(in_channel: int, depth: int, stride: int) -> nn.Module:
    if in_channel == depth:
        return nn.MaxPool2d(kernel_size=1, stride=stride)
    return nn.Sequential(nn.Conv2d(in_channel, depth, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(depth))


def _residual(in_channel: int, depth: int, stride: int, se: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.BatchNorm2d(in_channel),
        nn.Conv2d(in_channel, depth, kernel_size=3, stride=1, padding=1, bias=False),
        nn.PReLU(depth),
        nn.Conv2d(depth, depth, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(depth),
    ]
    if se:
        layers.append(SEModule(depth, 16))
    return nn.Sequential(*layers)


class BottleneckIR(nn.Module):
    """IR residual unit without squeeze-excitation (``mode='ir'``)."""

    use_se = False

    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__()
        self.shortcut_layer = _shortcut(in_channel, depth, stride)
        self.res_layer = _residual(in_channel, depth, stride, self.use_se)

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class BottleneckIRSE(BottleneckIR):
    """IR residual unit with a squeeze-excitation gate at the end of the residual branch (``mode='ir_se'``)."""

    use_se = True
