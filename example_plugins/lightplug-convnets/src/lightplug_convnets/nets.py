"""The networks behind ``simple_cnn`` and ``tiny_resnet``: plain ``nn.Module`` classes, usable without lightplug.

Both end in global average pooling, so they accept any image size (digits are 1x8x8, image folders
often 3x32x32).

Example:
    >>> net = ResNet(RESNET_BLOCKS[18], width=16, in_channels=3, num_classes=5)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 5])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ConvNet", "BasicBlock", "ResNet", "RESNET_BLOCKS", "conv_bn_relu"]

#: Residual blocks per stage for each depth (as in torchvision's resnet18/34; 10 is the smallest sibling).
RESNET_BLOCKS: dict[int, tuple[int, int, int, int]] = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def conv_bn_relu(c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """A same-padded convolution (no bias: BatchNorm has one), BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ConvNet(nn.Module):
    """Conv-BatchNorm-ReLU blocks; after every second block a 2x2 max-pool halves the maps (while they
    are at least 4 pixels wide) and the channels double. Global average pooling feeds a linear head.

    Args:
        in_channels: channels of the input images.
        num_classes: outputs of the head.
        width: channels of the first block.
        depth: number of blocks.
        kernel_size: convolution kernel size (odd).
        dropout: dropout probability before the head.
        image_size: the expected input size, to decide how many max-pools fit (other sizes still work).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, depth: int = 4, kernel_size: int = 3,
                 dropout: float = 0.0, image_size: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, channels, size = in_channels, width, image_size
        for i in range(depth):
            layers.append(conv_bn_relu(c_in, channels, kernel_size))
            c_in = channels
            if i % 2 == 1 and i < depth - 1 and size >= 4:  # the next block works on half the size, twice the channels
                layers.append(nn.MaxPool2d(2))
                size, channels = size // 2, channels * 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (1x1 projection when the shape changes), as in ResNet-18/34.

    The second BatchNorm starts at zero, so each block starts as the identity (Goyal et al., 2017).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        nn.init.zeros_(self.bn2.weight)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet for small images: a 3x3 stem at full resolution, then one stage per entry of ``blocks``;
    every stage after the first halves the maps and doubles the channels.

    Args:
        blocks: residual blocks per stage, e.g. ``RESNET_BLOCKS[18] == (2, 2, 2, 2)``.
        width: channels of the stem and the first stage.
        in_channels: channels of the input images.
        num_classes: outputs of the head.
        dropout: dropout probability before the head.
    """

    def __init__(self, blocks: Sequence[int] = RESNET_BLOCKS[18], width: int = 32, in_channels: int = 1, num_classes: int = 10,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, width)
        stages: list[nn.Module] = []
        c_in = width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[BasicBlock(c_in if j == 0 else c_out, c_out, stride if j == 0 else 1) for j in range(n)]))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
