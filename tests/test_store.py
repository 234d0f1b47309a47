"""The model store end to end: `lightplug store add/list/show`, versions that auto-increment and are never
overwritten, `lightplug.load_model("store:NAME[/vN]")` with no config at hand, `init_from=store:NAME`
(fine-tuning, refused when a structural setting or the plugin differs), and damaged entries (missing
weights, sha256 mismatch, truncated safetensors, invalid YAML, missing keys, shapes that do not fit),
each one clear message naming the file."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def _card(name: str, plugin: str, version: str = "v1", score: float = 0.5) -> dict[str, Any]:
    """A hand-made card with every key loading needs (enough for list/show/resolve, no torch)."""
    return {"format": 1, "name": name, "version": version, "task": "classification", "monitor": "val/acc", "score": score,
            "plugin": {"name": plugin, "dist": f"lightplug-{plugin}", "version": "0.1.0", "target": "x:Y", "source": "entry-point"},
            "model_config": {"hidden": 32}, "structural": {"hidden": 32}, "weights": {"file": "weights.safetensors", "sha256": "0" * 64},
            "created": "2026-01-01T00:00:00+00:00", "notes": "hand-made"}


def _entry(root: Path, plugin: str, name: str, version: str = "v1", **kw: Any) -> Path:
    folder = root / plugin / name / version
    folder.mkdir(parents=True)
    (folder / "card.yaml").write_text(yaml.safe_dump(_card(name, plugin, version, **kw), sort_keys=False))
    (folder / "weights.safetensors").write_bytes(b"\0" * 16)
    return folder


@pytest.fixture
def fake_store(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A store written by hand: mlp/digits (v1, v2), mlp/shared and simple_cnn/shared, a leftover temp folder."""
    root = tmp_path / "store"
    _entry(root, "mlp", "digits", "v1", score=0.5)
    _entry(root, "mlp", "digits", "v2", score=0.75)
    _entry(root, "mlp", "shared")
    _entry(root, "simple_cnn", "shared")
    (root / "mlp" / "digits" / ".tmp-0123456789ab").mkdir()  # an interrupted add: never listed or loaded
    return root, {"LIGHTPLUG_STORE": str(root)}


# ---------------------------------------------------------------- fast: no training, no torch
def test_parse_ref_accepts_name_version_and_plugin() -> None:
    from lightplug.store import parse_ref

    assert parse_ref("store:digits") == (None, "digits", None)
    assert parse_ref("store:digits/v12") == (None, "digits", "v12")
    assert parse_ref("mlp/digits") == ("mlp", "digits", None)
    assert parse_ref("store:mlp/digits/v1") == ("mlp", "digits", "v1")


def test_list_shows_every_version_and_its_metric(fake_store: tuple[Path, dict[str, str]]) -> None:
    root, env = fake_store
    out = run_cli("store", "list", env=env)
    assert out.returncode == 0, out.stderr
    assert "digits" in out.stdout and "v2 (latest)" in out.stdout and "val/acc 0.75" in out.stdout and "val/acc 0.5" in out.stdout
    assert "simple_cnn" in out.stdout and ".tmp" not in out.stdout
    only = run_cli("store", "list", "--plugin", "simple_cnn", "--json", env=env)
    assert [(m["plugin"], m["name"]) for m in json.loads(only.stdout)] == [("simple_cnn", "shared")]


