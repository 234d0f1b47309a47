"""Building torchvision's FCOS and RetinaNet on a small backbone trained from scratch (imported only when a
model is built: torch and torchvision load here, never at plugin import).

Nothing is downloaded: every torchvision constructor gets ``weights=None``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torchvision
from torch import Tensor, nn
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOSClassificationHead, FCOSHead, FCOSRegressionHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from lightplug.tv_detection import RawDetections, clean_targets, postprocess  # the core's torchvision detection adapter shares them

__all__ = ["BACKBONES", "build_backbone", "build_detector", "TvFCOS", "TvRetinaNet", "RawDetections", "clean_targets", "postprocess"]

#: For each backbone: its constructor and, per stride (4, 8, 16, 32), the child whose output is that stage
#: (the last block at that stride) and its channels. ``features`` backbones are indexed in ``.features``.
BACKBONES: dict[str, dict[str, Any]] = {
    "resnet18": {"stages": {4: ("layer1", 64), 8: ("layer2", 128), 16: ("layer3", 256), 32: ("layer4", 512)}},
    "resnet34": {"stages": {4: ("layer1", 64), 8: ("layer2", 128), 16: ("layer3", 256), 32: ("layer4", 512)}},
    "mobilenet_v3_small": {"features": True, "stages": {4: ("1", 16), 8: ("3", 24), 16: ("8", 48), 32: ("12", 576)}},
    "mobilenet_v3_large": {"features": True, "stages": {4: ("3", 24), 8: ("6", 40), 16: ("12", 112), 32: ("16", 960)}},
}

#: The coarsest pyramid level: P6 and P7 come from strided convolutions on P5 (as in RetinaNet and FCOS).
MAX_LEVEL = 7


def _first_conv(body: nn.Module, name: str, in_channels: int) -> None:
    """Replace the stem convolution so that the backbone takes ``in_channels`` channels (3: unchanged)."""
    if in_channels == 3:
        return
    parent, attr = (body, "conv1") if name.startswith("resnet") else (body[0], "0")  # type: ignore[index]
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=old.bias is not None))


def build_backbone(name: str, fpn_channels: int, min_level: int = 3, in_channels: int = 3) -> BackboneWithFPN:
    """A torchvision classification network (random init, trainable batch norm) with an FPN giving the
    levels ``P{min_level}`` .. ``P7`` (strides ``2**min_level`` .. 128), all with ``fpn_channels`` channels.

    Example:
        >>> fpn = build_backbone("resnet18", 32)
        >>> [tuple(v.shape[1:]) for v in fpn(torch.zeros(1, 3, 64, 64)).values()]
        [(32, 8, 8), (32, 4, 4), (32, 2, 2), (32, 1, 1), (32, 1, 1)]
    """
    spec = BACKBONES[name]
    # weights=None: random init, nothing downloaded; BatchNorm2d (torchvision's default here is a frozen one,
    # right for fine-tuning but wrong from scratch)
    net = getattr(torchvision.models, name)(weights=None, norm_layer=nn.BatchNorm2d)
    body = net.features if spec.get("features") else net
    _first_conv(body, name, in_channels)
    strides = [2**level for level in range(min_level, 6)]  # from the backbone: up to P5 (stride 32)
    return_layers = {spec["stages"][s][0]: str(i) for i, s in enumerate(strides)}
    in_channels_list = [spec["stages"][s][1] for s in strides]
    extra = LastLevelP6P7(fpn_channels, fpn_channels)  # P6, P7 from P5
    return BackboneWithFPN(body, return_layers, in_channels_list, fpn_channels, extra_blocks=extra)


class TvFCOS(FCOS):
    """torchvision's FCOS; ``forward(images, targets)`` takes a batched ``B x C x S x S`` tensor (or a list),
    cleans the targets and ignores them in eval mode (then it returns detections, never losses)."""

    def forward(self, images: Any, targets: list[dict[str, Tensor]] | None = None) -> Any:  # type: ignore[override]
        return super().forward(images, clean_targets(targets) if self.training else None)


class TvRetinaNet(RetinaNet):
    """torchvision's RetinaNet with the same ``forward`` conventions as :class:`TvFCOS`."""

    def forward(self, images: Any, targets: list[dict[str, Tensor]] | None = None) -> Any:  # type: ignore[override]
        return super().forward(images, clean_targets(targets) if self.training else None)


def _groups(channels: int) -> int:
    """GroupNorm groups for the heads: 16 when it divides the channels (else their largest common divisor)."""
    return math.gcd(channels, 16)


def build_detector(kind: str, *, num_classes: int, image_size: int, backbone: str = "resnet18", fpn_channels: int = 64,
                   head_convs: int = 2, min_level: int = 3, in_channels: int = 3, topk_candidates: int = 1000,
                   center_sampling_radius: float = 1.5, anchor_scale: float = 4.0, fg_iou_thresh: float = 0.5,
                   bg_iou_thresh: float = 0.4) -> nn.Module:
    """FCOS (``kind="fcos"``) or RetinaNet (``"retinanet"``) for ``num_classes`` object classes (labels
    ``0 .. num_classes - 1``: both classify with sigmoids, there is no background class).

    Inputs are taken as they come: torchvision's transform resizes to ``image_size`` (a no-op for inputs of that
    size) and normalises with mean 0 and std 1 (a no-op: the core's input is already normalised). Its own
    score threshold, NMS and per-image limit are disabled: ``postprocess`` applies the run's settings.
    """
    fpn = build_backbone(backbone, fpn_channels, min_level, in_channels)
    strides = [2**level for level in range(min_level, MAX_LEVEL + 1)]
    norm = partial(nn.GroupNorm, _groups(fpn_channels))
    common: dict[str, Any] = {
        "min_size": image_size, "max_size": image_size, "image_mean": [0.0] * in_channels, "image_std": [1.0] * in_channels,
        "score_thresh": 0.0, "nms_thresh": 1.0, "topk_candidates": topk_candidates,
        "detections_per_img": topk_candidates * len(strides),  # everything the per-level top-k keeps
    }
    if kind == "fcos":
        anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))  # one point per location
        head = FCOSHead(fpn_channels, 1, num_classes, num_convs=head_convs)
        head.classification_head = FCOSClassificationHead(fpn_channels, 1, num_classes, head_convs, norm_layer=norm)
        head.regression_head = FCOSRegressionHead(fpn_channels, 1, head_convs, norm_layer=norm)
        return TvFCOS(fpn, num_classes, anchor_generator=anchors, head=head, center_sampling_radius=center_sampling_radius, **common)
    if kind == "retinanet":
        sizes = tuple(tuple(s * anchor_scale * 2 ** (k / 3) for k in range(3)) for s in strides)
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(strides))
        head = RetinaNetHead(fpn_channels, anchors.num_anchors_per_location()[0], num_classes, norm_layer=norm)
        for branch in (head.classification_head, head.regression_head):
            branch.conv = branch.conv[:head_convs]
        head.regression_head._loss_type = "giou"  # as torchvision's retinanet v2
        return TvRetinaNet(fpn, num_classes, anchor_generator=anchors, head=head, fg_iou_thresh=fg_iou_thresh,
                           bg_iou_thresh=bg_iou_thresh, **common)
    raise ValueError(f"unknown detector {kind!r}")
