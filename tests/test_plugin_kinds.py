"""Data and callback plugins use the same mechanism as models: entry points, typed configs in the
ConfigStore (`data/<name>`, `callbacks/<name>`), listing without torch, facts bound to the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_dist, run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]

DATA = '''
from dataclasses import dataclass
from typing import Annotated
from lightplug import DataPlugin, Param

@dataclass
class BlobsConfig:
    num_samples: Annotated[int, Param(ge=20, help="points generated")] = 300
    num_classes: Annotated[int, Param(ge=2, le=8, help="blobs")] = 3
    num_features: Annotated[int, Param(ge=2, help="dimensions")] = 5
    batch_size: Annotated[int, Param(ge=1, help="samples per batch")] = 32
    seed: int = 0

class Blobs(DataPlugin):
    """Gaussian blobs from scikit-learn."""
    task = "classification"
    Config = BlobsConfig

    def facts(self, cfg):
        return {"num_classes": cfg.num_classes, "num_outputs": cfg.num_classes, "in_features": cfg.num_features,
                "label_names": [f"blob{i}" for i in range(cfg.num_classes)]}

    def build(self, cfg):
        from lp_blobs_data import make
        return make(cfg)
'''

DATA_HEAVY = '''
import numpy as np
from sklearn.datasets import make_blobs
from lightplug.data.datamodule import TensorDataModule

def make(cfg):
    x, y = make_blobs(n_samples=cfg.num_samples, centers=cfg.num_classes, n_features=cfg.num_features, random_state=cfg.seed)
    cfg.num_workers, cfg.pin_memory, cfg.persistent_workers = 0, False, False
    cfg.val_fraction, cfg.test_fraction, cfg.split_seed = 0.25, 0.0, 0
    return TensorDataModule(x.astype(np.float32), y.astype(np.int64), cfg, [f"blob{i}" for i in range(cfg.num_classes)],
                            {"layout": "flat", "in_features": cfg.num_features})
'''

CALLBACK = '''
import json
from pathlib import Path
import lightning as L

class EpochMarker(L.Callback):
    """Writes one line per finished epoch to a file."""
    def __init__(self, path: str = "epochs.txt", prefix: str = "epoch") -> None:
        self.path, self.prefix = path, prefix
    def on_train_epoch_end(self, trainer, pl_module):
        with open(self.path, "a") as fh:
            fh.write(f"{self.prefix} {trainer.current_epoch}\\n")
'''


@pytest.fixture
def kinds_env(site_env: tuple[Path, dict[str, str]]) -> dict[str, str]:
    site, env = site_env
    make_dist(site, "lp-blobs", entry_points={"lightplug.datamodules": {"blobs": "lp_blobs:Blobs"},
                                               "lightplug.callbacks": {"epoch_marker": "lp_marker:EpochMarker"}},
              modules={"lp_blobs.py": DATA, "lp_blobs_data.py": DATA_HEAVY, "lp_marker.py": CALLBACK})
    return env


def test_data_and_callback_plugins_are_listed_without_torch(kinds_env: dict[str, str]) -> None:
    data = {r["name"]: r for r in json.loads(run_cli("data", "--json", env=kinds_env).stdout)}
    assert data["blobs"]["package"] == "lp-blobs" and "digits" in data
    cbs = {r["name"]: r for r in json.loads(run_cli("callbacks", "--json", env=kinds_env).stdout)}
    assert cbs["epoch_marker"]["package"] == "lp-blobs"
    shown = json.loads(run_cli("data", "show", "blobs", "--json", env=kinds_env).stdout)
    assert shown["properties"]["num_classes"]["maximum"] == 8


def test_bad_data_plugin_values_are_reported_with_the_plugin_help(kinds_env: dict[str, str], tmp_path: Path) -> None:
    out = run_cli("train", "model=mlp", "data=blobs", "data.num_classes=12", "data.num_samples=5", cwd=tmp_path, env=kinds_env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "data.num_classes=12: above the maximum 8 (blobs: blobs)" in out.stderr
    assert "data.num_samples=5: below the minimum 20 (blobs: points generated)" in out.stderr


@pytest.mark.slow
def test_data_plugin_trains_with_bound_facts_and_callback_plugin_runs(kinds_env: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = run_cli("train", "model=mlp", "data=blobs", "data.num_classes=4", "callbacks=[default,epoch_marker]",
                  f"callbacks.epoch_marker.path={tmp_path / 'marks.txt'}", "callbacks.epoch_marker.prefix=done",
                  "trainer.max_epochs=3", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path, env=kinds_env)
    assert out.returncode == 0, out.stderr[-2000:]
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["model"]["num_classes"], cfg["model"]["in_features"]) == (4, 5)
    assert json.loads((run / "summary.json").read_text())["best"] > 0.9
    assert (tmp_path / "marks.txt").read_text().splitlines() == ["done 0", "done 1", "done 2"]
    # switched on by its settings alone; the rest take their defaults
    alone = run_cli("train", "model=mlp", "data=blobs", f"+callbacks.epoch_marker.path={tmp_path / 'alone.txt'}", "trainer.max_epochs=1",
                    f"hydra.run.dir={tmp_path / 'alone'}", *QUIET, cwd=tmp_path, env=kinds_env)
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert (tmp_path / "alone.txt").read_text().splitlines() == ["epoch 0"]
    bad = run_cli("train", "model=mlp", "data=blobs", "+callbacks.epoch_marker.prefx=x", cwd=tmp_path, env=kinds_env)
    assert bad.returncode == 2 and "callbacks.epoch_marker.prefx: unknown key (did you mean callbacks.epoch_marker.prefix?)" in bad.stderr
