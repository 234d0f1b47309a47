"""A config is fitted to its model plugin before it is validated: the data settings the model asks for (its
`data_needs` hook) are set on data that has them, unless the user chose them, and a preset value the plugin's
`check` refuses for the other values is left out, while the same value from the user is refused. `check-plugin`
applies presets the same way and refuses wrong values of the user's with one line. Composed and finalized in this
process, as `lightplug train ... --cfg job` does: nothing here imports torch or trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lightplug.errors import ConfigError
from lightplug.registry import Registry

PATCHY = '''
from dataclasses import dataclass

from lightplug import ModelPlugin


@dataclass
class PatchyConfig:
    in_channels: int = 1
    image_size: int = 8
    num_classes: int = 10
    patch: int = 4
    dropout: float = 0.0


class Patchy(ModelPlugin):
    """Embeds square patches: the image size must be a multiple of the patch; patch 3 has no dropout."""

    Config = PatchyConfig
    presets = {"advanced": {"dropout": 0.2}}

    def check(self, cfg):
        problems = []
        if cfg.image_size % cfg.patch:
            problems.append(f"model.image_size={cfg.image_size}: not a multiple of the patch {cfg.patch}")
        if cfg.dropout and cfg.patch == 3:
            problems.append(f"model.dropout={cfg.dropout}: patch 3 has no dropout")
        return problems

    def data_needs(self, cfg):
        extra = -cfg.image_size % cfg.patch
        return {"image_size": cfg.image_size + extra} if extra else {}

    def build(self, cfg):
        from torch import nn

        return nn.Sequential(nn.Conv2d(cfg.in_channels, 8, cfg.patch, stride=cfg.patch), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Dropout(cfg.dropout), nn.Linear(8, cfg.num_classes))
'''


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "patchy.py").write_text(PATCHY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIGHTPLUG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LIGHTPLUG_PLUGIN_PATH", raising=False)
    return Registry()


def finalized(registry: Registry, *args: str) -> Any:
    """The RunConfig of `lightplug train ARGS` (composed and finalized as `--cfg job` does)."""
    from hydra import compose, initialize_config_dir

    from lightplug.cli.train import _choices, register_configs
    from lightplug.config.finalize import finalize, plain_choices
    from lightplug.config.paths import conf_dir

    register_configs(registry, _choices(list(args)))
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=list(args), return_hydra_config=True)
    return finalize(cfg, plain_choices(cfg.hydra.runtime.choices), list(args), registry)


def test_data_is_resized_to_what_the_model_needs_unless_the_user_chose_the_size(registry: Registry) -> None:
    run = finalized(registry, "model=patchy", "model.patch=3", "data=synthetic")
    assert run.cfg["data"]["image_size"] == run.cfg["model"]["image_size"] == run.facts["image_size"] == 18
    assert "data.image_size=18 instead of the data's default 16: what model patchy (patch=3) needs" in run.notes
    assert finalized(registry, "model=patchy", "data=synthetic").cfg["data"]["image_size"] == 16  # 16 fits patch 4: left alone
    with pytest.raises(ConfigError) as given:  # the user's size stands, and the plugin's check says why it does not fit
        finalized(registry, "model=patchy", "model.patch=3", "data=synthetic", "data.image_size=16")
    assert given.value.problems == ["model.image_size=16: not a multiple of the patch 3"]
    with pytest.raises(ConfigError) as digits:  # digits' 8x8 images have no size setting
        finalized(registry, "model=patchy", "model.patch=3")
    assert digits.value.problems == ["model.image_size=8: not a multiple of the patch 3"]


def test_a_preset_value_the_plugin_refuses_is_left_out_and_the_same_value_from_the_user_is_refused(registry: Registry) -> None:
    assert finalized(registry, "model=patchy", "+preset=advanced").cfg["model"]["dropout"] == 0.2
    run = finalized(registry, "model=patchy", "model.patch=3", "data=synthetic", "+preset=advanced")
    assert run.cfg["model"]["dropout"] == 0.0 and run.cfg["data"]["image_size"] == 18
    assert "+preset=advanced: model.dropout=0.2 left out (patch 3 has no dropout)" in run.notes
    with pytest.raises(ConfigError) as given:
        finalized(registry, "model=patchy", "model.patch=3", "model.dropout=0.2", "data=synthetic", "+preset=advanced")
    assert given.value.problems == ["model.dropout=0.2: patch 3 has no dropout"]


def test_check_plugin_builds_presets_as_train_does_and_refuses_the_users_wrong_values(registry: Registry) -> None:
    from lightplug.testing import check_plugin

    report = check_plugin("patchy", overrides={"patch": 3, "image_size": 9}, registry=registry, checks=["schema", "build", "build:advanced"])
    assert report.ok, report.lines()
    assert report["build:advanced"].reason == "the same config as build, not built again (+preset=advanced: model.dropout=0.2 left out (patch 3 has no dropout))"
    assert report["forward"].status == "SKIP" and report["forward"].reason == "not selected"
    with pytest.raises(ConfigError) as wrong:
        check_plugin("patchy", overrides={"model.patch": 3, "dropuot": 0.1}, registry=registry)
    assert wrong.value.problems == ["model.dropuot: unknown key (did you mean model.dropout?)", "model.image_size=8: not a multiple of the patch 3"]
