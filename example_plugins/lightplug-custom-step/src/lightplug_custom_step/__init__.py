"""Two tier-1 lightplug plugins that change how a model trains.

- ``aux_loss_cnn``: the forward returns ``(logits, aux_loss)``; the core adds the task loss to it.
- ``two_optimizer_mlp``: manual optimisation, with Adam for the body and SGD for the head.

Importing this package is cheap (no torch); :mod:`lightplug_custom_step.nets` is imported by ``build``.
"""

from __future__ import annotations

from .plugins import AuxLossCNN, AuxLossCNNConfig, TwoOptimizerMLP, TwoOptimizerMLPConfig

__all__ = ["AuxLossCNN", "AuxLossCNNConfig", "TwoOptimizerMLP", "TwoOptimizerMLPConfig"]
