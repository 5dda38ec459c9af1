"""ResNet-18 trunk of the BiSeNet context path.

A plain ImageNet-style ResNet-18 without the classification head:

* stem: 7x7 conv (stride 2, no bias) -> BatchNorm -> ReLU -> 3x3 max-pool (stride 2, pad 1);
* ``layer1`` .. ``layer4``: two :class:`BasicBlock` each, widths 64/128/256/512, strides 1/2/2/2.
  A block whose stride or width changes gets a 1x1-conv + BatchNorm projection shortcut (``downsample``).

:meth:`Resnet18.forward` returns the outputs of ``layer2``, ``layer3`` and ``layer4`` (1/8, 1/16 and 1/32
of the input resolution). The parameter names match the face-parsing checkpoint ``faceparsing.pth``
(keys ``cp.resnet.*``). Unlike the original, construction never downloads ImageNet weights: the trunk is
always overwritten by the checkpoint anyway.
"""
from __future__ import annotations

from torch import Tensor, nn

__all__ = ["BasicBlock", "Resnet18"]


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with an identity or 1x1-projection shortcut, ReLU after the sum."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if in_ch != out_ch or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: Tensor) -> Tensor:
        residual = self.relu(self.bn1(self.conv1(x)))
        residual = self.bn2(self.conv2(residual))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(residual + shortcut)


def _make_layer(in_ch: int, out_ch: int, n_blocks: int, stride: int) -> nn.Sequential:
    blocks = [BasicBlock(in_ch, out_ch, stride)]
    blocks += [BasicBlock(out_ch, out_ch, 1) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


class Resnet18(nn.Module):
    """ResNet-18 feature extractor returning ``(feat8, feat16, feat32)`` with 128/256/512 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _make_layer(64, 64, 2, stride=1)
        self.layer2 = _make_layer(64, 128, 2, stride=2)
        self.layer3 = _make_layer(128, 256, 2, stride=2)
        self.layer4 = _make_layer(256, 512, 2, stride=2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        return feat8, feat16, feat32
