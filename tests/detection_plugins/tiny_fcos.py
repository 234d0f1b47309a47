"""A tiny torchvision FCOS (three strided convolutions, one feature level) as a local plugin file: the core's
detection tests use it so that they need no detection package. Real detectors: example_plugins/lightplug-tvdet
and lightplug-ultralytics."""

from dataclasses import dataclass
from typing import Annotated

from lightplug import ModelPlugin, Param


@dataclass
class TinyFcosConfig:
    num_classes: Annotated[int, Param(ge=1, help="object classes (bound to the data)")] = 3
    image_size: Annotated[int, Param(ge=16, help="input size (bound to the data)")] = 64
    width: Annotated[int, Param(ge=4, le=256, help="channels")] = 32


class TinyFcos(ModelPlugin):
    """A tiny FCOS detector for tests."""

    task = "detection"
    Config = TinyFcosConfig
    takes_targets = True

    def build(self, cfg):
        from torch import nn
        from torchvision.models.detection import FCOS
        from torchvision.models.detection.anchor_utils import AnchorGenerator

        class Backbone(nn.Module):
            def __init__(self, width):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(3, width // 2, 3, 2, 1), nn.ReLU(), nn.Conv2d(width // 2, width, 3, 2, 1), nn.ReLU(),
                                          nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())
                self.out_channels = width

            def forward(self, x):
                return {"0": self.body(x)}

        return FCOS(Backbone(cfg.width), cfg.num_classes, min_size=cfg.image_size, max_size=cfg.image_size, image_mean=[0.0] * 3,
                    image_std=[1.0] * 3, anchor_generator=AnchorGenerator(sizes=((8,),), aspect_ratios=((1.0,),)), score_thresh=0.001,
                    nms_thresh=1.0, detections_per_img=300, topk_candidates=300)

    def postprocess(self, outputs, batch=None, settings=None):
        from torchvision.ops import batched_nms

        out = []
        for d in outputs:
            keep = d["scores"] >= settings.conf
            boxes, scores, labels = d["boxes"][keep], d["scores"][keep], d["labels"][keep]
            k = batched_nms(boxes, scores, labels, settings.iou)[: settings.max_det]
            out.append({"boxes": boxes[k], "scores": scores[k], "labels": labels[k]})
        return out



PLUGIN = TinyFcos
