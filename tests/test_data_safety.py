"""Nothing a user does loses or corrupts data (docs/reliability.md): one run per run folder (a lock with the
owner's pid; a SIGKILLed owner's lock is stale), a failed re-export keeps the verified file, a full disk while
a checkpoint is written is one line and keeps the previous checkpoint, and a run that fails before training
leaves no run folder and no runs.db row."""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import LIGHTPLUG, run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def _lock(run: Path, pid: int, host: str | None = None, started: str | None = None) -> None:
    from datetime import datetime

    started = started or datetime.now().astimezone().isoformat(timespec="seconds")
    (run / ".lightplug.lock").write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": started}))


@pytest.fixture
def sleeper() -> Any:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


# ---------------------------------------------------------------- the run-folder lock
def test_a_folder_held_by_a_live_run_is_refused_before_anything_is_written(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    from lightplug._run_folder import claim_run_folder
    from lightplug.errors import ConfigError

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,step\n0,10\n")
    _lock(run, sleeper.pid)
    before = _snapshot(run)
    with pytest.raises(ConfigError) as info, claim_run_folder(run):
        pass
    assert f"hydra.run.dir={run}: another run (pid {sleeper.pid}" in str(info.value) and "\n" not in str(info.value)
    assert _snapshot(run) == before


def test_a_lock_of_a_dead_or_reused_pid_is_stale_and_taken_over(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    from lightplug._run_folder import claim_run_folder

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for pid, started in ((gone.pid, None), (sleeper.pid, "2000-01-01T00:00:00+00:00")):  # dead; alive but newer than the lock
        run = tmp_path / f"run-{pid}"
        run.mkdir()
        _lock(run, pid, started=started)
        with claim_run_folder(run):
            assert json.loads((run / ".lightplug.lock").read_text())["pid"] == os.getpid()
        assert not (run / ".lightplug.lock").exists()  # released at the end


def test_a_lock_of_another_host_is_never_taken_over(tmp_path: Path) -> None:
    from lightplug._run_folder import claim_run_folder
    from lightplug.errors import ConfigError

    run = tmp_path / "run"
    run.mkdir()
    _lock(run, 1, host="some-other-host")
    with pytest.raises(ConfigError, match="a run of host some-other-host .* if that run is over, delete .*lightplug.lock"), claim_run_folder(run):
        pass


def test_ddp_child_ranks_share_the_folder_without_a_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeper: subprocess.Popen[bytes]) -> None:
    from lightplug._run_folder import claim_run_folder

    run = tmp_path / "run"
    run.mkdir()
    _lock(run, sleeper.pid)  # rank 0 holds it
    monkeypatch.setenv("LOCAL_RANK", "1")
    with claim_run_folder(run) as folder:
        assert not folder.owner
    assert json.loads((run / ".lightplug.lock").read_text())["pid"] == sleeper.pid


def test_a_run_that_fails_before_training_leaves_no_folder_it_made(tmp_path: Path) -> None:
    from lightplug._run_folder import claim_run_folder

    outputs = tmp_path / "outputs"
    (outputs / "2026-01-01" / "09-00-00").mkdir(parents=True)  # another run's folder: kept
    for run in (outputs / "2026-01-01" / "10-00-00", outputs / "2026-01-02" / "10-00-00"):
        with pytest.raises(RuntimeError), claim_run_folder(run):
            (run / ".hydra").mkdir()
            raise RuntimeError("the build failed")
        assert not run.exists()
    assert sorted(p.relative_to(outputs).as_posix() for p in outputs.rglob("*")) == ["2026-01-01", "2026-01-01/09-00-00"]
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError), claim_run_folder(existing):
        raise RuntimeError("the build failed")
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]
    started = tmp_path / "started"
    with pytest.raises(RuntimeError), claim_run_folder(started) as folder:
        folder.started = True
        raise RuntimeError("failed in epoch 3")
    assert started.is_dir() and not (started / ".lightplug.lock").exists()


def test_a_multirun_job_folder_holding_only_hydras_record_is_removed(tmp_path: Path) -> None:
    from lightplug._run_folder import claim_run_folder

    job = tmp_path / "multirun" / "2026-01-01" / "10-00-00" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("a: 1\n")
    (job / "train.log").write_text("")
    (job.parent / "multirun.yaml").write_text("x: 1\n")
    with pytest.raises(RuntimeError), claim_run_folder(job):
        raise RuntimeError("the build failed")
    assert not job.exists() and (job.parent / "multirun.yaml").is_file()


