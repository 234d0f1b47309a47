"""``data=coco`` and ``data=yolo``: facts from the names alone, batches whose boxes are the written ones
(after the resize, and mirrored by flips), background images, and every kind of bad annotation reported
where it is (``annotation 12``, ``labels/train/0003.txt:2``) or skipped with ``data.on_bad=skip``.

The folders are written by :mod:`lightplug.testing.detection_data` from the shapes generator."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import make_dist, run_cli
from lightplug.data.detection_plugins import Coco, CocoConfig, Yolo, YoloConfig
from lightplug.errors import DataError
from lightplug.testing.detection_data import DetectionFolder, write_coco_folder, write_yolo_folder

NAMES = ["circle", "square", "triangle"]
SIZE = 64  # the written images
QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def _coco(folder: DetectionFolder, **values: Any) -> tuple[Coco, CocoConfig]:
    values = {"annotations": str(folder.annotations), "images": str(folder.root / "images"), "num_workers": 0, "image_size": 32, "hflip": 0.0, **values}
    if folder.val_annotations is not None:
        values.setdefault("val_annotations", str(folder.val_annotations))
        values.setdefault("val_images", str(folder.root / "val"))
    cfg = CocoConfig(**values)
    return Coco(cfg), cfg


def _yolo(folder: DetectionFolder, **values: Any) -> tuple[Yolo, YoloConfig]:
    cfg = YoloConfig(**{"yaml": str(folder.yaml), "num_workers": 0, "image_size": 32, "hflip": 0.0, **values})
    return Yolo(cfg), cfg


def _build(plugin_cfg: tuple[Any, Any]) -> Any:
    plugin, cfg = plugin_cfg
    return plugin.build(cfg)


@pytest.fixture
def coco_dir(tmp_path: Path) -> DetectionFolder:
    return write_coco_folder(tmp_path / "coco", num_images=12, image_size=SIZE, num_val=4)


@pytest.fixture
def yolo_dir(tmp_path: Path) -> DetectionFolder:
    return write_yolo_folder(tmp_path / "yolo", num_images=12, image_size=SIZE, num_val=4)


def _edit_json(path: Path, edit: Any) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------- facts
def test_coco_facts_name_labels_in_category_id_order_without_opening_images(coco_dir: DetectionFolder, monkeypatch: pytest.MonkeyPatch) -> None:
    import PIL.Image

    def no_decoding(*_: Any, **__: Any) -> None:
        raise AssertionError("facts opened an image")

    monkeypatch.setattr(PIL.Image, "open", no_decoding)
    plugin, cfg = _coco(coco_dir, image_size=48)
    # the file lists the categories as triangle (3), circle (1), square (2): labels follow the ids
    assert plugin.facts(cfg) == {"task": "detection", "num_classes": 3, "num_outputs": 3, "in_channels": 3, "image_size": 48, "label_names": NAMES}


def test_coco_json_is_parsed_once_per_modification(coco_dir: DetectionFolder) -> None:
    from lightplug.data.coco import load_coco_json

    first = load_coco_json(str(coco_dir.annotations))
    assert load_coco_json(str(coco_dir.annotations)) is first  # facts and build share the parse
    _edit_json(coco_dir.annotations, lambda d: d["categories"].append({"id": 7, "name": "star"}))
    again = load_coco_json(str(coco_dir.annotations))
    assert again is not first and [c["name"] for c in again["categories"]][-1] == "star"
    plugin, cfg = _coco(coco_dir)
    assert plugin.facts(cfg)["label_names"] == [*NAMES, "star"]


@pytest.mark.parametrize("as_dict", [False, True], ids=["names-list", "names-dict"])
def test_yolo_facts_from_the_yaml_names(tmp_path: Path, as_dict: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import PIL.Image

    folder = write_yolo_folder(tmp_path / "yolo", num_images=4, image_size=SIZE, num_val=2, names_as_dict=as_dict)
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: (_ for _ in ()).throw(AssertionError("facts opened an image")))
    plugin, cfg = _yolo(folder)
    assert plugin.facts(cfg) == {"task": "detection", "num_classes": 3, "num_outputs": 3, "in_channels": 3, "image_size": 32, "label_names": NAMES}


@pytest.mark.parametrize(("yaml_text", "words"), [
    ("train: images/train\nnames: {0: a, 2: c}\n", ["data.yaml=", "keys of 'names' must be 0 .. 1"]),
    ("train: images/train\nnames: [a, b]\nnc: 3\n", ["nc=3", "2 names"]),
    ("train: images/train\n", ["no 'names' list"]),
    ("names: [a]\n", ["no 'train' entry"]),
    ("train: [images/train\nnames: [a]\n", ["not valid YAML", "line"]),
    ("- just\n- a list\n", ["not a YAML mapping"]),
    ("path: nowhere\ntrain: images/train\nnames: [a]\n", ["path=nowhere", "no such folder"]),
], ids=["dict-gap", "nc-mismatch", "no-names", "no-train", "bad-yaml", "not-mapping", "bad-path"])
def test_yolo_yaml_mistakes_are_one_data_error(yolo_dir: DetectionFolder, yaml_text: str, words: list[str]) -> None:
    assert yolo_dir.yaml is not None
    yolo_dir.yaml.write_text(yaml_text)
    plugin, cfg = _yolo(yolo_dir)
    with pytest.raises(DataError) as info:
        plugin.facts(cfg)
        plugin.build(cfg)  # path is checked when the splits are read
    assert all(w in str(info.value) for w in words), str(info.value)


def test_unset_or_missing_files_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"images": [}')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "nococo.json").write_text('{"annotations": []}')
    cases = [
        (Coco, CocoConfig(), ["data.annotations is not set", "data=coco data.annotations=FILE.json"]),
        (Coco, CocoConfig(annotations=str(tmp_path / "nope.json")), ["data.annotations=", "nope.json: no such file"]),
        (Coco, CocoConfig(annotations=str(tmp_path)), ["is a folder, not a COCO JSON file"]),
        (Coco, CocoConfig(annotations=str(tmp_path / "broken.json")), ["broken.json: not valid JSON (line 1, column 13"]),
        (Coco, CocoConfig(annotations=str(tmp_path / "list.json")), ["holds a JSON list"]),
        (Coco, CocoConfig(annotations=str(tmp_path / "nococo.json")), ["no 'images' list"]),
        (Yolo, YoloConfig(), ["data.yaml is not set", "data=yolo data.yaml=FILE.yaml"]),
        (Yolo, YoloConfig(yaml=str(tmp_path / "nope.yaml")), ["data.yaml=", "nope.yaml: no such file"]),
    ]
    for plugin_cls, cfg, words in cases:
        with pytest.raises(DataError) as info:
            plugin_cls(cfg).facts(cfg)
        message = str(info.value)
        assert "\n" not in message and all(w in message for w in words), message


def test_coco_mean_std_need_one_or_three_values(coco_dir: DetectionFolder) -> None:
    plugin, cfg = _coco(coco_dir, mean=[0.1, 0.2])
    with pytest.raises(DataError, match=r"data.mean=\[0.1, 0.2\]: needs 1 or 3 values"):
        plugin.facts(cfg)


def test_coco_wrong_image_folder_is_one_error_with_a_guess(coco_dir: DetectionFolder) -> None:
    plugin, cfg = _coco(coco_dir, images="", val_annotations="")  # images/ is not next to the JSON file's entries
    with pytest.raises(DataError) as info:
        plugin.build(cfg)
    assert "none of the 12 image files is in" in str(info.value) and f"did you mean data.images={coco_dir.root / 'images'}" in str(info.value)


# ---------------------------------------------------------------- batches
def _check_split(dm: Any, folder: DetectionFolder, split: str, scale: float, tol: float) -> None:
    import torch

    ds = dm.datasets[split]
    assert dm.sample_ids[split] == [str(f) for f in folder.files[split]]
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["input"].shape == (3, 32, 32) and sample["input"].dtype == torch.float32
        np.testing.assert_allclose(sample["target"]["boxes"].numpy(), folder.boxes[split][i] * scale, atol=tol)
        assert sample["target"]["labels"].tolist() == folder.labels[split][i].tolist()
    batch = next(iter(dm.val_dataloader() if split == "val" else dm.train_dataloader()))
    assert batch["input"].shape[1:] == (3, 32, 32) and isinstance(batch["target"], list) and batch["index"].dtype == torch.int64
    assert -1.0 <= float(batch["input"].min()) and float(batch["input"].max()) <= 1.0  # mean = std = 0.5
    assert set(batch["target"][0]) == {"boxes", "labels"} and batch["target"][0]["labels"].dtype == torch.int64


def test_coco_batches_hold_the_written_boxes_resized(coco_dir: DetectionFolder) -> None:
    dm = _build(_coco(coco_dir))
    assert dm.label_names == NAMES and dm.preprocessing["image_size"] == 32 and dm.preprocessing["mean"] == [0.5] * 3
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 12, "val": 4, "test": 4}
    for split in ("train", "val"):
        _check_split(dm, coco_dir, split, scale=32 / SIZE, tol=1e-4)


def test_yolo_batches_hold_the_written_boxes_resized(yolo_dir: DetectionFolder) -> None:
    dm = _build(_yolo(yolo_dir))
    assert dm.label_names == NAMES
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 12, "val": 4, "test": 4}
    for split in ("train", "val"):
        _check_split(dm, yolo_dir, split, scale=32 / SIZE, tol=1e-3)  # the label files hold 6 decimals


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_files_serve_what_data_shapes_serves(tmp_path: Path, fmt: str) -> None:
    """The written folders hold data=shapes' images: read back, every split is the same, pixel for pixel."""
    from lightplug.data.shapes import ShapesConfig
    from lightplug.data.shapes_data import shapes_datamodule

    common = {"image_size": SIZE, "num_workers": 0, "hflip": 0.0, "val_fraction": 0.25, "test_fraction": 0.25, "split_seed": 3}
    shapes = shapes_datamodule(ShapesConfig(task="detection", num_samples=12, **common))  # type: ignore[arg-type]
    if fmt == "coco":
        dm = _build(_coco(write_coco_folder(tmp_path / fmt, num_images=12, image_size=SIZE), **common))
    else:
        dm = _build(_yolo(write_yolo_folder(tmp_path / fmt, num_images=12, image_size=SIZE, num_val=0), **common))
    for split in ("train", "val", "test"):
        assert [Path(i).stem for i in dm.sample_ids[split]] == [f"{int(i):04d}" for i in shapes.sample_ids[split]]
        for i in range(len(dm.datasets[split])):
            mine, theirs = dm.datasets[split][i], shapes.datasets[split][i]
            np.testing.assert_allclose(mine["input"].numpy(), theirs["input"].numpy(), atol=1e-6)
            np.testing.assert_allclose(mine["target"]["boxes"].numpy(), theirs["target"]["boxes"].numpy(), atol=1e-3)
            assert mine["target"]["labels"].tolist() == theirs["target"]["labels"].tolist()


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_flips_mirror_the_boxes(tmp_path: Path, fmt: str) -> None:
    folder = (write_coco_folder if fmt == "coco" else write_yolo_folder)(tmp_path / fmt, num_images=4, image_size=SIZE, num_val=2)
    dm = _build((_coco if fmt == "coco" else _yolo)(folder, hflip=1.0))
    plain = _build((_coco if fmt == "coco" else _yolo)(folder, hflip=0.0))
    for i in range(4):
        flipped, kept = dm.datasets["train"][i], plain.datasets["train"][i]
        x1, y1, x2, y2 = (folder.boxes["train"][i] * 0.5).T
        np.testing.assert_allclose(flipped["target"]["boxes"].numpy(), np.stack([32 - x2, y1, 32 - x1, y2], axis=1), atol=1e-3)
        np.testing.assert_allclose(flipped["input"].numpy(), kept["input"].numpy()[..., ::-1], atol=1e-6)
    val = dm.datasets["val"][0]["target"]["boxes"].numpy()  # validation images are never flipped
    np.testing.assert_allclose(val, folder.boxes["val"][0] * 0.5, atol=1e-3)


