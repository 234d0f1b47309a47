"""``data=coco``: boxes from a COCO JSON file, as labelling tools export it (CVAT, Label Studio, Roboflow, ...).

Only what detection needs is read: ``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations``
(``id``, ``image_id``, ``category_id``, ``bbox = [x, y, w, h]`` in pixels, ``iscrowd``) and ``categories``
(``id``, ``name``). Label ``i`` is the category with the ``i``-th smallest id. Crowd annotations
(``iscrowd: 1``) are left out, as torchvision's references do; images without annotations are kept as
background images.

Light: numpy, json and Pillow (image headers only); torch is imported by :func:`coco_datamodule` alone.
Also home of the helpers the YOLO reader shares (:func:`cached_load`, :func:`image_size_of`, :data:`BOX_SLOP`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from ..errors import DataError
from .detection_config import AnnotationProblem, DetectionRecord, apply_on_bad

__all__ = ["BOX_SLOP", "CocoData", "cached_load", "given_file", "image_size_of", "load_coco_json", "coco_categories", "read_coco", "coco_splits",
           "coco_datamodule", "expand_norm", "seeded_split"]

log = logging.getLogger(__name__)

#: How far (in pixels) a box may stick out of its image and still be kept, clipped to the image: exporters
#: round coordinates, so a box on the border often ends a fraction of a pixel outside.
BOX_SLOP = 1.0

_CACHE: dict[tuple[str, str], tuple[tuple[int, int], Any]] = {}


def cached_load(path: Path, kind: str, parse: Callable[[Path], Any]) -> Any:
    """``parse(path)``, parsed once per process while the file keeps its modification time and size
    (``facts`` and ``build`` both need the parsed file)."""
    st = path.stat()
    key, stamp = (kind, str(path.resolve())), (st.st_mtime_ns, st.st_size)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    value = parse(path)
    _CACHE[key] = (stamp, value)
    return value


def image_size_of(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the file's header (Pillow decodes no pixels); ``None`` if Pillow cannot read it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except Exception:  # noqa: BLE001 - any decoder error means unreadable
        return None


def given_file(path: str | None, key: str, what: str, unset_hint: str, folder_hint: str) -> Path:
    """The file a config key names, or one DataError saying it is unset, a folder, or missing.

    Args:
        path: the value as the user gave it.
        key: the config key (``data.annotations``), for messages.
        what: what the file should be (``a COCO JSON file``).
        unset_hint, folder_hint: how to fix an unset key, or a folder given instead of the file.
    """
    if path in ("", "???", None):
        raise DataError(f"{key} is not set", hint=unset_hint)
    p = Path(str(path)).expanduser()
    if p.is_dir():
        raise DataError(f"{key}={path}: is a folder, not {what}", hint=folder_hint)
    if not p.is_file():
        raise DataError(f"{key}={path}: no such file", hint="relative paths start at the folder you run lightplug in")
    return p


def expand_norm(values: list[float], key: str) -> list[float]:
    """Per-channel mean/std: one value for all 3 channels, or 3 values."""
    if len(values) == 1:
        return [float(values[0])] * 3
    if len(values) != 3:
        raise DataError(f"{key}={list(values)}: needs 1 or 3 values, got {len(values)}", hint=f"e.g. {key}=[0.5,0.5,0.5]")
    return [float(v) for v in values]


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.6g}"


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_json(path: Path) -> Any:
    with path.open("rb") as f:
        return json.load(f)


def load_coco_json(path: str, key: str = "data.annotations") -> dict[str, Any]:
    """The parsed COCO file (cached per path and modification time).

    Args:
        path: the file, as the user gave it.
        key: the config key that named it, for messages.

    Raises:
        DataError: unset, missing, not JSON, or without ``images`` and ``categories`` lists.
    """
    p = given_file(path, key, "a COCO JSON file", f"give the COCO JSON file: data=coco {key}=FILE.json",
                   f"give the .json file the labelling tool exported: {key}=FILE.json")
    try:
        data = cached_load(p, "coco", _parse_json)
    except json.JSONDecodeError as exc:
        raise DataError(f"{key}={path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                        hint="export the annotations again in COCO JSON format") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{key}={path}: cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{key}={path}: holds a JSON {type(data).__name__}, not a COCO object with images, annotations and categories",
                        hint="export the annotations in COCO JSON format")
    for part in ("images", "categories"):
        if not isinstance(data.get(part), list):
            raise DataError(f"{key}={path}: no {part!r} list, so not a COCO detection file", hint="export the annotations in COCO JSON format")
    if not isinstance(data.get("annotations", []), list):
        raise DataError(f"{key}={path}: 'annotations' is not a list", hint="export the annotations in COCO JSON format")
    return data


def coco_categories(data: dict[str, Any], source: str) -> dict[int, str]:
    """Category id -> name, in the order of the ids (label ``i`` is the ``i``-th entry).

    Raises:
        DataError: no categories, a category without an integer id or a name, or a repeated id.
    """
    found: dict[int, str] = {}
    for n, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise DataError(f"{source}: categories[{n}] has no integer 'id'", hint="each category needs an id and a name")
        name = cat.get("name")
        if not isinstance(name, str) or not name:
            raise DataError(f"{source}: category {cat['id']} has no 'name'", hint="each category needs an id and a name")
        if cat["id"] in found:
            raise DataError(f"{source}: category id {cat['id']} is used twice ({found[cat['id']]!r} and {name!r})", hint="give each category its own id")
        found[cat["id"]] = name
    if not found:
        raise DataError(f"{source}: no categories", hint="a COCO detection file lists its classes under 'categories'")
    return dict(sorted(found.items()))


@dataclass
class CocoData:
    """What :func:`read_coco` found: the records (bad annotations left out), the label names and the problems."""

    records: list[DetectionRecord]
    label_names: list[str]
    problems: list[AnnotationProblem] = field(default_factory=list)


def read_coco(annotations: str, images: str = "", key: str = "data.annotations", categories: dict[int, str] | None = None,
              prefix: str = "") -> CocoData:
    """Read a COCO file into records, checking every annotation.

    Args:
        annotations: the COCO JSON file.
        images: the folder the ``file_name`` entries are relative to (default: the JSON file's folder).
        key: the config key of ``annotations``, for messages.
        categories: the id -> name map to label with (a validation file must use the training file's
            categories); default: this file's own.
        prefix: put before each problem's location (the file's name, when two files are read).

    Returns:
        The records of the good images, with their good annotations (boxes clipped to the image when they
        stick out by at most :data:`BOX_SLOP` pixels), and one :class:`AnnotationProblem` per bad
        annotation (unknown image or category, malformed, zero or negative area, outside its image) or bad
        image (missing or unreadable file, repeated id).

    Raises:
        DataError: the file itself is unusable (see :func:`load_coco_json`, :func:`coco_categories`), or
            its categories disagree with ``categories``.
    """
    data = load_coco_json(annotations, key)
    source = f"{key}={annotations}"
    own = coco_categories(data, source)
    if categories is None:
        categories = own
    else:
        clash = [f"{i} is {own[i]!r} here but {categories[i]!r} in training" for i in own if i in categories and own[i] != categories[i]]
        extra = [f"{i} ({own[i]!r})" for i in own if i not in categories]
        if clash or extra:
            what = "; ".join(clash + ([f"categories {', '.join(extra)} are not in the training file"] if extra else []))
            raise DataError(f"{source}: the categories differ from the training file's: {what}", hint="export both files with the same categories")
    if not data["images"]:
        raise DataError(f"{source}: lists no images", hint="export the annotations together with their images")
    label_of = {cid: n for n, cid in enumerate(categories)}
    folder = Path(images).expanduser() if images else Path(annotations).expanduser().parent
    problems: list[AnnotationProblem] = []

    def bad(where: str, what: str) -> None:
        problems.append(AnnotationProblem(prefix + where, what))

    # images: id -> [file, (w, h) or None]; dropped ids remember that their annotations need no report
    entries: dict[Any, dict[str, Any]] = {}
    dropped: set[Any] = set()
    order: list[Any] = []
    missing: list[str] = []
    for n, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not (_is_int(img.get("id")) or isinstance(img.get("id"), str)):
            bad(f"images[{n}]", "no 'id'")
            continue
        iid = img["id"]
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            bad(f"image {iid}", "no 'file_name'")
            dropped.add(iid)
            continue
        if iid in entries:
            bad(f"image {iid}", f"id used again by {name} (first: {entries[iid]['name']})")
            continue
        path = folder / name
        shown = str((Path(images) if images else Path(annotations).parent) / name)
        if not path.is_file():
            bad(f"image {iid}", f"file {shown} is missing")
            missing.append(name)
            dropped.add(iid)
            continue
        w, h = img.get("width"), img.get("height")
        size = (w, h) if _is_int(w) and _is_int(h) and w > 0 and h > 0 else image_size_of(path)
        if size is None:
            bad(f"image {iid}", f"file {shown} is not an image Pillow can read")
            dropped.add(iid)
            continue
        entries[iid] = {"name": name, "path": path, "size": size, "boxes": [], "labels": []}
        order.append(iid)

    if missing and not entries:  # not one image there: the folder is wrong, not the files
        raise _wrong_folder(missing, folder, images, annotations, key)

    for n, ann in enumerate(data.get("annotations", [])):
        aid = ann.get("id", f"#{n}") if isinstance(ann, dict) else f"#{n}"
        where = f"annotation {aid}"
        if not isinstance(ann, dict):
            bad(where, "not a JSON object")
            continue
        if ann.get("iscrowd"):
            continue
        iid, cid, bbox = ann.get("image_id"), ann.get("category_id"), ann.get("bbox")
        if not (_is_int(iid) or isinstance(iid, str)):
            bad(where, f"image_id {json.dumps(iid)} is not an image id")
            continue
        if iid in dropped:
            continue
        if iid not in entries:
            bad(where, f"image_id {json.dumps(iid)} is not an image in the file")
            continue
        if not _is_int(cid) or cid not in label_of:
            bad(where, f"category_id {json.dumps(cid)} is not a category (ids: {', '.join(map(str, categories))})")
            continue
        if (not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
                or not all(math.isfinite(v) for v in bbox)):
            bad(where, f"bbox must be 4 numbers [x, y, width, height], got {json.dumps(bbox)}")
            continue
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            bad(where, f"zero-area box [{', '.join(map(_num, bbox))}]" if w == 0 or h == 0 else f"negative width or height in box [{', '.join(map(_num, bbox))}]")
            continue
        entry = entries[iid]
        iw, ih = entry["size"]
        if x < -BOX_SLOP or y < -BOX_SLOP or x + w > iw + BOX_SLOP or y + h > ih + BOX_SLOP:
            bad(where, f"box [{', '.join(map(_num, bbox))}] is outside image {iid} ({iw}x{ih})")
            continue
        x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, float(iw)), min(y + h, float(ih))
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            bad(where, f"zero-area box once clipped to image {iid} ({iw}x{ih}): [{', '.join(map(_num, bbox))}]")
            continue
        entry["boxes"].append((x1, y1, x2, y2))
        entry["labels"].append(label_of[cid])

    records = [DetectionRecord(id=str(e["path"]), boxes=np.asarray(e["boxes"], dtype=np.float32).reshape(-1, 4),
                               labels=np.asarray(e["labels"], dtype=np.int64), path=str(e["path"]), size=e["size"])
               for e in (entries[i] for i in order)]
    return CocoData(records, list(categories.values()), problems)


def _wrong_folder(missing: list[str], folder: Path, images: str, annotations: str, key: str) -> DataError:
    images_key = "data.val_images" if key == "data.val_annotations" else "data.images"
    where = f"{images_key}={images}" if images else f"{key}={annotations}"
    inside = "" if images else " (the JSON file's folder, as data.images is not set)"
    guess = next((sub for sub in sorted(p for p in folder.iterdir() if p.is_dir()) if (sub / missing[0]).is_file()), None) if folder.is_dir() else None
    hint = (f"did you mean {images_key}={guess}?" if guess is not None
            else f"set {images_key}=DIR, the folder the file_name entries are relative to")
    return DataError(f"{where}: none of the {len(missing)} image files is in {folder}{inside}, e.g. {missing[0]}", hint=hint)


def coco_splits(cfg: Any) -> tuple[dict[str, list[DetectionRecord]], list[str], list[AnnotationProblem], str]:
    """The train/val(/test) records of a ``data=coco`` config, the label names, every problem found and the
    config that names the files (for :func:`~lightplug.data.detection_config.apply_on_bad`).

    With ``val_annotations`` the split is the given one (test = val); otherwise a seeded split of the one file.
    """
    source = f"data.annotations={cfg.annotations}"
    if not cfg.val_annotations:
        train = read_coco(cfg.annotations, cfg.images, "data.annotations")
        return {"all": train.records}, train.label_names, train.problems, source
    cats = coco_categories(load_coco_json(cfg.annotations), source)
    name_t, name_v = Path(cfg.annotations).name, Path(cfg.val_annotations).name
    if name_t == name_v:  # e.g. train/_annotations.coco.json and valid/_annotations.coco.json
        name_t, name_v = str(cfg.annotations), str(cfg.val_annotations)
    train = read_coco(cfg.annotations, cfg.images, "data.annotations", prefix=f"{name_t}: ")
    val = read_coco(cfg.val_annotations, cfg.val_images or cfg.images, "data.val_annotations", categories=cats, prefix=f"{name_v}: ")
    source += f", data.val_annotations={cfg.val_annotations}"
    return {"train": train.records, "val": val.records}, train.label_names, train.problems + val.problems, source


def seeded_split(records: list[DetectionRecord], cfg: Any, source: str, test_fraction: float | None = None) -> dict[str, list[DetectionRecord]]:
    """Split one list of records with the config's ``val_fraction``, ``test_fraction`` (unless given) and ``split_seed``.

    Raises:
        DataError: no records, or too few for a non-empty train and val split.
    """
    from .detection import split_records

    if not records:
        raise DataError(f"{source}: no usable images", hint="every image was left out as bad; data.on_bad=error lists why")
    test = cfg.test_fraction if test_fraction is None else test_fraction
    splits = split_records(records, cfg.val_fraction, test, cfg.split_seed)
    if not splits["train"]:
        raise DataError(f"{source}: {len(records)} usable image(s) leave no training images with data.val_fraction={cfg.val_fraction} "
                        f"and data.test_fraction={test}", hint="add images, or lower data.val_fraction and data.test_fraction")
    return splits


def coco_datamodule(cfg: Any) -> Any:
    """The data module of ``data=coco`` (imports torch).

    Raises:
        DataError: a file is unusable; bad annotations with ``on_bad=error``; no images left.
    """
    from .detection import detection_datamodule

    splits, names, problems, source = coco_splits(cfg)
    note = apply_on_bad(problems, cfg.on_bad, source)
    if note:
        log.warning(note)
    if "all" in splits:
        splits = seeded_split(splits["all"], cfg, source)
    for split, key in (("train", "data.annotations"), ("val", "data.val_annotations")):
        if not splits[split]:
            raise DataError(f"{source}: no usable images in {key}", hint="every image was left out as bad; data.on_bad=error lists why")
    mean, std = expand_norm(cfg.mean, "data.mean"), expand_norm(cfg.std, "data.std")
    return detection_datamodule(splits, cfg, names, mean, std)
