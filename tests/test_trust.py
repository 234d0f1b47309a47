"""A file never chooses the code that runs (docs/reliability.md, "Code runs because you named it").

Payload checkpoints are plain data (they pass ``weights_only=True``) in lightplug's own layout, so they reach
the metadata logic: one names an importable function whose settings run a command, one a local ``.py`` file
that creates a marker when imported, others put an import path where a plugin name belongs. Each is given to
every command that reads a model (``load_model``, ``test``, ``predict``, ``export``, ``store add`` and
``store:`` loading, ``train resume=``/``init_from=``, the web UI); each must be refused with one line and
exit 2, and no marker may ever appear. With the user's consent (``model=`` naming the same code, or
``trust_code``) a real import-path or local-plugin checkpoint loads and predicts.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import plugins_discovered_here, run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]

PAYLOAD_MODULE = '''
"""Importing this or calling run() leaves a marker: what an attacker would like a checkpoint to do."""
import subprocess
from pathlib import Path

from torch import nn

Path(__file__).with_name("markers").joinpath("imported-trust_payload_mod").touch()


def run(args: list[str] = ["true"]) -> nn.Module:
    subprocess.run(args, check=False)
    return nn.Identity()
'''
LOCAL_FILE = '''
from pathlib import Path

Path(__file__).parent.parent.joinpath("site", "markers", "imported-evil.py").touch()
'''


def _meta(plugin: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A complete ``lightplug`` section, as training writes it (only the plugin and its settings are the attacker's)."""
    return {"format": 1, "lightplug_version": "0.1.0", "plugin": {"kind": "model", "dist": None, "version": None, **plugin},
            "task": "classification", "model_config": config, "data": {"name": "digits", "config": {}},
            "label_names": [str(i) for i in range(10)], "preprocessing": {"layout": "flat", "in_features": 64},
            "facts": {"num_classes": 10, "in_features": 64}, "preset": None, "monitor": "val/acc", "config": {}}


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The payload files, a site folder that makes the payload module importable, and the markers folder."""
    import torch

    import lightplug

    root = tmp_path_factory.mktemp("payloads")
    site, markers, elsewhere = root / "site", root / "site" / "markers", root / "elsewhere"
    for d in (site, markers, elsewhere):
        d.mkdir(parents=True, exist_ok=True)
    (site / "trust_payload_mod.py").write_text(PAYLOAD_MODULE)
    (elsewhere / "evil.py").write_text(LOCAL_FILE)
    command = ["touch", str(markers / "ran-a-command")]
    cases = {
        "import-path": _meta({"name": "trust_payload_mod:run", "source": "path", "target": "trust_payload_mod:run"}, {"args": command}),
        "local-file": _meta({"name": "evil", "source": "local", "target": str(elsewhere / "evil.py")}, {}),
        "os-system": _meta({"name": "os:system", "source": "path", "target": "os:system"}, {"command": " ".join(command)}),
        "path-as-installed-name": _meta({"name": "trust_payload_mod:run", "source": "entry-point", "target": "trust_payload_mod:run"},
                                        {"args": command}),
        "unknown-source": _meta({"name": "trust_payload_mod:run", "source": "anything", "target": str(elsewhere / "evil.py")}, {"args": command}),
    }
    files = {}
    for name, meta in cases.items():
        files[name] = root / f"{name}.ckpt"
        torch.save({"state_dict": {}, "lightplug": meta}, files[name])
    # an installed plugin's name with the payload as its recorded target: the installed mlp loads, the target is ignored
    net = lightplug.build_model("mlp", in_features=64, num_classes=10)
    mlp_config = {"in_features": 64, "hidden": 128, "depth": 2, "num_classes": 10, "dropout": 0.0}
    files["installed-name-payload-target"] = root / "installed-name-payload-target.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "lightplug": _meta({"name": "mlp", "dist": "lightplug-mlp", "source": "entry-point", "target": "trust_payload_mod:run"},
                                   mlp_config)}, files["installed-name-payload-target"])
    inputs = root / "inputs.npy"
    import numpy as np

    np.save(inputs, np.random.default_rng(0).random((3, 64), dtype=np.float32))
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "LIGHTPLUG_TRUST_CODE": "0"}
    return {"root": root, "site": site, "markers": markers, "files": files, "inputs": inputs, "env": env, "mlp_state": net.state_dict()}


PAYLOADS = ["import-path", "local-file", "os-system", "path-as-installed-name", "unknown-source"]
#: What the one error line says for each payload (after `checkpoint PATH`).
WORDS = {"import-path": ["model=trust_payload_mod:run, an import path", "add model=trust_payload_mod:run (or trust_code=true)"],
         "local-file": ["model=evil, a local plugin file", "add model=evil"],
         "os-system": ["model=os:system, an import path", "add model=os:system"],
         "path-as-installed-name": ["'trust_payload_mod:run'", "is not installed"],
         "unknown-source": ["'trust_payload_mod:run'", "is not installed"]}


@pytest.fixture
def importable(payloads: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The payload module importable in this process too (as an installed package's function would be); a private store."""
    monkeypatch.syspath_prepend(str(payloads["site"]))
    monkeypatch.setenv("LIGHTPLUG_TRUST_CODE", "0")
    monkeypatch.setenv("LIGHTPLUG_STORE", str(tmp_path / "store"))
    yield payloads
    sys.modules.pop("trust_payload_mod", None)


