"""Sweeps: an Optuna search (`+hparams_search=optuna`) optimizes the metric `train` returns, and every trial is
in runs.db; a submitit_local multirun runs its jobs as separate local processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from lightplug.runs import RunStore

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def test_optuna_search_config_composes_with_direction_sampler_and_search_space(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    out = run_cli("train", "model=mlp", "+hparams_search=optuna", "--cfg", "hydra", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    sweeper = yaml.safe_load(out.stdout)["hydra"]["sweeper"]
    assert sweeper["_target_"].endswith("OptunaSweeper") and sweeper["direction"] == "maximize" and sweeper["n_trials"] == 4
    assert sweeper["sampler"]["_target_"] == "optuna.samplers.TPESampler" and sweeper["sampler"]["seed"] == 42
    assert set(sweeper["params"]) == {"optimizer.lr", "model.hidden"}


@pytest.mark.slow
def test_optuna_sweep_finds_the_best_trial_and_records_every_trial(tmp_path: Path, lightplug_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "multirun" / "2026-01-02" / "10-11-12"
    storage = "hydra.sweeper.storage=sqlite:///optuna.db"  # as docs/scaling.md writes it: the study is kept in ./optuna.db
    out = run_cli("train", "-m", "model=mlp", "+hparams_search=optuna", storage, "trainer.max_epochs=1", *QUIET, f"hydra.sweep.dir={sweep}",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    trials = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [t.name for t in trials] == ["0", "1", "2", "3"]
    bests = [json.loads((t / "summary.json").read_text())["best"] for t in trials]
    configs = [json.loads((t / "config.json").read_text()) for t in trials]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(bests))  # maximize val/acc: the value `train` returned
    winner = configs[bests.index(max(bests))]
    assert results["best_params"] == {"optimizer.lr": pytest.approx(winner["optimizer"]["lr"]), "model.hidden": winner["model"]["hidden"]}
    assert len({c["optimizer"]["lr"] for c in configs}) == 4  # the search space was sampled

    rows = RunStore(lightplug_home / "runs.db").list_runs()
    assert [r["status"] for r in rows] == ["completed"] * 4
    assert [r["best"] for r in rows] == pytest.approx(bests)
    best_row = max(rows, key=lambda r: r["best"])
    assert best_row["run_dir"] == str(trials[bests.index(max(bests))])
    assert best_row["config"]["optimizer"]["lr"] == pytest.approx(results["best_params"]["optimizer.lr"])

    # the study in the storage, read back with Optuna's own API; a second sweep resumes it
    monkeypatch.setenv("SQLALCHEMY_SILENCE_UBER_WARNING", "1")  # SQLAlchemy 1.4's notice about 2.0, which the pin keeps away
    import optuna

    study = optuna.load_study(study_name="lightplug", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(study.trials) == 4 and study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.best_value == pytest.approx(max(bests)) and study.best_params == results["best_params"]
    more = run_cli("train", "-m", "model=mlp", "+hparams_search=optuna", storage, "hydra.sweeper.n_trials=1", "trainer.max_epochs=1", *QUIET,
                   f"hydra.sweep.dir={tmp_path / 'resumed'}", cwd=tmp_path)
    assert more.returncode == 0, more.stderr[-3000:]
    assert len(optuna.load_study(study_name="lightplug", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials) == 5


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_job_as_a_local_process(tmp_path: Path, lightplug_home: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    out = run_cli("train", "-m", "model=mlp", "model.hidden=8,16", "hydra/launcher=submitit_local", "trainer.max_epochs=1", *QUIET,
                  f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert list((sweep / ".submitit").iterdir())  # submitit's job folders
    for job, hidden in (("0", 8), ("1", 16)):
        assert json.loads((sweep / job / "config.json").read_text())["model"]["hidden"] == hidden
        assert json.loads((sweep / job / "summary.json").read_text())["best"] is not None
    rows = RunStore(lightplug_home / "runs.db").list_runs()
    assert sorted(r["config"]["model"]["hidden"] for r in rows) == [8, 16] and {r["status"] for r in rows} == {"completed"}
    assert len({r["pid"] for r in rows}) == 2  # two processes


def test_submitit_slurm_launcher_composes_with_partition_and_gpus(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    out = run_cli("train", "model=mlp", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1",
                  "hydra.launcher.timeout_min=120", "--cfg", "hydra", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    launcher = yaml.safe_load(out.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["timeout_min"]) == ("gpu", 1, 120)


def test_sql_storage_with_an_optuna_that_cannot_use_it_is_one_line_before_the_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    from lightplug.cli.train import _check_sweeper_storage
    from lightplug.errors import ConfigError

    versions = {"optuna": "2.10.1", "sqlalchemy": "2.1.9"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: versions[name.lower()])
    with pytest.raises(ConfigError, match=r"storage=sqlite:///o.db needs SQLAlchemy 1.4 with optuna 2.10.1 \(you have SQLAlchemy 2.1.9\)"):
        _check_sweeper_storage(["-m", "hydra.sweeper.storage=sqlite:///o.db"])
    _check_sweeper_storage(["-m", "hydra.sweeper.storage=null"])
    versions["sqlalchemy"] = "1.4.54"
    _check_sweeper_storage(["-m", "hydra.sweeper.storage=sqlite:///o.db"])
