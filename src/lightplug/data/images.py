"""Image files as data: the ``image_folder`` data module and the loading/preprocessing that ``predict``
reuses, so that a file is prepared exactly as in training."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .datamodule import LightplugDataModule, split_indices
from .plugins import scan_image_folder

__all__ = ["ImageFileDataset", "image_folder_datamodule", "eval_transform", "load_image"]

log = logging.getLogger(__name__)


def _expand(values: list[float], channels: int) -> list[float]:
    return list(values) * channels if len(values) == 1 else list(values)


def load_image(path: str | Path, channels: int) -> Any:
    """Open an image file as a PIL image with ``channels`` channels (1: greyscale, 3: RGB)."""
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("L" if channels == 1 else "RGB")


def eval_transform(pre: dict[str, Any]) -> Any:
    """Resize, scale to [0, 1] and normalise, from the preprocessing facts stored in a checkpoint."""
    from torchvision.transforms import v2

    c = int(pre["in_channels"])
    return v2.Compose([v2.PILToTensor(), v2.Resize((pre["image_size"], pre["image_size"]), antialias=True),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(_expand(pre["mean"], c), _expand(pre["std"], c))])


def _train_transform(cfg: Any, pre: dict[str, Any]) -> Any:
    from torchvision.transforms import v2

    from .augment import erasing_steps, train_steps

    c, size = cfg.in_channels, cfg.image_size
    steps: list[Any] = [v2.PILToTensor()]
    if not cfg.random_crop:  # the random resized crop of train_steps gives the size itself
        steps.append(v2.Resize((size, size), antialias=True))
    steps += train_steps(cfg, size, c)
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(_expand(pre["mean"], c), _expand(pre["std"], c)), *erasing_steps(cfg)]
    return v2.Compose(steps)


class ImageFileDataset(Dataset):
    """(path, label) pairs decoded on access (in loader workers)."""

    def __init__(self, items: list[tuple[Path, int]], channels: int, transform: Any, first_index: int = 0) -> None:
        self.items, self.channels, self.transform, self.first_index = items, channels, transform, first_index

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path, label = self.items[i]
        image = self.transform(load_image(path, self.channels))
        return {"input": image, "target": torch.tensor(label), "index": torch.tensor(self.first_index + i)}


def _readable(files: list[Path]) -> tuple[list[Path], list[Path]]:
    from PIL import Image

    good, bad = [], []
    for f in files:
        try:
            with Image.open(f) as img:
                img.verify()
            good.append(f)
        except Exception:  # noqa: BLE001 - any decoder error means the file is unusable
            bad.append(f)
    return good, bad


def image_folder_datamodule(cfg: Any) -> LightplugDataModule:
    """Build the data module of ``data=image_folder``; unreadable files are reported and left out.

    Raises:
        DataError: a class has no readable image.
    """
    classes, given_split = scan_image_folder(cfg.root)
    names = list(classes)
    c = cfg.in_channels
    pre = {"layout": "image", "in_channels": c, "image_size": cfg.image_size, "mean": _expand(cfg.mean, c), "std": _expand(cfg.std, c)}
    if len(pre["mean"]) != c or len(pre["std"]) != c:
        raise DataError(f"data.mean/data.std need 1 or {c} values, got {len(cfg.mean)} and {len(cfg.std)}")

    def items_of(per_class: dict[str, list[Path]]) -> list[tuple[Path, int]]:
        out, skipped = [], []
        for label, name in enumerate(names):
            good, bad = _readable(per_class[name])
            skipped += bad
            if not good:
                raise DataError(f"data.root={cfg.root}: class folder {name!r} has no readable image", hint="check the files or remove the folder")
            out += [(p, label) for p in good]
        for p in skipped:
            log.warning("skipping unreadable image %s", p)
        return out

    dm = LightplugDataModule(cfg.batch_size, cfg.num_workers, cfg.pin_memory, cfg.persistent_workers)
    dm.collate_fn = None
    dm.label_names, dm.preprocessing = names, pre
    from .augment import batch_mix

    dm.batch_mix = batch_mix(cfg, len(names))
    train_tf, eval_tf = _train_transform(cfg, pre), eval_transform(pre)
    if given_split:
        parts = {"train": items_of(given_split["train"]), "val": items_of(given_split["val"])}
        parts["test"] = parts["val"]
    else:
        every = items_of(classes)
        idx = split_indices(len(every), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
        parts = {k: [every[i] for i in np.sort(v)] for k, v in idx.items()}
    for split, items in parts.items():
        dm.datasets[split] = ImageFileDataset(items, c, train_tf if split == "train" else eval_tf)
        dm.sample_ids[split] = [str(p) for p, _ in items]
    return dm