def _no_marker(payloads: dict[str, Any]) -> None:
    assert not list(payloads["markers"].iterdir()), f"a payload ran: {sorted(p.name for p in payloads['markers'].iterdir())}"
    assert "trust_payload_mod" not in sys.modules


def _cli_in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    from lightplug.cli.main import main

    code = main(args)
    err = capsys.readouterr().err
    return code, [ln for ln in err.splitlines() if ln.strip()]


ENTRY_POINTS = ["load_model", "test", "predict", "export", "store add", "store: loading"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_payload_checkpoint_is_refused_with_one_line_and_runs_nothing(importable: dict[str, Any], payload: str, entry: str,
                                                                        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import lightplug
    from lightplug.errors import CheckpointError

    ckpt = importable["files"][payload]
    if entry == "store: loading":  # a published entry whose card was edited to name the payload
        ckpt = _forged_store_entry(importable, payload, tmp_path)
    if entry in ("load_model", "store: loading"):
        with pytest.raises(CheckpointError) as info:
            lightplug.load_model(ckpt)
        message = str(info.value)
        assert "\n" not in message and info.value.exit_code == 2
        words = WORDS[payload][:1] + (["pass model="] if entry == "load_model" and payload in ("import-path", "local-file", "os-system") else [])
    else:
        args = {"test": ["test", f"ckpt={ckpt}"], "predict": ["predict", f"ckpt={ckpt}", f"input={importable['inputs']}", f"output={tmp_path / 'p.csv'}"],
                "export": ["export", f"ckpt={ckpt}", f"output={tmp_path / 'm.onnx'}"],
                "store add": ["store", "add", str(ckpt), "--name", "payload"]}[entry]
        code, lines = _cli_in_process(args, capsys)
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
        message = lines[0]
        words = [w.replace("add model=", "add --model ").replace(" (or trust_code=true)", " (or --trust-code)") for w in WORDS[payload]] \
            if entry == "store add" else WORDS[payload]
        if entry == "store add" and payload in ("path-as-installed-name", "unknown-source"):
            words = ["holds no model weights"]  # a plugin that is not installed is published by its recorded name: nothing is imported
        assert not (tmp_path / "p.csv").exists() and not (tmp_path / "m.onnx").exists()
    _no_marker(importable)
    assert str(ckpt) in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    if entry == "store add":
        assert not Path(os.environ["LIGHTPLUG_STORE"]).exists() or not any(Path(os.environ["LIGHTPLUG_STORE"]).rglob("card.yaml"))


def _forged_store_entry(payloads: dict[str, Any], payload: str, tmp_path: Path) -> str:
    """Publish a real mlp checkpoint, then point its card's plugin at the payload (the weights' sha256 still holds)."""
    import yaml

    from lightplug import store

    entry = store.add(payloads["files"]["installed-name-payload-target"], name=f"forged-{payload}")
    card = yaml.safe_load(entry.card_path.read_text())
    forged = _read_meta(payloads["files"][payload])
    card["plugin"], card["model_config"] = {k: forged["plugin"].get(k) for k in ("name", "dist", "version", "target", "source")}, forged["model_config"]
    entry.card_path.write_text(yaml.safe_dump(card))
    return f"store:forged-{payload}"


def _read_meta(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, weights_only=True)["lightplug"]


def test_an_installed_name_loads_the_installed_plugin_and_never_the_recorded_target(importable: dict[str, Any]) -> None:
    import torch

    import lightplug

    net = lightplug.load_model(importable["files"]["installed-name-payload-target"])
    assert type(net).__module__ == "lightplug_mlp" and type(net).__name__ == "MLP"
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), importable["mlp_state"].values()))
    _no_marker(importable)


