"""The ``timm`` plugin: a typed config, ``check`` and ``data_needs`` hooks that know timm's architectures, and ``build``.

timm is imported inside the methods, not at module level, so that ``lightplug models`` stays instant. What an
architecture takes (its arguments, its input sizes) is learnt from timm by :mod:`lightplug_timm.arch`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from lightplug import ModelPlugin, Param, PluginError

from .arch import arch_info, argument_problem, build_kwargs, fit_size, size_problem, unknown_arch

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["TimmConfig", "TimmModel", "unknown_arch"]

log = logging.getLogger(__name__)


@dataclass
class TimmConfig:
    """Settings of ``timm``. ``in_channels``, ``num_classes`` and ``image_size`` follow the data."""

    arch: Annotated[str, Param(help="a timm architecture, e.g. resnet18, efficientnet_b0, convnext_atto (see timm.list_models())")] = "resnet18"
    in_channels: Annotated[int, Param(ge=1, help="input channels (bound to the data; timm's in_chans)")] = 3
    num_classes: Annotated[int, Param(ge=1, help="classes (bound to the data)")] = 1000
    image_size: Annotated[int, Param(ge=0, help="input height and width (bound to the data; 0: the architecture's own, timm's "
                                                "pretrained_cfg input_size); passed as img_size to architectures that take it (ViT, Swin, ...)")] = 0
    drop_rate: Annotated[float, Param(ge=0, lt=1, help="dropout before the classifier")] = 0.0
    drop_path_rate: Annotated[float, Param(ge=0, lt=1, help="stochastic depth (0: off; only for architectures that have it)", advanced=True)] = 0.0
    pretrained_file: Annotated[str, Param(help="local weights to start from: .safetensors, .pth/.pt/.bin state dict or a lightplug .ckpt "
                                               "(a classifier of another shape is skipped; nothing is downloaded)", structural=False)] = ""


def _fitted(cfg: TimmConfig) -> tuple[int, int] | None:
    """``(in_channels, image_size)`` the architecture runs on, from the configured ones: the same channels at the
    smallest size from the configured one up that it takes, else 3 channels (an RGB-only architecture); ``None``
    when it runs on neither."""
    for channels in dict.fromkeys((cfg.in_channels, 3)):
        size = fit_size(cfg.arch, channels, cfg.image_size)
        if size is not None:
            return channels, size
    return None


def _size_line(cfg: TimmConfig) -> str | None:
    """The problem line for input the architecture does not run on, naming the size (or channels) it takes."""
    if not cfg.image_size or size_problem(cfg.arch, cfg.in_channels, cfg.image_size) is None:
        return None
    fit, native = _fitted(cfg), arch_info(cfg.arch).native
    if fit is None:
        return (f"model.image_size={cfg.image_size}: {cfg.arch} runs neither on {cfg.in_channels}-channel nor on 3-channel images of this "
                f"size or of its own ({native}x{native}): {size_problem(cfg.arch, cfg.in_channels, cfg.image_size)}")
    channels, size = fit
    if channels != cfg.in_channels:
        return (f"model.in_channels={cfg.in_channels}: {cfg.arch} does not run on {cfg.in_channels}-channel images; it takes {channels} "
                f"channels ({size}x{size} images): use data of that kind (data.in_channels={channels}, where the data has that setting)")
    return (f"model.image_size={cfg.image_size}: {cfg.arch} does not run on {cfg.image_size}x{cfg.image_size} images; it runs on "
            f"{size}x{size} (timm's own size: {native}x{native}): use data of that size (data.image_size={size}, where the data has that setting)")


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
        """Refuse an architecture timm does not know (with close matches), a setting the architecture has no argument
        for (``drop_path_rate`` for ``ghostnet_100``), an input size it does not run on, and a missing weights file."""
        problems = []
        if cfg.pretrained_file and not Path(cfg.pretrained_file).expanduser().is_file():
            problems.append(f"model.pretrained_file={cfg.pretrained_file}: no such file")
        unknown = unknown_arch(cfg.arch)
        if unknown:
            return [unknown, *problems]
        for name in ("drop_rate", "drop_path_rate"):
            value = getattr(cfg, name)
            line = argument_problem(cfg.arch, name, value) if value else None
            if line:
                problems.append(line)
        size = _size_line(cfg)
        return problems + ([size] if size else [])

    def data_needs(self, cfg: TimmConfig) -> dict[str, Any]:
        """``{"image_size": N}`` when the architecture does not run on the data's size: N is the next size up that it runs
        on (see :func:`~lightplug_timm.arch.fit_size`: 32 for ``convnext_atto`` on 8x8 images, 256 for ``halonet26t``); also
        ``{"in_channels": 3}`` for an architecture that takes RGB images only (``csatv2``)."""
        if not cfg.image_size or unknown_arch(cfg.arch) or size_problem(cfg.arch, cfg.in_channels, cfg.image_size) is None:
            return {}
        fit = _fitted(cfg)
        if fit is None:
            return {}
        needs = dict(zip(("in_channels", "image_size"), fit, strict=True))
        return {k: v for k, v in needs.items() if v != getattr(cfg, k)}

    def example_input(self, cfg: TimmConfig) -> torch.Tensor:
        """A seeded batch of 2 images of the configured size (the architecture's own when ``image_size`` is 0)."""
        import torch

        size = cfg.image_size or arch_info(cfg.arch).native
        return torch.randn(2, cfg.in_channels, size, size, generator=torch.Generator().manual_seed(0))

    def export_module(self, net: nn.Module) -> nn.Module:
        """``net`` with fused attention (``F.scaled_dot_product_attention``) turned off, as timm's own exportable layer
        config does (``timm.layers.use_fused_attn()`` is False when exporting): torch's ONNX exporter cannot trace it
        in every architecture (eva02). The same weights and the same computation; ``net`` is changed in place."""
        for module in net.modules():
            if isinstance(getattr(module, "fused_attn", None), bool):
                module.fused_attn = False  # type: ignore[assignment]
        return net

    def build(self, cfg: TimmConfig) -> nn.Module:
        """``timm.create_model(arch, pretrained=False, in_chans=..., num_classes=..., ...)``, then the local weights of
        ``pretrained_file`` if given. ``img_size``, ``drop_rate`` and ``drop_path_rate`` are passed only to
        architectures that take them (``check`` refuses the last two when set for one that does not).

        Raises:
            PluginError: an unknown architecture.
            CheckpointError: ``pretrained_file`` is unreadable or made for another architecture (a missing file is
                only logged: see the comment below).
        """
        import timm

        problem = unknown_arch(cfg.arch)
        if problem:
            raise PluginError(problem)
        info = arch_info(cfg.arch)
        extra = build_kwargs(info, cfg.image_size)
        for name in ("drop_rate", "drop_path_rate"):
            value = getattr(cfg, name)
            if value and name in info.takes:
                extra[name] = value
            elif value:
                log.info("model.%s=%s: %s takes no %s; not passed", name, value, cfg.arch, name)
        net = timm.create_model(cfg.arch, pretrained=False, in_chans=cfg.in_channels, num_classes=cfg.num_classes, **extra)
        if cfg.pretrained_file and Path(cfg.pretrained_file).expanduser().is_file():
            from .weights import load_local_weights

            load_local_weights(net, cfg.pretrained_file)
        elif cfg.pretrained_file:
            # check() refuses a missing file before training starts. A model rebuilt from a lightplug checkpoint
            # (lightplug.load_model) gets the checkpoint's weights instead, so the file need not exist any more.
            log.warning("model.pretrained_file=%s: no such file; the model is built without those weights", cfg.pretrained_file)
        return net
