"""The detection task in the core: box arithmetic, the shapes data in detection form, mAP, the files a run
writes (per-image results, per-class AP, PR curve), `results --worst` with boxes, `predict` with one row per
box and drawn copies, and a broken postprocess named before training. The tiny FCOS plugin is a local file
(tests/detection_plugins); the real detectors have their own packages and tests."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import run_cli

PLUGINS = str(Path(__file__).parent / "detection_plugins")
ENV = {"LIGHTPLUG_PLUGIN_PATH": PLUGINS}
QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


# ------------------------------------------------------------------ numpy box arithmetic
def test_iou_nms_and_raw_yolo_decoding() -> None:
    from lightplug.evaluation.boxes import box_iou, decode_raw, nms

    a = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=np.float32)
    assert box_iou(a, a).diagonal().tolist() == [1.0, 1.0, 1.0]
    assert box_iou(a[:1], a[1:2])[0, 0] == pytest.approx(50 / 150)
    scores = np.array([0.9, 0.8, 0.7])
    assert nms(a, scores, np.array([0, 0, 0]), iou=0.3, max_det=10).tolist() == [0, 2]  # box 1 overlaps box 0 by 1/3
    assert nms(a, scores, np.array([0, 1, 0]), iou=0.3, max_det=10).tolist() == [0, 1, 2]  # other class: kept
    assert nms(a, scores, np.array([0, 1, 2]), iou=0.3, max_det=2).tolist() == [0, 1]
    # one image, 2 classes, 3 candidates as cx, cy, w, h + class scores
    raw = np.array([[[5, 6, 25], [5, 5, 25], [10, 10, 10], [10, 10, 10], [0.9, 0.85, 0.1], [0.05, 0.1, 0.6]]], dtype=np.float32)
    (det,) = decode_raw(raw, "yolo", conf=0.25, iou=0.5, max_det=100)
    assert det["labels"].tolist() == [0, 1] and det["scores"].tolist() == pytest.approx([0.9, 0.6])
    assert det["boxes"].tolist() == [[0, 0, 10, 10], [20, 20, 30, 30]]


def test_image_ap50_and_matches() -> None:
    from lightplug.evaluation.boxes import image_ap50, matched_boxes

    true = {"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), "labels": np.array([0, 1])}
    perfect = {"boxes": true["boxes"], "scores": np.array([0.9, 0.8]), "labels": true["labels"]}
    assert image_ap50(perfect, true) == 1.0 and matched_boxes(perfect, true) == 2
    wrong_label = {**perfect, "labels": np.array([1, 0])}
    assert image_ap50(wrong_label, true) == 0.0 and matched_boxes(wrong_label, true) == 0
    half = {"boxes": np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), "scores": np.array([0.9, 0.8]), "labels": np.array([0, 1])}
    assert image_ap50(half, true) == pytest.approx(51 / 101) and matched_boxes(half, true) == 1
    late_hit = {"boxes": np.array([[50, 50, 60, 60], [0, 0, 10, 10]]), "scores": np.array([0.9, 0.8]), "labels": np.array([0, 0])}
    assert 0 < image_ap50(late_hit, true) < image_ap50(half, true)  # a false positive ranked first costs precision
    nothing = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0)}
    assert image_ap50({"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)}, nothing) == 1.0
    assert image_ap50(perfect, nothing) == 0.0  # confident boxes on an empty image


def test_map_summary_has_per_class_ap_and_curves() -> None:
    from lightplug.metrics import detection_metric, summarise_detection

    metric = detection_metric()
    target = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([0, 2])}]
    preds = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 31]]), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 2])}]
    metric.update(preds, target)
    scalars, summary = summarise_detection(metric.compute(), "val")
    assert set(scalars) == {"val/map", "val/map_50", "val/map_75", "val/mar_100"}
    assert float(scalars["val/map_50"]) == pytest.approx(1.0)
    assert summary["classes"] == [0, 2] and summary["ap50"] == pytest.approx([1.0, 1.0])
    assert len(summary["precision50"][0]) == 101 and len(summary["recall"]) == 101


def test_the_core_never_imports_a_detection_library() -> None:
    """Ultralytics is AGPL-3.0 and heavy: only its plugin package may import it (listing is checked in test_registry)."""
    import ast

    import lightplug

    offenders = []
    for path in Path(lightplug.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("ultralytics", "lightplug_ultralytics")]
    assert offenders == []


# ------------------------------------------------------------------ data
def _shapes_cfg(**kw: object) -> SimpleNamespace:
    base = dict(task="detection", num_samples=40, image_size=48, max_shapes=3, min_size=0.2, max_size=0.45, noise=0.05, seed=0,
                val_fraction=0.25, test_fraction=0.0, split_seed=0, batch_size=8, num_workers=0, pin_memory=False,
                persistent_workers=False, hflip=0.0, scale_jitter=0.0, color_jitter=0.0)
    return SimpleNamespace(**{**base, **kw})


def test_shapes_detection_batches_hold_a_list_of_boxes_per_image() -> None:
    from lightplug.data.shapes import Shapes
    from lightplug.data.shapes_data import generate_shapes, shapes_datamodule

    facts = Shapes().facts(_shapes_cfg())
    assert facts["task"] == "detection" and facts["num_classes"] == 3 and facts["label_names"] == ["circle", "square", "triangle"]
    dm = shapes_datamodule(_shapes_cfg())
    batch = next(iter(dm.val_dataloader()))
    assert batch["input"].shape == (8, 3, 48, 48) and isinstance(batch["target"], list) and len(batch["target"]) == 8
    samples = generate_shapes(40, 48, seed=0)
    for i, t in zip(batch["index"].tolist(), batch["target"]):
        source = samples[int(dm.sample_ids["val"][i])]
        assert torch.equal(t["boxes"], torch.as_tensor(source.boxes)) and t["labels"].tolist() == (source.labels - 1).tolist()
    # a flip moves every box to the mirrored place
    flipped = shapes_datamodule(_shapes_cfg(hflip=1.0))
    a, b = dm.datasets["train"][0]["target"]["boxes"], flipped.datasets["train"][0]["target"]["boxes"]
    assert torch.allclose(b[:, [2, 0]], 48 - a[:, [0, 2]])


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("det") / "run"
    r = run_cli("train", "model=tiny_fcos", "data=shapes", "data.task=detection", "data.image_size=48", "data.num_samples=160",
                "data.test_fraction=0", "trainer.max_epochs=2", f"hydra.run.dir={run}", *QUIET, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


@pytest.mark.slow
def test_a_detection_run_writes_map_per_class_ap_pr_curve_and_per_image_rows(trained: Path) -> None:
    rows = list(csv.DictReader((trained / "metrics.csv").open()))
    assert {"val/map", "val/map_50", "val/map_75", "train/loss_classification", "train/loss_bbox_regression"} <= set(rows[0])
    assert sum(1 for r in rows if r.get("val/map_50")) == 2
    per_class = list(csv.DictReader((trained / "per_class_ap.csv").open()))
    assert [r["class"] for r in per_class] == ["circle", "square", "triangle"] * 2 and [r["epoch"] for r in per_class] == ["0"] * 3 + ["1"] * 3
    assert all(0 <= float(r["ap50"]) <= 1 for r in per_class)
    assert (trained / "pr_curve.png").stat().st_size > 5000
    images = list(csv.DictReader((trained / "val_predictions.csv").open()))
    assert list(images[0]) == ["id", "index", "true_boxes", "pred_boxes", "matched", "ap50", "epoch"]
    assert len(images) == 32 and all(int(r["matched"]) <= int(r["true_boxes"]) for r in images)
    assert sum(int(r["true_boxes"]) for r in images) >= 32


@pytest.mark.slow
def test_results_worst_draws_true_and_predicted_boxes(trained: Path) -> None:
    r = run_cli("results", str(trained), "--worst", "6", "--model", "tiny_fcos", env=ENV)  # a local plugin: named
    assert r.returncode == 0, r.stderr[-2000:]
    assert "true boxes found" in r.stdout and "worst.png" in r.stdout
    from PIL import Image

    with Image.open(trained / "worst.png") as img:
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    green = ((pixels[:, 1] > 150) & (pixels[:, 0] < 80) & (pixels[:, 2] < 130)).sum()  # true boxes: #22c55e
    assert green > 200


@pytest.mark.slow
def test_predict_writes_a_row_per_box_in_original_pixels_and_draws_them(trained: Path, tmp_path: Path) -> None:
    from PIL import Image

    from lightplug.data.shapes_data import generate_shapes

    folder = tmp_path / "images"
    folder.mkdir()
    for i, s in enumerate(generate_shapes(3, 96, seed=9)):
        Image.fromarray((s.image * 255).astype(np.uint8)).resize((144, 96)).save(folder / f"img{i}.png")  # not the training size
    (folder / "notes.npy").write_bytes(b"not an image")
    out = tmp_path / "boxes.csv"
    r = run_cli("predict", f"run={trained}", "model=tiny_fcos", f"input={folder}", f"output={out}", "conf=0.05", "draw=true", env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "notes.npy" in r.stderr and "boxes of 3 images" in r.stdout
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["file", "label", "score", "x1", "y1", "x2", "y2"] and rows
    assert {r["label"] for r in rows} <= {"circle", "square", "triangle"}
    assert all(0 <= float(r["x1"]) <= float(r["x2"]) <= 144 and 0 <= float(r["y1"]) <= float(r["y2"]) <= 96 for r in rows)
    assert all(float(r["score"]) >= 0.05 for r in rows)
    drawn = sorted(p.name for p in (tmp_path / "boxes_boxes").iterdir())
    assert drawn == ["img0.png", "img1.png", "img2.png"]
    with Image.open(tmp_path / "boxes_boxes" / "img0.png") as img:
        assert img.size == (144, 96)
    bad = run_cli("predict", f"run={trained}", f"input={folder}", "conf=2", "max_det=0", env=ENV)
    assert bad.returncode == 2 and "conf=2" in bad.stderr and "max_det=0" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_check_plugin_knows_the_detection_contract() -> None:
    good = run_cli("check-plugin", "tiny_fcos", env=ENV)
    assert good.returncode == 0, good.stdout[-2000:]
    assert "postprocess -> 4 dicts of boxes/scores/labels" in good.stdout
    bad = run_cli("check-plugin", "bad_boxes", env=ENV)
    assert bad.returncode != 0 and "postprocess returned Tensor" in bad.stdout


def test_a_postprocess_that_returns_no_boxes_fails_before_training(tmp_path: Path) -> None:
    r = run_cli("train", "model=bad_boxes", "data=shapes", "data.task=detection", "data.image_size=32", "data.num_samples=40",
                f"hydra.run.dir={tmp_path / 'run'}", *QUIET, env=ENV)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "postprocess returned Tensor" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_detection_settings_are_validated_before_torch() -> None:
    r = run_cli("train", "model=tiny_fcos", "data=shapes", "data.task=detection", "detection.iou=0", "detection.conf=1.5", env=ENV)
    assert r.returncode == 2 and "detection.iou=0" in r.stderr and "detection.conf=1.5" in r.stderr


@pytest.mark.slow
def test_yolo_onnx_predict_gives_the_checkpoints_boxes_without_torch(tmp_path: Path) -> None:
    """The YOLO plugin exports its raw head; `predict model=FILE.onnx` decodes it in numpy (no torch, no
    ultralytics) and finds the same boxes as the checkpoint: same labels, corners within 1 pixel."""
    from PIL import Image

    from lightplug.data.shapes_data import generate_shapes

    run = tmp_path / "run"
    r = run_cli("train", "model=yolo", "data=shapes", "data.task=detection", "data.image_size=64", "data.num_samples=256", "trainer.max_epochs=2",
                "export.formats=[onnx]", "export.benchmark=false", f"hydra.run.dir={run}", *QUIET)
    assert r.returncode == 0, r.stderr[-3000:]
    onnx_file = run / "export" / "best.onnx"
    assert onnx_file.is_file()
    folder = tmp_path / "images"
    folder.mkdir()
    for i, s in enumerate(generate_shapes(4, 64, seed=11)):
        img = Image.fromarray((s.image * 255).astype(np.uint8))
        (img if i % 2 else img.resize((96, 80))).save(folder / f"img{i}.png")
    common = [f"input={folder}", "conf=0.003", "max_det=30"]  # a 2-epoch model is not confident yet
    torch_rows = run_cli("predict", f"run={run}", *common, f"output={tmp_path / 'ckpt.csv'}")
    assert torch_rows.returncode == 0, torch_rows.stderr[-2000:]
    code = ("import sys, runpy; sys.argv = ['lightplug', 'predict', " + ", ".join(repr(a) for a in [f"model={onnx_file}", *common,
            f"output={tmp_path / 'onnx.csv'}"]) + "]\n"
            "from lightplug.cli.main import main\nrc = main(sys.argv[1:])\n"
            "print('HEAVY', sorted(m for m in ('torch', 'lightning', 'ultralytics') if m in sys.modules)); sys.exit(rc)")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout

    def boxes(path: Path) -> dict[str, list[tuple[str, float, np.ndarray]]]:
        found: dict[str, list[tuple[str, float, np.ndarray]]] = {}
        for row in csv.DictReader(path.open()):
            found.setdefault(row["file"], []).append((row["label"], float(row["score"]), np.array([float(row[k]) for k in ("x1", "y1", "x2", "y2")])))
        return found

    a, b = boxes(tmp_path / "ckpt.csv"), boxes(tmp_path / "onnx.csv")
    assert sum(len(v) for v in a.values()) >= 4, "the model found too few boxes to compare"
    for mine, theirs in ((a, b), (b, a)):
        for file, rows in mine.items():
            for label, score, box in rows[:20]:  # a box ranked near max_det=30 may fall on either side of it
                if score < 0.004:  # and so may a box this close to conf
                    continue
                assert any(lab == label and np.abs(box - other).max() <= 1.0 for lab, _, other in theirs.get(file, [])), (file, label, score, box)


@pytest.mark.slow
def test_export_of_a_detector_without_export_module_says_what_is_missing(trained: Path) -> None:
    r = run_cli("export", f"run={trained}", "model=tiny_fcos", "format=onnx", env=ENV)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "without an export_module hook" in r.stderr and "Traceback" not in r.stderr
    assert not list((trained / "checkpoints").glob("*.onnx"))


def test_export_takes_a_run_folder_as_test_and_predict_do(tmp_path: Path) -> None:
    from lightplug.cli.export import parse_args
    from lightplug.errors import CheckpointError

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"x")
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert parse_args([f"run={tmp_path}"])["ckpt"] == str(tmp_path / "checkpoints" / "best.ckpt")
    assert parse_args([f"run={tmp_path}", "ckpt=last"])["ckpt"] == str(tmp_path / "checkpoints" / "last.ckpt")
    with pytest.raises(CheckpointError, match="no such run folder"):
        parse_args([f"run={tmp_path / 'nope'}"])
