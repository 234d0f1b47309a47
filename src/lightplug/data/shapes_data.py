"""The drawing behind ``data=shapes``: seeded images of circles, squares and triangles, their class masks
and (for detection) one box per visible shape, and the data module that serves them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .augment import has_train_steps
from .datamodule import ArrayDataset, LightplugDataModule, split_indices
from .shapes import OBJECT_NAMES, SHAPE_NAMES

__all__ = ["AugmentedImages", "ShapeSample", "render_shapes", "generate_shapes", "shapes_datamodule", "SHAPES_MEAN", "SHAPES_STD"]

#: Per-channel normalisation of the images (pixels in [0, 1] become [-1, 1]).
SHAPES_MEAN = [0.5, 0.5, 0.5]
SHAPES_STD = [0.5, 0.5, 0.5]


@dataclass
class ShapeSample:
    """One generated image.

    Attributes:
        image: ``H x W x 3`` float32 in [0, 1].
        mask: ``H x W`` int64: 0 background, 1 circle, 2 square, 3 triangle (later shapes cover earlier ones).
        boxes: ``K x 4`` float32 ``[x0, y0, x1, y1]`` in pixels (x1, y1 exclusive) of each shape still visible.
        labels: ``K`` int64 class of each box (1..3).
    """

    image: np.ndarray
    mask: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def _shape_mask(kind: int, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float, flip: bool) -> np.ndarray:
    """Pixels inside a circle (1), square (2) or triangle (3) of half-extent ``r`` centred at (cx, cy)."""
    if kind == 1:
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if kind == 2:
        half = r * 0.886  # the square has the area of the circle
        return (np.abs(xx - cx) <= half) & (np.abs(yy - cy) <= half)
    depth = (cy + r - yy) if flip else (yy - (cy - r))  # distance from the apex, along the height
    return (depth >= 0) & (depth <= 2 * r) & (np.abs(xx - cx) <= depth / 2)


def _contrasting(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour far enough from the background to be seen through the noise."""
    colour = rng.uniform(0.0, 1.0, 3)
    for _ in range(20):
        if np.abs(colour - background).sum() >= 0.6:
            break
        colour = rng.uniform(0.0, 1.0, 3)
    return colour


def render_shapes(rng: np.random.Generator, image_size: int, max_shapes: int = 3, min_size: float = 0.2, max_size: float = 0.45,
                  noise: float = 0.05) -> ShapeSample:
    """Draw 1 to ``max_shapes`` random shapes on a random background.

    Args:
        rng: the generator (all randomness comes from it).
        image_size: height and width in pixels.
        max_shapes: most shapes per image.
        min_size, max_size: range of a shape's extent (diameter, side, height), as a fraction of the image size.
        noise: std of the Gaussian noise added to every pixel (then clipped to [0, 1]).

    Example:
        >>> s = render_shapes(np.random.default_rng(0), 32)
        >>> s.image.shape, s.mask.shape, s.boxes.shape[1]
        ((32, 32, 3), (32, 32), 4)
    """
    centres = np.arange(image_size, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    background = rng.uniform(0.0, 1.0, 3)
    image = np.empty((image_size, image_size, 3), dtype=np.float32)
    image[:] = background
    mask = np.zeros((image_size, image_size), dtype=np.int64)
    instance = np.zeros((image_size, image_size), dtype=np.int64)
    kinds: list[int] = []
    for n in range(int(rng.integers(1, max_shapes + 1))):
        kind = int(rng.integers(1, len(SHAPE_NAMES)))
        r = float(rng.uniform(min_size, max_size)) * image_size / 2
        cx, cy = (float(rng.uniform(r, image_size - r)) for _ in range(2))
        inside = _shape_mask(kind, xx, yy, cx, cy, r, flip=bool(rng.integers(0, 2)))
        image[inside] = _contrasting(rng, background)
        mask[inside] = kind
        instance[inside] = n + 1
        kinds.append(kind)
    if noise > 0:
        image += rng.normal(0.0, noise, image.shape).astype(np.float32)
        np.clip(image, 0.0, 1.0, out=image)
    boxes, labels = [], []
    for n, kind in enumerate(kinds):
        ys, xs = np.nonzero(instance == n + 1)
        if len(xs):
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            labels.append(kind)
    return ShapeSample(image, mask, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64))


def generate_shapes(num_samples: int, image_size: int, max_shapes: int = 3, min_size: float = 0.2, max_size: float = 0.45,
                    noise: float = 0.05, seed: int = 0, first: int = 0) -> list[ShapeSample]:
    """Samples ``first .. first + num_samples - 1``; sample ``i`` depends only on ``seed`` and ``i``."""
    return [render_shapes(np.random.default_rng((seed, i)), image_size, max_shapes, min_size, max_size, noise)
            for i in range(first, first + num_samples)]


