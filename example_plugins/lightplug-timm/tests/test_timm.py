"""Tests of the timm plugin through the installed entry point and the real CLI. Nothing is downloaded:
weight files are written by the tests from randomly initialised models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lightplug

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real ``lightplug`` command and capture its output."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "lightplug", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def save_imagenet_resnet18(path: Path) -> dict[str, object]:
    """Write the weights of a randomly initialised ImageNet-shaped resnet18 (3 channels, 1000 classes) as safetensors."""
    from safetensors.torch import save_file

    state = lightplug.build_model("timm", arch="resnet18", in_channels=3, num_classes=1000).state_dict()
    save_file(state, str(path))
    return state


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet18 trained on a quarter of an epoch of digits (1 channel, 10 classes), starting from a local
    3-channel, 1000-class weights file. (Limits are fractions: ``limit_train_batches=4`` would become 4.0.)"""
    tmp = tmp_path_factory.mktemp("timm")
    save_imagenet_resnet18(tmp / "resnet18.safetensors")
    result = run_cli("train", "model=timm", "model.arch=resnet18", "model.pretrained_file=resnet18.safetensors", "trainer.max_epochs=1",
                     "data.batch_size=64", "+trainer.limit_train_batches=0.25", "+trainer.limit_val_batches=0.25",
                     "callbacks.checkpoint.save_last=false", f"hydra.run.dir={tmp}/run", *QUIET, cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "run"


@pytest.mark.slow
def test_resnet18_trains_on_digits_from_a_local_file(digits_run: Path, caplog: pytest.LogCaptureFixture) -> None:
    summary = json.loads((digits_run / "summary.json").read_text())
    assert summary["monitor"] == "val/acc" and 0 <= summary["best"] <= 1
    # The run's pretrained_file was relative to its folder: the checkpoint loads from here without it.
    net = lightplug.load_model(digits_run / "checkpoints" / "best.ckpt")
    assert "model.pretrained_file=resnet18.safetensors: no such file" in caplog.text
    assert type(net).__module__.startswith("timm.")
    assert net.conv1.in_channels == 1 and net.fc.out_features == 10  # in_chans and num_classes bound to digits


@pytest.mark.slow
def test_a_lightplug_checkpoint_is_a_pretrained_file(digits_run: Path) -> None:
    import torch

    ckpt = digits_run / "checkpoints" / "best.ckpt"
    trained = lightplug.load_model(ckpt)
    net = lightplug.build_model("timm", arch="resnet18", in_channels=1, num_classes=3, pretrained_file=str(ckpt))
    assert torch.equal(net.layer4[1].conv2.weight, trained.layer4[1].conv2.weight)
    assert net.fc.out_features == 3  # another number of classes: the classifier is left as initialised


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_round_trip_with_a_new_classifier_and_channels(tmp_path: Path, suffix: str) -> None:
    import torch

    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        source = save_imagenet_resnet18(path)
    else:
        source = lightplug.build_model("timm", arch="resnet18", in_channels=3, num_classes=1000).state_dict()
        torch.save(source, path)
    net = lightplug.build_model("timm", arch="resnet18", in_channels=1, num_classes=10, pretrained_file=str(path))
    loaded = net.state_dict()
    for key, value in source.items():
        if key == "conv1.weight":  # RGB filters summed for one channel, as timm does
            assert torch.allclose(loaded[key], value.sum(dim=1, keepdim=True))
        elif not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    assert loaded["fc.weight"].shape == (10, 512)


def test_unknown_arch_and_missing_file_exit_2_with_one_line_each(tmp_path: Path) -> None:
    result = run_cli("train", "model=timm", "model.arch=resnt18", "model.pretrained_file=nowhere.safetensors", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 2
    assert "model.arch=resnt18: unknown timm architecture (did you mean resnet18" in result.stderr
    assert "model.pretrained_file=nowhere.safetensors: no such file" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unusable_weight_files_raise_a_checkpoint_error(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a weights file")
    with pytest.raises(lightplug.CheckpointError, match=r"model.pretrained_file=.*garbage.pth: cannot read weights from it \(not a weights file, or damaged\)"):
        lightplug.build_model("timm", arch="resnet18", pretrained_file=str(garbage))
    other = tmp_path / "resnet10t.safetensors"
    save_file(lightplug.build_model("timm", arch="resnet10t").state_dict(), str(other))
    with pytest.raises(lightplug.CheckpointError, match=r"resnet10t.safetensors does not fit model.arch=resnet18"):
        lightplug.build_model("timm", arch="resnet18", pretrained_file=str(other))


@pytest.mark.slow
def test_train_resizes_the_data_to_a_size_the_architecture_takes_and_fits_the_preset_to_it(tmp_path: Path) -> None:
    """densenet121 does not run on synthetic's default 16x16 images and takes no drop_path_rate: the run uses 32x32
    images (stated in the config), leaves the advanced preset's drop_path_rate out, says both, and trains."""
    result = run_cli("train", "model=timm", "model.arch=densenet121", "+preset=advanced", "data=synthetic", "data.num_samples=32",
                     "data.batch_size=8", "trainer.max_epochs=1", "callbacks.checkpoint.save_last=false", f"hydra.run.dir={tmp_path}/run", *QUIET,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "data.image_size=32 instead of the data's default 16: what model timm (arch=densenet121) needs" in out
    assert "+preset=advanced: model.drop_path_rate=0.05 left out (densenet121 takes no drop_path_rate" in out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["image_size"] == config["model"]["image_size"] == 32
    assert config["model"]["drop_path_rate"] == 0.0 and config["optimizer"]["name"] == "adamw"  # the preset's training part stays
    net = lightplug.load_model(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert type(net).__name__ == "DenseNet" and net.classifier.out_features == 4


def test_data_that_cannot_be_resized_and_an_argument_the_architecture_lacks_are_refused_before_training(tmp_path: Path) -> None:
    """digits' 8x8 images have no size setting: the one line names the size densenet121 takes; a drop_path_rate given
    on the command line is refused with the close matches among densenet121's own arguments."""
    result = run_cli("train", "model=timm", "model.arch=densenet121", "model.drop_path_rate=0.1", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "model.drop_path_rate=0.1: densenet121 takes no drop_path_rate (did you mean drop_rate or growth_rate?)" in result.stderr
    assert "model.image_size=8: densenet121 does not run on 8x8 images; it runs on 32x32 (timm's own size: 224x224)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_plugin_knows_each_architectures_arguments_and_sizes_from_timm() -> None:
    from lightplug_timm.arch import arch_info, argument_problem, fit_size

    assert "drop_path_rate" not in arch_info("ghostnet_100").takes and "drop_path_rate" in arch_info("resnet18").takes
    assert arch_info("vit_tiny_patch16_224").native == 224 and "img_size" in arch_info("vit_tiny_patch16_224").takes
    assert argument_problem("efficientvit_m0", "drop_path_rate", 0.1) == \
        "model.drop_path_rate=0.1: efficientvit_m0 takes no drop_path_rate (did you mean drop_rate?)"
    # img_size is passed: a ViT runs on 16x16 images; convolutions without padding need the full reduction;
    # halo attention needs its blocks whole; a fixed-size LeViT runs on 16x16 once built for it
    assert [fit_size(a, 1, 8) for a in ("resnet18", "vit_tiny_patch16_224", "convnext_atto", "halonet26t", "levit_128s")] == [8, 16, 32, 256, 16]
    net = lightplug.build_model("timm", arch="vit_tiny_patch16_224", in_channels=1, num_classes=3, image_size=16)
    assert net.patch_embed.img_size == (16, 16)
    assert lightplug.build_model("timm", arch="vit_tiny_patch16_224").patch_embed.img_size == (224, 224)  # 0: timm's own


def test_check_plugin_refuses_values_the_user_got_wrong_with_one_line(tmp_path: Path) -> None:
    """A misspelt key and a size the architecture does not take are the user's mistakes, said as `train` says them."""
    result = run_cli("check-plugin", "timm", "model.arch=convnext_atto", "image_size=8", "drop_path=0.1", cwd=tmp_path)
    assert result.returncode == 2
    assert "model.drop_path: unknown key (did you mean model.drop_path_rate?)" in result.stderr
    assert "model.image_size=8: convnext_atto does not run on 8x8 images; it runs on 32x32 (timm's own size: 224x224)" in result.stderr
    assert "PASS" not in result.stdout and "Traceback" not in result.stderr
