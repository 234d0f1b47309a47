"""The networks behind ``aux_loss_cnn`` and ``two_optimizer_mlp``: plain ``nn.Module`` classes."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AuxLossNet", "SplitMLP"]


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class AuxLossNet(nn.Module):
    """A small CNN that, in training, also returns an L2 penalty on its pooled features.

    In training mode the forward returns ``(logits, aux_loss)`` with
    ``aux_loss = aux_weight * mean(features ** 2)``; lightplug adds the task loss (cross-entropy) to
    it and logs both parts (``train/loss_task``, ``train/loss_aux``). In eval mode it returns the
    logits only, so validation, prediction and export see a plain classifier.

    Args:
        in_channels: channels of the input images.
        num_classes: outputs of the head.
        width: channels of the first two blocks (the third has twice as many).
        aux_weight: weight of the penalty (0 turns it off).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, aux_weight: float = 0.01) -> None:
        super().__init__()
        self.aux_weight = aux_weight
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, width),
            _conv_bn_relu(width, width),
            nn.MaxPool2d(2),
            _conv_bn_relu(width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        logits = self.head(features)
        if not self.training:
            return logits
        return logits, self.aux_weight * features.pow(2).mean()


class SplitMLP(nn.Module):
    """An MLP in two named parts, ``body`` (two hidden layers) and ``head`` (the classifier), so that
    each part can have its own optimizer.

    Args:
        in_features: input values per sample (inputs are flattened).
        num_classes: outputs of the head.
        hidden: units of each hidden layer.
    """

    def __init__(self, in_features: int = 64, num_classes: int = 10, hidden: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
