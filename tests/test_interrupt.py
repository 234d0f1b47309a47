"""SIGINT, SIGTERM and SIGKILL: a stopped run exits with 128+signal after writing a checkpoint and saying
how to resume; a second signal stops at once; a kill at any moment never leaves a checkpoint that does not
load; the previous signal handlers are back once training ends."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
TIMEOUT = 600.0


def _start(cwd: Path, run: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    err = cwd / f"{run.name}-{time.monotonic_ns()}.err"
    with open(err, "wb") as f_err, open(err.with_suffix(".out"), "wb") as f_out:
        proc = subprocess.Popen([sys.executable, "-m", "lightplug", "train", *args, f"hydra.run.dir={run}", *QUIET], cwd=cwd,
                                stdout=f_out, stderr=f_err, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return proc, err


def _wait_until(proc: subprocess.Popen[bytes], ready: Any, err: Path, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) too early:\n{err.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out")
        time.sleep(0.02)


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else -1


def _all_checkpoints_load(folder: Path) -> list[Path]:
    from lightplug.checkpoint import read_checkpoint

    found = sorted(folder.rglob("*.ckpt"))
    for path in found:
        read_checkpoint(path)  # raises CheckpointError for a partial or damaged file
    return found


@pytest.mark.slow
def test_sigterm_stops_after_the_batch_with_exit_143_and_a_resumable_checkpoint(tmp_path: Path) -> None:
    from lightplug.checkpoint import read_checkpoint

    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    proc, err = _start(tmp_path, run, "model=mlp", "trainer.max_epochs=200")
    _wait_until(proc, last.exists, err)
    before = int(read_checkpoint(last)["global_step"])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=TIMEOUT) == 128 + signal.SIGTERM
    text = err.read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0] and str(last.resolve()) in lines[0], text[-2000:]
    assert "resume with: lightplug train model=mlp trainer.max_epochs=200" in lines[0]
    assert "Traceback" not in text
    after = read_checkpoint(last)  # loads; resuming from such a checkpoint is tested in test_resume.py
    assert int(after["global_step"]) > before  # written at the stop, not the epoch-end checkpoint from before
    # the validation files were written at the stop, for the best epoch so far
    import csv
    import json

    scores = [(float(r["val/acc"]), -int(r["epoch"])) for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/acc")]
    best = -max(scores)[1]
    shown = json.loads((run / "artifacts.json").read_text())
    assert shown["best_epoch"] == best and shown["files"] == {"confusion_matrix.csv": best, "confusion_matrix.png": best, "val_predictions.csv": best}
    assert {r["epoch"] for r in csv.DictReader((run / "val_predictions.csv").open())} == {str(best)}


@pytest.mark.slow
def test_second_sigint_stops_at_once_and_every_checkpoint_still_loads(tmp_path: Path) -> None:
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    proc, err = _start(tmp_path, run, "model=mlp", "model.hidden=512", "trainer.max_epochs=500")
    _wait_until(proc, last.exists, err)
    proc.send_signal(signal.SIGINT)
    _wait_until(proc, lambda: "SIGINT received" in err.read_text() or proc.poll() is not None, err)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=TIMEOUT)
    text = err.read_text()
    assert code == 128 + signal.SIGINT, text[-4000:]
    assert "Traceback" not in text and ("stopped at once by a second SIGINT" in text or "stopped by SIGINT" in text or "interrupted" in text)
    assert last in _all_checkpoints_load(run)


_SECOND_SIGINT_MID_WRITE = """
import os, signal, sys
import torch
from lightplug.interrupt import GracefulStop

stopping = []
real_save = torch.save

class SecondCtrlCMidWrite:  # the stop's checkpoint file: a real second Ctrl-C once 200 kB of it are written
    def __init__(self, f):
        self.f, self.written = f, 0
    def write(self, data):
        self.written += len(data)
        if self.written > 200_000 and len(stopping) == 1:
            stopping.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return self.f.write(data)
    def flush(self):
        return self.f.flush()