def _epochs_done(ckpt: Path) -> int:
    """The epochs a checkpoint has finished as Lightning counts them when it resumes (its fit loop's completed epochs),
    0 while there is no checkpoint yet (checkpoints are written atomically: one that exists is whole)."""
    if not ckpt.is_file():
        return 0
    state = torch.load(ckpt, weights_only=True, map_location="cpu")
    return int(state["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"])


@pytest.mark.slow
def test_a_second_train_in_the_same_folder_is_refused_and_a_sigkilled_runs_lock_is_taken_over(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([*LIGHTPLUG, "train", "model=mlp", "trainer.max_epochs=200", f"hydra.run.dir={run}", *QUIET], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (run / "metrics.csv").is_file() and not (run / "checkpoints" / "last.ckpt").is_file():
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.5)
        hydra_record = {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()}
        second = run_cli("train", "model=mlp", "model.hidden=32", "trainer.max_epochs=1", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
        assert second.returncode == 2, second.stderr[-2000:]
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: hydra.run.dir={run}: another run (pid {first.pid}"), second.stderr
        assert {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()} == hydra_record  # the first run's record is untouched
        while _epochs_done(run / "checkpoints" / "last.ckpt") < 2:  # so that one epoch fewer is still a real limit
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    assert (run / ".lightplug.lock").is_file()  # left behind by the killed run: stale
    # the killed run may have finished several epochs: fewer than that is refused in one line, and leaves the lock
    # to the next command; more goes on training
    done = _epochs_done(run / "checkpoints" / "last.ckpt")
    refused = run_cli("train", "model=mlp", f"trainer.max_epochs={done - 1}", "resume=last", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and f"has finished {done} epochs" in refused.stderr, refused.stderr[-3000:]
    resumed = run_cli("train", "model=mlp", f"trainer.max_epochs={done + 1}", "resume=last", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (run / ".lightplug.lock").exists()


# ---------------------------------------------------------------- no leftovers from a run that never started
BOOM = '''
from torch import nn


class Boom(nn.Module):
    """Raises when built."""

    def __init__(self, in_features: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        raise RuntimeError("no such layer")
'''


def _mlp_checkpoint(path: Path) -> Path:
    """A lightplug checkpoint of the installed mlp on digits, made without training."""
    import torch

    import lightplug

    net = lightplug.build_model("mlp", in_features=64, num_classes=10)
    meta = {"format": 1, "plugin": {"name": "mlp", "kind": "model", "dist": "lightplug-mlp", "source": "entry-point", "target": "lightplug_mlp:MLP"},
            "task": "classification", "model_config": {"in_features": 64, "hidden": 128, "depth": 2, "num_classes": 10, "dropout": 0.0},
            "data": {"name": "digits", "config": {}}, "label_names": [str(i) for i in range(10)],
            "preprocessing": {"layout": "flat", "in_features": 64}, "facts": {"num_classes": 10, "in_features": 64}, "config": {}}
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "lightplug": meta}, path)
    return path


@pytest.mark.slow
def test_errors_before_training_leave_no_run_folder_and_no_runs_db_row(tmp_path: Path) -> None:
    ckpt = _mlp_checkpoint(tmp_path / "mlp.ckpt")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "boom.py").write_text(textwrap.dedent(BOOM))
    env = {"LIGHTPLUG_PLUGIN_PATH": str(plugins)}
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    cases = [
        (["model=mlp_regressor", "data=diabetes", f"init_from={ckpt}"], "does not fit model mlp_regressor"),  # found after the build
        (["model=boom"], "failed to build: RuntimeError: no such layer"),
        (["model=mlp", "data=yolo", "data.yaml=missing.yaml"], "data.yaml=missing.yaml: no such file"),
        (["model=boom", f"hydra.run.dir={existing}"], "failed to build"),
    ]
    for args, words in cases:
        out = run_cli("train", *args, "trainer.max_epochs=1", *QUIET, cwd=tmp_path, env=env)
        errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
        assert out.returncode == 2 and len(errors) == 1 and words in errors[0], (args, out.stderr[-3000:])
        assert "Traceback" not in out.stderr
        assert not (tmp_path / "outputs").exists(), f"{args}: left {sorted(map(str, (tmp_path / 'outputs').rglob('*')))}"
        assert not (tmp_path / "runs.db").exists()
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]  # an existing folder is left as it was: no lock, no .hydra, no log


# ---------------------------------------------------------------- a failed re-export keeps the verified file
@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, Path, bytes]:
    pytest.importorskip("onnxruntime")
    from lightplug.export import export_checkpoint

    ckpt = _mlp_checkpoint(tmp_path / "mlp.ckpt")
    report = export_checkpoint(ckpt, ["onnx", "torchscript"], benchmark=False)
    assert report.ok
    onnx_file = tmp_path / "mlp.onnx"
    return ckpt, onnx_file, onnx_file.read_bytes()


