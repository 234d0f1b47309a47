"""The YOLO plugin: config checks, build/loss/postprocess shapes, the batch conversion, no network, ONNX parity,
and (slow) that `lightplug train` learns data=shapes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import lightplug

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def make_plugin(**kw: object):
    from lightplug_ultralytics import Yolo, YoloConfig

    return Yolo(YoloConfig(**{"num_classes": 3, **kw}))


def make_batch(size: int = 64) -> dict:
    target = [
        {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 22.0, 60.0, 50.0]]), "labels": torch.tensor([0, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # an image with no object
        {"boxes": torch.tensor([[10.0, 10.0, 26.0, 58.0]]), "labels": torch.tensor([1])},
    ]
    return {"input": torch.randn(3, 3, size, size), "target": target, "index": torch.arange(3)}


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    plugin = make_plugin()
    return plugin, plugin.build(plugin.cfg)


# ---- config and check() ----

def test_module_imports_neither_torch_nor_ultralytics() -> None:
    code = "import sys, lightplug_ultralytics; print('torch' in sys.modules, 'ultralytics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_check_names_close_matches_and_stays_cheap() -> None:
    plugin = make_plugin(cfg="yolov8q")
    started = time.perf_counter()
    (problem,) = plugin.check(plugin.cfg)
    assert time.perf_counter() - started < 1.0
    assert problem.startswith("model.cfg=yolov8q: no such detection model YAML in ultralytics ")
    assert "did you mean" in problem and "yolov8n" in problem
    for good in ("yolov8n", "yolov8s", "yolo11n", "yolov8n-p2"):
        assert make_plugin(cfg=good).check(make_plugin(cfg=good).cfg) == []
    for not_detection in ("yolov8n-seg", "yolo11n-cls", "rtdetr-l"):  # YAMLs that exist but have another head
        assert make_plugin(cfg=not_detection).check(make_plugin(cfg=not_detection).cfg)
    missing = make_plugin(weights_file="/nonexistent/yolov8n.pt")
    assert missing.check(missing.cfg) == ["model.weights_file=/nonexistent/yolov8n.pt: no such file (give a local .pt; nothing is downloaded)"]


def test_unknown_cfg_stops_lightplug_train_before_training(tmp_path: Path) -> None:
    args = ["model=yolo", "model.cfg=yolov8q", "data=shapes", "data.task=detection", f"hydra.run.dir={tmp_path / 'run'}"]
    r = subprocess.run([sys.executable, "-m", "lightplug", "train", *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "model.cfg=yolov8q: no such detection model YAML in ultralytics" in r.stdout + r.stderr


def test_scale_letter_picks_the_scale() -> None:
    def count(cfg: str) -> int:
        plugin = make_plugin(cfg=cfg)
        return sum(p.numel() for p in plugin.build(plugin.cfg).parameters())

    assert count("yolov8n") < count("yolov8s")


def test_builds_from_a_folder_whose_name_ultralytics_would_rewrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI's venv lived in /tmp/tmp.8xkIjLzujO: Ultralytics' yolov8n -> yolov8 regex ran over the whole path and
    removed the "x", so every build failed with "yolov8n.yaml does not exist". The package is copied under such
    a folder here and must build from there."""
    import shutil

    from lightplug_ultralytics import _catalog

    real = _catalog._package_dir()
    assert real is not None
    fake = tmp_path / "tmp.8xkIjLzujO" / "ultralytics"
    shutil.copytree(real / "cfg" / "models", fake / "cfg" / "models")
    monkeypatch.setattr(_catalog, "_package_dir", lambda: fake)
    assert _catalog.detection_models()["yolov8n"].startswith(str(fake))
    plugin = make_plugin(cfg="yolov8n")
    net = plugin.build(plugin.cfg)
    assert net.model.yaml["scale"] == "n" and sum(p.numel() for p in net.parameters()) < 4_000_000


