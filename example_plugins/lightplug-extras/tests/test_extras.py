"""The CSV data plugin and the prediction-grid callback plugin, through their real entry points."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def lightplug(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lightplug", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def write_table(path: Path, rows: int = 240, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "species", "size"])
        for _ in range(rows):
            k = int(rng.integers(0, 3))
            a, b, c = rng.normal(loc=2.0 * k, scale=0.5, size=3)
            w.writerow([f"{a:.3f}", f"{b:.3f}", f"{c:.3f}", ["setosa", "versicolor", "virginica"][k], f"{3 * a - b + 0.1 * c:.3f}"])


def test_csv_data_is_listed_and_shows_its_schema(tmp_path: Path) -> None:
    rows = {r["name"]: r for r in json.loads(lightplug("data", "--json", cwd=tmp_path).stdout)}
    assert rows["csv"]["package"] == "lightplug-extras"
    shown = json.loads(lightplug("data", "show", "csv", "--json", cwd=tmp_path).stdout)
    assert shown["properties"]["task"]["enum"] == ["auto", "classification", "regression"]


@pytest.mark.slow
def test_csv_classification_and_regression_train(tmp_path: Path) -> None:
    table = tmp_path / "table.csv"
    write_table(table)
    run = tmp_path / "cls"
    out = lightplug("train", "model=mlp", "data=csv", f"data.path={table}", "data.target=species", "data.features=[a,b,c]",
                    "trainer.max_epochs=8", "optimizer.lr=0.01", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["model"]["in_features"], cfg["model"]["num_classes"]) == (3, 3)
    assert json.loads((run / "summary.json").read_text())["best"] > 0.85
    reg = tmp_path / "reg"
    out = lightplug("train", "model=mlp_regressor", "data=csv", f"data.path={table}", "data.target=size", "data.features=[a,b,c]",
                    "trainer.max_epochs=15", "optimizer.lr=0.01", f"hydra.run.dir={reg}", *QUIET, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((reg / "summary.json").read_text())
    assert summary["monitor"] == "val/mse" and summary["metrics"]["val/r2"] > 0.8


def test_bad_csv_rows_are_named_by_line(tmp_path: Path) -> None:
    table = tmp_path / "bad.csv"
    table.write_text("a,b,label\n1,2,x\n3,oops,y\n5,6,x\n")
    out = lightplug("train", "model=mlp", "data=csv", f"data.path={table}", "data.target=label", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{table}:3: column 'b' is not a number" in out.stderr
    out = lightplug("train", "model=mlp", "data=csv", f"data.path={table}", "data.target=lable", cwd=tmp_path)
    assert out.returncode == 2 and "data.target=lable: no such column" in out.stderr


@pytest.mark.slow
def test_prediction_grid_draws_the_best_epoch_and_every_n_epochs_when_asked(tmp_path: Path) -> None:
    from PIL import Image

    run = tmp_path / "run"
    out = lightplug("train", "model=simple_cnn", "callbacks=[default,prediction_grid]", "callbacks.prediction_grid.num_images=9",
                    "callbacks.prediction_grid.every_n_epochs=2", "trainer.max_epochs=3", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    pngs = sorted(p.name for p in (run / "prediction_grid").glob("*.png"))
    assert pngs == ["best.png", "epoch_000.png", "epoch_002.png"]
    with Image.open(run / "prediction_grid" / "best.png") as img:  # the best epoch, as every other file of the run
        assert img.text["epoch"] == str(summary["best_epoch"]) and img.size[0] > 200
    assert summary["artifacts"]["prediction_grid/best.png"] == summary["best_epoch"] == summary["artifacts_epoch"]
    assert all((run / "prediction_grid" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