def test_a_refused_re_export_keeps_the_file_an_earlier_export_verified(exported: tuple[Path, Path, bytes]) -> None:
    from lightplug.export import export_checkpoint

    ckpt, onnx_file, verified = exported
    ts_before = (ckpt.parent / "mlp.pt").read_bytes()
    report = export_checkpoint(ckpt, ["onnx", "torchscript"], benchmark=False, atol=math.nan, rtol=math.nan)
    assert not report.formats["onnx"].ok and not report.formats["torchscript"].ok
    assert onnx_file.read_bytes() == verified and (ckpt.parent / "mlp.pt").read_bytes() == ts_before
    assert f"the earlier {onnx_file} is kept" in (report.formats["onnx"].error or "")
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["export_report.json", "mlp.ckpt", "mlp.onnx", "mlp.pt"]  # no temporary left


@pytest.mark.slow
def test_output_never_replaces_an_input_the_model_the_checkpoint_or_a_run_file(exported: tuple[Path, Path, bytes]) -> None:
    """An outside attack found each of these overwrote a file: predict's output= naming its input or its model, export's
    output= naming the checkpoint it reads or a run's config.json, and a predict that failed emptied the earlier CSV."""
    ckpt, onnx_file, verified = exported
    folder = ckpt.parent
    rows = folder / "in.csv"
    rows.write_text(",".join(f"f{i}" for i in range(64)) + "\n" + ",".join(["1"] * 64) + "\n")
    config = folder / "config.json"
    config.write_text('{"mine": true}')
    keep = folder / "keep.csv"
    keep.write_text("earlier,results\n")
    broken = folder / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    kept = {f: f.read_bytes() for f in (ckpt, onnx_file, rows, config, keep)}
    refused = [
        (["predict", f"model={onnx_file}", f"input={rows}", f"output={rows}"], "is one of the files it reads"),
        (["predict", f"model={onnx_file}", f"input={folder}", f"output={rows}"], "is one of the files it reads"),
        (["predict", f"model={onnx_file}", f"input={rows}", f"output={onnx_file}"], "predictions are written as CSV"),
        (["predict", f"model={onnx_file}", f"input={rows}", "output=/dev/null"], "predictions are written as CSV"),
        (["export", f"ckpt={ckpt}", "format=onnx", f"output={ckpt}"], "onnx files are written as *.onnx"),
        (["export", f"ckpt={ckpt}", "format=torchscript", f"output={config}"], "torchscript files are written as *.pt"),
        (["export", f"ckpt={ckpt}", "format=onnx", "output=/dev/null"], "onnx files are written as *.onnx"),
        (["predict", f"model={broken}", f"input={rows}", f"output={keep}"], "broken.onnx"),  # a failure keeps the earlier CSV
    ]
    for args, words in refused:
        out = run_cli(*args, cwd=folder)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, (args, out.stderr[-2000:])
    assert {f: f.read_bytes() for f in kept} == kept
    assert Path("/dev/null").is_char_device()
    done = run_cli("predict", f"model={onnx_file}", f"input={rows}", f"output={keep}", cwd=folder)  # a success replaces it
    assert done.returncode == 0 and keep.read_text().startswith("file,") and not list(folder.glob(".*.tmp"))


@pytest.mark.slow
def test_export_with_atol_nan_on_the_command_line_keeps_the_verified_file(exported: tuple[Path, Path, bytes]) -> None:
    ckpt, onnx_file, verified = exported
    out = run_cli("export", f"ckpt={ckpt}", "format=onnx", "atol=nan", "benchmark=false", cwd=ckpt.parent)
    assert out.returncode == 2 and out.stderr.count("error: ") == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert onnx_file.read_bytes() == verified


