"""End-to-end tests of aux_loss_cnn and two_optimizer_mlp through the installed entry points and the real CLI."""

from __future__ import annotations

import csv
import json
import os
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


def epoch_rows(run: Path, column: str) -> list[dict[str, float]]:
    """The rows of ``metrics.csv`` where ``column`` was logged, as floats."""
    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(f) if row.get(column)]


def summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both models trained 3 epochs on digits in one multirun (one process); run folder by model name."""
    tmp = tmp_path_factory.mktemp("custom_step")
    result = run_cli("train", "-m", "model=aux_loss_cnn,two_optimizer_mlp", "trainer.max_epochs=3", f"hydra.sweep.dir={tmp}/sweep", *QUIET, cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [run for run in (tmp / "sweep").iterdir() if (run / "config.json").is_file()]
    return {json.loads((run / "config.json").read_text())["model"]["_plugin_"]: run for run in runs}


@pytest.mark.slow
def test_core_adds_the_task_loss_to_the_auxiliary_loss(digits_runs: dict[str, Path]) -> None:
    run = digits_runs["aux_loss_cnn"]
    rows = epoch_rows(run, "train/loss_aux")
    assert len(rows) == 3
    for row in rows:
        assert row["train/loss_aux"] > 0
        assert row["train/loss"] == pytest.approx(row["train/loss_task"] + row["train/loss_aux"], rel=1e-5)
    assert summary(run)["best"] > 0.85  # the task loss drives learning, not only the penalty


@pytest.mark.slow
def test_two_optimizers_learn_digits(digits_runs: dict[str, Path]) -> None:
    run = digits_runs["two_optimizer_mlp"]
    assert summary(run)["best"] > 0.85
    assert len(epoch_rows(run, "train/loss")) == 3  # logged by the plugin's training_step
    with open(run / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    assert {"lr-Adam", "lr-SGD"} <= set(header)


@pytest.mark.slow
def test_both_optimizers_move_their_parameters(digits_runs: dict[str, Path], tmp_path: Path) -> None:
    import torch

    start = digits_runs["two_optimizer_mlp"] / "checkpoints" / "best.ckpt"
    result = run_cli("train", "model=two_optimizer_mlp", f"init_from={start}", "trainer.max_epochs=1", "+trainer.limit_train_batches=0.2",
                       "+trainer.limit_val_batches=0.2", f"hydra.run.dir={tmp_path}/run", *QUIET, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = lightplug.load_model(start), lightplug.load_model(tmp_path / "run" / "checkpoints" / "best.ckpt")
    for part in ("body", "head"):
        old, new = (torch.cat([p.flatten() for p in getattr(net, part).parameters()]) for net in (before, after))
        assert not torch.equal(old, new), f"the {part} did not change"


def test_aux_loss_is_returned_only_in_training() -> None:
    import torch

    net = lightplug.build_model("aux_loss_cnn", width=8, aux_weight=0.5)
    x = torch.randn(4, 1, 8, 8)
    logits, aux = net.train()(x)
    assert logits.shape == (4, 10) and aux.ndim == 0 and aux > 0
    assert net.eval()(x).shape == (4, 10)
