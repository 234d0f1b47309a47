"""Optimizers and learning-rate schedules from config."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from .errors import ConfigError

__all__ = ["build_optimizer", "build_scheduler", "optimizer_impl", "FUSED_OPTIMIZERS"]

#: Optimizers of the ``optimizer`` group that torch implements as one fused kernel (CPU and GPU, torch >= 2.4).
FUSED_OPTIMIZERS = ("adam", "adamw", "sgd")
_FUSED_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu")


def _tensors(params: list[Any]) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for p in params:
        out += list(p["params"]) if isinstance(p, dict) else [p]
    return out


def _fused_devices() -> tuple[str, ...]:
    try:  # torch's own list; private, so a fallback
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return tuple(_get_fused_kernels_supported_devices())
    except (ImportError, AttributeError):
        return _FUSED_DEVICES


def _pick_impl(name: str, impl: str, tensors: list[torch.Tensor], scaler_clipping: bool) -> str:
    """``auto`` -> fused, foreach or for_loop; an explicit choice is checked against what torch supports here."""
    fusable = name in FUSED_OPTIMIZERS and all(t.is_floating_point() and t.device.type in _fused_devices() for t in tensors)
    if impl == "fused":
        if not fusable:
            devices = sorted({t.device.type for t in tensors})
            raise ConfigError(f"optimizer.impl=fused: torch has no fused {name} for these parameters (device {', '.join(devices)})",
                              hint=f"fused exists for {', '.join(FUSED_OPTIMIZERS)} with floating-point parameters; use optimizer.impl=auto")
        if scaler_clipping:
            raise ConfigError("optimizer.impl=fused cannot be combined with trainer.gradient_clip_val under 16-mixed precision "
                              "(the fused step unscales the gradients itself)", hint="use optimizer.impl=auto or foreach")
        return impl
    if impl != "auto":
        return impl
    if fusable and not scaler_clipping:
        return "fused"
    return "foreach"


def build_optimizer(params: Any, cfg: dict[str, Any], scaler_clipping: bool = False) -> torch.optim.Optimizer:
    """Adam, AdamW, SGD (momentum, Nesterov) or RMSprop from ``cfg`` (the ``optimizer`` group).

    ``cfg["impl"]`` picks torch's implementation: ``fused`` (one kernel for every parameter: Adam, AdamW and SGD on
    CPU and GPU), ``foreach`` (a few multi-tensor kernels), ``for_loop`` (one parameter at a time, the default of
    torch on CPU), or ``auto`` (the default: fused where torch has it, else foreach). ``scaler_clipping``: the
    trainer clips gradients under a gradient scaler (16-mixed), which a fused step does not allow.

    Raises:
        ConfigError: ``impl=fused`` where torch has no fused implementation.
    """
    name, lr, wd = cfg.get("name", "adam"), cfg.get("lr", 1e-3), cfg.get("weight_decay", 0.0)
    params = list(params)
    impl = _pick_impl(name, str(cfg.get("impl") or "auto"), _tensors(params), scaler_clipping)
    flags: dict[str, Any] = {"fused": True} if impl == "fused" else {"foreach": impl == "foreach"}
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, weight_decay=wd, betas=tuple(cfg.get("betas", (0.9, 0.999))), eps=cfg.get("eps", 1e-8), **flags)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=cfg.get("momentum", 0.0), nesterov=cfg.get("nesterov", False), **flags)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, momentum=cfg.get("momentum", 0.0), alpha=cfg.get("alpha", 0.99),
                                   eps=cfg.get("eps", 1e-8), **flags)
    raise ValueError(f"unknown optimizer {name!r}")


def optimizer_impl(optimizer: torch.optim.Optimizer) -> str:
    """The implementation an optimizer steps with: ``fused``, ``foreach`` or ``for_loop``."""
    d = optimizer.defaults
    return "fused" if d.get("fused") else "foreach" if d.get("foreach") else "for_loop"


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
