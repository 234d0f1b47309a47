"""DDP on 2 CPU processes (gloo) under Hydra: one output folder, rank-0 files only, synced metrics,
and multirun jobs that each launch their own ranks (Lightning dropped multirun + DDP, #15737)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]


@pytest.mark.slow
def test_ddp_single_run_uses_one_folder_and_matches_single_process_accuracy(tmp_path: Path) -> None:
    common = ["model=mlp", "+preset=easy", "optimizer.lr=0.006", *QUIET]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    one = run_cli("train", *common, f"hydra.run.dir={single}", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = run_cli("train", *common, *DDP, f"hydra.run.dir={ddp}", cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "MEMBER: 2/2" in two.stdout + two.stderr
    # one run folder: nothing written anywhere else (no outputs/ from the child rank); the runs index
    # next to the run folders holds one row per run (rank 0 records, the child rank does not)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "runs.db", "single"]
    import sqlite3

    with sqlite3.connect(tmp_path / "runs.db") as db:
        assert sorted(Path(r[0]).name for r in db.execute("select run_dir from runs")) == ["ddp", "single"]
    assert (ddp / "checkpoints" / "best.ckpt").is_file() and (ddp / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (ddp / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    a = json.loads((single / "summary.json").read_text())["best"]
    b = json.loads((ddp / "summary.json").read_text())["best"]
    assert b >= 0.93 and abs(a - b) < 0.05, (a, b)
    # val/acc is computed over both ranks' shards (359 samples, padded to 360 by the DistributedSampler):
    # every value is a multiple of 1/360, and some are not multiples of 1/180 (what one rank alone gives)
    rows = (ddp / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("val/acc")
    counts = [float(r.split(",")[col]) * 360 for r in rows[1:] if r.split(",")[col]]
    assert counts and all(abs(c - round(c)) < 1e-3 for c in counts)
    assert any(round(c) % 2 == 1 for c in counts)
    # rank 0 wrote the validation files once, for the best epoch, with both ranks' samples
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["artifacts_epoch"] == summary["best_epoch"] is not None and "confusion_matrix.png" in summary["artifacts"]
    samples = (ddp / "val_predictions.csv").read_text().splitlines()[1:]
    assert len(samples) == 359 and all(line.endswith(f",{summary['best_epoch']}") for line in samples)


@pytest.mark.slow
def test_multirun_with_ddp_runs_each_job_with_its_own_ranks_in_its_own_folder(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    out = run_cli("train", "-m", "model=mlp", "model.hidden=16,32", "trainer.max_epochs=1", *DDP, *QUIET,
                  f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]  # no second multirun folder from a child rank
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml", "runs.db"]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    for job, hidden in zip(jobs, (16, 32)):
        assert json.loads((job / "config.json").read_text())["model"]["hidden"] == hidden
        assert (job / "checkpoints" / "best.ckpt").is_file()
        assert json.loads((job / "summary.json").read_text())["best"] is not None


@pytest.mark.slow
def test_ddp_detection_map_covers_both_ranks(tmp_path: Path) -> None:
    """mAP under DDP is computed over both ranks' images: the logged val/map_50 equals a one-process
    evaluation of the same weights on the whole validation split (32 images: no sampler padding)."""
    import csv

    plugins = {"LIGHTPLUG_PLUGIN_PATH": str(Path(__file__).parent / "detection_plugins")}
    data = ["data=shapes", "data.task=detection", "data.image_size=32", "data.num_samples=128", "data.val_fraction=0.25", "data.test_fraction=0"]
    run = tmp_path / "ddp"
    two = run_cli("train", "model=tiny_fcos", *data, "trainer.max_epochs=1", *DDP, *QUIET, f"hydra.run.dir={run}", cwd=tmp_path, env=plugins)
    assert two.returncode == 0, two.stderr[-3000:]
    logged = [float(r["val/map_50"]) for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/map_50")]
    one = run_cli("test", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", cwd=tmp_path, env=plugins)
    assert one.returncode == 0, one.stderr[-3000:]
    report = json.loads((run / "checkpoints" / "test_metrics.json").read_text())
    value = float(report["metrics"]["test/map_50"])
    assert logged and value == pytest.approx(logged[-1], abs=1e-4), (value, logged)
    rows = list(csv.DictReader((run / "val_predictions.csv").open()))
    assert len(rows) == 32 and len({r["index"] for r in rows}) == 32  # rank 0 wrote both ranks' images
