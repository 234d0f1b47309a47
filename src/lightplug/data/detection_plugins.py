"""``data=coco`` and ``data=yolo``: your own boxes, as labelling tools export them.

Light, as listings need: configs here, and ``facts`` reads only the class names from the JSON or YAML file
(no image is opened). :mod:`lightplug.data.coco` and :mod:`lightplug.data.yolo_format` read and check the
annotations when a run starts (``build``); torch is imported only then.

Images are resized to ``image_size`` square (aspect ratio not kept, as ``predict`` does) and normalised with
``mean``/``std``, by default 0.5 for every channel (pixels in [-1, 1], as ``data=shapes``): the detectors'
own normalisation, if any, is theirs to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from ..plugin import Param
from .detection_config import DetectionAugment
from .plugins import LoaderConfig, LoaderData

__all__ = ["Coco", "CocoConfig", "Yolo", "YoloConfig"]

_ON_BAD_HELP = "error: stop and list the bad annotations; skip: leave them out (and images whose file is missing) and train on the rest"


@dataclass
class _DetectionFilesConfig(LoaderConfig, DetectionAugment):
    """What ``data=coco`` and ``data=yolo`` share."""

    image_size: Annotated[int, Param(ge=16, le=4096, help="images are resized to this square size (aspect ratio not kept)")] = 320
    on_bad: Annotated[Literal["error", "skip"], Param(help=_ON_BAD_HELP)] = "error"
    mean: Annotated[list[float], Param(help="per-channel mean for normalisation (one value: all channels)", group="transform")] = field(default_factory=lambda: [0.5])
    std: Annotated[list[float], Param(gt=0, help="per-channel std for normalisation", group="transform")] = field(default_factory=lambda: [0.5])
    batch_size: Annotated[int, Param(ge=1, le=65536, help="images per batch")] = 16
    num_workers: Annotated[int, Param(ge=0, le=64, help="loader worker processes (images decode in workers)", group="loader", advanced=True)] = 2
    persistent_workers: Annotated[bool, Param(help="keep workers alive between epochs", group="loader", advanced=True)] = True


@dataclass
class CocoConfig(_DetectionFilesConfig):
    annotations: Annotated[str, Param(help="the COCO JSON file: images, annotations (bbox: x, y, width, height in pixels) and categories")] = "???"
    images: Annotated[str, Param(help="the folder the file_name entries are relative to (default: the JSON file's folder)")] = ""
    val_annotations: Annotated[str, Param(help="a COCO JSON file of validation images (default: a seeded split of annotations)", group="split")] = ""
    val_images: Annotated[str, Param(help="the folder of the validation images (default: data.images, else the validation JSON's folder)", group="split")] = ""


@dataclass
class YoloConfig(_DetectionFilesConfig):
    yaml: Annotated[str, Param(help="the Ultralytics data YAML (path, train, val, names); labels/*.txt next to images/")] = "???"


def _facts(names: list[str], cfg: Any) -> dict[str, Any]:
    from .coco import expand_norm

    expand_norm(cfg.mean, "data.mean")
    expand_norm(cfg.std, "data.std")
    return {"task": "detection", "num_classes": len(names), "num_outputs": len(names), "in_channels": 3, "image_size": cfg.image_size,
            "label_names": list(names)}


class Coco(LoaderData):
    """Your own boxes in a COCO JSON file (as CVAT, Label Studio or Roboflow export them) and a folder of images."""

    task = "detection"
    Config = CocoConfig

    def facts(self, cfg: CocoConfig) -> dict[str, Any]:
        from .coco import coco_categories, load_coco_json

        data = load_coco_json(cfg.annotations, "data.annotations")
        return _facts(list(coco_categories(data, f"data.annotations={cfg.annotations}").values()), cfg)

    def build(self, cfg: CocoConfig) -> Any:
        from .coco import coco_datamodule

        return coco_datamodule(cfg)


class Yolo(LoaderData):
    """Your own boxes in the Ultralytics (YOLO) layout: a data YAML, images/ and labels/*.txt (class cx cy w h)."""

    task = "detection"
    Config = YoloConfig

    def facts(self, cfg: YoloConfig) -> dict[str, Any]:
        from .yolo_format import load_yolo_yaml, yolo_label_names

        return _facts(yolo_label_names(load_yolo_yaml(cfg.yaml, "data.yaml"), f"data.yaml={cfg.yaml}"), cfg)

    def build(self, cfg: YoloConfig) -> Any:
        from .yolo_format import yolo_datamodule

        return yolo_datamodule(cfg)
