"""Convolutional image classifiers as tier-1 lightplug plugins: ``simple_cnn`` and ``tiny_resnet``.

Importing this package is cheap (no torch): the plugin classes hold typed configs and presets, and
:mod:`lightplug_convnets.nets` (the ``nn.Module`` code) is imported only when a model is built.
"""

from __future__ import annotations

from .plugins import SimpleCNN, SimpleCNNConfig, TinyResNet, TinyResNetConfig

__all__ = ["SimpleCNN", "SimpleCNNConfig", "TinyResNet", "TinyResNetConfig"]
