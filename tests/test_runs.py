"""The runs index (runs.db) and `lightplug runs`: where runs are recorded, what a record holds at the start
and at the end (completed, failed, interrupted; crashed when the process died without a word), rank 0 only, concurrent writers losing no row, and the
list / show / compare commands (which never import torch)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import run_cli
from lightplug.errors import Interrupted
from lightplug.runs import RunStore, db_path, default_db_path, record_run

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
TINY = ["model=mlp", "trainer.max_epochs=1", "model.hidden=16", *QUIET]


def _run_config(**cfg: Any) -> SimpleNamespace:
    """What record_run reads of a RunConfig."""
    config = {"monitor": "val/acc", "monitor_mode": "max", "model": {"_plugin_": "mlp", "hidden": 16}, **cfg}
    return SimpleNamespace(cfg=config, model_name="mlp", data_name="digits", task="classification", preset="easy",
                           overrides=["model=mlp", "model.hidden=16"])


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "index" / "runs.db"
    monkeypatch.setenv("LIGHTPLUG_RUNS_DB", str(path))
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    return path


# ---------------------------------------------------------------- where the database is
def test_default_database_is_one_per_user_in_lightplug_home(lightplug_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_db_path() == db_path() == lightplug_home / "runs.db"
    monkeypatch.delenv("LIGHTPLUG_HOME")
    monkeypatch.setenv("HOME", "/home/ada")
    assert default_db_path() == Path("/home/ada/.lightplug/runs.db")


def test_environment_variable_names_the_database_or_switches_recording_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTPLUG_RUNS_DB", "/somewhere/index.db")
    assert db_path() == Path("/somewhere/index.db")
    monkeypatch.setenv("LIGHTPLUG_RUNS_DB", "off")
    assert db_path() is None


# ---------------------------------------------------------------- the record_run hook
def test_completed_run_records_start_fields_then_summary_metrics_and_checkpoint(db: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seen: dict[str, Any] = {}

    @record_run
    def train(run: Any, out: Path) -> float:
        seen.update(RunStore(db).get(1) or {})  # the row exists, as running, while the run trains
        out.mkdir()
        (out / "summary.json").write_text(json.dumps({"best": 0.9, "best_checkpoint": str(out / "best.ckpt"), "metrics": {"val/acc": 0.88}}))
        (out / "export").mkdir()
        (out / "export" / "model.onnx").write_bytes(b"x")
        return 0.9

    assert train(_run_config(), run_dir) == 0.9
    assert seen["status"] == "running" and seen["ended"] is None
    row = RunStore(db).get(1)
    assert row is not None
    assert row["status"] == "completed" and row["best"] == 0.9 and row["error"] is None
    assert (row["model"], row["data"], row["task"], row["preset"], row["monitor"]) == ("mlp", "digits", "classification", "easy", "val/acc")
    assert row["plugin_dist"] == "lightplug-mlp" and row["plugin_version"]
    assert row["overrides"] == ["model=mlp", "model.hidden=16"] and row["config"]["model"]["hidden"] == 16
    assert row["metrics"] == {"val/acc": 0.88} and row["checkpoint"] == str(run_dir / "best.ckpt")
    assert row["exports"] == [str(run_dir.resolve() / "export" / "model.onnx")]
    assert row["run_dir"] == str(run_dir.resolve()) and row["ended"] >= row["started"]


@pytest.mark.parametrize(("error", "status", "message"), [
    (Interrupted("training stopped by SIGINT at epoch 0, step 3; checkpoint saved: last.ckpt"), "interrupted", "Interrupted: training stopped by SIGINT"),
    (KeyboardInterrupt(), "interrupted", "KeyboardInterrupt"),
    (ValueError("bad shape\nsecond line"), "failed", "ValueError: bad shape"),
])
def test_run_that_raises_is_recorded_with_its_status_and_first_error_line(db: Path, tmp_path: Path, error: BaseException, status: str,
                                                                          message: str) -> None:
    @record_run
    def train(run: Any, out: Path) -> float:
        raise error

    with pytest.raises(type(error)):
        train(_run_config(), tmp_path / "run")
    row = RunStore(db).get(1)
    assert row is not None and row["status"] == status and row["ended"]
    assert row["error"].startswith(message) and "\n" not in row["error"]


def test_only_global_rank_zero_records(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train = record_run(lambda run, out: 1.0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    train(_run_config(), tmp_path / "run")
    assert not db.exists()
    monkeypatch.setenv("LOCAL_RANK", "0")
    train(_run_config(), tmp_path / "run")
    assert [r["status"] for r in RunStore(db).list_runs()] == ["completed"]


def test_unwritable_database_never_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("LIGHTPLUG_RUNS_DB", str(blocker / "runs.db"))  # its folder is a file
    assert record_run(lambda run, out: 0.5)(_run_config(), tmp_path / "run") == 0.5
    assert "not recorded" in caplog.text


# ---------------------------------------------------------------- a process that died without recording its end
def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_run_whose_process_is_gone_is_read_as_crashed_with_the_resume_command(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    os.utime(run_dir / "checkpoints" / "last.ckpt", (1_900_000_000, 1_900_000_000))  # its last write: the run's end
    dead = store.start(run_dir, pid=_dead_pid(), overrides=["model=mlp", "seed=3"])
    alive = store.start(tmp_path / "other")  # this process: still running
    rows = {r["id"]: r for r in store.list_runs()}
    assert rows[alive]["status"] == "running" and rows[alive]["error"] is None and rows[alive]["ended"] is None
    assert rows[dead]["status"] == "crashed" and datetime.fromisoformat(rows[dead]["ended"]).timestamp() == 1_900_000_000
    assert "ended without recording an end" in rows[dead]["error"]
    assert rows[dead]["error"].endswith(f"resume with: lightplug train model=mlp seed=3 resume={run_dir}/checkpoints/last.ckpt hydra.run.dir={run_dir}")
    assert [r["id"] for r in store.list_runs(status="running")] == [alive]
    assert [r["id"] for r in store.list_runs(status="crashed")] == [dead]
    with sqlite3.connect(store.path) as con:  # recorded once, not only shown
        assert con.execute("SELECT status FROM runs WHERE id = ?", (dead,)).fetchone() == ("crashed",)


def test_pid_reused_by_a_newer_process_is_not_the_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    # this process's pid, but the row says its run started long before this process did
    run_id = store.start(tmp_path / "run", started="2000-01-01T00:00:00+00:00")
    row = store.get(run_id)
    assert row is not None and row["status"] == "crashed"
    assert "resume with" not in row["error"] and row["ended"] is None  # no last.ckpt to resume from, no file to date its end


def test_run_of_another_host_and_a_finished_run_are_left_alone(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    other = store.start(tmp_path / "a", host="another-machine", pid=_dead_pid())
    done = store.start(tmp_path / "b", pid=_dead_pid())
    store.finish(done, "completed", best=0.5)
    assert {r["id"]: r["status"] for r in store.list_runs()} == {other: "running", done: "completed"}


# ---------------------------------------------------------------- concurrency
_WRITER = textwrap.dedent("""
    import sys, time
    from lightplug.runs import RunStore
    db, start, writer = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    while time.time() < start:
        time.sleep(0.001)
    store = RunStore(db)
    for i in range(15):
        rid = store.start(f"/runs/{writer}/{i}", model=f"m{writer}", config={"i": i})
        store.finish(rid, "completed", best=float(i), metrics={"writer": writer})
