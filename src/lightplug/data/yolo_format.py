"""``data=yolo``: the Ultralytics (YOLO) dataset layout.

A data YAML names the dataset::

    path: .                # optional: the dataset's root, relative to this YAML's folder (default: that folder)
    train: images/train    # a folder of images (searched recursively), a .txt list of images, or a list of those
    val: images/val        # optional: without it, a seeded split of train (data.val_fraction, data.test_fraction)
    test: images/test      # optional: default val
    names: [cat, dog]      # or {0: cat, 1: dog}; an optional nc must agree

Each image's labels are in the file found by replacing the last ``images`` folder of its path by ``labels``
and its suffix by ``.txt`` (``images/train/a.jpg`` -> ``labels/train/a.txt``): one ``class cx cy w h`` line
per box, coordinates normalised to [0, 1]. A polygon line (``class x1 y1 x2 y2 ...``, Ultralytics'
segmentation labels) counts as its bounding box. An image without a label file (or with an empty one) is a
background image. In a .txt list, lines starting with ``./`` are relative to the list's folder, other
relative lines to the dataset root.

Light: numpy, yaml and Pillow (image headers only); torch is imported by :func:`yolo_datamodule` alone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .coco import BOX_SLOP, cached_load, expand_norm, given_file, image_size_of, seeded_split
from .detection_config import AnnotationProblem, DetectionRecord, apply_on_bad
from .plugins import IMAGE_SUFFIXES

__all__ = ["YoloData", "load_yolo_yaml", "yolo_label_names", "yolo_root", "list_split_images", "label_path", "read_yolo_labels",
           "read_yolo", "yolo_datamodule"]

log = logging.getLogger(__name__)


def _parse_yaml(path: Path) -> Any:
    import yaml

    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_yolo_yaml(path: str, key: str = "data.yaml") -> dict[str, Any]:
    """The parsed data YAML (cached per path and modification time).

    Raises:
        DataError: unset, missing, not YAML, not a mapping, or without ``train``.
    """
    import yaml

    p = given_file(path, key, "a data YAML file", f"give the dataset's YAML file: data=yolo {key}=FILE.yaml",
                   f"give the YAML file that names train, val and names: {key}=FILE.yaml")
    try:
        data = cached_load(p, "yolo", _parse_yaml)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise DataError(f"{key}={path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}", hint="fix the YAML syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{key}={path}: cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{key}={path}: not a YAML mapping with train, val and names", hint="see the Ultralytics dataset YAML format")
    if not data.get("train"):
        raise DataError(f"{key}={path}: no 'train' entry", hint="add a train entry, e.g. train: images/train, a folder of images or a .txt list of them")
    return data


def yolo_label_names(data: dict[str, Any], source: str) -> list[str]:
    """The class names, label ``i`` first: ``names`` as a list, or as a dict with keys ``0 .. N-1``.

    Raises:
        DataError: no names, dict keys that are not ``0 .. N-1``, or an ``nc`` that disagrees.
    """
    names = data.get("names")
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DataError(f"{source}: the keys of 'names' must be class numbers 0, 1, ..., got {', '.join(map(str, names))}",
                            hint="write names: {0: first, 1: second} or names: [first, second]") from None
        if sorted(by_id) != list(range(len(by_id))):
            raise DataError(f"{source}: the keys of 'names' must be 0 .. {len(by_id) - 1}, got {', '.join(map(str, sorted(by_id)))}",
                            hint="number the classes from 0 without gaps")
        out = [by_id[i] for i in range(len(by_id))]
    elif isinstance(names, list):
        out = [str(n) for n in names]
    else:
        raise DataError(f"{source}: no 'names' list", hint="add names: [first, second, ...], one name per class, class 0 first")
    if not out:
        raise DataError(f"{source}: 'names' is empty", hint="add one name per class, class 0 first")
    nc = data.get("nc")
    if nc is not None and nc != len(out):
        raise DataError(f"{source}: nc={nc} but 'names' has {len(out)} names", hint="make nc the number of names, or remove nc")
    return out


def yolo_root(data: dict[str, Any], yaml_path: str, source: str) -> Path:
    """The dataset root: ``path`` (relative to the YAML's folder), or the YAML's folder."""
    base = Path(yaml_path).expanduser().resolve().parent
    given = data.get("path")
    root = base if not given else (base / Path(str(given)).expanduser())
    if not root.is_dir():
        raise DataError(f"{source}: path={given}: no such folder ({root})", hint="'path' is the dataset's folder, relative to the YAML file's folder")
    return root


def _images_in(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def list_split_images(spec: Any, root: Path, source: str, split: str) -> tuple[list[Path], list[AnnotationProblem]]:
    """The image files of one split entry (a folder, a .txt list, or a list of those) and the missing ones.

    Raises:
        DataError: an entry is neither a folder nor a file, or the split has no image.
    """
    entries = spec if isinstance(spec, list) else [spec]
    images: list[Path] = []
    problems: list[AnnotationProblem] = []
    for entry in entries:
        p = Path(str(entry)).expanduser()
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            images += _images_in(p)
        elif p.is_file() and p.suffix.lower() == ".txt":
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                line = line.strip()
                if not line:
                    continue
                f = Path(line).expanduser()
                f = f if f.is_absolute() else (p.parent / line[2:] if line.startswith("./") else root / f)
                if f.is_file():
                    images.append(f)
                else:
                    problems.append(AnnotationProblem(f"{_shown(p, root)}:{n}", f"image {line} is missing"))
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(p)
        else:
            raise DataError(f"{source}: {split}: {entry} is not a folder or a .txt list of images (looked for {p})",
                            hint=f"{split} is relative to the dataset root: 'path', by default the YAML's folder")
    if not images and not problems:
        raise DataError(f"{source}: {split}: no images in {', '.join(map(str, entries))} ({', '.join(IMAGE_SUFFIXES)})",
                        hint="point it at the folder of the images: images/, not labels/")
    return images, problems


def label_path(image: Path) -> Path:
    """Where an image's labels are: the last ``images`` folder of its path becomes ``labels``, the suffix
    ``.txt`` (next to the image when its path has no ``images`` folder), as Ultralytics does."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _floats(tokens: list[str]) -> list[float] | None:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def read_yolo_labels(image: Path, num_classes: int, root: Path) -> tuple[DetectionRecord | None, list[AnnotationProblem]]:
    """One image's record (its good boxes in pixels) and the problems of its label file, ``file:line``.

    The record is ``None`` when the image cannot be used (Pillow cannot read it).
    """
    problems: list[AnnotationProblem] = []
    lp = label_path(image)
    lines = lp.read_text(encoding="utf-8", errors="replace").splitlines() if lp.is_file() else []
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    if not any(line.strip() for line in lines):  # a background image: no header read needed
        return DetectionRecord(id=str(image), boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64), path=str(image)), problems
    size = image_size_of(image)
    if size is None:
        return None, [AnnotationProblem(_shown(image, root), "not an image Pillow can read")]
    iw, ih = size
    where_file = _shown(lp, root)
    for n, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{where_file}:{n}"
        values = _floats(tokens)
        if values is None:
            problems.append(AnnotationProblem(where, f"expected 5 numbers (class cx cy w h), got {line.strip()!r}"))
            continue
        if len(values) == 5:
            c, cx, cy, w, h = values
        elif len(values) >= 7 and len(values) % 2 == 1:  # a polygon: its bounding box
            c, xs, ys = values[0], values[1::2], values[2::2]
            cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
        else:
            problems.append(AnnotationProblem(where, f"expected 5 numbers (class cx cy w h), got {len(values)}"))
            continue
        if not c.is_integer() or not 0 <= c < num_classes:
            problems.append(AnnotationProblem(where, f"class {tokens[0]} is not in names (0..{num_classes - 1})"))
            continue
        if w <= 0 or h <= 0:
            problems.append(AnnotationProblem(where, "zero-area box" if w == 0 or h == 0 else "negative width or height"))
            continue
        x1, y1, x2, y2 = (cx - w / 2) * iw, (cy - h / 2) * ih, (cx + w / 2) * iw, (cy + h / 2) * ih
        if x1 < -BOX_SLOP or y1 < -BOX_SLOP or x2 > iw + BOX_SLOP or y2 > ih + BOX_SLOP:
            problems.append(AnnotationProblem(where, f"box outside the image (cx cy w h = {' '.join(tokens[1:5])}; corners must be within 0..1)"))
            continue
        x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(iw)), min(y2, float(ih))
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            problems.append(AnnotationProblem(where, "zero-area box once clipped to the image"))
            continue
        boxes.append((x1, y1, x2, y2))
        labels.append(int(c))
    rec = DetectionRecord(id=str(image), boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4), labels=np.asarray(labels, dtype=np.int64),
                          path=str(image), size=size)
    return rec, problems


