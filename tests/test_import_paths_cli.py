"""``model=pkg.mod:Name`` through the real CLI: ``--cfg job`` with fixed fields and bound data facts, one-line
refusals, and torchvision's classification, segmentation and detection builders trained, tested, predicted,
exported, loaded and published as any plugin is.

Checkpoints of an import-path model load only with the user's consent (the trust rule of docs/reliability.md):
these tests give it with ``LIGHTPLUG_TRUST_CODE=1``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import run_cli

pytest.importorskip("torchvision")

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
TRUST = {"LIGHTPLUG_TRUST_CODE": "1"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class image folder: 6 small RGB PNGs per class, written with PIL."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    for c, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        (root / f"class_{c}").mkdir()
        for i in range(6):
            Image.new("RGB", (16, 16), tuple(v + 8 * i for v in colour)).save(root / f"class_{c}" / f"{i}.png")
    return root


def test_cfg_job_of_resnet18_shows_fixed_fields_and_the_bound_num_classes(folder: Path, tmp_path: Path) -> None:
    out = run_cli("train", "model=torchvision.models:resnet18", "data=image_folder", f"data.root={folder}", "--cfg", "job", "--resolve",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    model = ("\n" + out.stdout).split("\nmodel:\n", 1)[1].split("\ndata:\n", 1)[0]
    assert "  block: torchvision.models.resnet:BasicBlock  # fixed: set by resnet18" in model
    assert "  layers: '[2, 2, 2, 2]'  # fixed: set by resnet18" in model
    assert "  num_classes: 3\n" in model and "  weights: null\n" in model and "  norm_layer: null\n" in model
    assert not (tmp_path / "outputs").exists()


def test_a_wrong_key_and_weights_not_in_the_cache_are_refused_with_one_line(folder: Path, tmp_path: Path) -> None:
    base = ["train", "model=torchvision.models:resnet18", "data=image_folder", f"data.root={folder}"]
    wrong = run_cli(*base, "model.num_clases=3", cwd=tmp_path)
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines() == [
        "error: model.num_clases: unknown key (did you mean model.num_classes?)"]
    weights = run_cli(*base, "model.weights=IMAGENET1K_V1", cwd=tmp_path, env={"TORCH_HOME": str(tmp_path / "torch")})
    assert weights.returncode == 2 and weights.stderr.strip().splitlines() == [
        f"error: model.weights=IMAGENET1K_V1: its file resnet18-f37072fd.pth is not in the torch hub cache ({tmp_path / 'torch' / 'hub' / 'checkpoints'}); "
        "lightplug downloads nothing: put the file there, or give model.weights_file=PATH"]
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "torch").exists()


@pytest.mark.slow
def test_resnet18_by_import_path_trains_tests_predicts_exports_loads_and_publishes(folder: Path, tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    out = run_cli("train", "model=torchvision.models:resnet18", "data=image_folder", f"data.root={folder}", "data.image_size=16",
                  "data.batch_size=4", "trainer.max_epochs=1", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    ckpt = run / "checkpoints" / "best.ckpt"
    import torch

    meta = torch.load(ckpt, map_location="cpu", weights_only=True)["lightplug"]
    assert meta["plugin"]["source"] == "path" and meta["plugin"]["target"] == "torchvision.models:resnet18"
    import torchvision

    assert meta["plugin"]["version"] == torchvision.__version__  # the version of the package the path comes from
    assert meta["model_config"]["num_classes"] == 3 and meta["model_config"]["block"] == "torchvision.models.resnet:BasicBlock"

    tested = run_cli("test", f"ckpt={ckpt}", cwd=tmp_path, env=TRUST)
    assert tested.returncode == 0, tested.stderr[-2000:]
    assert 0.0 <= json.loads((run / "checkpoints" / "test_metrics.json").read_text())["metrics"]["test/acc"] <= 1.0
    predicted = run_cli("predict", f"ckpt={ckpt}", f"input={folder / 'class_0'}", f"output={tmp_path / 'preds.csv'}", cwd=tmp_path, env=TRUST)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    with (tmp_path / "preds.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 6
    exported = run_cli("export", f"ckpt={ckpt}", "format=onnx", "benchmark=false", cwd=tmp_path, env=TRUST)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert (run / "checkpoints" / "best.onnx").is_file()

    import lightplug
    from lightplug import store

    monkeypatch.setenv("LIGHTPLUG_TRUST_CODE", "1")
    monkeypatch.setenv("LIGHTPLUG_STORE", str(tmp_path / "store"))
    net = lightplug.load_model(ckpt)
    assert type(net).__name__ == "ResNet" and net.fc.out_features == 3
    entry = store.add(run, "shapes_r18")
    again = lightplug.load_model(entry.ref)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True))


@pytest.mark.slow
def test_torchvision_segmentation_builders_train_one_epoch_on_shapes(tmp_path: Path) -> None:
    models = ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"]
    out = run_cli("train", "-m", "model=" + ",".join(f"torchvision.models.segmentation:{m}" for m in models), "data=shapes",
                  "data.num_samples=16", "data.batch_size=2", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                  "trainer.limit_val_batches=1", f"hydra.sweep.dir={tmp_path / 'sweep'}", *QUIET, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    for i, name in enumerate(models):
        summary = json.loads((tmp_path / "sweep" / str(i) / "summary.json").read_text())
        assert summary["monitor"] == "val/miou" and 0.0 <= summary["best"] <= 1.0, (name, summary)
        assert summary["metrics"]["train/loss"] > 0


@pytest.mark.slow
def test_torchvision_detection_builders_train_on_shapes_log_map_and_export_where_torchvision_allows(tmp_path: Path) -> None:
    models = ["fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn"]
    out = run_cli("train", "-m", "model=" + ",".join(f"torchvision.models.detection:{m}" for m in models), "data=shapes",
                  "data.task=detection", "data.image_size=64", "data.num_samples=16", "data.batch_size=2", "trainer.max_epochs=1",
                  "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", f"hydra.sweep.dir={tmp_path / 'sweep'}", *QUIET, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    for i, name in enumerate(models):
        summary = json.loads((tmp_path / "sweep" / str(i) / "summary.json").read_text())
        assert summary["monitor"] == "val/map_50" and 0.0 <= summary["best"] <= 1.0, (name, summary)
        assert summary["metrics"]["train/loss"] > 0
    faster = tmp_path / "sweep" / "0" / "checkpoints" / "best.ckpt"
    refused = run_cli("export", f"ckpt={faster}", "format=onnx", cwd=tmp_path, env=TRUST)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "error: FasterRCNN cannot be exported by lightplug: a two-stage detector: its second stage runs on the proposals the first stage's "
        "NMS keeps, a number no fixed-size output can hold (FCOS and RetinaNet export (fcos_resnet50_fpn, retinanet_resnet50_fpn))"]
    retina = tmp_path / "sweep" / "1" / "checkpoints" / "best.ckpt"
    exported = run_cli("export", f"ckpt={retina}", "format=onnx", "benchmark=false", cwd=tmp_path, env=TRUST)
    assert exported.returncode == 0, exported.stderr[-2000:]
    report = json.loads((retina.parent / "export_report.json").read_text())
    assert report["ok"] is True and report["formats"]["onnx"]["verification"]["max_abs"] <= 1e-4, report
