"""The torchvision detectors: losses in training (with and without boxes), label 0 as a real class, no
second normalisation, boxes in input pixels, postprocess with the run's settings, the export tensor, and
(slow) that FCOS learns `data=shapes` through `lightplug train`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from lightplug import DetectionSettings

SMALL = {"backbone": "mobilenet_v3_small", "fpn_channels": 32, "head_convs": 1, "image_size": 64, "num_classes": 3}
KINDS = ("fcos", "retinanet")


def _net(kind: str, **kw: Any) -> Any:
    import lightplug

    torch.manual_seed(0)
    return lightplug.build_model(kind, **{**SMALL, **kw})


def _target(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64)}


def test_importing_the_plugin_loads_neither_torch_nor_torchvision() -> None:
    code = "import sys, lightplug_tvdet; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", KINDS)
def test_training_returns_named_losses_with_zero_and_several_boxes(kind: str) -> None:
    net = _net(kind).train()
    x = torch.randn(3, 3, 64, 64)
    targets = [_target([], []),  # no object in this image
               _target([[4, 4, 30, 30], [30, 10, 60, 40], [10, 40, 30, 62]], [0, 1, 2]),
               _target([[0, 0, 64, 64]], [2])]
    losses = net(x, targets)
    want = {"classification", "bbox_regression"} | ({"bbox_ctrness"} if kind == "fcos" else set())
    assert set(losses) == want
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    # a batch without any box trains too (only the classification loss then pushes scores down)
    net.zero_grad()
    empty = net(x[:2], [_target([], []), {"boxes": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}])
    assert all(torch.isfinite(v) for v in empty.values()) and float(empty["classification"]) > 0
    sum(empty.values()).backward()


@pytest.mark.parametrize("kind", KINDS)
def test_label_0_is_an_object_class_not_background(kind: str) -> None:
    """torchvision's FCOS and RetinaNet one-hot the label itself (sigmoid focal loss, no background column):
    scoring class c everywhere the box is costs least when c is the box's label, 0 included."""
    from torchvision.models.detection.image_list import ImageList

    net = _net(kind).train()
    x = torch.zeros(1, 3, 64, 64)
    features = list(net.backbone(x).values())
    head = {k: v.detach() for k, v in net.head(features).items()}
    anchors = net.anchor_generator(ImageList(x, [(64, 64)]), features)
    sizes = [f.shape[-2] * f.shape[-1] * (len(anchors[0]) // sum(g.shape[-2] * g.shape[-1] for g in features)) for f in features]
    target = [_target([[8, 8, 40, 40]], [0])]

    def cls_loss(col: int) -> float:
        logits = torch.full_like(head["cls_logits"], -8.0)
        logits[..., col] = 8.0
        outs = {**head, "cls_logits": logits}
        loss = net.compute_loss(target, outs, anchors, sizes) if kind == "fcos" else net.compute_loss(target, outs, anchors)
        return float(loss["classification"])

    # wrong classes cost the same; the right one, label 0, costs less
    assert cls_loss(0) < cls_loss(1) == pytest.approx(cls_loss(2))
    assert net.head.classification_head.num_classes == 3  # no background logit


@pytest.mark.parametrize("kind", KINDS)
def test_the_input_is_neither_renormalised_nor_resized(kind: str) -> None:
    net = _net(kind).eval()
    t = net.transform
    assert (t.image_mean, t.image_std, t.min_size, t.max_size) == ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], (64,), 64)
    x = torch.randn(2, 3, 64, 64)
    images, _ = t(list(x))
    assert images.image_sizes == [(64, 64), (64, 64)] and torch.equal(images.tensors, x)
    assert (net.score_thresh, net.nms_thresh) == (0.0, 1.0)  # postprocess decides, with the run's settings


@pytest.mark.parametrize("kind", KINDS)
def test_eval_outputs_postprocess_to_boxes_in_input_pixels(kind: str) -> None:
    net = _net(kind).eval()
    plugin = _plugin(kind)
    with torch.no_grad():
        outputs = net(torch.randn(2, 3, 64, 64), [_target([[1, 1, 5, 5]], [0])] * 2)  # targets are ignored in eval
    dets = plugin.postprocess(outputs, None, DetectionSettings(conf=0.0, iou=0.6, max_det=50))
    assert len(dets) == 2
    for d in dets:
        assert set(d) == {"boxes", "scores", "labels"}
        assert d["boxes"].dtype == torch.float32 and d["labels"].dtype == torch.int64 and d["scores"].dtype == torch.float32
        assert 0 < len(d["boxes"]) <= 50 and d["boxes"].shape == (len(d["scores"]), 4)
        assert d["boxes"].min() >= 0 and d["boxes"].max() <= 64
        assert set(d["labels"].tolist()) <= {0, 1, 2}
        assert torch.all(d["scores"][:-1] >= d["scores"][1:])


def _plugin(kind: str) -> Any:
    from lightplug_tvdet import Fcos, RetinaNet

    return (Fcos if kind == "fcos" else RetinaNet)()