@dataclass
class YoloData:
    """What :func:`read_yolo` found: records per split (``train``, and ``val``/``test`` when the YAML names
    them), the label names, the dataset root and every problem."""

    splits: dict[str, list[DetectionRecord]]
    label_names: list[str]
    root: Path
    problems: list[AnnotationProblem] = field(default_factory=list)


def read_yolo(yaml_path: str, key: str = "data.yaml") -> YoloData:
    """Read every split the data YAML names, checking every label line.

    Raises:
        DataError: the YAML, a split entry or the names are unusable (bad label lines are returned as problems).
    """
    data = load_yolo_yaml(yaml_path, key)
    source = f"{key}={yaml_path}"
    names = yolo_label_names(data, source)
    root = yolo_root(data, yaml_path, source)
    splits: dict[str, list[DetectionRecord]] = {}
    problems: list[AnnotationProblem] = []
    for split in ("train", "val", "test"):
        if not data.get(split):
            continue
        images, missing = list_split_images(data[split], root, source, split)
        problems += missing
        records = []
        for image in images:
            rec, found = read_yolo_labels(image, len(names), root)
            problems += found
            if rec is not None:
                records.append(rec)
        splits[split] = records
    return YoloData(splits, names, root, problems)


def yolo_datamodule(cfg: Any) -> Any:
    """The data module of ``data=yolo`` (imports torch).

    Raises:
        DataError: the YAML or a split is unusable; bad labels with ``on_bad=error``; a split left empty.
    """
    from .detection import detection_datamodule

    found = read_yolo(cfg.yaml)
    source = f"data.yaml={cfg.yaml}"
    note = apply_on_bad(found.problems, cfg.on_bad, source)
    if note:
        log.warning(note)
    splits = dict(found.splits)
    if "val" not in splits:  # a seeded split of train; a given test split stays
        test = splits.get("test")
        splits = seeded_split(splits["train"], cfg, source, 0.0 if test else None)
        if test:
            splits["test"] = test
    for split in ("train", "val"):
        if not splits[split]:
            raise DataError(f"{source}: no usable images in the {split} split", hint="every image was left out as bad; data.on_bad=error lists why")
    mean, std = expand_norm(cfg.mean, "data.mean"), expand_norm(cfg.std, "data.std")
    return detection_datamodule(splits, cfg, found.label_names, mean, std)
