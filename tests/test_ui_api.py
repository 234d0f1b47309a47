"""The web UI's JSON API (FastAPI's TestClient): plugin listing and schemas as the CLI prints them,
validation lines equal to the CLI's, launching refused for anything but a checked config, files served
from the outputs folder only, the token off loopback, and launch/stop/resume with a stub program."""

from __future__ import annotations

import json
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from conftest import make_dist, run_cli

pytest.importorskip("fastapi", reason="the UI needs the ui extra: pip install 'lightplug[ui]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from lightplug._cache import PluginCache  # noqa: E402
from lightplug.cli.models import listing_rows  # noqa: E402
from lightplug.registry import Registry  # noqa: E402
from lightplug.ui.app import TOKEN_COOKIE, TOKEN_HEADER, create_app, static_dir  # noqa: E402
from lightplug.ui.launcher import Launcher, read_launch  # noqa: E402

JSON = {"Content-Type": "application/json"}

# A stand-in for `python -m lightplug`: writes what a run writes, waits for SIGINT (exit 130), finishes at once when resuming.
STUB = textwrap.dedent("""
    import json, signal, sys, time
    from pathlib import Path
    args = sys.argv[2:]
    run = Path([a for a in args if a.startswith("hydra.run.dir=")][0].split("=", 1)[1])
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"model": {"_plugin_": "mlp", "hidden": 8}, "data": {"_plugin_": "digits"},
                                                 "trainer": {"max_epochs": 3}, "monitor": "val/acc"}))
    (run / "metrics.csv").write_text("epoch,step,train/loss,val/acc\\n0,10,1.5,\\n0,10,,0.5\\n1,20,1.0,0.75\\n")
    if not (run / "checkpoints" / "last.ckpt").exists():  # what the UI's check reads before it resumes (as `lightplug train` does)
        import torch
        torch.save({"state_dict": {}, "lightplug": {"plugin": {"name": "mlp", "dist": "lightplug-mlp"}, "config": {}}},
                   run / "checkpoints" / "last.ckpt")
    (run / "args.json").write_text(json.dumps(args))
    if any(a.startswith("resume=") for a in args):
        sys.exit(0)
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    (run / "ready").write_text("")
    time.sleep(120)
    sys.exit(1)
""")


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    return tmp_path / "outputs"


@pytest.fixture
def launcher(tmp_path: Path) -> Launcher:
    stub = tmp_path / "stub_lightplug.py"
    stub.write_text(STUB)
    return Launcher(tmp_path, program=[sys.executable, str(stub)])


@pytest.fixture
def registry() -> Registry:
    return Registry()  # a fresh one: other tests may leave the process's registry pointing at their plugins


@pytest.fixture
def client(outputs: Path, launcher: Launcher, registry: Registry, tmp_path: Path) -> TestClient:
    app = create_app(outputs, launcher=launcher, registry=registry, cwd=tmp_path)
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        yield c


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


# ---------------------------------------------------------------- the page and the plugins
def test_static_page_ships_inside_the_package(client: TestClient) -> None:
    from importlib.resources import files

    assert (files("lightplug") / "ui" / "static" / "index.html").is_file()
    assert (static_dir() / "app.js").is_file()
    page = client.get("/")
    assert page.status_code == 200 and "<title>lightplug</title>" in page.text
    for name in ("app.js", "form.js", "runs.js", "chart.js", "util.js", "app.css"):
        assert client.get(f"/static/{name}").status_code == 200, name


def test_models_lists_every_installed_plugin_as_the_cli_does(client: TestClient) -> None:
    rows = client.get("/api/models").json()
    names = [r["name"] for r in rows]
    assert names == [r["name"] for r in listing_rows(Registry(), "model")]
    assert {"mlp", "simple_cnn"} <= set(names)
    # without ?check=1 the task comes from the plugin cache (unknown on a fresh machine); the page asks again with it
    checked = client.get("/api/models?check=1").json()
    assert [r["name"] for r in checked] == names
    cnn = next(r for r in checked if r["name"] == "simple_cnn")
    assert cnn["package"] == "lightplug-convnets" and cnn["task"] == "classification" and cnn["description"]
    assert set(cnn) >= {"name", "version", "package", "task", "description", "status", "cause"}
    assert "digits" in [r["name"] for r in client.get("/api/data").json()]


def test_broken_plugin_is_marked_with_its_cause(tmp_path: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = make_dist(tmp_path / "site", "lp-ui-broken", entry_points={"lightplug.models": {"ui_broken": "lp_ui_broken:Net"}},
                     modules={"lp_ui_broken.py": "raise RuntimeError('no CUDA toolkit here')\n"})
    monkeypatch.syspath_prepend(str(site))
    registry = Registry(PluginCache(tmp_path / "cache.json"))
    with TestClient(create_app(outputs, registry=registry, cwd=tmp_path), base_url="http://127.0.0.1") as c:
        row = next(r for r in c.get("/api/models?check=1").json() if r["name"] == "ui_broken")
        assert row["status"] == "broken" and "RuntimeError: no CUDA toolkit here" in row["cause"]
        schema = c.get("/api/models/ui_broken")
        assert schema.status_code == 404 and "no CUDA toolkit here" in schema.json()["error"]


def test_schema_is_the_one_models_show_json_prints(client: TestClient) -> None:
    cli = run_cli("models", "show", "simple_cnn", "--json")
    assert cli.returncode == 0, cli.stderr
    schema = client.get("/api/models/simple_cnn").json()
    assert schema == json.loads(cli.stdout)
    assert schema["properties"]["width"]["maximum"] == 512 and "easy" in schema["x-presets"]
    assert client.get("/api/models/no_such_model").status_code == 404
    assert client.get("/api/models/no_such_model/start").status_code == 404


def test_core_settings_offer_the_config_groups(client: TestClient) -> None:
    core = client.get("/api/core").json()
    assert core["groups"]["optimizer"]["default"] == "adam" and "sgd" in core["groups"]["optimizer"]["options"]
    assert core["groups"]["optimizer"]["values"]["sgd"]["lr"] == 0.05  # the option's YAML, not the rule's default
    assert core["groups"]["trainer"]["values"]["default"]["max_epochs"] == 10
    assert core["choices"]["data"] == "digits" and core["run"]["values"]["seed"] == 42


# ---------------------------------------------------------------- validation, as the CLI
BAD = ["model=simple_cnn", "model.width=1000", "model.widht=3", "optimizer.lr=-1", "trainer.max_epochs=-5", "data.batch_size=0", "scheduler=cosin"]


def test_validation_lines_equal_the_cli(client: TestClient, tmp_path: Path) -> None:
    cli = run_cli("train", *BAD, cwd=tmp_path)
    assert cli.returncode == 2
    cli_lines = [line.strip() for line in cli.stderr.splitlines() if line.startswith("  ")]
    result = client.post("/api/check", json={"overrides": BAD}).json()
    assert not result["ok"]
    assert result["problems"] == cli_lines
    assert len(cli_lines) == 6 and "model.width=1000: above the maximum 512 (simple_cnn:" in cli_lines[0]
    assert result["command"] == "lightplug train " + " ".join(BAD)


def test_required_field_is_reported_as_the_cli_does(client: TestClient, tmp_path: Path) -> None:
    overrides = ["model=mlp", "data=image_folder"]
    cli = run_cli("train", *overrides, cwd=tmp_path)
    assert cli.returncode == 2
    problems = client.post("/api/check", json={"overrides": overrides}).json()["problems"]
    assert problems == [cli.stderr.strip().removeprefix("error: ")]


def test_a_model_and_data_of_different_tasks_fail_the_check_with_the_clis_line(client: TestClient, outputs: Path, tmp_path: Path) -> None:
    overrides = ["model=yolo", "data=digits"]
    cli = run_cli("train", *overrides, cwd=tmp_path)
    line = cli.stderr.strip().removeprefix("error: ")
    assert cli.returncode == 2 and line.startswith("model=yolo is a detection model but data=digits is classification data")
    assert client.post("/api/check", json={"overrides": overrides}).json()["problems"] == [line]
    launched = client.post("/api/runs", json={"overrides": overrides})
    assert launched.status_code == 422 and launched.json()["problems"] == [line]
    assert not any(p.is_dir() for p in outputs.iterdir())  # refused before launch, no run folder


@pytest.mark.parametrize("model, data", [
    ("yolo", ["data=shapes", "data.task=detection"]),
    ("unet", ["data=shapes"]),
    ("mlp_regressor", ["data=diabetes"]),
    ("mlp", ["data=digits"]),
])
def test_the_forms_data_follows_the_models_task(client: TestClient, model: str, data: list[str]) -> None:
    assert client.get(f"/api/models/{model}/start").json()["data"] == data
    assert client.post("/api/check", json={"overrides": [f"model={model}", *data]}).json()["problems"] == []
    assert client.post("/api/check", json={"overrides": [f"model={model}"]}).json()["problems"] == []  # the CLI picks the same data


def test_the_forms_presets_are_the_command_lines(client: TestClient, tmp_path: Path) -> None:
    import yaml

    from lightplug.config.paths import conf_dir

    presets = client.get("/api/models/mlp/start").json()["presets"]  # mlp has no preset of its own: the training part is offered
    assert sorted(presets) == sorted(p.stem for p in (conf_dir() / "preset").glob("*.yaml")) == ["advanced", "easy", "medium"]
    cli = run_cli("train", "model=mlp", "+preset=advanced", "--cfg", "job", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    composed = yaml.safe_load(cli.stdout)
    advanced = presets["advanced"]
    assert advanced["override"] == "+preset=advanced" and advanced["values"]["trainer.max_epochs"] == 40
    assert {g: composed[g]["name"] for g in advanced["choices"]} == advanced["choices"] == {"optimizer": "adamw", "scheduler": "cosine"}
    for key, value in advanced["values"].items():
        group, name = key.split(".")
        assert composed[group][name] == value, key
    result = client.post("/api/check", json={"overrides": ["model=mlp", "+preset=easy"]}).json()
    assert result == {"ok": True, "problems": [], "command": "lightplug train model=mlp +preset=easy"}
    wrong = run_cli("train", "model=mlp", "+preset=eazy", cwd=tmp_path)
    assert client.post("/api/check", json={"overrides": ["model=mlp", "+preset=eazy"]}).json()["problems"] == [wrong.stderr.strip().removeprefix("error: ")]


def test_good_config_passes_and_shows_its_command(client: TestClient) -> None:
    result = client.post("/api/check", json={"overrides": ["model=simple_cnn", "model.width=16", "data=synthetic", "data.noise=0.25"]}).json()
    assert result == {"ok": True, "problems": [], "command": "lightplug train model=simple_cnn model.width=16 data=synthetic data.noise=0.25"}


@pytest.mark.parametrize("overrides, expected", [
    (["model=no_such_model"], "unknown model 'no_such_model'"),
    (["model=os:system"], "only installed plugins can be launched"),
    (["model=simple_cnn", "model.width=0"], "model.width=0: below the minimum 4"),
    (["model=mlp", "optimizer=adamm"], "optimizer=adamm: no such option (did you mean adam?"),
    (["model=mlp", "resume=/etc/passwd"], "must be a checkpoint inside the outputs folder"),
    (["model=mlp", "init_from=../outside.ckpt"], "must be a checkpoint inside the outputs folder"),
    (["model=mlp", "resume='~/x.ckpt'"], "must be a checkpoint inside the outputs folder"),
    (["model=mlp", "data=image_folder", "data.root=/etc"], "data.root=/etc: paths must be inside"),
    (["model=mlp", "data=image_folder", "data.root=outputs/../../x"], "paths must be inside"),
    (["model=mlp", "hydra.run.dir=/tmp/elsewhere"], "hydra.run.dir: not a setting the UI launches"),
    (["model=mlp", "logger=wandb"], "logger: not a setting the UI launches"),
    (["model=mlp", "callbacks=[default,x]"], "callbacks: not a setting the UI launches"),
    (["model=mlp", "+experiment=digits_cnn"], "only plain key=value overrides"),
    (["model=mlp", "~seed"], "only key=value overrides"),
    (["model=mlp", "-m"], "only key=value overrides can be launched (no flags)"),
    (["model=mlp", "model.hidden=8,16"], "sweeps are not launched from the UI"),
    (["model=mlp", "seed=${oc.env:HOME}"], "interpolations"),
    (["model=mlp", "trainer.foo.bar=1"], "not a setting the UI launches"),
    (["model.hidden=8"], "no model chosen"),
])
def test_launch_refused(client: TestClient, outputs: Path, overrides: list[str], expected: str) -> None:
    response = client.post("/api/runs", json={"overrides": overrides})
    assert response.status_code == 422
    assert any(expected in p for p in response.json()["problems"]), response.json()
    assert not any(p.is_dir() for p in outputs.iterdir())  # nothing launched, no run folder


def test_launch_refuses_a_symlink_out_of_the_outputs_folder(client: TestClient, outputs: Path, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere.ckpt"
    with zipfile.ZipFile(secret, "w") as z:
        z.writestr("x", "y")
    (outputs / "link.ckpt").symlink_to(secret)
    response = client.post("/api/runs", json={"overrides": ["model=mlp", f"init_from={outputs / 'link.ckpt'}"]})
    assert response.status_code == 422 and "inside the outputs folder" in response.json()["problems"][0]


def test_malformed_requests_are_refused(client: TestClient) -> None:
    assert client.post("/api/runs", json={"overrides": "model=mlp"}).status_code == 422
    assert client.post("/api/runs", json={"overrides": [1, 2]}).status_code == 422
    assert client.post("/api/runs", content="overrides=model=mlp", headers={"Content-Type": "text/plain"}).status_code == 415
    other = client.post("/api/check", json={"overrides": ["model=mlp"]}, headers={"Origin": "http://evil.example"})
    assert other.status_code == 403


# ---------------------------------------------------------------- files and runs
def test_files_are_served_from_the_outputs_folder_only(client: TestClient, outputs: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    run = outputs / "2026-01-02" / "10-11-12"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"PK weights")
    (run / "leak.txt").symlink_to(tmp_path / "secret.txt")
    ok = client.get("/api/file", params={"path": "2026-01-02/10-11-12/checkpoints/best.ckpt", "download": 1})
    assert ok.status_code == 200 and ok.content == b"PK weights" and "attachment" in ok.headers["content-disposition"]
    for bad in ("../secret.txt", str(tmp_path / "secret.txt"), "2026-01-02/10-11-12/leak.txt", "2026-01-02/../../secret.txt", "/etc/passwd"):
        response = client.get("/api/file", params={"path": bad})
        assert response.status_code == 404 and "secret" not in response.text.replace(bad, ""), bad
    assert client.get("/api/run", params={"id": "../"}).status_code == 404
    assert client.get("/api/run", params={"id": str(tmp_path)}).status_code == 404


def _fake_run(outputs: Path, name: str, width: int, best: float) -> Path:
    run = outputs / "2026-01-02" / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "export").mkdir()
    (run / "config.json").write_text(json.dumps({"model": {"_plugin_": "simple_cnn", "width": width}, "data": {"_plugin_": "digits"},
                                                 "trainer": {"max_epochs": 2}, "monitor": "val/acc", "seed": 42}))
    (run / "summary.json").write_text(json.dumps({"monitor": "val/acc", "best": best, "metrics": {"val/acc": best}}))
    (run / "metrics.csv").write_text(f"epoch,step,train/loss,val/acc\n0,9,2.0,\n0,9,,0.5\n1,19,1.5,\n1,19,,{best}\n")
    (run / "checkpoints" / "best.ckpt").write_bytes(b"PK")
    (run / "confusion_matrix.png").write_bytes(b"\x89PNG")
    (run / "val_predictions.csv").write_text("id,index,target,prediction,confidence,loss,correct,epoch\n"
                                            "1,1,3,3,0.9,0.1,True,1\n2,2,4,7,0.2,2.5,False,1\n3,3,5,6,0.3,1.7,False,1\n")
    (run / "export" / "export_report.json").write_text(json.dumps({"formats": {"onnx": {"format": "onnx", "ok": True, "path": str(run / "export" / "model.onnx")}}}))
    (run / "export" / "model.onnx").write_bytes(b"onnx")
    return run


def test_runs_view_reads_the_run_folders(client: TestClient, outputs: Path) -> None:
    _fake_run(outputs, "10-00-00", width=16, best=0.8)
    _fake_run(outputs, "11-00-00", width=32, best=0.9)
    runs = {r["id"]: r for r in client.get("/api/runs").json()}
    assert set(runs) == {"2026-01-02/10-00-00", "2026-01-02/11-00-00"}
    one = runs["2026-01-02/11-00-00"]
    assert (one["status"], one["model"], one["data"], one["monitor"], one["best"]) == ("completed", "simple_cnn", "digits", "val/acc", 0.9)
    page = client.get("/api/run", params={"id": "2026-01-02/11-00-00"}).json()
    assert page["confusion_matrix"] == "2026-01-02/11-00-00/confusion_matrix.png"
    assert [row[0] for row in page["worst"]["rows"]] == ["2", "3", "1"]  # largest loss first
    assert page["export_report"]["formats"]["onnx"]["ok"] is True
    assert {"checkpoints/best.ckpt", "export/model.onnx", "metrics.csv"} <= {f["name"] for f in page["files"]}
    curves = client.get("/api/run/metrics", params={"id": "2026-01-02/11-00-00"}).json()
    assert curves["series"]["val/acc"] == [[9.0, 0.5, 0.0], [19.0, 0.9, 1.0]] and curves["run"]["epoch"] == 1
    cmp = client.get("/api/compare", params=[("id", "2026-01-02/10-00-00"), ("id", "2026-01-02/11-00-00")]).json()
    assert cmp["params"] == [{"key": "model.width", "values": [16, 32]}]


def test_runs_list_says_why_a_run_failed_and_offers_resume_only_when_it_can(client: TestClient, outputs: Path, tmp_path: Path) -> None:
    done = _fake_run(outputs, "10-00-00", width=16, best=0.8)
    stopped = _fake_run(outputs, "11-00-00", width=32, best=0.9)
    killed = _fake_run(outputs, "12-00-00", width=32, best=0.7)
    for run, code in ((done, 0), (stopped, 130), (killed, -9)):
        (run / "checkpoints" / "last.ckpt").write_bytes(b"PK")
        (run / "launch.json").write_text(json.dumps({"overrides": ["model=simple_cnn"], "returncode": code}))
    failed = outputs / "2026-01-02" / "13-00-00"
    failed.mkdir(parents=True)
    cli = run_cli("train", "model=yolo", "data=digits", cwd=tmp_path)  # what a failed run printed
    (failed / "console.log").write_text(cli.stdout + cli.stderr)
    (failed / "launch.json").write_text(json.dumps({"overrides": ["model=yolo", "data=digits"], "returncode": cli.returncode}))

    runs = {r["id"]: r for r in client.get("/api/runs").json()}
    ids = {run: run.relative_to(outputs).as_posix() for run in (done, stopped, killed, failed)}
    assert runs[ids[failed]]["status"] == "failed" and runs[ids[failed]]["error"] == cli.stderr.strip().removeprefix("error: ")
    assert [runs[ids[r]]["status"] for r in (done, stopped, killed)] == ["completed", "interrupted", "crashed"]
    assert runs[ids[done]]["error"] is None and runs[ids[stopped]]["error"] is None
    offered = {run: client.get("/api/run", params={"id": ids[run]}).json()["can_resume"] for run in (done, stopped, killed, failed)}
    assert offered == {done: False, stopped: True, killed: True, failed: False}
    refused = client.post("/api/run/resume", json={"id": ids[done]})
    assert refused.status_code == 409 and "is completed" in refused.json()["error"]

    # compare leaves out what the user did not set: plugin names, the data's facts, the checkpoint resumed from
    config = json.loads((stopped / "config.json").read_text())
    config.update(data={"_plugin_": "image_folder"}, facts={"num_classes": 3}, resume=str(stopped / "checkpoints" / "last.ckpt"))
    (stopped / "config.json").write_text(json.dumps(config))
    cmp = client.get("/api/compare", params=[("id", ids[done]), ("id", ids[stopped])]).json()
    assert [p["key"] for p in cmp["params"]] == ["model.width"]


def test_a_detection_run_shows_its_pr_curve_and_lowest_ap50_first(client: TestClient, outputs: Path) -> None:
    run = _fake_run(outputs, "12-00-00", width=16, best=0.7)
    (run / "confusion_matrix.png").unlink()
    (run / "pr_curve.png").write_bytes(b"\x89PNG")
    (run / "val_predictions.csv").write_text("id,index,true_boxes,pred_boxes,matched,ap50,epoch\n"
                                            "a,0,2,2,2,1.0000,1\nb,1,3,1,1,0.3300,1\nc,2,1,0,0,0.0000,1\n")
    page = client.get("/api/run", params={"id": "2026-01-02/12-00-00"}).json()
    assert page["pr_curve"] == "2026-01-02/12-00-00/pr_curve.png" and page["confusion_matrix"] is None
    assert [row[0] for row in page["worst"]["rows"]] == ["c", "b", "a"]
    assert (page["worst"]["sorted_by"], page["worst"]["order"]) == ("ap50", "lowest")


def test_launch_stop_and_resume(client: TestClient, outputs: Path) -> None:
    overrides = ["model=mlp", "model.hidden=8", "trainer.max_epochs=3"]
    started = client.post("/api/runs", json={"overrides": overrides})
    assert started.status_code == 200, started.text
    rid = started.json()["id"]
    run = outputs / rid
    assert started.json()["command"] == f"lightplug train {' '.join(overrides)} hydra.run.dir={run}"
    _wait(lambda: (run / "ready").exists())
    assert json.loads((run / "args.json").read_text()) == [*overrides, f"hydra.run.dir={run}"]
    assert client.get("/api/run", params={"id": rid}).json()["status"] == "running"
    assert client.post("/api/run/resume", json={"id": rid}).status_code == 409  # still running
    assert client.post("/api/run/stop", json={"id": rid}).json()["status"] == "stopping"
    _wait(lambda: read_launch(run).get("returncode") is not None)
    assert read_launch(run)["returncode"] == 130
    listed = client.get("/api/runs").json()[0]
    assert (listed["id"], listed["status"], listed["model"], listed["best"], listed["max_epochs"]) == (rid, "interrupted", "mlp", 0.75, 3)

    resumed = client.post("/api/run/resume", json={"id": rid})
    assert resumed.status_code == 200, resumed.text
    _wait(lambda: read_launch(run).get("returncode") == 0)
    last = run / "checkpoints" / "last.ckpt"
    assert json.loads((run / "args.json").read_text()) == [*overrides, f"resume={last}", f"hydra.run.dir={run}"]
    assert client.get("/api/run", params={"id": rid}).json()["status"] == "completed"
    assert client.post("/api/run/stop", json={"id": rid}).status_code == 409


# ---------------------------------------------------------------- who may talk to the server
def test_token_is_required_off_loopback() -> None:
    refused = run_cli("ui", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2 and "--token" in refused.stderr and "not a loopback address" in refused.stderr


def test_token_guards_every_request(outputs: Path, registry: Registry, tmp_path: Path) -> None:
    app = create_app(outputs, token="s3cret", loopback=False, registry=registry, cwd=tmp_path)
    with TestClient(app, base_url="http://192.0.2.10:8765") as c:
        assert c.get("/api/models").status_code == 401
        assert c.get("/").status_code == 401
        assert c.get("/api/models", headers={TOKEN_HEADER: "wrong"}).status_code == 401
        assert c.get("/api/models", headers={TOKEN_HEADER: "s3cret"}).status_code == 200
        login = c.get("/?token=s3cret", follow_redirects=False)
        assert login.status_code == 303 and TOKEN_COOKIE in login.headers["set-cookie"] and "HttpOnly" in login.headers["set-cookie"]
        c.cookies.set(TOKEN_COOKIE, "s3cret")
        assert c.get("/api/models").status_code == 200


def test_host_header_must_be_loopback_on_loopback(outputs: Path, registry: Registry, tmp_path: Path) -> None:
    with TestClient(create_app(outputs, registry=registry, cwd=tmp_path), base_url="http://rebound.example:8765") as c:
        assert c.get("/api/models").status_code == 403


def test_ui_command_is_registered() -> None:
    from lightplug.cli.main import _COMMANDS

    assert _COMMANDS["ui"][0] == "lightplug.cli.ui:main"
