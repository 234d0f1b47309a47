"""Optimizers and learning-rate schedules from config."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

__all__ = ["build_optimizer", "build_scheduler"]


def build_optimizer(params: Any, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """Adam, AdamW, SGD (momentum, Nesterov) or RMSprop from ``cfg`` (the ``optimizer`` group)."""
    name, lr, wd = cfg.get("name", "adam"), cfg.get("lr", 1e-3), cfg.get("weight_decay", 0.0)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, weight_decay=wd, betas=tuple(cfg.get("betas", (0.9, 0.999))), eps=cfg.get("eps", 1e-8))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=cfg.get("momentum", 0.0), nesterov=cfg.get("nesterov", False))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, momentum=cfg.get("momentum", 0.0), alpha=cfg.get("alpha", 0.99), eps=cfg.get("eps", 1e-8))
    raise ValueError(f"unknown optimizer {name!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], max_epochs: int, total_steps: int, monitor: str) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` dict for the ``scheduler`` group, or None for ``none``."""
    name = cfg.get("name", "none")
    if name == "none":
        return None
    epochs = max(1, max_epochs)
    if name == "cosine":
        warm, base = cfg.get("warmup_epochs", 0), optimizer.param_groups[0]["lr"]
        floor = cfg.get("min_lr", 0.0) / base if base else 0.0

        def factor(epoch: int) -> float:
            if epoch < warm:
                return (epoch + 1) / (warm + 1)
            progress = min(1.0, (epoch - warm) / max(1, epochs - warm))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "epoch"}
    if name == "step":
        return {"scheduler": torch.optim.lr_scheduler.StepLR(optimizer, cfg.get("step_size", 10), cfg.get("gamma", 0.1)), "interval": "epoch"}
    if name == "exponential":
        return {"scheduler": torch.optim.lr_scheduler.ExponentialLR(optimizer, cfg.get("gamma", 0.95)), "interval": "epoch"}
    if name == "plateau":
        mode: Literal["min", "max"] = "min" if monitor.endswith(("loss", "mse", "mae", "rmse")) else "max"
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=cfg.get("factor", 0.1), patience=cfg.get("patience", 5))
        return {"scheduler": plateau, "interval": "epoch", "monitor": monitor}
    if name == "onecycle":
        max_lr = cfg.get("max_lr") or optimizer.param_groups[0]["lr"]
        sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(1, total_steps), pct_start=cfg.get("pct_start", 0.3))
        return {"scheduler": sched, "interval": "step"}
    raise ValueError(f"unknown scheduler {name!r}")
