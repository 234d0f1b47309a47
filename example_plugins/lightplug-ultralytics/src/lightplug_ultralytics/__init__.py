"""Ultralytics YOLO detectors (YOLOv3/5/6/8/9/10, YOLO11/12/26) as a tier-1 lightplug detection plugin.

The network is Ultralytics' own ``DetectionModel`` built from a model YAML shipped inside the installed
``ultralytics`` package (``cfg=yolov8n`` loads ``yolov8.yaml`` at scale ``n``), trained from scratch with
Ultralytics' own loss (task-aligned assigner, CIoU box loss, BCE class loss, DFL) and post-processed with
Ultralytics' NMS. Nothing is downloaded: ``weights_file`` takes a local ``.pt`` only.

Ultralytics is licensed AGPL-3.0; so is this plugin (see the README).

This module imports neither torch nor ultralytics: the hooks import :mod:`lightplug_ultralytics._net`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from lightplug import ModelPlugin, Param

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["Yolo", "YoloConfig"]


@dataclass
class YoloConfig:
    cfg: Annotated[str, Param(help="an Ultralytics detection model YAML shipped in the package: yolov8n, yolov8s, yolo11n, ... "
                                   "(the letter n/s/m/l/x picks the scale)", structural=True)] = "yolov8n"
    num_classes: Annotated[int, Param(ge=1, le=10000, help="object classes, no background (bound to the data)")] = 80
    in_channels: Annotated[int, Param(ge=1, le=64, help="image channels (bound to the data)")] = 3
    weights_file: Annotated[str, Param(help="a local .pt (Ultralytics checkpoint or state dict) to start from: tensors whose "
                                            "name and shape match are loaded; never downloaded", structural=False)] = ""
    box: Annotated[float, Param(ge=0, le=100, help="gain of the box (CIoU) loss, Ultralytics' default", advanced=True)] = 7.5
    cls: Annotated[float, Param(ge=0, le=100, help="gain of the class (BCE) loss, Ultralytics' default", advanced=True)] = 0.5
    dfl: Annotated[float, Param(ge=0, le=100, help="gain of the distribution focal loss, Ultralytics' default", advanced=True)] = 1.5
    bn_momentum: Annotated[float, Param(gt=0, le=1, help="BatchNorm momentum: 0.1 (PyTorch's default) validates well after few steps; "
                                                         "Ultralytics uses 0.03 with an EMA of the weights for long runs", advanced=True)] = 0.1


class Yolo(ModelPlugin):
    """Ultralytics YOLO detectors (yolov8n, yolo11n, ...) trained from scratch with Ultralytics' loss and NMS (AGPL-3.0)."""

    task = "detection"
    Config = YoloConfig
    raw_output_format = "yolo"
    presets = {
        "easy": {"cfg": "yolov8n"},
        "medium": {"cfg": "yolov8s"},
        "advanced": {"cfg": "yolo11s"},
    }

    def check(self, cfg: YoloConfig) -> list[str]:
        from ._catalog import close_matches, detection_models, ultralytics_version

        problems = []
        if not detection_models():
            problems.append(f"model.cfg={cfg.cfg}: ultralytics is not installed (pip install 'ultralytics>=8.3')")
        elif cfg.cfg not in detection_models():
            near = close_matches(cfg.cfg)
            hint = f" (did you mean {', '.join(near)}?)" if near else " (e.g. yolov8n, yolov8s, yolo11n)"
            problems.append(f"model.cfg={cfg.cfg}: no such detection model YAML in ultralytics {ultralytics_version()}{hint}")
        if cfg.weights_file and not Path(cfg.weights_file).expanduser().is_file():
            problems.append(f"model.weights_file={cfg.weights_file}: no such file (give a local .pt; nothing is downloaded)")
        return problems

    def build(self, cfg: YoloConfig) -> nn.Module:
        from ._net import build_net

        net = build_net(cfg)
        self._net = net  # loss() and postprocess() need the model (its criterion, strides and head)
        return net

    def loss(self, outputs: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Ultralytics' box/cls/dfl losses, each the batch mean (Ultralytics' value divided by the batch size)."""
        from ._net import yolo_loss

        return yolo_loss(self._model(), outputs, batch["target"], batch.get("input"))

    def postprocess(self, outputs: Any, batch: dict[str, Any] | None = None, settings: Any = None) -> list[dict[str, torch.Tensor]]:
        from ._net import yolo_postprocess

        conf, iou, max_det = (0.001, 0.6, 100) if settings is None else (settings.conf, settings.iou, settings.max_det)
        net = self._model()
        size = tuple(batch["input"].shape[-2:]) if batch is not None and "input" in batch else net.input_hw
        return yolo_postprocess(net, outputs, conf, iou, max_det, size)

    def param_groups(self, model: nn.Module, optimizer_cfg: dict[str, Any]) -> list[dict[str, Any]]:
        """As Ultralytics does: weight decay on convolution weights only, none on BatchNorm weights and biases."""
        from ._net import param_groups

        return param_groups(model)

    def export_module(self, net: nn.Module) -> nn.Module:
        from ._net import YoloExport

        return YoloExport(net)

    def _model(self) -> Any:
        net = getattr(self, "_net", None)
        if net is None:
            raise RuntimeError("Yolo: build(cfg) must run before loss()/postprocess() (they use the built model)")
        return net