# ---------------------------------------------------------------- a full disk while a checkpoint is written
def _file_size_limit(limit: int) -> Any:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_a_file_size_limit_while_a_checkpoint_is_written_is_one_line_and_keeps_the_previous_one(tmp_path: Path) -> None:
    import torch

    run = tmp_path / "run"
    args = ["model=mlp", "model.hidden=512", f"hydra.run.dir={run}", *QUIET]
    first = run_cli("train", *args, "trainer.max_epochs=1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    assert len(before) > 2_000_000  # the limit below lets the logs through, not a checkpoint
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    second = subprocess.run([*LIGHTPLUG, "train", *args, "trainer.max_epochs=2", "resume=last"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600, preexec_fn=_file_size_limit(1_000_000))
    assert second.returncode == 2, second.stderr[-3000:]
    errors = [ln for ln in second.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in second.stderr, second.stderr[-3000:]
    assert f"could not write checkpoint {run / 'checkpoints'}" in errors[0] and "File too large" in errors[0], errors
    assert "is intact" in errors[0] and "ulimit -f" in errors[0]
    assert last.read_bytes() == before and torch.load(last, weights_only=True)["epoch"] == 0
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temporary left


# ---------------------------------------------------------------- an exported file's metadata is untrusted
@pytest.mark.parametrize(("change", "words"), [
    ("meta = [1]", "is not a JSON object"),
    ("meta = None", "is not a JSON object"),
    ("meta['task'] = 'segmentation!'", "its task 'segmentation!' is not one of"),
    ("meta['preprocessing'] = None", "its preprocessing is not a JSON object"),
    ("meta['preprocessing']['layout'] = '../x'", "its preprocessing layout '../x' is not one of"),
    ("meta['preprocessing']['mean'] = 'x'", "its preprocessing mean is not a finite number"),
    ("meta['label_names'] = [{'x': 1}]", "its label_names are not a list of names"),
    ("meta = '[' * 100000 + ']' * 100000", "nested too deeply"),
])
def test_malformed_onnx_metadata_is_one_line(exported: tuple[Path, Path, bytes], change: str, words: str) -> None:
    """Found by an outside attack: each of these gave a Python traceback (AttributeError, IndexError, onnxruntime's
    InvalidArgument, RecursionError) instead of one line."""
    import json as json_module

    onnx = pytest.importorskip("onnx")
    _, onnx_file, _ = exported
    model = onnx.load(str(onnx_file))
    prop = next(p for p in model.metadata_props if p.key == "lightplug.meta")
    meta = json_module.loads(prop.value)
    scope = {"meta": meta}
    exec(change, scope)  # noqa: S102 - the test's own edit of the metadata
    prop.value = scope["meta"] if isinstance(scope["meta"], str) else json_module.dumps(scope["meta"])
    bad = onnx_file.with_name("bad.onnx")
    onnx.save(model, str(bad))
    rows = onnx_file.with_name("in.csv")
    rows.write_text(",".join(f"f{i}" for i in range(64)) + "\n" + ",".join(["1"] * 64) + "\n")
    out = run_cli("predict", f"model={bad}", f"input={rows}", "output=p.csv", cwd=onnx_file.parent)
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert out.returncode == 2 and len(errors) == 1 and words in errors[0] and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert not (onnx_file.parent / "p.csv").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_path_the_system_refuses_is_one_line(exported: tuple[Path, Path, bytes]) -> None:
    """Found by an outside attack: writing under /proc, or a 250-character name, was a traceback (exit 1)."""
    ckpt, onnx_file, _ = exported
    rows = onnx_file.with_name("in.csv")
    rows.write_text(",".join(f"f{i}" for i in range(64)) + "\n" + ",".join(["1"] * 64) + "\n")
    for args in (["new-plugin", "a", "--kind", "data", "--dir", "/proc/lightplug-test"], ["new-plugin", "a" * 250],
                 ["predict", f"model={onnx_file}", f"input={rows}", "output=/proc/lightplug-test.csv"],
                 ["export", f"ckpt={ckpt}", "format=onnx", "output=/proc/lightplug-test.onnx", "benchmark=false"]):
        out = run_cli(*args, cwd=onnx_file.parent)
        errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
        assert out.returncode == 2 and len(errors) == 1 and "Traceback" not in out.stderr, (args, out.stderr[-2000:])