def test_coco_seeded_split_when_no_validation_file(tmp_path: Path) -> None:
    folder = write_coco_folder(tmp_path / "coco", num_images=20, image_size=SIZE)
    splits = []
    for seed in (0, 0, 1):
        dm = _build(_coco(folder, split_seed=seed, val_fraction=0.2, test_fraction=0.1))
        splits.append({k: list(dm.sample_ids[k]) for k in ("train", "val", "test")})
    assert {k: len(v) for k, v in splits[0].items()} == {"train": 14, "val": 4, "test": 2}
    assert sorted(sum(splits[0].values(), [])) == sorted(str(f) for f in folder.files["train"])
    assert splits[0] == splits[1] and splits[0] != splits[2]


def test_too_few_images_for_the_split_is_one_error(tmp_path: Path) -> None:
    folder = write_coco_folder(tmp_path / "coco", num_images=2, image_size=SIZE)
    plugin, cfg = _coco(folder, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DataError, match=r"2 usable image\(s\) leave no training images with data.val_fraction=0.5 and data.test_fraction=0.5"):
        plugin.build(cfg)


def test_yolo_without_val_splits_train(tmp_path: Path) -> None:
    folder = write_yolo_folder(tmp_path / "yolo", num_images=10, image_size=SIZE, num_val=0)
    dm = _build(_yolo(folder, val_fraction=0.3, test_fraction=0.0))
    assert len(dm.datasets["train"]) == 7 and len(dm.datasets["val"]) == 3


