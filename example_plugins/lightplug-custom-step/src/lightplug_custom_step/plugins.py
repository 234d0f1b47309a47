"""The plugin classes. No torch at import time: ``build`` and the hooks import what they need when a run
starts, so that listing plugins and checking a command line stay instant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from lightplug import ModelPlugin, Param

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["AuxLossCNN", "AuxLossCNNConfig", "TwoOptimizerMLP", "TwoOptimizerMLPConfig"]


@dataclass
class AuxLossCNNConfig:
    """Settings of ``aux_loss_cnn``. ``in_channels`` and ``num_classes`` follow the data."""

    in_channels: Annotated[int, Param(ge=1, help="input channels (bound to the data)")] = 1
    num_classes: Annotated[int, Param(ge=2, help="classes (bound to the data)")] = 10
    width: Annotated[int, Param(ge=4, le=256, help="channels of the first two conv blocks (the third has twice as many)")] = 32
    aux_weight: Annotated[float, Param(ge=0, help="weight of the auxiliary L2 penalty on the pooled features (0: off)")] = 0.01


class AuxLossCNN(ModelPlugin):
    """A small CNN whose forward returns (logits, auxiliary loss); the core adds the task loss."""

    task = "classification"
    Config = AuxLossCNNConfig

    def build(self, cfg: AuxLossCNNConfig) -> nn.Module:
        """Return an :class:`~lightplug_custom_step.nets.AuxLossNet` for ``cfg``."""
        from .nets import AuxLossNet

        return AuxLossNet(cfg.in_channels, cfg.num_classes, cfg.width, cfg.aux_weight)


@dataclass
class TwoOptimizerMLPConfig:
    """Settings of ``two_optimizer_mlp``. ``in_features`` and ``num_classes`` follow the data."""

    in_features: Annotated[int, Param(ge=1, help="input values per sample (bound to the data)")] = 64
    num_classes: Annotated[int, Param(ge=2, help="classes (bound to the data)")] = 10
    hidden: Annotated[int, Param(ge=8, le=4096, help="units of each of the two hidden layers")] = 128
    head_lr: Annotated[float, Param(gt=0, le=10, help="learning rate of the head's SGD (the body's Adam uses optimizer.lr)")] = 0.05
    head_momentum: Annotated[float, Param(ge=0, lt=1, help="momentum of the head's SGD", advanced=True)] = 0.9


class TwoOptimizerMLP(ModelPlugin):
    """An MLP trained with two optimizers stepped by hand: Adam for the body, SGD for the head."""

    task = "classification"
    Config = TwoOptimizerMLPConfig
    #: ``training_step`` calls backward and steps the optimizers itself.
    manual_optimization = True

    def build(self, cfg: TwoOptimizerMLPConfig) -> nn.Module:
        """Return a :class:`~lightplug_custom_step.nets.SplitMLP` (``body`` and ``head``) for ``cfg``."""
        from .nets import SplitMLP

        return SplitMLP(cfg.in_features, cfg.num_classes, cfg.hidden)

    def configure_optimizers(self, model: nn.Module, optimizer_cfg: dict[str, Any]) -> list[torch.optim.Optimizer]:
        """Adam on the body with the ``optimizer`` group's ``lr`` and ``weight_decay``; SGD on the head with
        ``model.head_lr`` and ``model.head_momentum``. (``optimizer.name`` and the ``scheduler`` group do not apply.)"""
        import torch

        body = torch.optim.Adam(model.get_submodule("body").parameters(), lr=optimizer_cfg["lr"], weight_decay=optimizer_cfg.get("weight_decay", 0.0))
        head = torch.optim.SGD(model.get_submodule("head").parameters(), lr=self.cfg.head_lr, momentum=self.cfg.head_momentum)
        return [body, head]

    def training_step(self, module: Any, batch: dict[str, Any], batch_idx: int) -> None:
        """One step of both optimizers on the cross-entropy of the batch.

        Args:
            module: the LightningModule running this plugin (``module.net`` is the built model).
            batch: ``{"input", "target", "index"}``.
            batch_idx: position of the batch in the epoch.

        Returns:
            ``None``: the optimizers were stepped here, so the core does nothing more.
        """
        import torch.nn.functional as F

        body_opt, head_opt = module.optimizers()
        loss = F.cross_entropy(module.net(batch["input"]), batch["target"])
        body_opt.zero_grad()
        head_opt.zero_grad()
        module.manual_backward(loss)
        body_opt.step()
        head_opt.step()
        module.log("train/loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch["input"]))
        return None
