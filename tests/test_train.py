"""`lightplug train` end to end on the bundled data: metrics, files, self-describing checkpoints,
preset precedence measured on the built module, data-bound fields, multirun and `--cfg job`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from conftest import plugins_discovered_here, run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]

TIER1 = '''
from dataclasses import dataclass
from typing import Annotated, Literal
from torch import nn
from lightplug import ModelPlugin, Param

@dataclass
class WideConfig:
    width: Annotated[int, Param(ge=4, le=256, help="hidden units")] = 16
    depth: Literal[1, 2, 3] = 1
    in_features: int = 64
    num_classes: int = 10

class Wide(ModelPlugin):
    """An MLP whose presets change its size."""
    task = "classification"
    Config = WideConfig
    presets = {"easy": {"width": 8}, "medium": {"width": 32, "depth": 2}, "advanced": {"width": 64, "depth": 3}}

    def build(self, cfg: WideConfig) -> nn.Module:
        layers, w = [nn.Flatten()], cfg.in_features
        for _ in range(cfg.depth):
            layers += [nn.Linear(w, cfg.width), nn.ReLU()]
            w = cfg.width
        return nn.Sequential(*layers, nn.Linear(w, cfg.num_classes))
'''


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


#: What Lightning prints that says nothing to a lightplug user (a warning, an absent device, a FLOPs count of zero).
LIGHTNING_NOISE = ("Warning", "warn(", "lightning/pytorch", "lightning/fabric", "GPU available: False", "TPU available", "💡",
                   "transfer_batch_to_device", "FLOPs: 0", "anonymous setting")


@pytest.mark.slow
def test_readme_train_command_reaches_95_percent_within_a_minute_and_prints_no_lightning_noise(tmp_path: Path) -> None:
    run = tmp_path / "run"
    start = time.perf_counter()
    # the README's command with every default on, and Python's warnings as a user sees them
    out = run_cli("train", "model=mlp", "+preset=easy", f"hydra.run.dir={run}", cwd=tmp_path, env={"PYTHONWARNINGS": ""})
    wall = time.perf_counter() - start
    assert out.returncode == 0, out.stderr[-2000:]
    lines = (out.stdout + out.stderr).splitlines()
    noise = [line for line in lines if any(marker in line for marker in LIGHTNING_NOISE)]
    assert not noise, noise
    flops = next(line for line in lines if "Total FLOPs" in line)  # the model summary counts the model's FLOPs
    assert flops.split(":")[1].strip() not in ("0", "")
    assert any(line.startswith("best val/acc = ") for line in lines)
    tested = run_cli("test", f"run={run}", cwd=tmp_path, env={"PYTHONWARNINGS": ""})  # the next command a user types
    assert tested.returncode == 0 and "test/acc" in tested.stdout, tested.stderr[-2000:]
    noise = [line for line in (tested.stdout + tested.stderr).splitlines() if any(marker in line for marker in LIGHTNING_NOISE)]
    assert not noise, noise
    summary = _summary(run)
    # Measured (issue 26, benchmarks/metric_spread.py readme_mlp): best 0.975, 0.983, 0.975 for seeds 42, 1, 2, the
    # same with one and two threads; epoch 1 0.82-0.90. The best of 10 epochs is what is asserted, as the README says.
    assert summary["monitor"] == "val/acc" and summary["best"] >= 0.95
    assert wall < 60, f"took {wall:.1f}s"
    for name in ("config.json", "metrics.csv", "summary.json", "train.log", ".hydra/config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    metrics_header = (run / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/loss", "val/loss", "val/acc", "val/acc_top5", "val/f1"):
        assert key in metrics_header
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["trainer"]["max_epochs"] == 10 and cfg["model"]["in_features"] == 64 and cfg["data"]["layout"] == "flat"


@pytest.mark.slow
def test_checkpoint_is_self_describing_and_load_model_needs_no_config(tmp_path: Path) -> None:
    import torch
    from sklearn.datasets import load_digits

    import lightplug

    run = tmp_path / "run"
    out = run_cli("train", "model=mlp", "model.hidden=48", "trainer.max_epochs=4", "optimizer.lr=0.005", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    net = lightplug.load_model(run / "checkpoints" / "best.ckpt")
    assert not net.training
    meta = net.lightplug_meta
    assert meta["plugin"]["name"] == "mlp" and meta["plugin"]["dist"] == "lightplug-mlp" and meta["model_config"]["hidden"] == 48
    assert meta["label_names"] == [str(i) for i in range(10)] and meta["task"] == "classification"
    pre = meta["preprocessing"]
    digits = load_digits()
    x = (torch.tensor(digits.data, dtype=torch.float32) / 16.0 - pre["mean"][0]) / pre["std"][0]
    with torch.no_grad():
        acc = (net(x).argmax(1).numpy() == digits.target).mean()
    assert acc > 0.9


@pytest.mark.slow
def test_regression_model_without_data_trains_on_diabetes_and_logs_mse_mae_r2(tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = run_cli("train", "model=mlp_regressor", "trainer.max_epochs=20", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "data=diabetes: the bundled data for mlp_regressor's task" in out.stderr
    assert json.loads((run / "config.json").read_text())["data"]["_plugin_"] == "diabetes"
    s = _summary(run)
    assert s["monitor"] == "val/mse"
    assert {"val/mse", "val/mae", "val/r2", "val/rmse"} <= set(s["metrics"]) and s["metrics"]["val/r2"] > 0.3


def _params(ckpt: Path) -> int:
    import lightplug

    return sum(p.numel() for p in lightplug.load_model(ckpt, model="wide").parameters())  # a local plugin file: named, as the trust rule asks


@pytest.mark.slow
def test_preset_changes_the_built_module_and_command_line_wins(tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # load_model finds plugins/wide.py here, as the user's next command would
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "wide.py").write_text(TIER1)
    sizes = {}
    for label, extra in {"default": [], "easy": ["+preset=easy"], "advanced": ["+preset=advanced"],
                         "advanced+cli": ["+preset=advanced", "model.width=12"]}.items():
        run = tmp_path / label
        out = run_cli("train", "model=wide", "trainer.max_epochs=1", *extra, f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        with plugins_discovered_here():  # the worker's registry may have been discovered in another folder
            sizes[label] = _params(run / "checkpoints" / "last.ckpt")
        cfg = json.loads((run / "config.json").read_text())
        if label == "advanced+cli":
            assert (cfg["model"]["width"], cfg["model"]["depth"]) == (12, 3)
            assert cfg["trainer"]["max_epochs"] == 1  # command line beats the preset's training part
    assert sizes["easy"] < sizes["default"] < sizes["advanced"]
    assert sizes["advanced+cli"] < sizes["advanced"]


def test_cfg_job_shows_preset_and_bound_data_facts(tmp_path: Path, isolated_cache: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "wide.py").write_text(TIER1)
    out = run_cli("train", "model=wide", "+preset=medium", "data=synthetic", "data.num_classes=3", "data.image_size=5",
                  "data.in_channels=2", "--cfg", "job", "--resolve", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "width: 32" in out.stdout and "depth: 2" in out.stdout
    assert "num_classes: 3" in out.stdout and "in_features: 50" in out.stdout and "max_epochs: 20" in out.stdout


@pytest.mark.slow
def test_data_facts_bind_unless_set_and_a_wrong_head_is_caught_before_training(tmp_path: Path) -> None:
    run = tmp_path / "bound"
    ok = run_cli("train", "model=mlp", "data=synthetic", "data.num_classes=3", "data.image_size=4", "trainer.max_epochs=1",
                 f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["model"]["num_classes"], cfg["model"]["in_features"]) == (3, 16)
    bad = run_cli("train", "model=mlp", "data=synthetic", "data.num_classes=3", "model.num_classes=5", f"hydra.run.dir={tmp_path / 'bad'}",
                  *QUIET, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "(batch, num_classes=3)" in bad.stderr and "mlp" in bad.stderr
    assert not (tmp_path / "bad" / "checkpoints").exists()


@pytest.mark.slow
def test_multirun_runs_every_combination_in_its_own_folder(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    out = run_cli("train", "-m", "model=mlp", "optimizer.lr=0.001,0.01", "model.hidden=16,32", "trainer.max_epochs=1",
                  f"hydra.sweep.dir={sweep}", *QUIET, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 4
    seen = set()
    for job in jobs:
        cfg = json.loads((job / "config.json").read_text())
        seen.add((cfg["optimizer"]["lr"], cfg["model"]["hidden"]))
        assert (job / "checkpoints" / "best.ckpt").is_file() and _summary(job)["best"] is not None
    assert seen == {(0.001, 16), (0.001, 32), (0.01, 16), (0.01, 32)}


def test_python_train_api_returns_the_monitored_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lightplug

    monkeypatch.chdir(tmp_path)
    best = lightplug.train("model=mlp", "trainer.max_epochs=3", "optimizer.lr=0.01", "model.hidden=16", f"hydra.run.dir={tmp_path / 'run'}", *QUIET)
    assert best is not None and 0.5 < best <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.parametrize(("model", "data", "data_task"), [("mlp", "digits", None), ("mlp_regressor", "diabetes", None), ("unet", "shapes", "segmentation"),
                                                     ("fcos", "shapes", "detection")])
def test_a_model_without_data_gets_data_of_its_task_and_cfg_job_shows_it(tmp_path: Path, model: str, data: str, data_task: str | None) -> None:
    out = run_cli("train", f"model={model}", "--cfg", "job", "-p", "data", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    node = yaml.safe_load(out.stdout)
    assert node["_plugin_"] == data and node.get("task") == data_task


def test_data_of_another_task_is_refused_naming_the_data_that_fits(tmp_path: Path) -> None:
    bad = run_cli("train", "model=mlp_regressor", "data=digits", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "model=mlp_regressor is a regression model but data=digits is classification data (choose data for regression: data=diabetes" in bad.stderr
