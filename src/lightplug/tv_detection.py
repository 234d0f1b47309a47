"""torchvision's detection models by import path (``model=torchvision.models.detection:fcos_resnet50_fpn``): an
adapter from torchvision's detection contract to lightplug's.

- **Targets in training.** torchvision's detectors take ``model(images, targets)`` in training and return a dict of
  losses; in eval mode ``model(images)`` returns one ``{"boxes", "scores", "labels"}`` dict per image. The adapter
  (``takes_targets``) passes lightplug's targets after dropping boxes without area (torchvision refuses them).
- **Labels.** lightplug's labels are ``0 .. num_classes - 1`` with no background class. Faster R-CNN and SSD reserve
  label 0 for the background: they are built with ``num_classes + 1`` and labels are shifted by one on the way in
  and back on the way out. FCOS and RetinaNet classify with one sigmoid per class and take the labels as they are.
- **The input as the core gives it.** ``min_size`` and ``max_size`` are bound to the data's ``image_size`` (no
  resize) and ``image_mean``/``image_std`` default to 0 and 1 (the core normalised already); SSD resizes to its
  fixed size, which its builder sets. torchvision's own score threshold defaults to 0: the run's
  ``detection.conf``, ``iou`` and ``max_det`` filter the detections (:func:`postprocess`).
- **Export.** FCOS and RetinaNet export their raw head outputs decoded to one ``B x (4 + num_classes) x N`` tensor
  (lightplug's ``"yolo"`` layout, :class:`RawDetections`); Faster R-CNN and SSD are refused with the reason.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .errors import PluginError
from .plugin import DetectionSettings, ModelPlugin

__all__ = ["TorchvisionDetector", "DetectionAdapter", "RawDetections", "clean_targets", "postprocess", "adapt_schema",
           "reserves_background"]

#: Score-threshold fields of torchvision's detectors: 0 by default here, the run's ``detection.conf`` applies.
_SCORE_FIELDS = ("score_thresh", "box_score_thresh")


def clean_targets(targets: list[dict[str, Tensor]] | None, shift: int = 0) -> list[dict[str, Tensor]] | None:
    """Targets as torchvision asserts them: ``K x 4`` float boxes (also for ``K = 0``), int64 labels (plus
    ``shift``: 1 where label 0 is the background), and no box without area (augmentations can leave them)."""
    if targets is None:
        return None
    out = []
    for t in targets:
        boxes = torch.as_tensor(t["boxes"]).reshape(-1, 4).float()
        labels = torch.as_tensor(t["labels"], device=boxes.device).reshape(-1).long() + shift
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        out.append({**t, "boxes": boxes[ok], "labels": labels[ok]})
    return out


def postprocess(outputs: list[dict[str, Tensor]], conf: float, iou: float, max_det: int) -> list[dict[str, Tensor]]:
    """Keep scores ``>= conf``, class-wise NMS at ``iou``, the ``max_det`` best per image, sorted by score."""
    from torchvision.ops import batched_nms

    result = []
    for det in outputs:
        boxes, scores, labels = det["boxes"].float(), det["scores"].float(), det["labels"].long()
        keep = scores >= conf
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, iou)[:max_det]  # sorted by decreasing score
        result.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return result


def reserves_background(cls: type | None) -> bool:
    """Whether torchvision's detector class ``cls`` keeps label 0 for the background (Faster R-CNN, SSD)."""
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
    from torchvision.models.detection.ssd import SSD

    return isinstance(cls, type) and issubclass(cls, (GeneralizedRCNN, SSD))


class DetectionAdapter(nn.Module):
    """A torchvision detector with lightplug's conventions: ``forward(images, targets)`` in training (losses),
    ``forward(images)`` in eval (detections with lightplug's labels)."""

    def __init__(self, det: nn.Module, shift: int) -> None:
        super().__init__()
        self.det = det
        self.shift = shift

    @property
    def inner_model(self) -> nn.Module:
        """The torchvision model (``model.weights_file`` loads into it)."""
        return self.det

    def forward(self, images: Any, targets: list[dict[str, Tensor]] | None = None) -> Any:
        if self.training:
            return self.det(images, clean_targets(targets, self.shift))
        out = self.det(images)
        if not self.shift:
            return out
        return [{**d, "labels": d["labels"] - self.shift} for d in out]


class RawDetections(nn.Module):
    """The export module of FCOS and RetinaNet: one ``B x (4 + num_classes) x N`` tensor over every location (and
    anchor), rows ``cx, cy, w, h`` in input pixels then one score in [0, 1] per class (lightplug's ``"yolo"`` layout).

    It normalises as torchvision's transform does, runs the backbone and head on the batch as a whole (no per-image
    loop, so the batch size stays dynamic in ONNX) and decodes as torchvision does, without its top-k, threshold and
    NMS. An input that torchvision would resize is refused: set ``min_size`` and ``max_size`` to the input size.
    """

    def __init__(self, det: nn.Module) -> None:
        super().__init__()
        from torchvision.models.detection import FCOS

        self.det = det
        self.fcos = isinstance(det, FCOS)

    def forward(self, x: Tensor) -> Tensor:
        from torchvision.models.detection.image_list import ImageList

        det: Any = self.det
        h, w = int(x.shape[-2]), int(x.shape[-1])
        t: Any = det.transform
        scale = min(float(t.min_size[-1]) / min(h, w), float(t.max_size) / max(h, w))
        if abs(scale - 1.0) > 1e-6:
            raise PluginError(f"torchvision's transform would resize {h}x{w} inputs (min_size={t.min_size[-1]}, max_size={t.max_size}); "
                              "export needs model.min_size and model.max_size equal to the input size")
        mean = torch.as_tensor(t.image_mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.as_tensor(t.image_std, dtype=x.dtype, device=x.device)[:, None, None]
        x = (x - mean) / std
        div = t.size_divisible
        x = nn.functional.pad(x, (0, (-w) % div, 0, (-h) % div))  # as torchvision's batching pads
        features = list(det.backbone(x).values())
        head = det.head(features)
        anchors = det.anchor_generator(ImageList(x[:1], [(h, w)]), features)[0]  # N x 4, the same for every image
        reg = head["bbox_regression"]
        if self.fcos:
            boxes = det.box_coder.decode(reg, anchors)  # broadcasts over the batch
            scores = torch.sqrt(torch.sigmoid(head["cls_logits"]) * torch.sigmoid(head["bbox_ctrness"]))
        else:
            boxes = _decode_deltas(reg, anchors, det.box_coder.bbox_xform_clip)
            scores = torch.sigmoid(head["cls_logits"])
        x1, x2 = boxes[..., 0].clamp(0, w), boxes[..., 2].clamp(0, w)
        y1, y2 = boxes[..., 1].clamp(0, h), boxes[..., 3].clamp(0, h)
        cxcywh = torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)
        return torch.cat((cxcywh, scores), dim=-1).permute(0, 2, 1)


