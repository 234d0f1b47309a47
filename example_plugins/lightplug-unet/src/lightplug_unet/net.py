"""The U-Net module itself (plain PyTorch; imported only when a model is built)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNetNet", "ConvBlock"]


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch norm and ReLU (optional dropout between them)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )


class UNetNet(nn.Module):
    """U-Net: ``depth`` levels down and up with skip connections and a 1x1 classifier.

    Args:
        in_channels: image channels.
        num_classes: output channels (one logit per class and pixel).
        width: channels of the first level (level ``i`` has ``width * 2**i``).
        depth: number of 2x down-samplings.
        dropout: channel dropout inside the bottleneck block.

    Example:
        >>> UNetNet(3, 4, width=8, depth=2)(torch.zeros(2, 3, 30, 30)).shape
        torch.Size([2, 4, 30, 30])
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 4, width: int = 16, depth: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.stem = ConvBlock(in_channels, widths[0])
        self.down = nn.ModuleList(ConvBlock(widths[i], widths[i + 1], dropout if i == depth - 1 else 0.0) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth)))
        self.merge = nn.ModuleList(ConvBlock(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        step = 2**self.depth
        pad_h, pad_w = (-h) % step, (-w) % step
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for up, merge in zip(self.up, self.merge):
            y = merge(torch.cat([up(y), skips.pop()], dim=1))
        return self.head(y)[..., :h, :w]
