"""The plugin classes: typed configs, presets and ``build``. No torch here, so that listing plugins and
checking a command line stay instant; the networks live in :mod:`lightplug_convnets.nets`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from lightplug import ModelPlugin, Param

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["SimpleCNN", "SimpleCNNConfig", "TinyResNet", "TinyResNetConfig"]


@dataclass
class SimpleCNNConfig:
    """Settings of ``simple_cnn``. ``in_channels``, ``num_classes`` and ``image_size`` follow the data."""

    in_channels: Annotated[int, Param(ge=1, help="input channels (bound to the data)")] = 1
    num_classes: Annotated[int, Param(ge=2, help="classes (bound to the data)")] = 10
    image_size: Annotated[int, Param(ge=1, help="input height and width (bound to the data); decides where maps are halved")] = 8
    width: Annotated[int, Param(ge=4, le=512, help="channels of the first block (doubled after each 2x2 max-pool)")] = 32
    depth: Annotated[int, Param(ge=1, le=6, help="number of Conv-BatchNorm-ReLU blocks")] = 4
    kernel_size: Annotated[Literal[3, 5], Param(help="convolution kernel size")] = 3
    dropout: Annotated[float, Param(ge=0, lt=1, help="dropout before the classifier", advanced=True)] = 0.0


class SimpleCNN(ModelPlugin):
    """A plain CNN: Conv-BatchNorm-ReLU blocks, max-pools, global average pooling and a linear head."""

    task = "classification"
    Config = SimpleCNNConfig
    presets = {
        "easy": {"width": 16, "depth": 3},  # ~8 k parameters
        "medium": {"width": 32, "depth": 4},  # ~66 k
        "advanced": {"width": 64, "depth": 6},  # ~1.1 M
    }

    def build(self, cfg: SimpleCNNConfig) -> nn.Module:
        """Return a :class:`~lightplug_convnets.nets.ConvNet` for ``cfg``."""
        from .nets import ConvNet

        return ConvNet(cfg.in_channels, cfg.num_classes, cfg.width, cfg.depth, cfg.kernel_size, cfg.dropout, cfg.image_size)


@dataclass
class TinyResNetConfig:
    """Settings of ``tiny_resnet``. ``in_channels`` and ``num_classes`` follow the data."""

    in_channels: Annotated[int, Param(ge=1, help="input channels (bound to the data)")] = 1
    num_classes: Annotated[int, Param(ge=2, help="classes (bound to the data)")] = 10
    depth: Annotated[Literal[10, 18, 34], Param(help="ResNet depth: residual blocks per stage 1-1-1-1 (10), 2-2-2-2 (18) or 3-4-6-3 (34)")] = 18
    width: Annotated[int, Param(ge=8, le=512, help="channels of the first stage (doubled in each of the 3 later stages)")] = 32
    dropout: Annotated[float, Param(ge=0, lt=1, help="dropout before the classifier", advanced=True)] = 0.0


class TinyResNet(ModelPlugin):
    """A ResNet for small images: a 3x3 stem without down-sampling, four stages of basic residual blocks."""

    task = "classification"
    Config = TinyResNetConfig
    presets = {
        "easy": {"width": 16, "depth": 10},  # ~0.3 M parameters
        "medium": {"width": 32, "depth": 18},  # ~2.8 M
        "advanced": {"width": 64, "depth": 18},  # ~11 M
    }

    def build(self, cfg: TinyResNetConfig) -> nn.Module:
        """Return a :class:`~lightplug_convnets.nets.ResNet` for ``cfg``."""
        from .nets import RESNET_BLOCKS, ResNet

        return ResNet(RESNET_BLOCKS[cfg.depth], cfg.width, cfg.in_channels, cfg.num_classes, cfg.dropout)