""")


def test_concurrent_writers_lose_no_row(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    start = time.time() + 2.0  # every writer opens the (not yet existing) database at the same moment
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), str(start), str(w)], stderr=subprocess.PIPE, text=True) for w in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    rows = RunStore(db).list_runs()
    assert len(rows) == 90 and len({r["id"] for r in rows}) == 90
    assert {r["run_dir"] for r in rows} == {f"/runs/{w}/{i}" for w in range(6) for i in range(15)}
    assert all(r["status"] == "completed" and r["metrics"]["writer"] == int(r["model"][1:]) for r in rows)
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ---------------------------------------------------------------- lightplug runs
def _fill(db: Path, tmp_path: Path) -> None:
    """Three recorded runs, two of them with a metrics.csv."""
    store = RunStore(db)
    for i, (hidden, lr, status) in enumerate([(16, 0.001, "completed"), (32, 0.01, "failed"), (64, 0.001, "completed")], start=1):
        run_dir = tmp_path / f"run{i}"
        run_dir.mkdir()
        if i != 2:
            rows = ["epoch,step,train/loss,val/acc"] + [f"{e},{e * 10},{2 - e * 0.3},\n{e},{e * 10},,{0.5 + e * 0.1 * i}" for e in range(3)]
            (run_dir / "metrics.csv").write_text("\n".join(rows) + "\n")
        rid = store.start(run_dir, model="mlp" if i < 3 else "convnet", preset="easy" if i == 1 else None, monitor="val/acc", monitor_mode="max",
                          overrides=[f"model.hidden={hidden}", "logger=[csv,tensorboard]"],
                          config={"model": {"hidden": hidden, "depth": 2}, "optimizer": {"lr": lr}, "seed": 42})
        store.finish(rid, status, best=0.5 + i / 10 if status == "completed" else None, metrics={"val/acc": 0.5 + i / 10, "val/loss": 1.0 / i},
                     error="ValueError: boom" if status == "failed" else None)


def test_runs_lists_filters_and_shows_without_importing_torch(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    _fill(db, tmp_path)
    code = textwrap.dedent(f"""
        import sys
        from lightplug.cli.main import main
        codes = [main(["runs", "--db", {str(db)!r}]), main(["runs", "--db", {str(db)!r}, "--model", "mlp", "--status", "completed"]),
                 main(["runs", "show", "2", "--db", {str(db)!r}])]
        assert codes == [0, 0, 0], codes
        heavy = sorted(m for m in ("torch", "lightning", "matplotlib") if m in sys.modules)
        assert not heavy, heavy
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    _, listing, rest = out.stdout.split("runs in ")
    filtered, shown = rest.split("run 2")
    for word in ("ID", "STARTED", "MODEL", "PRESET", "STATUS", "MONITOR", "BEST", "DURATION", "convnet", "failed", "easy", "0.6"):
        assert word in listing, word
    assert "mlp" in filtered and "convnet" not in filtered and "failed" not in filtered
    assert "ValueError: boom" in shown and "logger=[csv,tensorboard]" in shown and "model.hidden" in shown


