"""Loggers from config: CSV, TensorBoard, Weights & Biases (offline) and MLflow (local file store), several
at once, each read back from what it wrote: TensorBoard's event files, the W&B run file, MLflow's metric files."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records of an offline W&B run file (``run-ID.wandb``): a 7-byte ``:W&B`` header, then
    LevelDB-log framing (32 KiB blocks; each chunk: crc32, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer: padding
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (2, 3):  # first, middle
            pending += chunk
        elif kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record
        else:
            return


def read_wandb_run(path: Path) -> dict[str, Any]:
    """Run settings, config, history keys and summary of an offline W&B run file."""
    run: dict[str, Any] = {"config": {}, "summary": {}, "history": set()}
    for rec in wandb_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.update(group=rec.run.run_group, tags=list(rec.run.tags), job_type=rec.run.job_type, project=rec.run.project)
            run["config"].update({u.key: json.loads(u.value_json) for u in rec.run.config.update})
        elif kind == "config":
            run["config"].update({u.key: json.loads(u.value_json) for u in rec.config.update})
        elif kind == "summary":
            run["summary"].update({u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in rec.summary.update})
        elif kind == "history":
            run["history"].update(u.key or "/".join(u.nested_key) for u in rec.history.item)
    return run


@pytest.mark.slow
def test_csv_tensorboard_wandb_and_mlflow_log_together(tmp_path: Path, lightplug_home: Path) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "outputs" / "2026-01-02" / "10-11-12"
    out = run_cli("train", "model=mlp", "+preset=easy", "trainer.max_epochs=2", "model.hidden=16", *QUIET, "logger=[csv,tensorboard,wandb,mlflow]",
                  f"hydra.run.dir={run_dir}", cwd=tmp_path, env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())

    # CSV
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "val/acc" in header and "train/loss" in header

    # TensorBoard: event files with val/acc at both epochs
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert {"val/acc", "val/loss", "train/loss"} <= set(events.Tags()["scalars"])
    acc = [e.value for e in events.Scalars("val/acc")]
    assert len(acc) == 2 and max(acc) == pytest.approx(summary["best"])

    # W&B (offline): flat resolved config with the plugin, metrics, best checkpoint, group and tags
    (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    wb = read_wandb_run(run_file)
    assert wb["group"] == "mlp" and {"mlp", "classification", "preset:easy"} <= set(wb["tags"]) and wb["job_type"] == "easy"
    assert wb["project"] == "lightplug"
    config = wb["config"]
    assert config["model.hidden"] == 16 and config["model._plugin_"] == "mlp" and config["data._plugin_"] == "digits"
    assert config["plugin.name"] == "mlp" and config["plugin.dist"] == "lightplug-mlp" and config["plugin.version"]
    assert config["monitor"] == "val/acc" and config["trainer.max_epochs"] == 2
    assert {"val/acc", "val/loss", "train/loss"} <= wb["history"]
    assert wb["summary"]["best_checkpoint"] == summary["best_checkpoint"] == str(run_dir / "checkpoints" / "best.ckpt")
    assert wb["summary"]["best/val/acc"] == pytest.approx(summary["best"])
    assert wb["summary"]["val/acc"] == pytest.approx(summary["metrics"]["val/acc"])

    # MLflow: a local file store in $LIGHTPLUG_HOME, beside the runs index, with metric and param files
    (mlflow_run,) = [p for p in (lightplug_home / "mlruns").glob("*/*") if (p / "metrics").is_dir()]
    assert (mlflow_run / "metrics" / "val" / "acc").read_text().strip().count("\n") == 1  # two epochs
    assert (mlflow_run / "params" / "plugin.name").read_text() == "mlp"
    assert (mlflow_run / "tags" / "model").read_text() == "mlp"

    # and the run is in the index
    from lightplug.runs import RunStore

    (row,) = RunStore(lightplug_home / "runs.db").list_runs()
    assert row["status"] == "completed" and row["best"] == pytest.approx(summary["best"])


def test_logger_choices_compose_to_the_chosen_loggers_only(tmp_path: Path) -> None:
    out = run_cli("train", "model=mlp", "logger=[csv,tensorboard]", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    section = out.stdout.split("\nlogger:\n")[1].split("\ncallbacks:")[0]
    assert "csv:" in section and "tensorboard:" in section and "wandb" not in section and "mlflow" not in section


def test_every_logger_but_none_composes_with_the_csv_beside_it(tmp_path: Path) -> None:
    for choice, expected in {"tensorboard": {"csv", "tensorboard"}, "wandb": {"csv", "wandb"}, "mlflow": {"csv", "mlflow"},
                             "[wandb,mlflow]": {"csv", "wandb", "mlflow"}, "none": set()}.items():
        out = run_cli("train", "model=mlp", f"logger={choice}", "--cfg", "job", "--package", "logger", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert set(yaml.safe_load(out.stdout) or {}) == expected, choice


@pytest.mark.slow
def test_wandb_alone_keeps_metrics_csv_finishes_its_run_and_logs_lists_as_lists(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    run_dir = tmp_path / "run"
    out = run_cli("train", "model=mlp", "trainer.max_epochs=1", "logger=wandb", "logger.wandb.tags=[a,b]", f"hydra.run.dir={run_dir}",
                  cwd=tmp_path, env={"WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "anonymous setting" not in out.stdout + out.stderr
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "val/acc" in header and "train/loss" in header
    (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    config = read_wandb_run(run_file)["config"]
    assert config["optimizer.betas"] == [0.9, 0.999] and config["logger.wandb.tags"] == ["a", "b"] and config["export.formats"] == []
    assert config["facts.label_names"] == [str(i) for i in range(10)]
    debug = (run_file.parent / "logs" / "debug.log").read_text()
    assert "finishing run" in debug and "HandleAbandonedError" not in debug and "ERROR" not in debug
