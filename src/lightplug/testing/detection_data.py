"""Small detection datasets on disk, in COCO and YOLO layout, drawn by the shapes generator: for tests of
detection plugins and for the docs.

Example::

    from lightplug.testing.detection_data import write_coco_folder, write_yolo_folder

    coco = write_coco_folder(tmp_path / "coco", num_images=64, image_size=64)
    # lightplug train model=... data=coco data.annotations={coco.annotations} ...
    yolo = write_yolo_folder(tmp_path / "yolo", num_images=64, image_size=64)
    # lightplug train model=... data=yolo data.yaml={yolo.yaml}

Image ``i`` of either folder is ``generate_shapes(...)[i]`` of :mod:`lightplug.data.shapes_data` with the same
seed; its boxes are that sample's boxes (pixels, ``x1, y1, x2, y2``), its classes ``circle, square, triangle``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DetectionFolder", "write_coco_folder", "write_yolo_folder", "SHAPE_CLASSES"]

#: The class names of the written data, label ``i`` first.
SHAPE_CLASSES = ("circle", "square", "triangle")


@dataclass
class DetectionFolder:
    """A written dataset.

    Attributes:
        root: its folder.
        overrides: the ``lightplug train`` arguments that select it (``data=coco data.annotations=...``).
        files: split -> image files, in the order of the samples.
        boxes: split -> per image ``K x 4`` float32 ``x1, y1, x2, y2`` in pixels, as written.
        labels: split -> per image ``K`` int64 in ``[0, 3)``.
        annotations: the COCO training JSON (COCO folders).
        val_annotations: the COCO validation JSON (COCO folders written with ``num_val > 0``).
        yaml: the data YAML (YOLO folders).
    """

    root: Path
    overrides: list[str]
    files: dict[str, list[Path]] = field(default_factory=dict)
    boxes: dict[str, list[np.ndarray]] = field(default_factory=dict)
    labels: dict[str, list[np.ndarray]] = field(default_factory=dict)
    annotations: Path | None = None
    val_annotations: Path | None = None
    yaml: Path | None = None


def _samples(num_images: int, image_size: int, seed: int, first: int = 0) -> list[Any]:
    from ..data.shapes_data import generate_shapes

    return generate_shapes(num_images, image_size, seed=seed, first=first)


def _save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(path)


def _coco_json(samples: list[Any], names: list[str], first_id: int) -> dict[str, Any]:
    images, annotations = [], []
    ann_id = 1
    for i, s in enumerate(samples):
        h, w = s.image.shape[:2]
        iid = first_id + i
        images.append({"id": iid, "file_name": names[i], "width": int(w), "height": int(h)})
        for (x1, y1, x2, y2), label in zip(s.boxes.tolist(), s.labels.tolist()):
            annotations.append({"id": ann_id, "image_id": iid, "category_id": int(label), "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
            ann_id += 1
    # categories deliberately not in id order: labels follow the ids, not the list
    categories = [{"id": 3, "name": "triangle"}, {"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    return {"info": {"description": "lightplug shapes"}, "images": images, "annotations": annotations, "categories": categories}


def write_coco_folder(root: str | Path, num_images: int = 16, image_size: int = 64, seed: int = 0, num_val: int = 0) -> DetectionFolder:
    """Write ``root/images/NNNN.png`` and ``root/annotations.json`` (category ids 1 circle, 2 square, 3 triangle).

    Args:
        root: the folder to write (created).
        num_images: training images (all images when ``num_val`` is 0: the run splits them).
        image_size: height and width of the images.
        seed: the shapes generator's seed.
        num_val: also write ``root/val/NNNN.png`` and ``root/val.json`` with this many further images.

    Returns:
        The folder, its files and the boxes and labels written (labels counted from 0).
    """
    root = Path(root)
    out = DetectionFolder(root=root, overrides=[])
    parts = [("train", num_images, 0, root / "images", root / "annotations.json")]
    if num_val:
        parts.append(("val", num_val, num_images, root / "val", root / "val.json"))
    for split, n, first, folder, json_path in parts:
        samples = _samples(n, image_size, seed, first)
        names = [f"{first + i:04d}.png" for i in range(n)]
        for s, name in zip(samples, names):
            _save_png(s.image, folder / name)
        json_path.write_text(json.dumps(_coco_json(samples, names, first + 1), indent=1))
        out.files[split] = [folder / name for name in names]
        out.boxes[split] = [s.boxes.astype(np.float32) for s in samples]
        out.labels[split] = [s.labels.astype(np.int64) - 1 for s in samples]
    out.annotations = root / "annotations.json"
    out.overrides = ["data=coco", f"data.annotations={out.annotations}", f"data.images={root / 'images'}"]
    if num_val:
        out.val_annotations = root / "val.json"
        out.overrides += [f"data.val_annotations={out.val_annotations}", f"data.val_images={root / 'val'}"]
    return out


def _yolo_lines(boxes: np.ndarray, labels: np.ndarray, w: int, h: int) -> str:
    lines = []
    for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
        lines.append(f"{label} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def write_yolo_folder(root: str | Path, num_images: int = 16, image_size: int = 64, seed: int = 0, num_val: int = 4,
                      names_as_dict: bool = False) -> DetectionFolder:
    """Write the Ultralytics layout: ``root/data.yaml``, ``root/images/{train,val}/NNNN.png`` and
    ``root/labels/{train,val}/NNNN.txt`` (``class cx cy w h``, normalised).

    Args:
        root: the folder to write (created).
        num_images: training images.
        image_size: height and width of the images.
        seed: the shapes generator's seed.
        num_val: validation images (0: the YAML has no ``val`` and the run splits ``train``).
        names_as_dict: write ``names: {0: circle, ...}`` instead of a list.

    Returns:
        The folder, its files and the boxes and labels written (labels counted from 0).
    """
    root = Path(root)
    out = DetectionFolder(root=root, overrides=[])
    lines = ["path: .", "train: images/train"]
    parts = [("train", num_images, 0)]
    if num_val:
        parts.append(("val", num_val, num_images))
        lines.append("val: images/val")
    if names_as_dict:
        lines += ["names:"] + [f"  {i}: {n}" for i, n in enumerate(SHAPE_CLASSES)]
    else:
        lines.append(f"names: [{', '.join(SHAPE_CLASSES)}]")
    for split, n, first in parts:
        samples = _samples(n, image_size, seed, first)
        out.files[split], out.boxes[split], out.labels[split] = [], [], []
        for i, s in enumerate(samples):
            image = root / "images" / split / f"{first + i:04d}.png"
            _save_png(s.image, image)
            label_file = root / "labels" / split / f"{first + i:04d}.txt"
            label_file.parent.mkdir(parents=True, exist_ok=True)
            h, w = s.image.shape[:2]
            label_file.write_text(_yolo_lines(s.boxes, s.labels - 1, w, h))
            out.files[split].append(image)
            out.boxes[split].append(s.boxes.astype(np.float32))
            out.labels[split].append(s.labels.astype(np.int64) - 1)
    out.yaml = root / "data.yaml"
    out.yaml.write_text("\n".join(lines) + "\n")
    out.overrides = ["data=yolo", f"data.yaml={out.yaml}"]
    return out
