"""Detection data as the core serves it, whatever the source (generated shapes, COCO, YOLO): images resized
to a square, augmented with ``torchvision.transforms.v2`` so that boxes follow the pixels, and batches of
``{"input": B x 3 x S x S, "target": [{"boxes", "labels"}, ...], "index": B}``: one target dict per image,
boxes ``x1, y1, x2, y2`` in pixels of the input tensor, no padding to undo.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .datamodule import LightplugDataModule, split_indices
from .detection_config import DetectionRecord

__all__ = ["DetectionDataset", "detection_collate", "detection_transforms", "detection_datamodule", "split_records"]

log = logging.getLogger(__name__)


def detection_collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack the images (all the same size), keep the targets as a list, stack the indices."""
    return {"input": torch.stack([s["input"] for s in samples]), "target": [s["target"] for s in samples],
            "index": torch.stack([torch.as_tensor(s["index"]) for s in samples])}


def detection_transforms(image_size: int, mean: list[float], std: list[float], train: bool, hflip: float = 0.0,
                         scale_jitter: float = 0.0, color_jitter: float = 0.0, augment: Any = None) -> Any:
    """The ``transforms.v2`` pipeline: resize to ``image_size`` square (aspect ratio not kept, as ``predict``
    does), then for training flips, scale jitter (zoom with a shift), colour jitter and the
    :class:`~lightplug.data.augment_config.ImageAugment` fields of ``augment`` (random resized crop, vertical
    flip, rotation, grayscale); boxes left with no area are dropped with their labels; then scale to [0, 1] and
    normalise."""
    from torchvision.transforms import v2

    steps: list[Any] = [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True), v2.ToDtype(torch.float32, scale=True)]
    if train:
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(p=hflip))
        if scale_jitter > 0:
            steps.append(v2.RandomAffine(degrees=0.0, translate=(scale_jitter / 2, scale_jitter / 2), scale=(1 - scale_jitter, 1 + scale_jitter)))
        if color_jitter > 0:
            steps.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
        if augment is not None:
            from .augment import train_steps

            steps += train_steps(augment, image_size, 3, skip=("hflip", "scale_jitter", "color_jitter", "policy"))
        steps += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)]
    steps.append(v2.Normalize(mean, std))
    return v2.Compose(steps)


class DetectionDataset(Dataset):
    """Records decoded on access (in loader workers when there are any) and transformed with their boxes.

    Args:
        records: the annotated images.
        transform: a ``transforms.v2`` pipeline (see :func:`detection_transforms`).
    """

    def __init__(self, records: list[DetectionRecord], transform: Any) -> None:
        self.records, self.transform = records, transform

    def __len__(self) -> int:
        return len(self.records)

    def _image(self, rec: DetectionRecord) -> torch.Tensor:
        if rec.image is not None:
            arr = np.asarray(rec.image)
            t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
            return t if t.dtype == torch.uint8 else t.float()
        from PIL import Image

        with Image.open(rec.path) as img:  # type: ignore[arg-type]
            return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).copy())

    def __getitem__(self, i: int) -> dict[str, Any]:
        from torchvision import tv_tensors

        rec = self.records[i]
        pixels = self._image(rec)
        h, w = pixels.shape[-2:]
        image = tv_tensors.Image(pixels)
        boxes = tv_tensors.BoundingBoxes(torch.as_tensor(np.asarray(rec.boxes, dtype=np.float32)).reshape(-1, 4), format="XYXY", canvas_size=(h, w))
        target = {"boxes": boxes, "labels": torch.as_tensor(np.asarray(rec.labels, dtype=np.int64)).reshape(-1)}
        image, target = self.transform(image, target)
        return {"input": image.as_subclass(torch.Tensor),
                "target": {"boxes": target["boxes"].as_subclass(torch.Tensor).float(), "labels": target["labels"]},
                "index": torch.tensor(i)}


def split_records(records: list[DetectionRecord], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[DetectionRecord]]:
    """A seeded train/val/test split (each split keeps the records' order)."""
    idx = split_indices(len(records), val_fraction, test_fraction, seed)
    return {k: [records[i] for i in np.sort(v)] for k, v in idx.items()}


def detection_datamodule(splits: dict[str, list[DetectionRecord]], cfg: Any, label_names: list[str], mean: list[float],
                         std: list[float]) -> LightplugDataModule:
    """The data module of any detection data: ``splits`` maps train/val (and test) to records.

    ``cfg`` gives ``image_size``, the loader settings and the :class:`~lightplug.data.detection_config.DetectionAugment`
    fields. ``test`` defaults to ``val`` when missing or empty.
    """
    dm = LightplugDataModule(cfg.batch_size, cfg.num_workers, cfg.pin_memory, cfg.persistent_workers)
    dm.collate_fn = detection_collate
    dm.label_names = list(label_names)
    dm.preprocessing = {"layout": "image", "in_channels": 3, "image_size": int(cfg.image_size), "mean": list(mean), "std": list(std),
                        "resize": "stretch", "boxes": "xyxy"}
    if not splits.get("test"):
        splits = {**splits, "test": splits["val"]}
    for split, records in splits.items():
        train = split == "train"
        tf = detection_transforms(int(cfg.image_size), list(mean), list(std), train, getattr(cfg, "hflip", 0.0) if train else 0.0,
                                  getattr(cfg, "scale_jitter", 0.0), getattr(cfg, "color_jitter", 0.0), cfg if train else None)
        dm.datasets[split] = DetectionDataset(records, tf)
        dm.sample_ids[split] = [r.id for r in records]
    return dm
