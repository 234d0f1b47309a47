"""Validation outputs of a run (confusion matrix, per-class accuracy, per-sample results), `lightplug
results` and `lightplug test`, checked against the numbers the run itself logged."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # a shared 2-core CPU: one thread per process is faster than two fighting


def _val_rows(run: Path, key: str) -> list[dict[str, str]]:
    return [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get(key)]


def _best(run: Path, key: str, mode: str = "max") -> dict[str, str]:
    rows = _val_rows(run, key)
    pick = max if mode == "max" else min
    return pick(rows, key=lambda r: float(r[key]))


# ---- fast: the pieces on their own ----

def test_per_class_accuracy_and_metric_keys() -> None:
    from lightplug.evaluation.confusion import metric_key, per_class_accuracy

    matrix = torch.tensor([[3, 1, 0], [0, 0, 0], [2, 0, 2]])
    acc = per_class_accuracy(matrix)
    assert acc[0] == pytest.approx(0.75) and torch.isnan(acc[1]) and acc[2] == pytest.approx(0.5)
    assert [metric_key(x) for x in ("sea lion", "a/b", "3", "")] == ["sea_lion", "a_b", "3", "_"]


def test_confusion_image_goes_to_loggers_that_take_images(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    from lightplug.evaluation.confusion import confusion_figure, send_figure

    class ImageLogger:  # what W&B's logger offers
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def log_image(self, key: str, images: list[Any], step: int | None = None) -> None:
            self.calls.append({"key": key, "images": images, "step": step})

    fig = confusion_figure(torch.tensor([[5, 1], [2, 7]]), ["cat", "dog"], "test")
    png = tmp_path / "cm.png"
    fig.savefig(png)
    wandb_like = ImageLogger()
    sent = send_figure([CSVLogger(str(tmp_path)), wandb_like], "val/confusion_matrix", fig, png, step=12)
    assert sent == ["ImageLogger"]
    assert wandb_like.calls == [{"key": "val/confusion_matrix", "images": [str(png)], "step": 12}]


def test_worst_ranking_per_task() -> None:
    from lightplug.evaluation.results import rank_worst, task_of

    cls = [{"id": "a", "correct": "True", "confidence": "0.3"}, {"id": "b", "correct": "False", "confidence": "0.9"},
           {"id": "c", "correct": "False", "confidence": "0.4"}, {"id": "d", "correct": "True", "confidence": "0.99"}]
    assert task_of(cls) == "classification" and [r["id"] for r in rank_worst(cls, "classification", 3)] == ["c", "b", "a"]
    reg = [{"id": "a", "correct": "", "confidence": "1.5"}, {"id": "b", "correct": "", "confidence": "7"}]
    assert task_of(reg) == "regression" and [r["id"] for r in rank_worst(reg, "regression", 5)] == ["b", "a"]
    seg = [{"id": "a", "correct": "True", "confidence": "0.9", "iou": "0.8"}, {"id": "b", "correct": "False", "confidence": "0.9", "iou": "0.2"}]
    assert task_of(seg) == "segmentation" and rank_worst(seg, "segmentation", 1)[0]["id"] == "b"


def test_results_and_test_report_missing_things_in_one_line(tmp_path: Path) -> None:
    r = run_cli("results", str(tmp_path / "nope"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no such run folder" in r.stderr
    r = run_cli("test", f"run={tmp_path}")
    assert r.returncode == 2 and "no checkpoints/best.ckpt" in r.stderr
    r = run_cli("test")
    assert r.returncode == 2 and "no checkpoint given" in r.stderr


# ---- end to end: a classification run and a regression run ----

@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLP on digits (flat layout), 3 epochs, with per-epoch results."""
    run = tmp_path_factory.mktemp("digits") / "run"
    r = run_cli("train", "model=mlp", "trainer.max_epochs=3", "results.every_epoch=true", f"hydra.run.dir={run}", *QUIET, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("diabetes") / "run"
    r = run_cli("train", "model=mlp_regressor", "data=diabetes", "trainer.max_epochs=5", f"hydra.run.dir={run}", *QUIET, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


@pytest.mark.slow
def test_confusion_matrix_files_and_per_class_accuracy_agree_with_val_acc(digits_run: Path) -> None:
    from PIL import Image

    with (digits_run / "confusion_matrix.csv").open() as f:
        table = list(csv.reader(f))
    assert table[0] == ["true \\ predicted", *[str(i) for i in range(10)], "epoch"] and [r[0] for r in table[1:]] == [str(i) for i in range(10)]
    best = _best(digits_run, "val/acc")  # the matrix of the best epoch, as every file of the run
    assert {r[-1] for r in table[1:]} == {best["epoch"]}
    matrix = np.array([[int(v) for v in r[1:-1]] for r in table[1:]])
    assert matrix.sum() == 359  # the validation split of digits
    assert np.trace(matrix) / matrix.sum() == pytest.approx(float(best["val/acc"]), abs=1e-6)
    for i in range(10):
        assert float(best[f"val/acc_class/{i}"]) == pytest.approx(matrix[i, i] / matrix[i].sum(), abs=1e-6)
    with Image.open(digits_run / "confusion_matrix.png") as img:
        assert img.format == "PNG" and img.size[0] >= 400 and img.text["epoch"] == best["epoch"]
    # results.every_epoch=true: each epoch's matrix too, its counts those of that epoch
    for row in _val_rows(digits_run, "val/acc"):
        epoch_table = list(csv.reader((digits_run / "confusion_matrix" / f"epoch_{int(row['epoch']):03d}.csv").open()))
        m = np.array([[int(v) for v in r[1:-1]] for r in epoch_table[1:]])
        assert np.trace(m) / m.sum() == pytest.approx(float(row["val/acc"]), abs=1e-6) and epoch_table[1][-1] == row["epoch"]


@pytest.mark.slow
def test_val_predictions_hold_the_best_epoch_sample_by_sample(digits_run: Path) -> None:
    rows = list(csv.DictReader((digits_run / "val_predictions.csv").open()))
    assert list(rows[0]) == ["id", "index", "target", "prediction", "confidence", "loss", "correct", "epoch"]
    assert len(rows) == 359 and len({r["id"] for r in rows}) == 359
    best = _best(digits_run, "val/acc")
    assert {r["epoch"] for r in rows} == {best["epoch"]}
    assert np.mean([r["correct"] == "True" for r in rows]) == pytest.approx(float(best["val/acc"]), abs=1e-6)
    assert np.mean([float(r["loss"]) for r in rows]) == pytest.approx(float(best["val/loss"]), rel=1e-4)
    assert all((r["target"] == r["prediction"]) == (r["correct"] == "True") and 0.1 <= float(r["confidence"]) <= 1 for r in rows)
    per_epoch = sorted(p.name for p in (digits_run / "val_predictions").iterdir())
    assert per_epoch == ["epoch_000.csv", "epoch_001.csv", "epoch_002.csv"]
    # the id is the digit's row in scikit-learn's data: its label must be the target written
    from sklearn.datasets import load_digits

    labels = load_digits().target
    assert all(int(r["target"]) == labels[int(r["id"])] for r in rows)


PROBE = """
import json, sys, time
from pathlib import Path

import lightning as L


class Probe(L.Callback):
    \"\"\"After each validation (and lightplug's own callbacks): what was drawn and written so far.\"\"\"

    def __init__(self, path: str = "") -> None:
        self.path, self.seen, self.start = path, [], None

    def on_fit_start(self, trainer, pl_module):
        self.start = time.monotonic()

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            run = Path(trainer.default_root_dir)
            self.seen.append({"epoch": trainer.current_epoch, "seconds": time.monotonic() - self.start,
                              "agg": "matplotlib.backends.backend_agg" in sys.modules,
                              "files": sorted(p.name for p in run.iterdir() if p.suffix in (".png", ".csv") and p.name != "metrics.csv")})

    def teardown(self, trainer, pl_module, stage):
        Path(self.path).write_text(json.dumps(self.seen))
"""


@pytest.mark.slow
def test_the_readme_run_draws_nothing_until_it_ends_then_every_file_shows_the_best_epoch(tmp_path: Path,
                                                                                        site_env: tuple[Path, dict[str, str]]) -> None:
    """The README's command, every default on, plus a probe callback: no figure is drawn and matplotlib's drawing
    backend is not imported while it validates (refresh_seconds is 60 s: the run is shorter; matplotlib itself is
    imported by torchmetrics when Lightning loads, upstream, but only drawing a figure imports its backend), and at
    the end the confusion matrix, the per-sample results, artifacts.json and summary.json all name the best epoch
    of metrics.csv."""
    from PIL import Image

    from lightplug.testing import make_dist

    site, env = site_env
    make_dist(site, "lp-probe", entry_points={"lightplug.callbacks": {"probe": "lp_probe:Probe"}}, modules={"lp_probe.py": PROBE})
    run, seen = tmp_path / "run", tmp_path / "seen.json"
    r = run_cli("train", "model=mlp", "+preset=easy", "callbacks=[default,probe]", f"callbacks.probe.path={seen}", f"hydra.run.dir={run}",
                cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    during = [v for v in json.loads(seen.read_text()) if v["seconds"] < 60]
    assert len(during) >= 5 and all(not v["agg"] and v["files"] == [] for v in during), during
    best = _best(run, "val/acc")
    epoch = int(best["epoch"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_epoch"] == summary["artifacts_epoch"] == epoch and summary["optimizer_impl"] == "fused"
    assert summary["artifacts"] == {"confusion_matrix.csv": epoch, "confusion_matrix.png": epoch, "val_predictions.csv": epoch}
    assert json.loads((run / "artifacts.json").read_text())["files"] == summary["artifacts"]
    assert {r["epoch"] for r in csv.DictReader((run / "val_predictions.csv").open())} == {best["epoch"]}
    assert {r[-1] for r in list(csv.reader((run / "confusion_matrix.csv").open()))[1:]} == {best["epoch"]}
    with Image.open(run / "confusion_matrix.png") as img:
        assert img.text["epoch"] == best["epoch"]


@pytest.mark.slow
def test_results_shows_the_least_confident_mistakes_and_their_images(digits_run: Path) -> None:
    from PIL import Image

    rows = list(csv.DictReader((digits_run / "val_predictions.csv").open()))
    wrong = sorted((r for r in rows if r["correct"] == "False"), key=lambda r: float(r["confidence"]))
    r = run_cli("results", str(digits_run), "--worst", "4")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("│")]
    assert [ln.split("│")[2].strip() for ln in lines] == [w["id"] for w in wrong[:4]]
    with Image.open(digits_run / "worst.png") as img:
        assert img.size[0] > 400
    r = run_cli("results", str(digits_run), "--worst", "0")
    assert r.returncode == 2 and "--worst 0" in r.stderr


@pytest.mark.slow
def test_test_command_reports_metrics_of_the_checkpoint(digits_run: Path, tmp_path: Path) -> None:
    r = run_cli("test", f"run={digits_run}", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    report = json.loads((digits_run / "checkpoints" / "test_metrics.json").read_text())
    assert report["split"] == "test" and report["num_samples"] == 359 and report["data"]["name"] == "digits"
    assert {"test/acc", "test/f1", "test/auroc", "test/loss", "test/acc_top5"} <= set(report["metrics"])
    assert 0.6 <= report["metrics"]["test/acc"] <= 1.0
    assert "test/acc" in r.stdout

    out = tmp_path / "other.json"
    r = run_cli("test", f"ckpt={digits_run / 'checkpoints' / 'last.ckpt'}", "data.test_fraction=0.3", f"output={out}", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["num_samples"] == round(1797 * 0.3)

    r = run_cli("test", f"run={digits_run}", "data=diabetes")
    assert r.returncode == 2 and "num_classes=1, but the checkpoint was trained with num_classes=10" in r.stderr
    r = run_cli("test", f"run={digits_run}", "data.batch_size=0", "dta=digits")
    assert r.returncode == 2 and "dta: unknown option of lightplug test (did you mean data?)" in r.stderr


@pytest.mark.slow
def test_regression_results_are_in_the_data_units(diabetes_run: Path) -> None:
    from sklearn.datasets import load_diabetes

    target = load_diabetes().target
    rows = list(csv.DictReader((diabetes_run / "val_predictions.csv").open()))
    assert len(rows) == round(442 * 0.2) and all(r["correct"] == "" for r in rows)
    for r in rows:
        assert float(r["target"]) == pytest.approx(target[int(r["id"])], rel=1e-4)  # de-standardised
        assert float(r["confidence"]) == pytest.approx(abs(float(r["target"]) - float(r["prediction"])), rel=1e-3, abs=1e-3)
    assert not (diabetes_run / "confusion_matrix.csv").exists()
    r = run_cli("results", str(diabetes_run), "--worst", "3")
    assert r.returncode == 0 and "abs error" in r.stdout
    errors = sorted((float(x["confidence"]) for x in rows), reverse=True)[:3]
    assert f"{errors[0]:.6g}" in r.stdout
    r = run_cli("test", f"run={diabetes_run}", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    assert {"test/mse", "test/mae", "test/r2", "test/rmse"} <= set(json.loads((diabetes_run / "checkpoints" / "test_metrics.json").read_text())["metrics"])
