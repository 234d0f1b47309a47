"""torchvision's FCOS and RetinaNet detectors as tier-1 lightplug plugins (``task = "detection"``), on a small
backbone trained from scratch: object detection without Ultralytics.

- ``takes_targets``: in training ``net(input, target)`` returns torchvision's dict of losses (the core sums
  them and logs ``train/loss_classification``, ``train/loss_bbox_regression``, ...); in eval mode ``net(input)``
  returns torchvision's detections, which :meth:`postprocess` filters with the run's ``conf``, ``iou`` and
  ``max_det`` (torchvision's own threshold and NMS are disabled).
- Labels are ``0 .. num_classes - 1``: both detectors classify with one sigmoid per class, so there is no
  background class and label 0 is an object class like the others.
- The input is used as the core gives it: torchvision's transform keeps the size (``min_size = max_size =
  image_size``) and does not normalise again (mean 0, std 1), so boxes are in input pixels.
- Export: :meth:`export_module` gives one ``B x (4 + num_classes) x N`` tensor in the ``"yolo"`` layout,
  which ``lightplug predict model=FILE.onnx`` post-processes without torch.

This module imports neither torch nor torchvision: they load when a model is built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from lightplug import DetectionSettings, ModelPlugin, Param

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["Fcos", "RetinaNet", "FcosConfig", "RetinaNetConfig", "DetectorConfig"]

Backbone = Literal["resnet18", "resnet34", "mobilenet_v3_small", "mobilenet_v3_large"]


@dataclass
class DetectorConfig:
    """What FCOS and RetinaNet share."""

    num_classes: Annotated[int, Param(ge=1, le=1000, help="object classes, no background (bound to the data)")] = 3
    in_channels: Annotated[int, Param(ge=1, le=64, help="image channels (bound to the data)")] = 3
    image_size: Annotated[int, Param(ge=32, le=4096, help="input side in pixels (bound to the data); torchvision's min_size = max_size")] = 96
    backbone: Annotated[Backbone, Param(help="torchvision network under the FPN (random init, nothing downloaded)")] = "mobilenet_v3_small"
    fpn_channels: Annotated[int, Param(ge=16, le=512, help="channels of every pyramid level and of the heads")] = 64
    head_convs: Annotated[int, Param(ge=0, le=4, help="3x3 conv + GroupNorm + ReLU layers in each head branch (torchvision: 4)")] = 2
    min_level: Annotated[Literal[3, 2], Param(help="finest pyramid level: 3 (stride 8, standard) or 2 (stride 4: small objects, slower)")] = 3
    topk_candidates: Annotated[int, Param(ge=1, le=100000, help="best candidates kept per pyramid level before NMS", advanced=True)] = 1000


@dataclass
class FcosConfig(DetectorConfig):
    center_sampling_radius: Annotated[float, Param(gt=0, le=10, help="locations within this many strides of a box centre are positives", advanced=True)] = 1.5


@dataclass
class RetinaNetConfig(DetectorConfig):
    anchor_scale: Annotated[float, Param(gt=0, le=32, help="anchor side in strides (x 2**(0, 1/3, 2/3), ratios 0.5, 1, 2); 4 is standard, smaller for small objects")] = 4.0
    fg_iou_thresh: Annotated[float, Param(gt=0, le=1, help="anchors overlapping a box at least this are positives", advanced=True)] = 0.5
    bg_iou_thresh: Annotated[float, Param(ge=0, lt=1, help="anchors overlapping every box less than this are negatives", advanced=True)] = 0.4


class _TorchvisionDetector(ModelPlugin):
    """The hooks FCOS and RetinaNet share."""

    task = "detection"
    takes_targets = True
    raw_output_format = "yolo"
    kind: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "easy": {"backbone": "mobilenet_v3_small", "fpn_channels": 64, "head_convs": 2},
        "medium": {"backbone": "resnet18", "fpn_channels": 128, "head_convs": 4},
    }

    def build(self, cfg: DetectorConfig) -> nn.Module:
        from ._net import build_detector

        return build_detector(self.kind, **asdict(cfg))

    def postprocess(self, outputs: Any, batch: dict[str, Any] | None = None, settings: DetectionSettings | None = None) -> Any:
        """torchvision's detections (one dict per image) filtered with the run's settings: scores ``>= conf``,
        class-wise NMS at ``iou``, at most ``max_det`` per image, sorted by score."""
        from ._net import postprocess

        s = settings or DetectionSettings()
        return postprocess(outputs, s.conf, s.iou, s.max_det)

    def export_module(self, net: nn.Module) -> nn.Module:
        """Backbone, heads and box decoding on the whole batch: one ``B x (4 + num_classes) x N`` tensor."""
        from ._net import RawDetections

        return RawDetections(net)  # type: ignore[arg-type]


class Fcos(_TorchvisionDetector):
    """FCOS (torchvision, anchor-free) on a small FPN backbone trained from scratch."""

    kind = "fcos"
    Config = FcosConfig


class RetinaNet(_TorchvisionDetector):
    """RetinaNet (torchvision, anchors, focal loss) on a small FPN backbone trained from scratch."""

    kind = "retinanet"
    Config = RetinaNetConfig

    def check(self, cfg: RetinaNetConfig) -> list[str]:
        if cfg.bg_iou_thresh > cfg.fg_iou_thresh:
            return [f"model.bg_iou_thresh={cfg.bg_iou_thresh}: above model.fg_iou_thresh={cfg.fg_iou_thresh}"]
        return []