def _decode_deltas(deltas: Tensor, anchors: Tensor, clip: float) -> Tensor:
    """torchvision's ``BoxCoder(weights=(1, 1, 1, 1)).decode_single``, broadcast over a batch of deltas."""
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ctr_x, ctr_y = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
    dx, dy = deltas[..., 0], deltas[..., 1]
    dw, dh = deltas[..., 2].clamp(max=clip), deltas[..., 3].clamp(max=clip)
    cx, cy = dx * widths + ctr_x, dy * heights + ctr_y
    half_w, half_h = 0.5 * torch.exp(dw) * widths, 0.5 * torch.exp(dh) * heights
    return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)


def _exportable(cls: type | None) -> bool:
    from torchvision.models.detection import FCOS, RetinaNet

    return isinstance(cls, type) and issubclass(cls, (FCOS, RetinaNet))


def adapt_schema(spec: Any, where: str) -> dict[str, Any]:
    """Fit the schema of a torchvision detector to lightplug's input (see the module docstring) and return the
    class attributes of its plugin class.

    Raises:
        PluginError: a detector whose targets lightplug's detection data cannot give (masks, keypoints).
    """
    from torchvision.models.detection import KeypointRCNN, MaskRCNN

    from .schema import _make_field
    from .signatures import Argument

    cls = spec.returns
    if issubclass(cls, (MaskRCNN, KeypointRCNN)):
        what = "masks" if issubclass(cls, MaskRCNN) else "keypoints"
        raise PluginError(f"{where}: {cls.__name__} trains on {what}, which lightplug's detection data does not give (boxes and labels)",
                          hint="use a box detector: fasterrcnn_*, fcos_*, retinanet_*, ssd*")
    fields = spec.schema.fields
    for i, f in enumerate(fields):
        if f.name in ("min_size", "max_size") and not f.fixed:
            f.bind = "image_size"
            f.help = "torchvision resizes to this; bound to the data's image_size, so the input is used as it is"
        elif f.name in ("image_mean", "image_std") and f.name in spec.arguments:
            value = [0.0, 0.0, 0.0] if f.name == "image_mean" else [1.0, 1.0, 1.0]
            fields[i] = _make_field(f.name, list[float], value, where, "model")
            fields[i].help = "torchvision normalises with this; the core normalised the input already"
            spec.arguments[f.name] = Argument("plain")
        elif f.name in _SCORE_FIELDS and not f.fixed and f.type == "float":
            f.default = 0.0
            f.help = "torchvision's own score threshold; the run's detection.conf filters after it"
    return {"background": reserves_background(cls), "exportable": _exportable(cls),
            "raw_output_format": "yolo" if _exportable(cls) else None}


class TorchvisionDetector(ModelPlugin):
    """A torchvision detector built by its builder or class (the registry sets ``callable_spec``)."""

    task = "detection"
    takes_targets = True
    callable_spec: ClassVar[Any] = None
    background: ClassVar[bool] = False
    exportable: ClassVar[bool] = False

    def build(self, cfg: Any) -> nn.Module:
        values = dict(cfg)
        if self.background and values.get("num_classes") is not None:
            values["num_classes"] = int(values["num_classes"]) + 1  # label 0 is torchvision's background
        return DetectionAdapter(self.callable_spec.call(values), 1 if self.background else 0)

    def postprocess(self, outputs: Any, batch: dict[str, Any] | None = None, settings: DetectionSettings | None = None) -> Any:
        """torchvision's detections filtered with the run's settings (:func:`postprocess`)."""
        s = settings or DetectionSettings()
        return postprocess(outputs, s.conf, s.iou, s.max_det)

    def export_module(self, net: nn.Module) -> nn.Module:
        """FCOS and RetinaNet: :class:`RawDetections`; the others are refused with the reason."""
        from .export.report import ExportError

        inner = getattr(net, "inner_model", net)
        if not self.exportable:
            name = type(inner).__name__
            why = ("a two-stage detector: its second stage runs on the proposals the first stage's NMS keeps, a number no fixed-size "
                   "output can hold") if name != "SSD" else "its transform resizes every image to its fixed size inside torchvision's per-image loop"
            raise ExportError(f"{name} cannot be exported by lightplug: {why}", hint="FCOS and RetinaNet export (fcos_resnet50_fpn, retinanet_resnet50_fpn)")
        return RawDetections(inner)
