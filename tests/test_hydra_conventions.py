"""Hydra's conventions work as Hydra users expect them: shell completion through the script that
`lightplug train -sc install=bash` writes, the commands `--hydra-help` advertises, `--cfg job --package`,
`--info config` showing the config the run uses, and a run's `.hydra/config.yaml` agreeing with `config.json`,
`hparams.yaml`, the checkpoint and the built model."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_cli

BIN = str(Path(sys.executable).parent)  # where `pip install` put the `lightplug` script


def _bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_script_completes_groups_options_keys_and_plugin_fields(tmp_path: Path) -> None:
    lines = {"model=": "lightplug train model=", "max": "lightplug train model=mlp trainer.max_",
             "nomodel": "lightplug train trainer.max_", "field": "lightplug train model=simple_cnn model.wi",
             "optim": "lightplug train model=mlp optimizer=", "command": "lightplug tr"}
    script = ['eval "$(lightplug train -sc install=bash)"']
    for label, line in lines.items():
        script.append(f"COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}; COMP_WORDS=($COMP_LINE); "
                      f"COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); hydra_bash_completion; echo \"{label}: ${{COMPREPLY[*]}}\"")
    out = _bash("\n".join(script), tmp_path)
    assert out.returncode == 0, out.stderr
    got = {line.split(": ", 1)[0]: line.split(": ", 1)[1].split() for line in out.stdout.splitlines() if ": " in line}
    assert {"model=mlp", "model=simple_cnn", "model=unet", "model=yolo"} <= set(got["model="])
    assert {"trainer.max_epochs=", "trainer.max_steps=", "trainer.max_time="} == set(got["max"]) == set(got["nomodel"])
    assert got["field"] == ["model.width="]  # a plugin's own field, from its schema
    assert set(got["optim"]) == {"optimizer=adam", "optimizer=adamw", "optimizer=rmsprop", "optimizer=sgd"}
    assert got["command"] == ["train"]
    assert "error" not in out.stderr.lower()


def test_every_completion_command_that_hydra_help_advertises_works(tmp_path: Path) -> None:
    help_ = run_cli("train", "--hydra-help", cwd=tmp_path)
    assert help_.returncode == 0, help_.stderr
    commands = sorted(set(re.findall(r"lightplug -sc \w+=\w+", help_.stdout)))
    assert {"lightplug -sc install=bash", "lightplug -sc install=fish", "lightplug -sc uninstall=bash"} <= set(commands)
    for command in commands:
        out = run_cli(*command.split()[1:], cwd=tmp_path)
        assert out.returncode == 0 and out.stdout.strip(), (command, out.stderr)
    assert "complete -o nospace -o default -F hydra_bash_completion lightplug" in run_cli("-sc", "install=bash").stdout
    assert "complete -c lightplug -x -a '(hydra_fish_completion)'" in run_cli("-sc", "install=fish").stdout
    fish = run_cli("-sc", "query=fish", env={"COMP_LINE": "lightplug train model=mlp optimizer="})
    assert fish.stdout.split("\n")[:4] == ["optimizer=adam", "optimizer=adamw", "optimizer=rmsprop", "optimizer=sgd"]


def test_cfg_job_package_prints_only_that_package(tmp_path: Path) -> None:
    out = run_cli("train", "model=simple_cnn", "+preset=easy", "--cfg", "job", "--package", "model", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# @package model\n")
    node = yaml.safe_load(out.stdout)
    assert node["_plugin_"] == "simple_cnn" and (node["width"], node["depth"]) == (16, 3)  # the preset, as the run uses it
    assert "trainer" not in node and "data" not in out.stdout
    one = run_cli("train", "model=simple_cnn", "--cfg", "job", "-p", "model.width", cwd=tmp_path)
    assert one.stdout.strip() == "32"
    bad = run_cli("train", "model=simple_cnn", "--cfg", "job", "-p", "modle", cwd=tmp_path)
    assert bad.returncode == 2 and "--package modle" in bad.stderr and "Traceback" not in bad.stderr


def test_info_config_shows_the_config_that_cfg_job_shows(tmp_path: Path) -> None:
    args = ("train", "model=simple_cnn", "+preset=easy")
    job = run_cli(*args, "--cfg", "job", cwd=tmp_path)
    info = run_cli(*args, "--info", "config", cwd=tmp_path)
    assert job.returncode == 0 and info.returncode == 0, info.stderr
    for heading in ("Config search path", "Defaults Tree", "Defaults List", "Config\n******"):
        assert heading in info.stdout
    shown = yaml.safe_load(info.stdout.split("Config\n******\n", 1)[1])
    assert shown == yaml.safe_load(job.stdout)
    assert shown["data"]["layout"] == "image" and shown["facts"]["num_classes"] == 10 and shown["model"]["width"] == 16
    assert shown["monitor"] == "val/acc"


@pytest.mark.slow
def test_hydra_config_yaml_config_json_hparams_checkpoint_and_model_agree(tmp_path: Path) -> None:
    import torch
    from omegaconf import OmegaConf

    import lightplug

    run = tmp_path / "run"
    out = run_cli("train", "model=simple_cnn", "+preset=easy", "model.depth=2", "trainer.max_epochs=1", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    hydra_cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert OmegaConf.to_container(hydra_cfg.model)["num_classes"].startswith("${")  # interpolations kept, as Hydra users know them
    hydra_resolved = OmegaConf.to_container(hydra_cfg, resolve=True)
    config_json = json.loads((run / "config.json").read_text())
    hparams = yaml.safe_load((run / "hparams.yaml").read_text())
    meta = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")["lightplug"]
    # the preset's width (16), the command line's depth (2) over the preset's 3, the data's facts
    expected = {"width": 16, "depth": 2, "in_channels": 1, "num_classes": 10, "image_size": 8}
    assert {k: config_json["model"][k] for k in expected} == expected
    assert hydra_resolved["model"] == config_json["model"] == meta["config"]["model"]
    assert meta["model_config"] == {k: v for k, v in config_json["model"].items() if k != "_plugin_"}
    assert {k: hparams[f"model.{k}"] for k in expected} == expected
    for key in ("data", "trainer", "optimizer", "scheduler", "logger", "callbacks", "seed", "monitor", "monitor_mode"):
        assert hydra_resolved[key] == config_json[key], key
    assert hydra_resolved["facts"] == {k: v for k, v in config_json["facts"].items() if k not in ("label_names", "task")}
    assert hparams["trainer.max_epochs"] == 1 and hparams["monitor"] == "val/acc"
    net = lightplug.load_model(run / "checkpoints" / "best.ckpt")
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 and convs[0].out_channels == 16
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert overrides == ["model=simple_cnn", "+preset=easy", "model.depth=2", "trainer.max_epochs=1"]  # as typed
