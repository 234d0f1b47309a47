"""Precision and scaling strategies: bf16-mixed trains on CPU; the fsdp and deepspeed trainer configs compose
into the trainer section Lightning receives (they need GPUs to run, see docs/scaling.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


@pytest.mark.slow
def test_bf16_mixed_precision_trains_on_cpu(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    out = run_cli("train", "model=mlp", "trainer.max_epochs=1", "model.hidden=16", "trainer.accelerator=cpu", "trainer.precision=bf16-mixed",
                  *QUIET, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "bfloat16" in out.stdout + out.stderr
    assert json.loads((run_dir / "config.json").read_text())["trainer"]["precision"] == "bf16-mixed"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best"] is not None and 0.0 <= summary["best"] <= 1.0
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.parametrize(("trainer", "strategy"), [("fsdp", "fsdp"), ("deepspeed", "deepspeed_stage_2")])
def test_sharded_strategy_configs_compose_the_trainer_section(tmp_path: Path, trainer: str, strategy: str) -> None:
    out = run_cli("train", "model=mlp", f"trainer={trainer}", "trainer.num_nodes=2", "trainer.devices=4", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    section = yaml.safe_load(out.stdout)["trainer"]
    assert section["strategy"] == strategy and section["accelerator"] == "gpu" and section["precision"] == "bf16-mixed"
    assert section["num_nodes"] == 2 and section["devices"] == 4
    assert section["max_epochs"] == 10  # the rest comes from trainer/default.yaml


def test_scaling_doc_covers_precision_strategies_clusters_and_sweeps() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "scaling.md").read_text()
    for word in ("trainer=ddp", "trainer.accelerator=cpu", "16-mixed", "bf16-mixed", "trainer=fsdp", "trainer=deepspeed", "torchrun",
                 "LOCAL_RANK", "does not launch", "#SBATCH --nodes=2", "srun lightplug train", "trainer.num_nodes=2 trainer.devices=4",
                 "hydra.run.dir", "+hparams_search=optuna", "hydra.sweeper.direction", "maximize", "hydra/launcher=submitit_local",
                 "hydra/launcher=submitit_slurm", "hydra.launcher.partition", "hydra.launcher.gpus_per_node", "runs.db"):
        assert word in text, f"docs/scaling.md does not mention {word}"
