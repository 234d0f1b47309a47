"""A small U-Net for semantic segmentation, as a tier-1 lightplug plugin (typed config, ranges, presets).

The network maps ``B x in_channels x H x W`` images to ``B x num_classes x H x W`` logits; the core's
segmentation task supplies the loss (cross-entropy), the metrics (mIoU, Dice, pixel accuracy) and
monitors ``val/miou``. Any ``H`` and ``W`` work: the input is padded to a multiple of ``2**depth``
and the logits cropped back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from lightplug import ModelPlugin, Param

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["UNet", "UNetConfig"]


@dataclass
class UNetConfig:
    in_channels: Annotated[int, Param(ge=1, le=64, help="image channels (bound to the data)")] = 3
    num_classes: Annotated[int, Param(ge=2, le=1000, help="classes of the mask, background included (bound to the data)")] = 4
    width: Annotated[int, Param(ge=2, le=512, help="channels of the first level; each level down doubles them")] = 16
    depth: Annotated[int, Param(ge=1, le=6, help="levels down (each halves the resolution)")] = 2
    dropout: Annotated[float, Param(ge=0, lt=1, help="dropout before the bottleneck's second convolution", advanced=True)] = 0.0


class UNet(ModelPlugin):
    """A small U-Net (conv-BN-ReLU blocks, max-pool down, transposed-conv up, skip connections)."""

    task = "segmentation"
    Config = UNetConfig
    presets = {
        "easy": {"width": 16, "depth": 2},
        "medium": {"width": 32, "depth": 3},
        "advanced": {"width": 64, "depth": 4},
    }

    def build(self, cfg: UNetConfig) -> nn.Module:
        from .net import UNetNet

        return UNetNet(cfg.in_channels, cfg.num_classes, cfg.width, cfg.depth, cfg.dropout)