def test_yolo_txt_lists_and_polygon_lines(yolo_dir: DetectionFolder) -> None:
    assert yolo_dir.yaml is not None
    root = yolo_dir.root
    (root / "train.txt").write_text("".join(f"./images/train/{f.name}\n" for f in yolo_dir.files["train"][:5]))
    (root / "val.txt").write_text("".join(f"images/val/{f.name}\n" for f in yolo_dir.files["val"]))
    yolo_dir.yaml.write_text(f"path: {root}\ntrain: train.txt\nval: [val.txt]\nnames: [circle, square, triangle]\n")
    # a polygon (Ultralytics segmentation label) counts as its bounding box
    (root / "labels" / "train" / "0000.txt").write_text("2 0.25 0.25 0.75 0.25 0.5 0.75\n")
    dm = _build(_yolo(yolo_dir))
    assert len(dm.datasets["train"]) == 5 and len(dm.datasets["val"]) == 4
    target = dm.datasets["train"][0]["target"]
    np.testing.assert_allclose(target["boxes"].numpy(), [[8, 8, 24, 24]], atol=1e-4)
    assert target["labels"].tolist() == [2]


def test_images_without_annotations_are_background_images(coco_dir: DetectionFolder, yolo_dir: DetectionFolder) -> None:
    assert coco_dir.annotations is not None
    _edit_json(coco_dir.annotations, lambda d: d.__setitem__("annotations", [a for a in d["annotations"] if a["image_id"] != 2]))
    (yolo_dir.root / "labels" / "train" / "0001.txt").unlink()  # no label file
    (yolo_dir.root / "labels" / "train" / "0002.txt").write_text("\n")  # an empty one
    coco_dm, yolo_dm = _build(_coco(coco_dir)), _build(_yolo(yolo_dir))
    for dm, i in ((coco_dm, 1), (yolo_dm, 1), (yolo_dm, 2)):
        sample = dm.datasets["train"][i]
        assert sample["target"]["boxes"].shape == (0, 4) and sample["target"]["labels"].shape == (0,)
        assert sample["input"].shape == (3, 32, 32)
    assert len(coco_dm.datasets["train"]) == 12 and len(yolo_dm.datasets["train"]) == 12
    batch = next(iter(yolo_dm.train_dataloader()))
    assert len(batch["target"]) == len(batch["input"])


