"""Exact resume: a run killed with SIGKILL, or stopped with SIGINT in the middle of an epoch, and then
resumed ends with the very same weights, optimizer state, RNG state and metrics as the run left alone.

Dropout and shuffling make every generator matter; the comparison is tensor by tensor with no tolerance."""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
BASE = ["model=mlp", "model.dropout=0.2", "seed=7", "trainer.max_epochs=5", *QUIET]
TIMEOUT = 600.0  # generous: the machine may be shared


class Run:
    """A ``lightplug train`` subprocess writing its output to files (no pipe can fill up)."""

    def __init__(self, cwd: Path, run: Path, *extra: str, base: list[str] | None = None) -> None:
        self.cwd, self.run = cwd, run
        self.log = cwd / f"{run.name}-{time.monotonic_ns()}"
        self.stdout, self.stderr = open(f"{self.log}.out", "w"), open(f"{self.log}.err", "w")  # noqa: SIM115
        args = [*(BASE if base is None else base), *extra]
        if not any(a.startswith("hydra.run.dir=") for a in args):
            args.append(f"hydra.run.dir={run}")
        cmd = [sys.executable, "-m", "lightplug", "train", *args]
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=self.stdout, stderr=self.stderr, env={**os.environ, "PYTHONWARNINGS": "ignore"})

    def wait(self, timeout: float = TIMEOUT) -> int:
        rc = self.proc.wait(timeout=timeout)
        self.stdout.close()
        self.stderr.close()
        return rc

    @property
    def err(self) -> str:
        if not self.stderr.closed:
            self.stderr.flush()
        return Path(f"{self.log}.err").read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch stored in a checkpoint file, or None while it does not exist or cannot be read."""
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - absent or being replaced
        return None


def stop_when(run: Run, ready: Callable[[], bool], then: int, timeout: float = TIMEOUT) -> None:
    """Freeze the process (SIGSTOP) whenever ``ready`` may have become true, check it, and send ``then``
    once it is; the freeze makes the check and the signal race-free on a loaded machine."""
    deadline = time.monotonic() + timeout
    last = run.run / "checkpoints" / "last.ckpt"
    seen = -1
    while time.monotonic() < deadline:
        if run.proc.poll() is not None:
            pytest.fail(f"training ended (exit {run.proc.returncode}) before it could be stopped:\n{run.err[-3000:]}")
        stamp = last.stat().st_mtime_ns if last.exists() else -1
        if stamp != seen:
            seen = stamp
            run.proc.send_signal(signal.SIGSTOP)
            try:
                if ready():
                    run.proc.send_signal(then)
                    return
            finally:
                run.proc.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    pytest.fail("timed out waiting for a checkpoint")


def assert_same_state(a_path: Path, b_path: Path) -> None:
    """Two checkpoints hold the same weights, optimizer and scheduler state, progress and RNG state."""
    import torch

    a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in (a_path, b_path))
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), f"weights differ: {key}"
    _assert_equal_tree(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
    _assert_equal_tree(a["lr_schedulers"], b["lr_schedulers"], "lr_schedulers")
    _assert_equal_tree(a["callbacks"]["RNGState"]["rng"], b["callbacks"]["RNGState"]["rng"], "rng")


def _assert_equal_tree(a: Any, b: Any, where: str) -> None:
    import torch

    if torch.is_tensor(a):
        assert torch.is_tensor(b) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_equal_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def epoch_metrics(run: Path, keys: tuple[str, ...] = ("val/acc", "val/loss", "val/f1")) -> dict[int, dict[str, str]]:
    """Per epoch, the validation metrics of metrics.csv."""
    out: dict[int, dict[str, str]] = {}
    with (run / "metrics.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("val/acc"):
                out[int(row["epoch"])] = {k: row[k] for k in keys}
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The run left alone, started once and shared (it trains while the other runs are stopped)."""
    cwd = tmp_path_factory.mktemp("reference")
    run = Run(cwd, cwd / "A")
    yield run
    run.kill()


def _finished(run: Run) -> Path:
    rc = run.wait()
    assert rc == 0, run.err[-3000:]
    return run.run


@pytest.mark.slow
def test_sigkill_then_resume_last_matches_the_run_left_alone(reference: Run, tmp_path: Path) -> None:
    b = Run(tmp_path, tmp_path / "B")
    last = b.run / "checkpoints" / "last.ckpt"
    stop_when(b, lambda: (checkpoint_epoch(last) or 0) >= 2, signal.SIGKILL)
    assert b.wait() == -signal.SIGKILL
    killed_at = checkpoint_epoch(last)
    assert killed_at is not None and 2 <= killed_at < 4
    # the killed process wrote no end: the runs index shows it as crashed, with the command that resumes it
    listed = subprocess.run([sys.executable, "-m", "lightplug", "runs"], capture_output=True, text=True)  # $LIGHTPLUG_HOME/runs.db
    assert listed.returncode == 0 and "crashed" in listed.stdout and "running" not in listed.stdout, listed.stdout + listed.stderr
    shown = subprocess.run([sys.executable, "-m", "lightplug", "runs", "show", "1", "--json"],
                           capture_output=True, text=True)
    row = json.loads(shown.stdout)
    assert row["status"] == "crashed" and f"pid {b.proc.pid}" in row["error"]
    command = row["error"].split("resume with: ", 1)[1]
    assert f"resume={last.resolve()}" in command and f"hydra.run.dir={b.run.resolve()}" in command
    assert shlex.split(command)[:2] == ["lightplug", "train"]
    resumed = Run(tmp_path, b.run, base=shlex.split(command)[2:])  # the printed command, as a user pastes it
    assert resumed.wait() == 0, resumed.err[-3000:]
    a = _finished(reference)
    assert checkpoint_epoch(a / "checkpoints" / "last.ckpt") == 4, "last.ckpt must be refreshed after every epoch, improved or not"
    assert_same_state(a / "checkpoints" / "last.ckpt", last)
    assert epoch_metrics(b.run) == epoch_metrics(a), "metrics.csv differs (it must also keep the epochs before the kill)"
    assert sorted(epoch_metrics(b.run)) == list(range(5))
    assert_same_results(a, b.run)