def test_list_and_show_never_import_torch(fake_store: tuple[Path, dict[str, str]]) -> None:
    _, env = fake_store
    code = ("import sys; from lightplug.cli.main import main; "
            "assert main(['store', 'list']) == 0; assert main(['store', 'show', 'digits/v1']) == 0; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_show_prints_the_latest_card_or_a_given_version(fake_store: tuple[Path, dict[str, str]]) -> None:
    _, env = fake_store
    latest = run_cli("store", "show", "digits", env=env)
    assert latest.returncode == 0, latest.stderr
    assert "store:mlp/digits/v2" in latest.stdout and "score: 0.75" in latest.stdout
    assert "sha256 MISMATCH" in latest.stdout  # the hand-made card's sha256 does not match its file
    first = run_cli("store", "show", "store:digits/v1", "--json", env=env)
    assert json.loads(first.stdout)["version"] == "v1"


def test_a_name_used_by_two_plugins_needs_the_plugin(fake_store: tuple[Path, dict[str, str]]) -> None:
    _, env = fake_store
    out = run_cli("store", "show", "shared", env=env)
    assert out.returncode == 2
    assert "store:shared: the name 'shared' is used by models of 2 plugins" in out.stderr
    assert "store:mlp/shared" in out.stderr and "store:simple_cnn/shared" in out.stderr
    assert run_cli("store", "show", "simple_cnn/shared", env=env).returncode == 0


def test_unknown_name_or_version_is_one_line(fake_store: tuple[Path, dict[str, str]]) -> None:
    _, env = fake_store
    out = run_cli("store", "show", "digit", env=env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "no model named 'digit'" in out.stderr and "did you mean digits" in out.stderr
    out = run_cli("store", "show", "digits/v9", env=env)
    assert out.returncode == 2 and "no version v9 (it has v1, v2)" in out.stderr


def test_invalid_yaml_card_names_the_file(fake_store: tuple[Path, dict[str, str]]) -> None:
    root, env = fake_store
    card = root / "mlp" / "digits" / "v2" / "card.yaml"
    card.write_text("format: 1\nname: [digits\n")
    out = run_cli("store", "show", "digits", env=env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert f"{card}: invalid YAML" in out.stderr
    listing = run_cli("store", "list", env=env)
    assert listing.returncode == 0 and "damaged" in listing.stdout


def test_add_refuses_an_unsafe_name(tmp_path: Path) -> None:
    out = run_cli("store", "add", str(tmp_path), "--name", "../Evil", env={"LIGHTPLUG_STORE": str(tmp_path / "store")})
    assert out.returncode == 2 and "--name '../Evil': not a safe model name" in out.stderr
    assert not (tmp_path / "store").exists()


def test_add_needs_a_checkpoint_in_the_run_folder(tmp_path: Path) -> None:
    out = run_cli("store", "add", str(tmp_path), "--name", "x", env={"LIGHTPLUG_STORE": str(tmp_path / "store")})
    assert out.returncode == 2 and f"{tmp_path}: no checkpoints/best.ckpt or checkpoints/last.ckpt" in out.stderr


# ---------------------------------------------------------------- slow: one training run for the module
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One trained mlp (hidden=32) published as mlp/digits/v1 with `lightplug store add`; the store's
    folder is also set in this process, for the in-process checks."""
    tmp = tmp_path_factory.mktemp("store")
    env = {"LIGHTPLUG_STORE": str(tmp / "store"), "LIGHTPLUG_CACHE_DIR": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
    run = tmp / "run"
    out = run_cli("train", "model=mlp", "trainer.max_epochs=2", "model.hidden=32", f"hydra.run.dir={run}", *QUIET, cwd=tmp, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    added = run_cli("store", "add", str(run), "--name", "digits", "--notes", "first try", env=env)
    assert added.returncode == 0, added.stderr
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield {"tmp": tmp, "env": env, "run": run, "store": tmp / "store", "added": added.stdout}


@pytest.mark.slow
def test_add_publishes_weights_and_card(world: dict[str, Any]) -> None:
    import hashlib

    folder = world["store"] / "mlp" / "digits" / "v1"
    assert "published mlp/digits/v1 (val/acc" in world["added"]
    assert sorted(p.name for p in folder.iterdir()) == ["card.yaml", "weights.safetensors"]
    card = yaml.safe_load((folder / "card.yaml").read_text())
    summary = json.loads((world["run"] / "summary.json").read_text())
    assert card["plugin"]["name"] == "mlp" and card["plugin"]["dist"] == "lightplug-mlp" and card["plugin"]["version"]
    assert card["structural"]["hidden"] == 32 and "dropout" not in card["structural"] and card["model_config"]["dropout"] == 0.0
    assert card["monitor"] == "val/acc" and card["score"] == summary["best"] and card["metrics"] == summary["metrics"]
    assert card["label_names"] == [str(i) for i in range(10)] and "mean" in card["preprocessing"]
    assert card["task"] == "classification" and card["data"]["name"] == "digits" and card["notes"] == "first try"
    assert card["source"] == str((world["run"] / "checkpoints" / "best.ckpt").resolve()) and card["created"] and card["lightplug_version"]
    assert card["weights"]["sha256"] == hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()


@pytest.mark.slow
def test_load_model_from_the_store_equals_the_checkpoint(world: dict[str, Any]) -> None:
    import torch

    import lightplug
    from lightplug.checkpoint import read_checkpoint

    net = lightplug.load_model("store:digits/v1")
    ref = lightplug.load_model(world["run"] / "checkpoints" / "best.ckpt")
    x = torch.randn(4, 64)
    assert not net.training and torch.equal(net(x), ref(x))
    meta = net.lightplug_meta
    assert meta["plugin"]["name"] == "mlp" and meta["label_names"] == ref.lightplug_meta["label_names"]
    assert meta["store"]["ref"] == "store:mlp/digits/v1" and meta["preprocessing"] == ref.lightplug_meta["preprocessing"]
    ckpt = read_checkpoint("store:digits")  # what predict/test/export call: a checkpoint-like dict
    assert set(ckpt) == {"lightplug", "state_dict"} and all(k.startswith("net.") for k in ckpt["state_dict"])


@pytest.mark.slow
def test_versions_increment_and_are_never_overwritten(world: dict[str, Any]) -> None:
    import lightplug
    from lightplug import store

    card = world["store"] / "mlp" / "digits" / "v1" / "card.yaml"
    before = card.read_bytes()
    with pytest.raises(lightplug.LightplugError, match=r"v1 of mlp/digits exists; versions are never overwritten"):
        store.add(world["run"], "digits", version="v1")
    assert card.read_bytes() == before
    entry = store.add(world["run"] / "checkpoints" / "last.ckpt", "digits", notes="from last")
    assert entry.version == "v2" and store.resolve("store:digits").version == "v2"
    assert lightplug.load_model("store:digits").lightplug_meta["store"]["version"] == "v2"
    assert not [p for p in card.parent.parent.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.slow
def test_init_from_store_fine_tunes_with_other_runtime_settings(world: dict[str, Any]) -> None:
    """A learning rate of 1e-9 leaves the weights where they started: the stored ones."""
    import torch

    from lightplug.checkpoint import read_checkpoint

    run = world["tmp"] / "finetune"
    out = run_cli("train", "model=mlp", "init_from=store:digits/v1", "model.hidden=32", "model.dropout=0.3", "optimizer.lr=1e-9", "trainer.max_epochs=1",
                  "+trainer.limit_train_batches=2", f"hydra.run.dir={run}", *QUIET, cwd=world["tmp"], env=world["env"])
    assert out.returncode == 0, out.stderr[-2000:]
    tuned = read_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    stored = read_checkpoint("store:digits/v1")["state_dict"]
    assert all(torch.allclose(tuned[k], v, atol=1e-5) for k, v in stored.items())


@pytest.mark.slow
def test_init_from_store_refuses_a_structural_change(world: dict[str, Any]) -> None:
    out = run_cli("train", "model=mlp", "init_from=store:digits/v1", "model.hidden=64", f"hydra.run.dir={world['tmp'] / 'refused'}", *QUIET,
                  cwd=world["tmp"], env=world["env"])
    assert out.returncode == 2
    assert "error: init_from=store:digits/v1: model.hidden differs (stored 32, now 64); structural settings must match" in out.stderr


@pytest.mark.slow
def test_init_from_store_refuses_another_plugin(world: dict[str, Any]) -> None:
    from lightplug import CheckpointError
    from lightplug.checkpoint import read_checkpoint
    from lightplug.store import check_structural

    meta = read_checkpoint("store:digits/v1")["lightplug"]
    with pytest.raises(CheckpointError, match=r"init_from=store:digits/v1: it holds model 'mlp' \(lightplug-mlp\), this run trains model=simple_cnn"):
        check_structural(meta, "simple_cnn", {"width": 32}, "init_from=store:digits/v1")
    check_structural(meta, "mlp", {**meta["model_config"], "dropout": 0.5}, "init_from=store:digits/v1")  # runtime settings may differ


def _damage(kind: str, folder: Path) -> Path:
    """Break the entry in ``folder`` the way ``kind`` says; return the file the message must name."""
    weights, card = folder / "weights.safetensors", folder / "card.yaml"
    data = weights.read_bytes()
    if kind == "missing weights":
        weights.unlink()
        return weights
    if kind == "sha256 mismatch":
        weights.write_bytes(data[:-4] + bytes(b ^ 0xFF for b in data[-4:]))  # still a valid file: only its values changed
        return weights
    if kind == "truncated":
        weights.write_bytes(data[: len(data) // 2])
        return weights
    text = yaml.safe_load(card.read_text())
    if kind == "invalid yaml":
        card.write_text("format: 1\nplugin: {name: mlp\n")
    elif kind == "missing keys":
        card.write_text(yaml.safe_dump({k: v for k, v in text.items() if k not in ("model_config", "weights")}))
    elif kind == "shapes":
        text["model_config"]["hidden"] = 48
        card.write_text(yaml.safe_dump(text))
        return weights
    return card


_MESSAGES = {"missing weights": "the weights file is missing", "sha256 mismatch": "sha256 mismatch",
             "truncated": "damaged or truncated safetensors file", "invalid yaml": "invalid YAML (line 3",
             "missing keys": "missing keys model_config, weights", "shapes": "does not fit model 'mlp'"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(_MESSAGES))
def test_a_damaged_entry_gives_one_message_naming_the_file(world: dict[str, Any], kind: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from lightplug import CheckpointError, load_model

    root = tmp_path / "store"
    shutil.copytree(world["store"] / "mlp" / "digits" / "v1", root / "mlp" / "broken" / "v1")
    named = _damage(kind, root / "mlp" / "broken" / "v1")
    monkeypatch.setenv("LIGHTPLUG_STORE", str(root))
    with pytest.raises(CheckpointError) as caught:
        load_model("store:broken")
    message = str(caught.value)
    assert _MESSAGES[kind] in message and str(named) in message and "\n" not in message, message


@pytest.mark.slow
def test_a_damaged_entry_exits_2_from_the_command_line(world: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(world["store"] / "mlp" / "digits" / "v1", root / "mlp" / "broken" / "v1")
    named = _damage("missing weights", root / "mlp" / "broken" / "v1")
    out = run_cli("train", "model=mlp", "init_from=store:broken", f"hydra.run.dir={tmp_path / 'run'}", *QUIET,
                  cwd=tmp_path, env={**world["env"], "LIGHTPLUG_STORE": str(root)})
    assert out.returncode == 2 and f"init_from=store:broken: {named}: the weights file is missing" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_export_accepts_a_store_reference(world: dict[str, Any]) -> None:
    out = run_cli("export", "ckpt=store:digits/v1", "format=onnx", "benchmark=false", cwd=world["tmp"], env=world["env"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert (world["tmp"] / "digits-v1.onnx").is_file()
