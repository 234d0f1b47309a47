"""End-to-end tests of simple_cnn and tiny_resnet through the installed entry points and the real CLI.

Training tests use a Hydra multirun (``-m``) so that one process (one torch import) trains several
models; each job writes its own run folder ``<sweep>/<job number>``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import lightplug

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real ``lightplug`` command and capture its output."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "lightplug", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def sweep(tmp_path: Path, *overrides: str) -> dict[str, Path]:
    """``lightplug train -m OVERRIDES``; returns the run folder of each job, keyed by ``model[/preset]``."""
    result = run_cli("train", "-m", *overrides, f"hydra.sweep.dir={tmp_path}/sweep", *QUIET, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {}
    for run in sorted((tmp_path / "sweep").iterdir()):
        if (run / "config.json").is_file():
            cfg = json.loads((run / "config.json").read_text())
            preset = [line.split("=", 1)[1] for line in (run / ".hydra" / "overrides.yaml").read_text().splitlines() if "+preset=" in line]
            runs["/".join([cfg["model"]["_plugin_"], *preset])] = run
    return runs


def summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def write_shapes(root: Path, per_class: int = 12, size: int = 16) -> None:
    """An image folder of 3 classes (red squares, green discs, blue triangles) at random places and sizes."""
    from PIL import Image, ImageDraw

    rng = random.Random(0)
    colours = {"square": (220, 40, 40), "disc": (40, 200, 60), "triangle": (50, 70, 230)}
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            grey = rng.randint(0, 90)
            img = Image.new("RGB", (size, size), (grey, grey, grey))
            draw = ImageDraw.Draw(img)
            s = rng.randint(size // 2, size - 2)
            x, y = rng.randint(0, size - s), rng.randint(0, size - s)
            if name == "square":
                draw.rectangle([x, y, x + s - 1, y + s - 1], fill=colour)
            elif name == "disc":
                draw.ellipse([x, y, x + s - 1, y + s - 1], fill=colour)
            else:
                draw.polygon([(x, y + s - 1), (x + s - 1, y + s - 1), (x + s // 2, y)], fill=colour)
            img.save(root / name / f"{i:02d}.png")


@pytest.mark.slow
def test_both_models_learn_digits(tmp_path: Path) -> None:
    runs = sweep(tmp_path, "model=simple_cnn,tiny_resnet", "+preset=easy", "trainer.max_epochs=3")
    assert set(runs) == {"simple_cnn/easy", "tiny_resnet/easy"}
    for name, run in runs.items():
        result = summary(run)
        assert result["monitor"] == "val/acc"
        assert result["best"] > 0.8, f"{name}: {result}"
        assert (run / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.slow
def test_both_models_train_on_an_image_folder(tmp_path: Path) -> None:
    import torch

    write_shapes(tmp_path / "shapes")
    runs = sweep(tmp_path, "model=simple_cnn,tiny_resnet", "+preset=easy", "data=image_folder", f"data.root={tmp_path / 'shapes'}",
                 "data.image_size=16", "data.num_workers=0", "data.batch_size=8", "trainer.max_epochs=5")
    assert set(runs) == {"simple_cnn/easy", "tiny_resnet/easy"}
    for name, run in runs.items():
        assert summary(run)["best"] >= 0.7, f"{name}: {summary(run)}"
        net = lightplug.load_model(run / "checkpoints" / "best.ckpt")
        assert net.lightplug_meta["model_config"]["in_channels"] == 3  # bound to the data: RGB, 3 classes
        assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 3)


@pytest.mark.slow
def test_presets_change_the_built_model_and_the_command_line_beats_them(tmp_path: Path) -> None:

    # easy is depth 10 / width 16, advanced depth 18 / width 64: the depth must follow the preset, the width the command line.
    runs = sweep(tmp_path, "model=tiny_resnet", "+preset=easy,advanced", "model.width=24", "trainer.max_epochs=1",
                 "+trainer.limit_train_batches=0.1", "+trainer.limit_val_batches=0.2", "callbacks.checkpoint.save_last=false")
    nets = {name: lightplug.load_model(run / "checkpoints" / "best.ckpt") for name, run in runs.items()}
    easy, advanced = nets["tiny_resnet/easy"], nets["tiny_resnet/advanced"]
    for net in (easy, advanced):
        assert net.stem[0].out_channels == 24
    assert [len(stage) for stage in easy.stages] == [1, 1, 1, 1]
    assert [len(stage) for stage in advanced.stages] == [2, 2, 2, 2]
    n_easy, n_advanced = (sum(p.numel() for p in net.parameters()) for net in (easy, advanced))
    assert n_advanced > 1.8 * n_easy


def test_show_json_has_the_rules(tmp_path: Path) -> None:
    result = run_cli("models", "show", "tiny_resnet", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    props = schema["properties"]
    assert (props["width"]["minimum"], props["width"]["maximum"]) == (8, 512)
    assert props["depth"]["enum"] == [10, 18, 34]
    assert props["dropout"]["exclusiveMaximum"] == 1 and props["dropout"]["x-advanced"] is True
    assert props["num_classes"]["x-bound-to"] == "data.num_classes"
    assert schema["x-presets"]["easy"] == {"width": 16, "depth": 10}


def test_bad_values_are_refused_before_training(tmp_path: Path) -> None:
    result = run_cli("train", "model=simple_cnn", "model.width=2", "model.kernel_size=4", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 2
    assert "model.width=2: below the minimum 4" in result.stderr
    assert "model.kernel_size=4" in result.stderr and "one of 3, 5" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