def assert_same_results(a: Path, b: Path) -> None:
    """The validation files of both runs show the same best epoch, sample by sample (the kept epoch of a killed
    run travels in its checkpoint until it is written)."""
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
    assert sa["best_epoch"] == sb["best_epoch"] == sa["artifacts_epoch"] == sb["artifacts_epoch"] is not None
    assert (a / "val_predictions.csv").read_text() == (b / "val_predictions.csv").read_text()
    assert (a / "confusion_matrix.csv").read_text() == (b / "confusion_matrix.csv").read_text()


@pytest.mark.slow
def test_sigint_mid_epoch_then_printed_command_matches_the_run_left_alone(reference: Run, tmp_path: Path) -> None:
    c = Run(tmp_path, tmp_path / "C")
    last = c.run / "checkpoints" / "last.ckpt"
    stop_when(c, lambda: (checkpoint_epoch(last) or 0) >= 1, signal.SIGINT)
    assert c.wait() == 128 + signal.SIGINT, c.err[-3000:]
    err = c.err
    assert "error: training stopped by SIGINT" in err and "Traceback" not in err
    import torch

    state = torch.load(last, map_location="cpu", weights_only=True)
    print("stopped at step", state["global_step"], "batches of the epoch to replay:", state["callbacks"]["RNGState"]["skip_batches"])
    command = err.split("resume with: ", 1)[1].rsplit(")", 1)[0]
    args = shlex.split(command)
    assert args[:2] == ["lightplug", "train"] and f"resume={last.resolve()}" in args and f"hydra.run.dir={c.run.resolve()}" in args
    resumed = subprocess.run([sys.executable, "-m", "lightplug", *args[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = _finished(reference)
    assert_same_state(a / "checkpoints" / "last.ckpt", last)
    assert epoch_metrics(c.run) == epoch_metrics(a)
    assert_same_results(a, c.run)


_SIGINT_IN_THE_LAST_BATCH = """
import os, signal, sys
from lightplug.interrupt import GracefulStop

def signal_now(self, trainer, pl_module, batch, batch_idx):  # a real Ctrl-C, during epoch 1's last training batch
    if trainer.current_epoch == 1 and batch_idx == trainer.num_training_batches - 1:
        os.kill(os.getpid(), signal.SIGINT)

GracefulStop.on_train_batch_start = signal_now
from lightplug.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigint_in_an_epochs_last_batch_stops_after_its_validation_and_resumes_exactly(reference: Run, tmp_path: Path) -> None:
    """A checkpoint taken after an epoch's last batch but before its validation made Lightning skip that validation
    on resume, and the runs parted (a shuffled, loaded run of the test above hit it about once in 20 batches)."""
    run = tmp_path / "D"
    script = tmp_path / "signal_in_last_batch.py"
    script.write_text(_SIGINT_IN_THE_LAST_BATCH)
    stopped = subprocess.run([sys.executable, str(script), "train", *BASE, f"hydra.run.dir={run}"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=TIMEOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr[-3000:]
    assert "error: training stopped by SIGINT at epoch 1" in stopped.stderr and "Traceback" not in stopped.stderr
    epochs = epoch_metrics(run)
    assert sorted(epochs) == [0, 1], epochs  # epoch 1's validation ran before the stop
    best = max(epochs, key=lambda e: (float(epochs[e]["val/acc"]), -e))
    shown = json.loads((run / "artifacts.json").read_text())  # the files written at the stop show that validation's best
    assert shown["best_epoch"] == best and set(shown["files"].values()) == {best}, (shown, epochs)
    command = shlex.split(stopped.stderr.split("resume with: ", 1)[1].rsplit(")", 1)[0])
    resumed = subprocess.run([sys.executable, "-m", "lightplug", *command[1:]], cwd=tmp_path, capture_output=True, text=True,
                             timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = _finished(reference)
    assert_same_state(a / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.ckpt")
    assert epoch_metrics(run) == epoch_metrics(a)
    assert_same_results(a, run)


def test_resume_last_takes_this_folder_first_then_the_newest_under_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightplug.errors import CheckpointError
    from lightplug.training import _resume_path

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="no last.ckpt"):
        _resume_path("last", tmp_path / "fresh")
    files = []
    for i, day in enumerate(("2026-01-01/10-00-00", "2026-01-02/09-00-00")):
        path = tmp_path / "outputs" / day / "checkpoints" / "last.ckpt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
        files.append(path)
    assert _resume_path("last", tmp_path / "fresh") == str(Path("outputs/2026-01-02/09-00-00/checkpoints/last.ckpt"))
    here = tmp_path / "run" / "checkpoints" / "last.ckpt"
    here.parent.mkdir(parents=True)
    here.write_bytes(b"x")
    assert _resume_path("last", tmp_path / "run") == str(here)
    assert _resume_path(None, tmp_path) is None
