"""The U-Net plugin: shapes for any image size, schema and presets, and that it learns `data=shapes`
(val/miou >= 0.8) in a short run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def test_logits_have_the_input_size_for_any_size() -> None:
    from lightplug_unet.net import UNetNet

    net = UNetNet(3, 4, width=4, depth=3).eval()
    for h, w in ((32, 32), (30, 30), (17, 23)):
        assert net(torch.zeros(2, 3, h, w)).shape == (2, 4, h, w)


def test_width_depth_and_presets_change_the_built_model() -> None:
    from lightplug_unet import UNet

    import lightplug

    def count(**kw: object) -> int:
        return sum(p.numel() for p in lightplug.build_model("unet", **kw).parameters())

    assert count(width=8) < count(width=16) < count(width=16, depth=3)
    assert UNet.task == "segmentation" and set(UNet.presets) == {"easy", "medium", "advanced"}
    with pytest.raises(lightplug.ConfigError, match="model.depth=9: above the maximum 6"):
        lightplug.build_model("unet", depth=9)


@pytest.mark.slow
def test_unet_learns_shapes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["model=unet", "data=shapes", "data.num_samples=2000", "data.image_size=24", "data.val_fraction=0.15", "data.test_fraction=0.05",
            "data.batch_size=8", "optimizer.lr=2e-3", "scheduler=cosine", "trainer.max_epochs=5", f"hydra.run.dir={run}", *QUIET]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}  # small convolutions: one thread beats two on a busy CPU
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "lightplug", "train", *args], capture_output=True, text=True, env=env, timeout=900)
    seconds = time.perf_counter() - started
    assert r.returncode == 0, r.stderr[-3000:]
    miou = [float(row["val/miou"]) for row in csv.DictReader((run / "metrics.csv").open()) if row.get("val/miou")]
    best = json.loads((run / "summary.json").read_text())["best"]
    print(f"\nunet on shapes 24px, 1600 train images, 5 epochs: val/miou per epoch {[round(m, 3) for m in miou]}, {seconds:.0f} s")
    # Measured (issue 26), seeds 42, 1, 2 with one thread: best 0.872, 0.880, 0.884 (epoch 1: 0.38-0.41). A model
    # that predicts the background everywhere scores about 0.3. 0.7 leaves room for other CPUs and thread counts.
    # With shapes' hflip=0.5 applied to segmentation too (issue 23): seeds 42 and 1 gave 0.881 and 0.897.
    assert best == pytest.approx(max(miou)) and best >= 0.7, miou
    assert miou[-1] > miou[0] + 0.2