def test_postprocess_applies_conf_classwise_nms_and_max_det() -> None:
    plugin = _plugin("fcos")
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], dtype=torch.float32)
    raw = [{"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7, 0.3, 0.05]), "labels": torch.tensor([0, 0, 1, 0, 2])},
           {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}]
    out = plugin.postprocess(raw, None, DetectionSettings(conf=0.1, iou=0.5, max_det=100))
    # box 1 overlaps box 0 of the same class (IoU 0.82): gone; box 2 is another class: kept; 0.05 < conf: gone
    assert out[0]["scores"].tolist() == pytest.approx([0.9, 0.7, 0.3]) and out[0]["labels"].tolist() == [0, 1, 0]
    assert out[1]["boxes"].shape == (0, 4) and out[1]["labels"].dtype == torch.int64
    assert len(plugin.postprocess(raw, None, DetectionSettings(conf=0.1, iou=0.5, max_det=2))[0]["boxes"]) == 2
    assert len(plugin.postprocess(raw, None, DetectionSettings(conf=0.0, iou=0.9, max_det=100))[0]["boxes"]) == 5
    assert len(plugin.postprocess(raw)[0]["boxes"]) == 4  # settings=None: the defaults (conf 0.001, iou 0.6)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_trained_detector_finds_a_label_0_box_in_input_pixels(kind: str) -> None:
    """Overfit one 64 px image: the best detection is the box, class 0, where it is in the input tensor."""
    torch.manual_seed(0)
    net = _net(kind).train()
    x = torch.full((2, 3, 64, 64), -1.0)
    x[0, :, 10:40, 20:44] = 1.0  # a bright rectangle: x 20..44, y 10..40
    x[1, :, 30:60, 4:28] = 1.0
    targets = [_target([[20, 10, 44, 40]], [0]), _target([[4, 30, 28, 60]], [0])]
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(60):
        loss = sum(net(x, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        dets = _plugin(kind).postprocess(net(x), None, DetectionSettings(conf=0.05, iou=0.5, max_det=10))
    from torchvision.ops import box_iou

    for d, t in zip(dets, targets, strict=True):
        assert len(d["labels"]) and int(d["labels"][0]) == 0
        assert float(box_iou(d["boxes"][:1], t["boxes"])) > 0.6, (d["boxes"][:1], t["boxes"])


@pytest.mark.parametrize("kind", KINDS)
def test_the_export_module_gives_the_yolo_layout_of_the_same_detections(kind: str) -> None:
    net = _net(kind).eval()
    plugin = _plugin(kind)
    assert plugin.raw_output_format == "yolo"
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        raw = plugin.export_module(net)(x)
        dets = plugin.postprocess(net(x), None, DetectionSettings(conf=0.0, iou=1.0, max_det=10**6))
    assert raw.shape[:2] == (3, 4 + 3)
    for b in range(3):
        scores, labels = raw[b, 4:].max(dim=0)
        best = int(scores.argmax())
        cx, cy, w, h = raw[b, :4, best].tolist()
        assert float(scores[best]) == pytest.approx(float(dets[b]["scores"][0]), abs=1e-5)
        assert int(labels[best]) == int(dets[b]["labels"][0])
        assert [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] == pytest.approx(dets[b]["boxes"][0].tolist(), abs=1e-3)


def test_config_choices_presets_and_checks() -> None:
    from lightplug_tvdet import Fcos, RetinaNet, RetinaNetConfig

    import lightplug

    def count(kind: str, **kw: Any) -> int:
        return sum(p.numel() for p in lightplug.build_model(kind, **kw).parameters())

    assert count("fcos", backbone="mobilenet_v3_small") < count("fcos", backbone="resnet18")
    assert count("fcos", fpn_channels=32, head_convs=1) < count("fcos", fpn_channels=64, head_convs=2)
    assert set(Fcos.presets) == set(RetinaNet.presets) == {"easy", "medium"}
    assert Fcos.task == RetinaNet.task == "detection" and Fcos.takes_targets
    with pytest.raises(lightplug.ConfigError, match="model.backbone"):
        lightplug.build_model("fcos", backbone="resnet50")
    bad = RetinaNetConfig(fg_iou_thresh=0.4, bg_iou_thresh=0.5)  # check() runs at `lightplug train` / check-plugin
    assert RetinaNet(bad).check(bad) == ["model.bg_iou_thresh=0.5: above model.fg_iou_thresh=0.4"]
    gray = lightplug.build_model("fcos", in_channels=1, image_size=64).eval()
    with torch.no_grad():
        assert len(gray(torch.randn(1, 1, 64, 64))) == 1


QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


@pytest.mark.slow
def test_fcos_learns_shapes_through_lightplug_train(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["model=fcos", "data=shapes", "data.task=detection", "data.image_size=64", "data.num_samples=2500", "data.val_fraction=0.1",
            "data.test_fraction=0.02", "data.batch_size=16", "optimizer.lr=2e-3", "trainer.max_epochs=2", f"hydra.run.dir={run}", *QUIET]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "lightplug", "train", *args], capture_output=True, text=True, env=env, timeout=900)
    seconds = time.perf_counter() - started
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    map50 = [float(row["val/map_50"]) for row in rows if row.get("val/map_50")]
    losses = [k for k in rows[0] if k.startswith("train/loss_")]
    print(f"\nfcos on shapes 64px, 2200 train images, 2 epochs: val/map_50 per epoch {[round(m, 3) for m in map50]}, {seconds:.0f} s")
    assert {"train/loss_classification", "train/loss_bbox_regression", "train/loss_bbox_ctrness"} <= set(losses)
    # Measured (issue 26): after 2 epochs, seeds 42, 1, 2 with one thread: 0.56, 0.62, 0.58 (epoch 1: 0.31-0.35);
    # over 4 epochs 0.30, 0.54, 0.72, 0.84. A model that does not learn stays below 0.1. The level asserted is about
    # half the worst run seen, since the same seed can land far lower on another CPU (YOLO: 0.52 here, 0.20 there).
    assert max(map50) >= 0.3, map50
    assert map50[-1] > map50[0] + 0.1
    assert json.loads((run / "summary.json").read_text())["best"] is not None