class AugmentedImages(Dataset):
    """Training images (uint8 ``N x 3 x S x S``) transformed one by one, with their mask (``masks=True``: the
    ``v2`` steps move it with the pixels as a ``tv_tensors.Mask``) or class."""

    def __init__(self, pixels: torch.Tensor, targets: torch.Tensor, transform: Any, masks: bool) -> None:
        self.pixels, self.targets, self.transform, self.masks = pixels, targets, transform, masks

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from torchvision import tv_tensors

        image = tv_tensors.Image(self.pixels[i])
        if self.masks:
            image, target = self.transform(image, tv_tensors.Mask(self.targets[i]))
            target = target.as_subclass(torch.Tensor)
        else:
            image, target = self.transform(image), self.targets[i]
        return {"input": image.as_subclass(torch.Tensor), "target": target, "index": torch.tensor(i)}


def _train_transform(cfg: Any) -> Any:
    """Augment (uint8, with the mask), scale to [0, 1], normalise as validation does, then erase."""
    from torchvision.transforms import v2

    from .augment import erasing_steps, train_steps

    return v2.Compose([*train_steps(cfg, cfg.image_size, 3), v2.ToDtype(torch.float32, scale=True), v2.Normalize(SHAPES_MEAN, SHAPES_STD),
                       *erasing_steps(cfg)])


def shapes_datamodule(cfg: Any) -> LightplugDataModule:
    """The data module of ``data=shapes``: normalised ``3 x S x S`` images and ``S x S`` masks (segmentation),
    a list of boxes and labels (0 circle, 1 square, 2 triangle) per image (detection), or the class of the one
    shape in each image (classification, same labels as detection)."""
    classify = cfg.task == "classification"
    max_shapes = 1 if classify else cfg.max_shapes
    samples = generate_shapes(cfg.num_samples, cfg.image_size, max_shapes, cfg.min_size, cfg.max_size, cfg.noise, cfg.seed)
    if cfg.task == "detection":
        from .detection import detection_datamodule, split_records
        from .detection_config import DetectionRecord

        records = [DetectionRecord(id=str(i), boxes=s.boxes, labels=s.labels - 1, image=(s.image * 255).round().astype(np.uint8),
                                   size=(cfg.image_size, cfg.image_size)) for i, s in enumerate(samples)]
        splits = split_records(records, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
        return detection_datamodule(splits, cfg, list(OBJECT_NAMES), list(SHAPES_MEAN), list(SHAPES_STD))
    images = np.stack([s.image for s in samples]).transpose(0, 3, 1, 2)
    mean, std = np.asarray(SHAPES_MEAN, dtype=np.float32), np.asarray(SHAPES_STD, dtype=np.float32)
    x = torch.from_numpy((images - mean[:, None, None]) / std[:, None, None])
    if classify:  # the class of the one shape (1 circle .. 3 triangle), counted from 0
        unseen = [i for i, s in enumerate(samples) if len(s.labels) == 0]
        if unseen:
            raise DataError(f"data.min_size={cfg.min_size:g}: the shape of image {unseen[0]} covers no pixel at data.image_size={cfg.image_size}",
                            hint="raise data.min_size or data.image_size")
        y = torch.from_numpy(np.asarray([int(s.labels[0]) - 1 for s in samples], dtype=np.int64))
    else:
        y = torch.from_numpy(np.stack([s.mask for s in samples]))
    dm = LightplugDataModule(cfg.batch_size, cfg.num_workers, cfg.pin_memory, cfg.persistent_workers)
    dm.label_names = list(OBJECT_NAMES if classify else SHAPE_NAMES)
    dm.preprocessing = {"layout": "image", "in_channels": 3, "image_size": cfg.image_size, "mean": list(SHAPES_MEAN), "std": list(SHAPES_STD)}
    if classify:
        from .augment import batch_mix

        dm.batch_mix = batch_mix(cfg, len(OBJECT_NAMES))
    augment = has_train_steps(cfg)  # none: the whole split as tensors, a batch gathered at once
    for split, idx in split_indices(len(samples), cfg.val_fraction, cfg.test_fraction, cfg.split_seed).items():
        if split == "train" and augment:
            pixels = torch.from_numpy((images[idx] * 255).round().astype(np.uint8))
            dm.datasets[split] = AugmentedImages(pixels, y[idx], _train_transform(cfg), masks=not classify)
        else:
            dm.datasets[split] = ArrayDataset(x[idx], y[idx], np.arange(len(idx)))  # index: the position in the split
        dm.sample_ids[split] = [str(i) for i in idx]
    return dm