def test_a_corrupt_image_stays_pillows_error_after_a_build(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Importing Ultralytics patches PIL.Image.open so that an unidentified file triggers its pi-heif requirement
    check ("attempting AutoUpdate", a pip install when online). Seen in a shuffled suite run: a data test that reads
    a corrupt image after a YOLO build logged it. After a build, Pillow's own open is back."""
    import logging

    from PIL import Image, UnidentifiedImageError

    plugin = make_plugin()
    plugin.build(plugin.cfg)
    from ultralytics.utils import patches

    assert Image.open is not patches.image_open
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with caplog.at_level(logging.INFO), pytest.raises(UnidentifiedImageError):
        Image.open(bad)
    assert not [r for r in caplog.records if "AutoUpdate" in r.getMessage() or "requirement" in r.getMessage()]


# ---- batch conversion ----

def test_batch_conversion_round_trips() -> None:
    from lightplug_ultralytics._net import from_ultralytics_batch, to_ultralytics_batch

    target = make_batch()["target"]
    ub = to_ultralytics_batch(target, (64, 96))
    assert ub["batch_idx"].tolist() == [0.0, 0.0, 2.0]
    assert ub["cls"].shape == (3, 1) and ub["cls"].view(-1).tolist() == [0.0, 2.0, 1.0]
    # box 0: x 4..30, y 6..40 in a 96 wide, 64 high image -> cx 17/96, cy 23/64, w 26/96, h 34/64
    assert torch.allclose(ub["bboxes"][0], torch.tensor([17 / 96, 23 / 64, 26 / 96, 34 / 64]))
    back = from_ultralytics_batch(ub, (64, 96), 3)
    for got, want in zip(back, target):
        assert torch.allclose(got["boxes"], want["boxes"], atol=1e-4) and torch.equal(got["labels"], want["labels"])


# ---- build, loss, postprocess ----

def test_forward_outputs_in_train_and_eval(built) -> None:
    plugin, net = built
    x = torch.randn(2, 3, 64, 64)
    net.train()
    raw = net(x)
    n = 8 * 8 + 4 * 4 + 2 * 2  # anchors at strides 8, 16, 32
    assert raw["scores"].shape == (2, 3, n) and raw["boxes"].shape == (2, 64, n) and len(raw["feats"]) == 3
    net.eval()
    with torch.no_grad():
        y, raw = net(x)
    assert y.shape == (2, 4 + 3, n) and 0 <= float(y[:, 4:].min()) and float(y[:, 4:].max()) <= 1
    with torch.no_grad():  # any size: padded to a multiple of 32, boxes stay in input pixels
        y, _ = net(torch.randn(1, 3, 50, 70))
    assert y.shape == (1, 7, 8 * 12 + 4 * 6 + 2 * 3)


def test_loss_parts_backward_and_batch_size_invariance(built) -> None:
    plugin, net = built
    batch = make_batch()
    net.train()
    parts = plugin.loss(net(batch["input"]), batch)
    assert set(parts) == {"box", "cls", "dfl"} and all(v.ndim == 0 and torch.isfinite(v) for v in parts.values())
    sum(parts.values()).backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    net.zero_grad()
    # a batch mean: the same images repeated give the same loss (Ultralytics' own sum is batch size x this).
    # (Twice and four times: Ultralytics divides by max(1, sum of target scores), which is below 1 for
    # a few images through an untrained model.)
    net.eval()
    with torch.no_grad():
        losses = []
        for k in (2, 4):
            rep = {"input": torch.cat([batch["input"]] * k), "target": batch["target"] * k}
            losses.append(plugin.loss(net(rep["input"]), rep))
    for key in losses[0]:
        assert float(losses[1][key]) == pytest.approx(float(losses[0][key]), rel=1e-3, abs=1e-5)


def test_loss_without_any_box(built) -> None:
    plugin, net = built
    batch = {"input": torch.randn(2, 3, 64, 64), "target": [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2}
    net.train()
    parts = plugin.loss(net(batch["input"]), batch)
    assert torch.isfinite(sum(parts.values()).detach()) and float(parts["box"].detach()) == 0.0


def test_loss_gains_come_from_the_config() -> None:
    torch.manual_seed(0)
    plain, doubled = make_plugin(), make_plugin(box=15.0, cls=1.0, dfl=3.0)
    net_a, net_b = plain.build(plain.cfg), doubled.build(doubled.cfg)
    net_b.load_state_dict(net_a.state_dict())
    batch = make_batch()
    net_a.eval(), net_b.eval()
    with torch.no_grad():
        a, b = plain.loss(net_a(batch["input"]), batch), doubled.loss(net_b(batch["input"]), batch)
    for k in a:
        assert float(b[k]) == pytest.approx(2 * float(a[k]), rel=1e-4)


def test_postprocess_follows_the_settings(built) -> None:
    plugin, net = built
    batch = make_batch()
    net.eval()
    with torch.no_grad():
        out = net(batch["input"])
    dets = plugin.postprocess(out, batch, lightplug.DetectionSettings(conf=0.0, iou=0.6, max_det=5))
    assert len(dets) == 3
    for d in dets:
        assert d["boxes"].shape[1] == 4 and d["boxes"].dtype == torch.float32 and d["labels"].dtype == torch.int64
        assert len(d["boxes"]) == len(d["scores"]) == len(d["labels"]) <= 5
        assert torch.all(d["scores"][:-1] >= d["scores"][1:])  # sorted
        assert float(d["boxes"].min()) >= 0 and float(d["boxes"].max()) <= 64 and int(d["labels"].max()) < 3
    none = plugin.postprocess(out, None, lightplug.DetectionSettings(conf=0.999))
    assert all(len(d["boxes"]) == 0 for d in none)


def test_weights_file_loads_matching_tensors(built, tmp_path: Path) -> None:
    from ultralytics.nn.tasks import DetectionModel

    plugin, net = built
    other = DetectionModel(str(Path(net.model.yaml["yaml_file"])), nc=80, verbose=False)  # another class count: head differs
    torch.save({"model": other, "epoch": 1}, tmp_path / "yolov8n-80.pt")  # the layout of an Ultralytics checkpoint
    p2 = make_plugin(weights_file=str(tmp_path / "yolov8n-80.pt"))
    net2 = p2.build(p2.cfg)
    loaded, total = (int(v) for v in net2.weights_report.split()[1].split("/"))
    assert 0 < loaded < total and "kept from init" in net2.weights_report
    assert torch.equal(net2.model.model[0].conv.weight, other.model[0].conv.weight)
    # a state dict saved from this plugin's module loads completely
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    p3 = make_plugin(weights_file=str(tmp_path / "mine.pt"))
    assert p3.build(p3.cfg).weights_report.startswith(f"loaded {total}/{total} tensors")


def test_nothing_touches_the_network(tmp_path: Path) -> None:
    """Import, build, loss, NMS and export wrapper in a fresh process whose sockets and DNS raise."""
    code = textwrap.dedent("""
        import socket
        attempts = []
        def refuse(*a, **k):
            attempts.append(a[:2])
            raise OSError("network disabled by the test")
        socket.getaddrinfo = refuse
        socket.create_connection = refuse
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        import torch, lightplug
        from lightplug_ultralytics import Yolo, YoloConfig
        for cfg in ("yolov8n", "yolo11n"):
            p = Yolo(YoloConfig(cfg=cfg, num_classes=3))
            net = p.build(p.cfg)
            batch = {"input": torch.randn(2, 3, 64, 64), "target": [{"boxes": torch.tensor([[4., 4., 40., 40.]]), "labels": torch.tensor([1])}] * 2}
            sum(p.loss(net(batch["input"]), batch).values()).backward()
            net.eval()
            with torch.no_grad():
                p.postprocess(net(batch["input"]), batch, lightplug.DetectionSettings())
                p.export_module(net)(batch["input"])
        print("ATTEMPTS", len(attempts), attempts)
    """)
    env = {k: v for k, v in os.environ.items() if k != "YOLO_OFFLINE"}  # the plugin must set it itself
    env["YOLO_CONFIG_DIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ATTEMPTS 0 []" in r.stdout, r.stdout
    assert not list(tmp_path.glob("*.pt"))  # nothing downloaded into the working directory


# ---- export ----

def test_export_module_onnx_matches_eager(built, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    plugin, net = built
    assert type(plugin).raw_output_format == "yolo"
    net.eval()
    wrapper = plugin.export_module(net).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = wrapper(x)
    assert torch.is_tensor(want) and want.shape == (2, 7, 84)
    path = tmp_path / "yolo.onnx"
    torch.onnx.export(wrapper, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (x, torch.randn(1, 3, 64, 64)):
        with torch.no_grad():
            ref = wrapper(batch).numpy()
        got = session.run(None, {"input": batch.numpy()})[0]
        assert got.shape == ref.shape
        assert abs(got - ref).max() <= 1e-4 * max(1.0, abs(ref).max())  # boxes are in pixels (tens), scores in [0, 1]
        assert abs(got[:, 4:] - ref[:, 4:]).max() <= 1e-4


# ---- end to end ----

@pytest.mark.slow
def test_yolo_learns_shapes(tmp_path: Path) -> None:
    # What is asserted is learning, not a level (issue 26): 114 steps of yolov8n from scratch land far apart on
    # different CPUs, thread counts and seeds. Measured best val/map_50 after 3 epochs: seeds 42, 1, 2, 3 with one
    # thread 0.52, 0.59, 0.79, 0.77 (epoch 1: 0.02 to 0.17), seeds 42 and 1 with two threads 0.36 and 0.50; another 2-core machine of the same kind, seed 42:
    # 0.008, 0.042, 0.201 per epoch, train/loss 9.23, 7.34, 6.35. An untrained yolov8n scores about 0.00-0.01.
    # So: the loss falls by at least 15% (0.69x on the worst run seen), the metric rises by at least 0.1 and ends at
    # least 0.1, half the worst run seen and ten times an untrained model's.
    run = tmp_path / "run"
    args = ["model=yolo", "data=shapes", "data.task=detection", "data.image_size=96", "data.num_samples=1000", "data.val_fraction=0.2",
            "data.test_fraction=0.0", "data.batch_size=16", "trainer.max_epochs=3", "optimizer.lr=2e-3", f"hydra.run.dir={run}", *QUIET]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "lightplug", "train", *args], capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    seconds = time.perf_counter() - started
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    map50 = [float(row["val/map_50"]) for row in rows if row.get("val/map_50")]
    losses = [float(row["train/loss"]) for row in rows if row.get("train/loss")]
    print(f"\nyolov8n on shapes 96px, 800 train images, 3 epochs: val/map_50 per epoch {[round(m, 3) for m in map50]}, "
          f"train/loss {[round(v, 2) for v in losses]}, {seconds:.0f} s")
    assert len(map50) == 3 and max(map50) >= 0.1 and map50[-1] >= map50[0] + 0.1, map50
    assert losses[-1] <= 0.85 * losses[0], losses
    assert (run / "checkpoints" / "best.ckpt").exists()