def save(obj, f, *args, **kwargs):
    return real_save(obj, SecondCtrlCMidWrite(f) if stopping else f, *args, **kwargs)

def first_ctrl_c(self, trainer, pl_module, batch, batch_idx):  # in epoch 1: epoch 0's last.ckpt is on disk
    if trainer.global_step == 30 and not stopping:
        stopping.append(True)
        os.kill(os.getpid(), signal.SIGINT)

torch.save = save
GracefulStop.on_train_batch_start = first_ctrl_c
from lightplug.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_second_sigint_inside_the_checkpoint_write_exits_130_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    """The full suite on a loaded machine once sent the second SIGINT while torch.save wrote: its zip writer's cleanup
    raised "unexpected pos" on top of the stop, and the command printed a traceback and exited 1."""
    script, run = tmp_path / "second_sigint.py", tmp_path / "run"
    script.write_text(_SECOND_SIGINT_MID_WRITE)
    done = subprocess.run([sys.executable, str(script), "train", "model=mlp", "model.hidden=512", "trainer.max_epochs=3",
                           "trainer.enable_progress_bar=false", f"hydra.run.dir={run}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 128 + signal.SIGINT, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "error: training stopped at once by a second SIGINT" in done.stderr
    folder = run / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]  # no temporary file left
    assert folder / "last.ckpt" in _all_checkpoints_load(run)


_SLOW_SHUTDOWN = """
import atexit, sys, time
from lightplug.cli import main as cli
from lightplug.errors import Interrupted

def train(rest):
    raise Interrupted("training stopped by SIGINT at epoch 0, step 3; checkpoint saved: last.ckpt", signal_number=2)

cli._load = lambda target: train
atexit.register(lambda: (print("shutting down", file=sys.stderr, flush=True), time.sleep(60)))  # a logger flushing, say
sys.exit(cli.main(["train"]))
"""


@pytest.mark.parametrize("again", [signal.SIGINT, signal.SIGTERM])
def test_another_signal_while_an_interrupted_run_shuts_down_exits_at_once_without_a_traceback(tmp_path: Path, again: int) -> None:
    err = tmp_path / "err"
    with open(err, "wb") as f_err:
        proc = subprocess.Popen([sys.executable, "-c", _SLOW_SHUTDOWN], stderr=f_err, stdout=subprocess.DEVNULL)
    _wait_until(proc, lambda: "shutting down" in err.read_text(), err, timeout=60)
    started = time.monotonic()
    proc.send_signal(again)
    assert proc.wait(timeout=30) == 130  # the interrupted run's own code, whichever signal came second
    assert time.monotonic() - started < 10
    text = err.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert text.splitlines()[0] == "error: training stopped by SIGINT at epoch 0, step 3; checkpoint saved: last.ckpt"


KILL_ARGS = ["model=mlp", "model.hidden=1024", "+trainer.limit_train_batches=0.15", "+trainer.limit_val_batches=0.2", "trainer.num_sanity_val_steps=0",
             "logger=none"]


def _kill_chain(cwd: Path, kills: int, seed: int) -> int:
    """Start, kill, start again with resume=last, ... in one run folder; return the kills that landed while a
    checkpoint was being written."""
    rng = random.Random(seed)
    run = cwd / "run"
    folder = run / "checkpoints"
    last = folder / "last.ckpt"
    mid_write = 0
    for i in range(kills):
        seen = _mtime(last)
        proc, err = _start(cwd, run, *KILL_ARGS, "trainer.max_epochs=100000", *(["resume=last"] if last.exists() else []))
        _wait_until(proc, lambda seen=seen: _mtime(last) != seen, err)  # training now, saving every epoch
        if i % 2:
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            _wait_until(proc, lambda: any(folder.glob(".*.tmp")), err)
            proc.send_signal(signal.SIGSTOP)  # frozen: is a write of this process still going on?
            mid_write += any(int(p.name.split(".")[-3]) == proc.pid for p in folder.glob(".*.tmp"))
        proc.kill()
        proc.wait(timeout=TIMEOUT)
        assert last in _all_checkpoints_load(run)
    return mid_write


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_only_loadable_checkpoints(tmp_path: Path) -> None:
    """Ten kills (two run folders side by side) of runs that write two 13 MB checkpoints every epoch,
    each start resuming the last: every other kill lands at a random moment, the others while a checkpoint
    file is being written (the process is frozen as soon as a temporary file appears and killed if its
    write is still going on). Every .ckpt present afterwards must load, the run resumes, and the next start
    clears the killed writers' temporary files."""
    from concurrent.futures import ThreadPoolExecutor

    from lightplug.checkpoint import read_checkpoint

    cwds = [tmp_path / "a", tmp_path / "b"]
    for cwd in cwds:
        cwd.mkdir()
    with ThreadPoolExecutor(2) as pool:
        mid_write = sum(pool.map(lambda job: _kill_chain(*job), [(cwds[0], 5, 1), (cwds[1], 5, 2)]))
    run = cwds[0] / "run"
    epoch = int(read_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"])
    final = subprocess.run([sys.executable, "-m", "lightplug", "train", *KILL_ARGS, f"trainer.max_epochs={epoch + 2}", "resume=last",
                            f"hydra.run.dir={run}", *QUIET], cwd=cwds[0], capture_output=True, text=True, timeout=TIMEOUT)
    assert final.returncode == 0, final.stderr[-3000:]
    _all_checkpoints_load(run)
    assert not list((run / "checkpoints").glob(".*.tmp")), "temporary files of killed writers were not cleared"
    assert mid_write >= 1, "no kill landed during a checkpoint write"


def test_an_interrupted_write_keeps_the_previous_checkpoint_and_removes_its_temporary(tmp_path: Path) -> None:
    import torch

    from lightplug.callbacks import atomic_torch_save

    target = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1, "w": torch.ones(1000)}, target)

    class Boom:
        def __reduce__(self) -> Any:
            raise KeyboardInterrupt  # as a second Ctrl-C in the middle of torch.save

    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"w": torch.zeros(100_000), "later": Boom()}, target)
    assert torch.load(target, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.slow
def test_handlers_are_restored_after_a_graceful_stop_and_after_a_normal_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lightning as L

    import lightplug
    import lightplug.trainer_factory as tf
    from lightplug.errors import Interrupted
    from lightplug.interrupt import GracefulStop

    class SignalAtStep(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
            if trainer.global_step == 3:
                os.kill(os.getpid(), signal.SIGINT)  # handled by GracefulStop: only a flag is set

    original = tf.build_callbacks
    monkeypatch.setattr(tf, "build_callbacks", lambda *a, **k: [*original(*a, **k), SignalAtStep()])
    monkeypatch.chdir(tmp_path)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(Interrupted) as info:
        lightplug.train("model=mlp", "trainer.max_epochs=3", f"hydra.run.dir={tmp_path / 'a'}", *QUIET)
    assert info.value.exit_code == 130 and "step 4" in str(info.value)
    assert {s: signal.getsignal(s) for s in before} == before
    monkeypatch.setattr(tf, "build_callbacks", original)
    lightplug.train("model=mlp", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'b'}", *QUIET)
    assert {s: signal.getsignal(s) for s in before} == before
    assert GracefulStop().signals == (signal.SIGINT, signal.SIGTERM)


def test_resume_command_keeps_the_overrides_and_replaces_resume_and_init_from() -> None:
    from lightplug.interrupt import resume_command

    cmd = resume_command("/r/checkpoints/last.ckpt", "/r", ["model=mlp", "init_from=/w.ckpt", "resume=last", "data.root=/my data"])
    assert cmd == "lightplug train model=mlp 'data.root=/my data' resume=/r/checkpoints/last.ckpt hydra.run.dir=/r"
