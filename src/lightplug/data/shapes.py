"""``data=shapes``: generated, seeded images of circles, squares and triangles with a class mask, a box per
shape, or (classification) one shape per image and its class.

This module is the light part (config and facts, no torch); :mod:`lightplug.data.shapes_data` draws the
images once a run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from ..errors import DataError
from ..plugin import Param
from .augment_config import ImageAugment, augment_problems
from .detection_config import DetectionAugment
from .plugins import LoaderConfig, LoaderData, split_problems

__all__ = ["Shapes", "ShapesConfig", "SHAPE_NAMES", "OBJECT_NAMES"]

#: Class index -> name; index 0 is the background of the masks.
SHAPE_NAMES = ("background", "circle", "square", "triangle")
#: Detection labels (no background): 0 circle, 1 square, 2 triangle.
OBJECT_NAMES = SHAPE_NAMES[1:]


@dataclass
class ShapesConfig(LoaderConfig, DetectionAugment, ImageAugment):
    task: Annotated[Literal["segmentation", "detection", "classification"],
                    Param(help="segmentation: a class mask per image; detection: a box and label per shape; "
                               "classification: one shape per image, labelled with its class")] = "segmentation"
    num_samples: Annotated[int, Param(ge=8, le=1_000_000, help="images generated")] = 2000
    image_size: Annotated[int, Param(ge=8, le=1024, help="image height and width in pixels")] = 32
    max_shapes: Annotated[int, Param(ge=1, le=32, help="shapes per image (1 to this many; always 1 for classification)")] = 3
    min_size: Annotated[float, Param(gt=0, le=1, help="smallest shape, as a fraction of the image size")] = 0.2
    max_size: Annotated[float, Param(gt=0, le=1, help="largest shape, as a fraction of the image size")] = 0.45
    noise: Annotated[float, Param(ge=0, le=1, help="std of the Gaussian pixel noise (pixels are in [0, 1])")] = 0.05
    seed: Annotated[int, Param(ge=0, help="seed of the generator: image i is the same for any num_samples")] = 0
    batch_size: Annotated[int, Param(ge=1, le=65536, help="samples per batch")] = 32


class Shapes(LoaderData):
    """Seeded images of circles, squares and triangles (random sizes, positions, colours) with masks, boxes, or
    (``task=classification``) one shape per image and its class."""

    task = "segmentation"
    Config = ShapesConfig

    def check(self, cfg: ShapesConfig) -> list[str]:
        size = [f"data.min_size={cfg.min_size:g} is above data.max_size={cfg.max_size:g} (make min_size <= max_size)"] if cfg.min_size > cfg.max_size else []
        return split_problems(cfg) + size + augment_problems(cfg, cfg.task)

    def facts(self, cfg: ShapesConfig) -> dict[str, Any]:
        if cfg.min_size > cfg.max_size:
            raise DataError(f"data.min_size={cfg.min_size} is above data.max_size={cfg.max_size}", hint="make min_size <= max_size")
        names = list(SHAPE_NAMES if cfg.task == "segmentation" else OBJECT_NAMES)
        return {"task": cfg.task, "num_classes": len(names), "num_outputs": len(names), "in_channels": 3,
                "image_size": cfg.image_size, "in_features": 3 * cfg.image_size**2, "label_names": names}

    def build(self, cfg: ShapesConfig) -> Any:
        from .shapes_data import shapes_datamodule

        return shapes_datamodule(cfg)