def test_runs_compare_prints_differing_hyperparameters_and_metrics_and_writes_curves(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    _fill(db, tmp_path)
    out = run_cli("runs", "compare", "1", "2", "3", "--db", str(db), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    diff = out.stdout.split("hyperparameters that differ")[1].split("final metrics")[0]
    assert "model.hidden" in diff and "optimizer.lr" in diff and "model.depth" not in diff and "seed" not in diff
    for value in ("16", "32", "64", "0.001", "0.01"):
        assert value in diff
    metrics = out.stdout.split("final metrics")[1]
    assert "val/loss" in metrics and "0.3333" in metrics and "completed" in metrics and "failed" in metrics
    assert "no metrics.csv for #2" in out.stdout
    png = tmp_path / "compare_1_2_3.png"
    assert f"learning curves: {png}" in out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


@pytest.mark.parametrize(("args", "message"), [
    (["runs", "show", "99"], "no run 99 in"),
    (["runs", "show", "abc"], "run id 'abc' is not a number"),
    (["runs", "compare", "1"], "at least two run ids"),
])
def test_runs_user_errors_are_one_line_with_exit_code_2(tmp_path: Path, args: list[str], message: str) -> None:
    db = tmp_path / "runs.db"
    _fill(db, tmp_path)
    out = run_cli(*args, "--db", str(db), cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_runs_without_a_database_says_where_it_looked(tmp_path: Path, lightplug_home: Path) -> None:
    out = run_cli("runs", cwd=tmp_path)
    assert out.returncode == 0 and f"no runs recorded yet: {lightplug_home / 'runs.db'} does not exist" in " ".join(out.stdout.split())
    given = run_cli("runs", "--db", str(tmp_path / "nope.db"), cwd=tmp_path)
    assert given.returncode == 2 and f"no runs database at {tmp_path / 'nope.db'}" in given.stderr


# ---------------------------------------------------------------- end to end
@pytest.mark.slow
def test_runs_from_any_folder_are_in_one_index_that_runs_reads_from_anywhere(tmp_path: Path, lightplug_home: Path) -> None:
    out = run_cli("train", "-m", *TINY[:2], "model.hidden=8,16", *QUIET, "hydra.sweep.dir=multirun/2026-01-02/10-11-12", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere" / "x"  # a single run wherever hydra.run.dir puts it
    one = run_cli("train", *TINY, f"hydra.run.dir={elsewhere}", cwd=tmp_path / "multirun")
    assert one.returncode == 0, one.stderr[-2000:]
    assert not list(tmp_path.rglob("runs.db")) and (lightplug_home / "runs.db").is_file()
    rows = RunStore(lightplug_home / "runs.db").list_runs()
    assert rows.pop()["run_dir"] == str(elsewhere)
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert [r["config"]["model"]["hidden"] for r in rows] == [8, 16]
    for r, job in zip(rows, ("0", "1")):
        run_dir = tmp_path / "multirun" / "2026-01-02" / "10-11-12" / job
        summary = json.loads((run_dir / "summary.json").read_text())
        assert r["run_dir"] == str(run_dir) and r["best"] == pytest.approx(summary["best"]) and r["metrics"] == summary["metrics"]
        assert r["checkpoint"] == summary["best_checkpoint"] and Path(r["checkpoint"]).is_file()
        assert r["plugin_version"] and r["model"] == "mlp" and "model.hidden=8,16" not in r["overrides"]
    (tmp_path / "somewhere").mkdir()
    wide = {"COLUMNS": "400"}  # long paths fold in narrower tables
    listing = run_cli("runs", cwd=tmp_path / "somewhere", env=wide)  # found without --db, from any folder
    assert listing.returncode == 0 and listing.stdout.count("completed") == 3 and str(elsewhere) in listing.stdout, listing.stderr
    compare = run_cli("runs", "compare", "1", "2", "--out", "cmp.png", cwd=tmp_path)
    assert compare.returncode == 0 and "model.hidden" in compare.stdout and (tmp_path / "cmp.png").is_file(), compare.stderr
    assert "no metrics.csv" not in compare.stdout
    import shutil

    shutil.rmtree(elsewhere)  # a deleted run folder stays listed, marked missing
    listing = run_cli("runs", cwd=tmp_path / "somewhere", env=wide)
    assert listing.returncode == 0 and f"{elsewhere} (missing)" in listing.stdout and listing.stdout.count("(missing)") == 1


BREAKS_IN_TRAINING = textwrap.dedent("""
    from torch import nn


    class Breaks(nn.Module):
        \"\"\"Passes the first-batch check (eval mode), raises on the third training step.\"\"\"

        def __init__(self, in_features: int = 64, num_classes: int = 10) -> None:
            super().__init__()
            self.fc = nn.Linear(in_features, num_classes)
            self.steps = 0

        def forward(self, x):
            if self.training:
                self.steps += 1
                if self.steps == 3:
                    raise RuntimeError("the loss exploded")
            return self.fc(x.flatten(1))
""")


@pytest.mark.slow
def test_run_that_fails_inside_training_is_recorded_as_failed(tmp_path: Path, lightplug_home: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "breaks.py").write_text(BREAKS_IN_TRAINING)
    run_dir = tmp_path / "outputs" / "2026-01-02" / "10-11-12"
    out = run_cli("train", "model=breaks", "trainer.max_epochs=1", *QUIET, f"hydra.run.dir={run_dir}", cwd=tmp_path,
                  env={"LIGHTPLUG_PLUGIN_PATH": str(plugins)})
    assert out.returncode != 0
    (row,) = RunStore(lightplug_home / "runs.db").list_runs()
    assert row["status"] == "failed" and row["ended"] and "the loss exploded" in row["error"] and "\n" not in row["error"]
    assert row["best"] is None and row["config"]["model"]["_plugin_"] == "breaks"


def test_run_that_fails_before_training_is_not_recorded_and_leaves_no_folder(tmp_path: Path, lightplug_home: Path) -> None:
    run_dir = tmp_path / "outputs" / "2026-01-02" / "10-11-12"
    out = run_cli("train", *TINY, "trainer.accelerator=gpu", f"hydra.run.dir={run_dir}", cwd=tmp_path)  # no GPU here: the trainer fails
    assert out.returncode == 2 and out.stderr.count("error: ") == 1, out.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()  # no run folder (docs/reliability.md)
    assert not (lightplug_home / "runs.db").exists() or not RunStore(lightplug_home / "runs.db").list_runs()  # not recorded
