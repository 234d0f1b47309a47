"""Segmentation end to end: the seeded `shapes` data (images, masks, boxes), the core's segmentation
metrics, per-sample results with image IoU, and `test`, `predict` and `results` on a U-Net run."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # small convolutions on a shared 2-core CPU: one thread is several times faster


def _shapes_cfg(**values: object) -> object:
    from lightplug.data.shapes import ShapesConfig

    return ShapesConfig(**values)  # type: ignore[arg-type]


def test_shapes_are_seeded_per_sample_and_masks_match_boxes() -> None:
    from lightplug.data.shapes_data import generate_shapes

    a = generate_shapes(6, 32, seed=3)
    b = generate_shapes(2, 32, seed=3, first=4)
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask) for x, y in zip(a[4:], b))
    assert not np.array_equal(a[0].image, generate_shapes(1, 32, seed=4)[0].image)
    for s in a:
        assert s.image.shape == (32, 32, 3) and s.image.dtype == np.float32 and 0 <= s.image.min() and s.image.max() <= 1
        assert set(np.unique(s.mask)) <= {0, 1, 2, 3} and (s.mask > 0).any()
        assert len(s.boxes) == len(s.labels) >= 1
        for (x0, y0, x1, y1), label in zip(s.boxes.astype(int), s.labels):
            assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
            assert (s.mask[y0:y1, x0:x1] == label).any()  # each box holds pixels of its class
        assert set(s.labels.tolist()) == set(np.unique(s.mask).tolist()) - {0}


def test_shapes_facts_and_datamodule_follow_the_contract() -> None:
    from lightplug.data.shapes import Shapes

    cfg = _shapes_cfg(num_samples=50, image_size=16, val_fraction=0.2, test_fraction=0.2, batch_size=8)
    facts = Shapes().facts(cfg)
    assert facts == {"task": "segmentation", "num_classes": 4, "num_outputs": 4, "in_channels": 3, "image_size": 16, "in_features": 768,
                     "label_names": ["background", "circle", "square", "triangle"]}
    dm = Shapes().build(cfg)
    assert {k: len(v) for k, v in dm.datasets.items()} == {"val": 10, "test": 10, "train": 30}
    batch = next(iter(dm.val_dataloader()))
    assert batch["input"].shape == (8, 3, 16, 16) and batch["target"].shape == (8, 16, 16) and batch["target"].dtype == torch.int64
    assert batch["index"].tolist() == list(range(8))  # the position in the split
    assert -1.0 <= float(batch["input"].min()) and float(batch["input"].max()) <= 1.0
    ids = dm.sample_ids["val"] + dm.sample_ids["test"] + dm.sample_ids["train"]
    assert sorted(map(int, ids)) == list(range(50))
    assert dm.preprocessing == {"layout": "image", "in_channels": 3, "image_size": 16, "mean": [0.5] * 3, "std": [0.5] * 3}


def test_segmentation_metrics_and_image_iou_on_known_masks() -> None:
    from lightplug.evaluation.per_sample import image_iou
    from lightplug.metrics import metric_inputs, task_metrics

    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[:, :2, :2] = 1  # a 2x2 object of class 1 in both images
    logits = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 5
    metrics = task_metrics("segmentation", 2)
    metrics.update(*metric_inputs("segmentation", logits, target))
    assert {k: round(float(v), 4) for k, v in metrics.compute().items()} == {"miou": 1.0, "pixel_acc": 1.0, "dice": 1.0}
    wrong = target.clone()
    wrong[1, 0, 0] = 0  # one pixel of the object missed in image 1
    assert image_iou(wrong, target, 2).tolist() == pytest.approx([1.0, (3 / 4 + 12 / 13) / 2])


def test_bad_shapes_config_is_refused_before_training() -> None:
    r = run_cli("train", "model=unet", "data=shapes", "data.image_size=4")
    assert r.returncode == 2, r.stderr
    assert "data.image_size=4: below the minimum 8" in r.stderr
    r = run_cli("train", "model=unet", "data=shapes", "data.min_size=0.5", "data.max_size=0.3")
    assert r.returncode == 2, r.stderr
    assert "data.min_size=0.5 is above data.max_size=0.3" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short U-Net run on small shapes (quality is not the point here: the files and their numbers are)."""
    run = tmp_path_factory.mktemp("seg") / "run"
    r = run_cli("train", "model=unet", "data=shapes", "model.width=4", "data.num_samples=160", "data.image_size=16", "data.batch_size=16",
                "trainer.max_epochs=2", f"hydra.run.dir={run}", *QUIET, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


def _last_val(run: Path) -> dict[str, float]:
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/miou")]
    return {k: float(v) for k, v in rows[-1].items() if v and k.startswith("val/")}


@pytest.mark.slow
def test_segmentation_run_logs_metrics_and_per_image_results(seg_run: Path) -> None:
    val = _last_val(seg_run)
    assert {"val/miou", "val/dice", "val/pixel_acc", "val/loss"} <= set(val)
    rows = list(csv.DictReader((seg_run / "val_predictions.csv").open()))
    assert len(rows) == 32 and list(rows[0]) == ["id", "index", "target", "prediction", "confidence", "loss", "correct", "epoch", "iou", "pixel_acc"]
    val_rows = [r for r in csv.DictReader((seg_run / "metrics.csv").open()) if r.get("val/miou")]
    best = max(val_rows, key=lambda r: float(r["val/miou"]))
    assert {r["epoch"] for r in rows} == {best["epoch"]}  # the best epoch's results
    assert json.loads((seg_run / "summary.json").read_text())["best"] == pytest.approx(float(best["val/miou"]))
    # every image has the same number of pixels, so the mean per-image pixel accuracy is the micro pixel accuracy
    assert np.mean([float(r["pixel_acc"]) for r in rows]) == pytest.approx(float(best["val/pixel_acc"]), abs=1e-5)
    assert np.mean([float(r["loss"]) for r in rows]) == pytest.approx(float(best["val/loss"]), rel=1e-4)
    assert all(0 <= float(r["iou"]) <= 1 and (r["correct"] == "True") == (float(r["iou"]) >= 0.5) for r in rows)
    assert not (seg_run / "confusion_matrix.csv").exists()  # classification only


@pytest.mark.slow
def test_test_predict_and_results_on_a_segmentation_run(seg_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    from lightplug.data.shapes_data import generate_shapes

    r = run_cli("test", f"run={seg_run}", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    report = json.loads((seg_run / "checkpoints" / "test_metrics.json").read_text())
    assert report["num_samples"] == 32 and set(report["metrics"]) == {"test/miou", "test/dice", "test/pixel_acc", "test/loss"}

    images = tmp_path / "images"
    images.mkdir()
    for i, s in enumerate(generate_shapes(2, 20, seed=9)):  # another size: resized to 16 like in training
        Image.fromarray((s.image * 255).round().astype(np.uint8)).save(images / f"s{i}.png")
    out = tmp_path / "pred" / "masks.csv"
    r = run_cli("predict", f"ckpt={seg_run / 'checkpoints' / 'best.ckpt'}", f"input={images}", f"output={out}", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["file"]).name for r in rows] == ["s0.png", "s1.png"]
    for row in rows:
        mask = np.asarray(Image.open(row["mask"]))
        assert mask.shape == (16, 16) and mask.max() <= 3
        shares = [float(row[f"fraction_{n}"]) for n in ("background", "circle", "square", "triangle")]
        assert sum(shares) == pytest.approx(1.0, abs=1e-3)
        assert shares == pytest.approx(list(np.bincount(mask.ravel(), minlength=4) / 256), abs=1e-4)

    started = time.perf_counter()
    r = run_cli("results", str(seg_run), "--worst", "3")
    assert r.returncode == 0, r.stderr
    assert "iou" in r.stdout and (seg_run / "worst.png").is_file()
    assert Image.open(seg_run / "worst.png").size[0] > 300  # three panels per row: image, true mask, predicted mask
    assert time.perf_counter() - started < 60
