"""What the core and `check-plugin --kind data` say about data plugins that break the contract: a data module of the
wrong Lightning package, an empty split, no `preprocessing`, facts that disagree with the batches. Each is one line
(exit code 2 for `train`, a FAIL line for `check-plugin`), never a traceback from deep inside Lightning."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import make_dist, plugins_discovered_here, run_cli

PLUGINS = '''
from dataclasses import dataclass

from lightplug import DataPlugin, LoaderConfig


@dataclass
class Cfg(LoaderConfig):
    batch_size: int = 16


def _module(cfg, preprocessing=True):
    import numpy as np

    from lightplug import TensorDataModule

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, 6)).astype(np.float32), rng.integers(0, 3, size=96)
    return TensorDataModule(x, y, cfg, ["a", "b", "c"], {"layout": "flat", "in_features": 6} if preprocessing else {})


FACTS = {"in_features": 6, "num_classes": 3, "num_outputs": 3, "label_names": ["a", "b", "c"]}


class OldPackage(DataPlugin):
    """A data module built on pytorch_lightning instead of lightning."""

    Config = Cfg

    def facts(self, cfg):
        return FACTS

    def build(self, cfg):
        import pytorch_lightning as pl

        class Module(pl.LightningDataModule):
            def train_dataloader(self):
                return _module(cfg).train_dataloader()

            def val_dataloader(self):
                return _module(cfg).val_dataloader()

        return Module()


class NoCheck(DataPlugin):
    """Split fractions without LoaderData's check: val_fraction + test_fraction >= 1 leaves no training sample."""

    Config = Cfg

    def facts(self, cfg):
        return FACTS

    def build(self, cfg):
        return _module(cfg)


class NoPreprocessing(NoCheck):
    """A data module that does not say how predict prepares inputs."""

    def build(self, cfg):
        return _module(cfg, preprocessing=False)


class WrongFacts(NoCheck):
    """Facts that promise 2 classes and 4 features of a table of 3 classes and 6 features."""

    def facts(self, cfg):
        return {"in_features": 4, "num_classes": 2, "label_names": ["a", "b"]}


class FewClasses(NoCheck):
    """Facts that promise 2 classes of a table whose targets are 0, 1 and 2."""

    def facts(self, cfg):
        return {"in_features": 6, "num_classes": 2, "num_outputs": 2, "label_names": ["a", "b"]}


class BrokenFacts(NoCheck):
    """A bug in facts(): not a DataError."""

    def facts(self, cfg):
        return {"in_features": 6}["num_classes"]
'''
NAMES = {"old_package": "OldPackage", "no_check": "NoCheck", "no_preprocessing": "NoPreprocessing", "wrong_facts": "WrongFacts", "broken_facts": "BrokenFacts",
         "few_classes": "FewClasses"}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = make_dist(tmp_path / "site", "lp-rule-data", entry_points={"lightplug.datamodules": {k: f"lp_rule_data:{v}" for k, v in NAMES.items()}},
                     modules={"lp_rule_data.py": PLUGINS})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("LIGHTPLUG_CACHE_DIR", str(tmp_path / "cache"))
    return site


def _env(site: Path, tmp_path: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "LIGHTPLUG_CACHE_DIR": str(tmp_path / "cache")}


def _report(name: str, **overrides: object) -> dict[str, tuple[str, str]]:
    from lightplug.testing import check_plugin

    with plugins_discovered_here():
        report = check_plugin(name, "data", dict(overrides))
    return {r.name: (r.status, r.reason) for r in report.results}


@pytest.mark.skipif(sys.platform == "win32", reason="subprocess environment")
def test_a_pytorch_lightning_data_module_is_one_line_that_says_what_to_change(site: Path, tmp_path: Path) -> None:
    pytest.importorskip("pytorch_lightning")
    out = run_cli("train", "model=mlp", "data=old_package", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=_env(site, tmp_path))
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr and "Expected a parent" not in out.stderr, out.stderr
    assert "a pytorch_lightning.LightningDataModule" in lines[0] and "import lightning as L" in lines[0], lines[0]
    assert not (tmp_path / "run" / "checkpoints").exists()  # check-plugin's build check prints the same line (wrong_datamodule)


def test_an_empty_training_split_is_one_line_in_train_and_in_check_plugin(site: Path, tmp_path: Path) -> None:
    out = run_cli("train", "model=mlp", "data=no_check", "data.val_fraction=0.5", "data.test_fraction=0.5", f"hydra.run.dir={tmp_path / 'run'}",
                  cwd=tmp_path, env=_env(site, tmp_path))
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [
        "error: data 'no_check': the train split is empty (no batch to train on) (check the split settings (val_fraction, test_fraction) "
        "and that the data has samples)"]
    report = _report("no_check", val_fraction=0.5, test_fraction=0.5)
    assert report["train_batch"] == ("FAIL", "the train split is empty: train_dataloader() yields no batch (check the split settings and the data)")
    assert report["val_batch"][0] == "PASS"


def test_check_plugin_fails_a_data_module_without_preprocessing(site: Path) -> None:
    report = _report("no_preprocessing")
    status, reason = report["preprocessing"]
    assert status == "FAIL" and "no preprocessing dict" in reason and "'layout': 'flat'" in reason
    assert all(s == "PASS" for name, (s, _) in report.items() if name != "preprocessing"), report
    good = _report("no_check")["preprocessing"]
    assert good[0] == "PASS" and "input (6,)" in good[1]


def test_check_plugin_compares_facts_with_the_labels_and_the_width_of_the_batches(site: Path) -> None:
    status, reason = _report("wrong_facts")["facts_match"]
    assert status == "FAIL", reason
    assert "in_features=4 but the batch has 6" in reason and "num_classes=2 but the targets seen range over [0, 2]" in reason


def test_a_bug_in_facts_is_one_line_naming_the_plugin(site: Path, tmp_path: Path) -> None:
    out = run_cli("train", "model=mlp", "data=broken_facts", cwd=tmp_path, env=_env(site, tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == ["error: data plugin lp_rule_data.BrokenFacts failed to compute its facts: KeyError: 'num_classes' "
                                               "(raise lightplug.DataError for a problem of the user's data; --debug shows the traceback)"]


def test_the_line_for_a_build_result_of_the_wrong_kind_names_the_fix() -> None:
    from lightplug.data.module_kind import wrong_datamodule

    class LightningDataModule:  # what pytorch_lightning's class looks like to the check: its module and name
        pass

    LightningDataModule.__module__ = "pytorch_lightning.core.datamodule"
    old = type("Module", (LightningDataModule,), {})()
    assert wrong_datamodule(old) == ("build() returned Module, a pytorch_lightning.LightningDataModule; lightplug trains with the lightning "
                                     "package: change `import pytorch_lightning as pl` to `import lightning as L` and subclass L.LightningDataModule")
    assert wrong_datamodule(None).startswith("build() returned NoneType, not a lightning.LightningDataModule")


def test_a_target_outside_the_facts_classes_is_one_line_in_train(site: Path, tmp_path: Path) -> None:
    """Found by an outside attack: torch's "Target 2 is out of bounds" from inside the loss was a 78-line traceback, exit 1."""
    out = run_cli("train", "model=mlp", "data=few_classes", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                  env=_env(site, tmp_path))
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(errors) == 1, out.stderr[-2000:]
    assert "data 'few_classes'" in errors[0] and "outside the classes 0..1" in errors[0], errors