@pytest.mark.parametrize("named, words", [
    ("mlp", "model=mlp names other code"),
    ("trust_payload_mod:other", "model=trust_payload_mod:other names other code"),
    ("trust_payload_mod", "names other code"),  # a module does not cover the names in it
])
def test_naming_other_code_is_not_consent(importable: dict[str, Any], named: str, words: str) -> None:
    import lightplug
    from lightplug.trust import UntrustedCode

    with pytest.raises(UntrustedCode, match=words):
        lightplug.load_model(importable["files"]["import-path"], model=named)
    _no_marker(importable)


def test_a_local_plugin_never_loads_from_the_recorded_path_even_when_trusted(importable: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import lightplug
    from lightplug.errors import CheckpointError

    monkeypatch.setenv("LIGHTPLUG_PLUGIN_PATH", str(importable["root"] / "no-plugins-here"))
    with plugins_discovered_here():
        for kwargs in ({"model": "evil"}, {"trust_code": True}):
            with pytest.raises(CheckpointError, match="no evil.py is in the plugin folders here.*never loaded"):
                lightplug.load_model(importable["files"]["local-file"], **kwargs)
    _no_marker(importable)


# ---------------------------------------------------------------- the real command line (subprocesses)
@pytest.mark.slow
def test_payloads_under_the_real_commands_exit_2_with_one_line(payloads: dict[str, Any], tmp_path: Path) -> None:
    """What a user types, in fresh processes where the payload module is importable: test, predict, export,
    store add, store: loading, train resume= and init_from= (the last two start no training and leave no run folder)."""
    env = {**payloads["env"], "LIGHTPLUG_STORE": str(tmp_path / "store")}
    ckpt = payloads["files"]["import-path"]
    local = payloads["files"]["local-file"]
    cases = [
        (["test", f"ckpt={ckpt}"], "add model=trust_payload_mod:run (or trust_code=true)"),
        (["predict", f"ckpt={local}", f"input={payloads['inputs']}"], "add model=evil (or trust_code=true)"),
        (["export", f"ckpt={ckpt}", "format=onnx,torchscript"], "add model=trust_payload_mod:run"),
        (["store", "add", str(local), "--name", "x"], "add --model evil (or --trust-code)"),
        (["train", "model=mlp", f"resume={ckpt}", "trainer.max_epochs=1", *QUIET], "but this run trains model=mlp"),
        (["train", "model=mlp", f"init_from={local}", "trainer.max_epochs=1", *QUIET], "does not fit model mlp"),
    ]
    for args, words in cases:
        out = run_cli(*args, cwd=tmp_path, env=env)
        errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
        assert out.returncode == 2 and len(errors) == 1 and words in errors[0], (args, out.stderr[-2000:])
        assert "Traceback" not in out.stderr
        _no_marker(payloads)
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "store").exists()  # no run folder, no runs.db, no store entry


