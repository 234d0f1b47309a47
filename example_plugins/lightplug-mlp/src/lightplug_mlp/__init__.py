"""Multi-layer perceptrons as tier-0 lightplug plugins: no lightplug import, only typed defaults."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["MLP", "MLPRegressor"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def _body(in_features: int, hidden: int, depth: int, dropout: float, activation: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), _ACTIVATIONS[activation](), nn.Dropout(dropout)]
        width = hidden
    return layers


class MLP(nn.Module):
    """A multi-layer perceptron classifier for flat features (digits as 64 values)."""

    def __init__(
        self,
        in_features: int = 64,
        hidden: int = 128,
        depth: int = 2,
        num_classes: int = 10,
        dropout: float = 0.0,
        activation: Literal["relu", "gelu", "tanh"] = "relu",
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), *_body(in_features, hidden, depth, dropout, activation), nn.Linear(hidden if depth else in_features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MLPRegressor(nn.Module):
    """A multi-layer perceptron regressor (the diabetes data: 10 features, one target)."""

    task = "regression"

    def __init__(self, in_features: int = 10, hidden: int = 64, depth: int = 2, num_outputs: int = 1, dropout: float = 0.0,
                 activation: Literal["relu", "gelu", "tanh"] = "relu") -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), *_body(in_features, hidden, depth, dropout, activation), nn.Linear(hidden if depth else in_features, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
