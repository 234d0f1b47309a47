"""The ``timm`` plugin: a typed config, a ``check`` hook that knows timm's architecture names, and ``build``.

timm is imported inside the methods, not at module level, so that ``lightplug models`` stays instant.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from lightplug import ModelPlugin, Param, PluginError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["TimmConfig", "TimmModel", "unknown_arch"]

log = logging.getLogger(__name__)


@dataclass
class TimmConfig:
    """Settings of ``timm``. ``in_channels`` and ``num_classes`` follow the data."""

    arch: Annotated[str, Param(help="a timm architecture, e.g. resnet18, efficientnet_b0, convnext_atto (see timm.list_models())")] = "resnet18"
    in_channels: Annotated[int, Param(ge=1, help="input channels (bound to the data; timm's in_chans)")] = 3
    num_classes: Annotated[int, Param(ge=1, help="classes (bound to the data)")] = 1000
    drop_rate: Annotated[float, Param(ge=0, lt=1, help="dropout before the classifier")] = 0.0
    drop_path_rate: Annotated[float, Param(ge=0, lt=1, help="stochastic depth (0: off; only for architectures that have it)", advanced=True)] = 0.0
    pretrained_file: Annotated[str, Param(help="local weights to start from: .safetensors, .pth/.pt/.bin state dict or a lightplug .ckpt "
                                               "(a classifier of another shape is skipped; nothing is downloaded)", structural=False)] = ""


def unknown_arch(arch: str) -> str | None:
    """The problem line for an architecture timm does not have, with close matches; ``None`` when it exists.

    Example:
        >>> unknown_arch("resnt18")
        'model.arch=resnt18: unknown timm architecture (did you mean resnet18, resnet18d, skresnet18?)'
    """
    import timm

    if timm.is_model(arch):
        return None
    close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "timm.list_models() lists them"
    return f"model.arch={arch}: unknown timm architecture ({hint})"


class TimmModel(ModelPlugin):
    """Any timm image classifier (resnet18, efficientnet_b0, convnext_atto, ...), without downloading weights."""

    task = "classification"
    Config = TimmConfig
    presets = {
        "easy": {"arch": "resnet10t"},
        "medium": {"arch": "resnet18"},
        "advanced": {"arch": "resnet50", "drop_path_rate": 0.05},
    }

    def check(self, cfg: TimmConfig) -> list[str]:
        """Refuse an architecture timm does not know (with close matches) and a weights file that does not exist."""
        problems = [line for line in [unknown_arch(cfg.arch)] if line]
        if cfg.pretrained_file and not Path(cfg.pretrained_file).expanduser().is_file():
            problems.append(f"model.pretrained_file={cfg.pretrained_file}: no such file")
        return problems

    def build(self, cfg: TimmConfig) -> nn.Module:
        """``timm.create_model(arch, pretrained=False, in_chans=..., num_classes=..., drop_rate=...)``, then the
        local weights of ``pretrained_file`` if given.

        Raises:
            PluginError: an unknown architecture.
            CheckpointError: ``pretrained_file`` is unreadable or made for another architecture (a missing file is
                only logged: see the comment below).
        """
        import timm

        problem = unknown_arch(cfg.arch)
        if problem:
            raise PluginError(problem)
        extra: dict[str, Any] = {"drop_path_rate": cfg.drop_path_rate} if cfg.drop_path_rate else {}
        net = timm.create_model(cfg.arch, pretrained=False, in_chans=cfg.in_channels, num_classes=cfg.num_classes, drop_rate=cfg.drop_rate, **extra)
        if cfg.pretrained_file and Path(cfg.pretrained_file).expanduser().is_file():
            from .weights import load_local_weights

            load_local_weights(net, cfg.pretrained_file)
        elif cfg.pretrained_file:
            # check() refuses a missing file before training starts. A model rebuilt from a lightplug checkpoint
            # (lightplug.load_model) gets the checkpoint's weights instead, so the file need not exist any more.
            log.warning("model.pretrained_file=%s: no such file; the model is built without those weights", cfg.pretrained_file)
        return net