# ---------------------------------------------------------------- the web UI
def test_the_web_ui_imports_no_module_path_it_is_given(importable: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lightplug.registry import Registry
    from lightplug.ui.app import create_app
    from lightplug.ui.launcher import Launcher

    outputs = tmp_path / "outputs"
    app = create_app(outputs, registry=Registry(), launcher=Launcher(tmp_path, program=[sys.executable, "-c", "raise SystemExit(3)"]), cwd=tmp_path)
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        for route in ("/api/models/trust_payload_mod:run", "/api/data/trust_payload_mod:run", "/api/models/trust_payload_mod%3Arun"):
            response = client.get(route)
            assert response.status_code == 404 and "no installed package" in response.json()["error"], (route, response.text)
        for overrides, words in [(["model=trust_payload_mod:run"], "only installed plugins can be launched"),
                                 (["model=mlp", "data=trust_payload_mod:run"], "only installed plugins can be launched"),
                                 (["model=mlp", f"init_from={importable['files']['import-path']}"], "must be a checkpoint inside the outputs folder")]:
            for route in ("/api/check", "/api/runs"):
                body = client.post(route, json={"overrides": overrides}).json()
                assert any(words in p for p in body["problems"]), (route, body)
    _no_marker(importable)


@pytest.mark.parametrize("overrides, words", [
    (["model=mlp", "data=image_folder", "data.root=../elsewhere"], "paths must be inside"),
    (["model=mlp", "data=image_folder", "data.root=link"], "paths must be inside"),  # a symlink out of the folder
    (["model=mlp", "data=yolo", "data.yaml=/etc/passwd"], "data.yaml=/etc/passwd: paths must be inside"),
    (["model=mlp", "data=coco", "data.annotations=../x.json", "data.images=imgs"], "data.annotations=../x.json: paths must be inside"),
    (["model=mlp", "data=yolo", "data.yaml=escape.yaml"], "data.yaml=escape.yaml: paths must be inside"),  # a relative symlink out
])
def test_the_web_ui_confines_path_fields_to_its_folders(tmp_path: Path, overrides: list[str], words: str) -> None:
    from lightplug.registry import Registry
    from lightplug.ui.checks import check_overrides

    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (work / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "data.yaml").write_text("path: .\n")
    (work / "escape.yaml").symlink_to(tmp_path / "elsewhere" / "data.yaml")
    problems = check_overrides(overrides, Registry(), work / "outputs", [], work)
    assert any(words in p for p in problems), problems


def test_the_web_ui_allows_paths_in_its_own_folder_and_the_allowed_ones(tmp_path: Path) -> None:
    from lightplug.registry import Registry
    from lightplug.ui.checks import check_overrides

    work, extra = tmp_path / "work", tmp_path / "extra"
    for d in (work / "pets" / "cat", extra / "pets" / "dog"):
        d.mkdir(parents=True)
    for root in ("pets", str(work / "pets")):
        assert not [p for p in check_overrides(["model=simple_cnn", "data=image_folder", f"data.root={root}"], Registry(), work / "outputs", [], work)
                    if "inside" in p]
    assert [p for p in check_overrides(["model=simple_cnn", "data=image_folder", f"data.root={extra / 'pets'}"], Registry(), work / "outputs", [], work)
            if "inside" in p]
    assert not [p for p in check_overrides(["model=simple_cnn", "data=image_folder", f"data.root={extra / 'pets'}"], Registry(), work / "outputs",
                                           [extra], work) if "inside" in p]


# ---------------------------------------------------------------- code-typed settings (FieldSpec.type == "code")
def _code_schema() -> Any:
    from lightplug.schema import FieldSpec, Schema

    return Schema([FieldSpec("norm", "code", default="torch.nn:BatchNorm2d", group="model"), FieldSpec("width", "int", default=8)])


def test_a_code_setting_from_a_file_needs_trust_code_unless_it_is_the_default() -> None:
    """The rule written generically against ``FieldSpec.type == "code"`` (the field type comes with import-path
    models); the end-to-end checkpoint test is added when that type exists."""
    from lightplug.trust import UntrustedCode, check_code_values, consent

    schema = _code_schema()
    check_code_values(schema, {"norm": "torch.nn:BatchNorm2d", "width": 4}, "checkpoint X", consent())  # the default: fine
    check_code_values(schema, {"norm": "os:system"}, "checkpoint X", consent(trust_code=True))
    with pytest.raises(UntrustedCode) as info:
        check_code_values(schema, {"norm": "os:system"}, "checkpoint X", consent(model="pkg.mod:Name"))  # naming the model is not enough
    assert str(info.value) == ("checkpoint X sets model.norm=os:system, an import path; lightplug imports it only if you allow it: "
                               "add trust_code=true")


def test_the_web_ui_launches_only_the_default_of_a_code_setting() -> None:
    from lightplug.trust import code_value_problem

    spec = _code_schema().fields[0]
    assert code_value_problem(spec, "torch.nn:BatchNorm2d", None) is None
    assert "the web UI imports nothing it is sent" in (code_value_problem(spec, "os:system", None) or "")


# ---------------------------------------------------------------- with consent: real import-path and local-plugin checkpoints
@pytest.fixture(scope="module")
def path_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of ``model=lightplug_mlp:MLP``: a third-party class named by import path (source: path)."""
    work = tmp_path_factory.mktemp("path_run")
    run = work / "run"
    out = run_cli("train", "model=lightplug_mlp:MLP", "trainer.max_epochs=1", f"hydra.run.dir={run}", *QUIET, cwd=work)
    assert out.returncode == 0, out.stderr[-3000:]
    return run


@pytest.mark.slow
def test_with_consent_an_import_path_checkpoint_loads_and_predicts(path_run: Path, payloads: dict[str, Any], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import lightplug
    from lightplug.trust import UntrustedCode

    ckpt = path_run / "checkpoints" / "best.ckpt"
    assert _read_meta(ckpt)["plugin"]["source"] == "path"
    monkeypatch.setenv("LIGHTPLUG_TRUST_CODE", "0")
    with pytest.raises(UntrustedCode, match="model=lightplug_mlp:MLP, an import path"):
        lightplug.load_model(ckpt)
    assert type(lightplug.load_model(ckpt, model=" lightplug_mlp : MLP ")).__name__ == "MLP"  # the same class, spelt loosely
    assert type(lightplug.load_model(ckpt, trust_code=True)).__name__ == "MLP"
    monkeypatch.setenv("LIGHTPLUG_TRUST_CODE", "1")
    assert type(lightplug.load_model(ckpt)).__name__ == "MLP"
    refused = run_cli("predict", f"run={path_run}", f"input={payloads['inputs']}", cwd=tmp_path, env={"LIGHTPLUG_TRUST_CODE": "0"})
    assert refused.returncode == 2 and refused.stderr.strip().endswith("add model=lightplug_mlp:MLP (or trust_code=true)"), refused.stderr
    out = tmp_path / "preds.csv"
    named = run_cli("predict", f"run={path_run}", "model=lightplug_mlp:MLP", f"input={payloads['inputs']}", f"output={out}", cwd=tmp_path,
                    env={"LIGHTPLUG_TRUST_CODE": "0"})
    assert named.returncode == 0, named.stderr[-2000:]
    assert len(out.read_text().splitlines()) == 4  # the header and 3 rows


@pytest.mark.slow
def test_with_consent_a_local_plugin_checkpoint_loads_the_file_found_now(path_run: Path, payloads: dict[str, Any], tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint records a local plugin whose recorded file is the payload; the plugin folder of this
    environment defines the name, and that file is the one loaded (the recorded path never is)."""
    import torch

    import lightplug

    ckpt = torch.load(path_run / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt["lightplug"]["plugin"] = {"name": "tinymlp", "kind": "model", "dist": None, "version": None, "source": "local",
                                   "target": str(payloads["root"] / "elsewhere" / "evil.py")}
    local = tmp_path / "local.ckpt"
    torch.save(ckpt, local)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "tinymlp.py").write_text(textwrap.dedent("""
        from lightplug_mlp import MLP as PLUGIN  # this environment's file for the name `tinymlp`
    """))
    monkeypatch.setenv("LIGHTPLUG_PLUGIN_PATH", str(plugins))
    monkeypatch.setenv("LIGHTPLUG_TRUST_CODE", "0")
    with plugins_discovered_here():
        net = lightplug.load_model(local, model="tinymlp")
    assert type(net).__name__ == "MLP"
    out = run_cli("predict", f"ckpt={local}", "model=tinymlp", f"input={payloads['inputs']}", f"output={tmp_path / 'p.csv'}", cwd=tmp_path,
                  env={"LIGHTPLUG_PLUGIN_PATH": str(plugins), "LIGHTPLUG_TRUST_CODE": "0"})
    assert out.returncode == 0, out.stderr[-2000:]
    _no_marker(payloads)


@pytest.mark.slow
def test_a_published_import_path_model_stays_loadable_by_its_owner(path_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`store add` of an import-path model needs the consent (it reads the schema), records the import path in the
    card, and loading `store:NAME` asks for the same consent."""
    import yaml

    import lightplug
    from lightplug.trust import UntrustedCode

    monkeypatch.setenv("LIGHTPLUG_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("LIGHTPLUG_TRUST_CODE", "0")
    env = {"LIGHTPLUG_STORE": str(tmp_path / "store"), "LIGHTPLUG_TRUST_CODE": "0"}
    refused = run_cli("store", "add", str(path_run), "--name", "tv", env=env)
    assert refused.returncode == 2 and "add --model lightplug_mlp:MLP (or --trust-code)" in refused.stderr
    added = run_cli("store", "add", str(path_run), "--name", "tv", "--model", "lightplug_mlp:MLP", env=env)
    assert added.returncode == 0, added.stderr[-2000:]
    assert 'lightplug.load_model("store:tv", model="lightplug_mlp:MLP")' in added.stdout
    card = yaml.safe_load(next((tmp_path / "store").rglob("card.yaml")).read_text())
    assert card["plugin"]["source"] == "path" and card["plugin"]["target"] == "lightplug_mlp:MLP"
    with pytest.raises(UntrustedCode, match="pass model='lightplug_mlp:MLP'"):
        lightplug.load_model("store:tv")
    assert type(lightplug.load_model("store:tv", model="lightplug_mlp:MLP")).__name__ == "MLP"
    assert json.loads(json.dumps(card["structural"]))  # the schema was read: structural settings are known