# ---------------------------------------------------------------- bad annotations
def _break_coco(folder: DetectionFolder) -> dict[str, Any]:
    """One annotation of each bad kind (and one just over the border, which is clipped); returns what was broken."""
    assert folder.annotations is not None
    data = json.loads(folder.annotations.read_text())
    anns = data["annotations"]
    anns[0]["category_id"] = 9
    anns[1]["bbox"][2] = 0
    anns[2]["bbox"] = [50, 10, 30, 10]  # x + w = 80 > 64
    anns[3]["bbox"] = [10, 10, -4, 5]
    anns[4]["bbox"] = [1, 2, 3]
    anns[5]["image_id"] = 777
    border = anns[6]
    border["bbox"] = [-0.5, 5, border["bbox"][2] + 0.5, 5]  # half a pixel outside: clipped, not reported
    data["images"].append({"id": 99, "file_name": "gone.png", "width": 64, "height": 64})
    data["annotations"].append({"id": 1000, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    data["annotations"].append({"id": 1001, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 1})  # crowd: left out quietly
    folder.annotations.write_text(json.dumps(data))
    ids = [a["id"] for a in anns[:7]]
    return {"ids": ids, "image_of": {a["id"]: a["image_id"] for a in anns}, "border_image": border["image_id"]}


def _coco_lines(broken: dict[str, Any], folder: DetectionFolder) -> list[str]:
    i = broken["ids"]
    return [f"annotation {i[0]}: category_id 9 is not a category (ids: 1, 2, 3)",
            f"annotation {i[1]}: zero-area box",
            f"annotation {i[2]}: box [50, 10, 30, 10] is outside image {broken['image_of'][i[2]]} (64x64)",
            f"annotation {i[3]}: negative width or height in box [10, 10, -4, 5]",
            f"annotation {i[4]}: bbox must be 4 numbers [x, y, width, height], got [1, 2, 3]",
            f"annotation {i[5]}: image_id 777 is not an image in the file",
            f"image 99: file {folder.root / 'images' / 'gone.png'} is missing"]


def test_coco_bad_annotations_are_listed_where_they_are(tmp_path: Path) -> None:
    folder = write_coco_folder(tmp_path / "coco", num_images=12, image_size=SIZE)
    broken = _break_coco(folder)
    plugin, cfg = _coco(folder)
    with pytest.raises(DataError) as info:
        plugin.build(cfg)
    message = str(info.value)
    assert message.startswith(f"data.annotations={folder.annotations}: 7 bad annotation(s):\n"), message
    for line in _coco_lines(broken, folder):
        assert f"\n  {line}" in message, (line, message)
    assert "data.on_bad=skip" in message and f"annotation {broken['ids'][6]}" not in message and "1001" not in message


def test_coco_bad_annotations_skipped_with_on_bad_skip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = write_coco_folder(tmp_path / "coco", num_images=12, image_size=SIZE)
    broken = _break_coco(folder)
    with caplog.at_level(logging.WARNING):
        dm = _build(_coco(folder, on_bad="skip", val_fraction=0.2, test_fraction=0.0))
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("lightplug") and "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 7 bad annotation(s)" in warnings[0], warnings
    records = {rid: ds.records[j] for split in ("train", "val") for ds in [dm.datasets[split]] for j, rid in enumerate(dm.sample_ids[split])}
    assert len(records) == 12 and not any("gone.png" in rid for rid in records)  # the missing image is left out
    written = sum(len(b) for b in folder.boxes["train"])
    assert sum(len(r.boxes) for r in records.values()) == written - 6  # the six bad ones (the missing image's annotation was never among the written)
    border = records[str(folder.root / "images" / f"{broken['border_image'] - 1:04d}.png")]
    assert any(b[0] == 0.0 and b[2] > 0 for b in border.boxes.tolist())  # clipped to the image


def test_coco_validation_file_must_share_the_categories(coco_dir: DetectionFolder) -> None:
    assert coco_dir.val_annotations is not None
    _edit_json(coco_dir.val_annotations, lambda d: d["categories"].__setitem__(0, {"id": 3, "name": "star"}))
    plugin, cfg = _coco(coco_dir)
    with pytest.raises(DataError, match="categories differ from the training file's: 3 is 'star' here but 'triangle' in training"):
        plugin.build(cfg)


def test_coco_problems_of_two_files_name_their_file(coco_dir: DetectionFolder) -> None:
    assert coco_dir.val_annotations is not None
    _edit_json(coco_dir.val_annotations, lambda d: d["annotations"][0].__setitem__("category_id", 5))
    plugin, cfg = _coco(coco_dir)
    with pytest.raises(DataError, match=r"val.json: annotation 1: category_id 5 is not a category"):
        plugin.build(cfg)


def _break_yolo(folder: DetectionFolder) -> list[str]:
    labels = folder.root / "labels" / "train"
    with (labels / "0003.txt").open("a") as f:
        f.write("7 0.5 0.5 0.1 0.1\n"  # unknown class
                "1 0.5 0.5\n"  # too few numbers
                "\n"
                "0 0.95 0.5 0.3 0.2\n"  # outside
                "2 0.5 0.5 0 0.2\n"  # zero area
                "a b c d e\n")  # not numbers
    (labels / "0004.txt").write_text("0 0.9995 0.5 0.002 0.2\n")  # a hair outside: clipped, not reported
    (folder.root / "images" / "train" / "0005.png").write_bytes(b"not a png")
    n = len((labels / "0003.txt").read_text().splitlines()) - 6
    return [f"labels/train/0003.txt:{n + 1}: class 7 is not in names (0..2)",
            f"labels/train/0003.txt:{n + 2}: expected 5 numbers (class cx cy w h), got 3",
            f"labels/train/0003.txt:{n + 4}: box outside the image",
            f"labels/train/0003.txt:{n + 5}: zero-area box",
            f"labels/train/0003.txt:{n + 6}: expected 5 numbers (class cx cy w h), got 'a b c d e'",
            "images/train/0005.png: not an image Pillow can read"]


def test_yolo_bad_labels_are_listed_by_file_and_line(yolo_dir: DetectionFolder) -> None:
    expected = _break_yolo(yolo_dir)
    plugin, cfg = _yolo(yolo_dir)
    with pytest.raises(DataError) as info:
        plugin.build(cfg)
    message = str(info.value)
    assert message.startswith(f"data.yaml={yolo_dir.yaml}: 6 bad annotation(s):"), message
    for line in expected:
        assert f"\n  {line}" in message, (line, message)
    assert "0004.txt" not in message


def test_yolo_bad_labels_skipped_with_on_bad_skip(yolo_dir: DetectionFolder, caplog: pytest.LogCaptureFixture) -> None:
    _break_yolo(yolo_dir)
    with caplog.at_level(logging.WARNING):
        dm = _build(_yolo(yolo_dir, on_bad="skip"))
    # lightplug's own records: another library imported in this worker may log its own "skipped"
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("lightplug") and "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 6 bad annotation(s)" in warnings[0]
    ids = dm.sample_ids["train"]
    assert len(ids) == 11 and not any(i.endswith("0005.png") for i in ids)  # the unreadable image is left out
    kept = dm.datasets["train"].records[ids.index(str(yolo_dir.files["train"][3]))]
    assert len(kept.boxes) == len(yolo_dir.boxes["train"][3])  # only the good lines
    edge = dm.datasets["train"].records[ids.index(str(yolo_dir.files["train"][4]))]
    assert edge.boxes.tolist()[0][2] == SIZE  # clipped to the image


def test_yolo_missing_image_in_a_txt_list(yolo_dir: DetectionFolder) -> None:
    assert yolo_dir.yaml is not None
    (yolo_dir.root / "val.txt").write_text("images/val/0012.png\n\nimages/val/nope.png\n")
    yolo_dir.yaml.write_text("train: images/train\nval: val.txt\nnames: [circle, square, triangle]\n")
    plugin, cfg = _yolo(yolo_dir)
    with pytest.raises(DataError, match=r"val.txt:3: image images/val/nope.png is missing"):
        plugin.build(cfg)
    assert len(_build(_yolo(yolo_dir, on_bad="skip")).datasets["val"]) == 1


def test_listing_stays_light() -> None:
    code = "import sys, lightplug.data.detection_plugins as m; m.Coco, m.Yolo; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- through the CLI
STUB = '''
from lightplug import ModelPlugin

class Det(ModelPlugin):
    """A stand-in detector: a 1x1 convolution predicting one whole-image box per image."""

    task = "detection"

    def build(self, cfg):
        from torch import nn
        return nn.Conv2d(3, 4, 1)

    def loss(self, outputs, batch):
        return outputs.pow(2).mean()

    def postprocess(self, outputs, batch=None, settings=None):
        import torch
        b, _, h, w = outputs.shape
        return [{"boxes": torch.tensor([[0.0, 0.0, float(w), float(h)]]), "scores": torch.tensor([0.5]),
                 "labels": torch.zeros(1, dtype=torch.int64)} for _ in range(b)]
'''


@pytest.fixture
def stub_env(site_env: tuple[Path, dict[str, str]]) -> dict[str, str]:
    """A throw-away detection model, ``model=det_stub``: the data is what these tests exercise."""
    site, env = site_env
    make_dist(site, "lp-det-stub", entry_points={"lightplug.models": {"det_stub": "lp_det_stub:Det"}}, modules={"lp_det_stub.py": STUB})
    return env


def _no_traceback(out: Any) -> None:
    assert "Traceback" not in out.stderr + out.stdout, out.stderr


@pytest.mark.slow
def test_cli_lists_bad_coco_annotations_and_exits_2(tmp_path: Path, stub_env: dict[str, str]) -> None:
    folder = write_coco_folder(tmp_path / "coco", num_images=12, image_size=SIZE)
    broken = _break_coco(folder)
    out = run_cli("train", "model=det_stub", *folder.overrides, "data.num_workers=0", cwd=tmp_path, env=stub_env)
    assert out.returncode == 2, out.stderr
    _no_traceback(out)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "7 bad annotation(s)" in errors[0], out.stderr
    for line in _coco_lines(broken, folder):
        assert f"\n  {line}" in out.stderr, (line, out.stderr)  # each on its own line
    assert out.stderr.rstrip().splitlines()[-1] == "fix them, or train on the rest with data.on_bad=skip"  # on its own line: it is about all of them


@pytest.mark.slow
def test_cli_lists_bad_yolo_labels_and_exits_2(tmp_path: Path, stub_env: dict[str, str]) -> None:
    folder = write_yolo_folder(tmp_path / "yolo", num_images=12, image_size=SIZE)
    expected = _break_yolo(folder)
    out = run_cli("train", "model=det_stub", *folder.overrides, "data.num_workers=0", cwd=tmp_path, env=stub_env)
    assert out.returncode == 2, out.stderr
    _no_traceback(out)
    assert "6 bad annotation(s)" in out.stderr and all(line in out.stderr for line in expected), out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_cli_trains_on_the_rest_with_on_bad_skip(tmp_path: Path, stub_env: dict[str, str], fmt: str) -> None:
    if fmt == "coco":
        folder = write_coco_folder(tmp_path / "data", num_images=16, image_size=SIZE)
        _break_coco(folder)
        count = 7
    else:
        folder = write_yolo_folder(tmp_path / "data", num_images=16, image_size=SIZE)
        _break_yolo(folder)
        count = 6
    out = run_cli("train", "model=det_stub", *folder.overrides, "data.on_bad=skip", "data.num_workers=0", "data.image_size=32",
                  "trainer.max_epochs=1", *QUIET, cwd=tmp_path, env=stub_env)
    assert out.returncode == 0, out.stderr
    output = out.stdout + out.stderr
    assert output.count(f"skipped {count} bad annotation(s)") == 1, output
    metrics = next((tmp_path / "outputs").rglob("metrics.csv"))
    with metrics.open() as f:
        columns = next(csv.reader(f))
    assert "val/map_50" in columns


# ---------------------------------------------------------------- with a real detector, once one is installed
def _detector() -> str | None:
    from importlib.metadata import entry_points

    names = {e.name for e in entry_points(group="lightplug.models")}
    return next((n for n in ("fcos", "yolo") if n in names), None)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_a_detector_trains_one_epoch_on_each_format(tmp_path: Path, fmt: str) -> None:
    model = _detector()
    if model is None:
        pytest.skip("no detection model plugin (fcos or yolo) is installed")
    writer = write_coco_folder if fmt == "coco" else write_yolo_folder
    folder = writer(tmp_path / "data", num_images=64, image_size=SIZE)
    out = run_cli("train", f"model={model}", *folder.overrides, "data.image_size=64", "data.num_workers=0", "data.batch_size=16",
                  "trainer.max_epochs=1", *QUIET, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    with next((tmp_path / "outputs").rglob("metrics.csv")).open() as f:
        rows = list(csv.DictReader(f))
    assert any(row.get("val/map_50") not in (None, "") for row in rows)
