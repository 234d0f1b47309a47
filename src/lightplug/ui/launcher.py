"""The ``lightplug train`` processes the UI started: launched from a checked list of arguments (never a
shell), each in its own run folder under the outputs folder, stopped with SIGINT (the run writes
``last.ckpt`` and exits with 130) and resumed in the same folder.

Each run folder gets ``launch.json`` (the command, start and end, exit code) and ``console.log`` (what
the process printed), so the UI knows how its runs ended after a restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from .checks import command_line

__all__ = ["Launcher", "Job", "LAUNCH_FILE", "LOG_FILE", "status_of_exit", "read_launch"]

LAUNCH_FILE = "launch.json"
LOG_FILE = "console.log"


def status_of_exit(code: int | None) -> str:
    """``running`` while there is no exit code, then ``completed``, ``interrupted`` (SIGINT/SIGTERM), ``crashed``
    (killed by another signal: SIGKILL, out of memory, a segfault) or ``failed`` (an error it reported)."""
    if code is None:
        return "running"
    if code == 0:
        return "completed"
    if code in (130, 143, -2, -15):
        return "interrupted"
    return "crashed" if code < 0 or code in (134, 137, 139) else "failed"


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class Job:
    """One process the UI started."""

    run_dir: Path
    argv: list[str]
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    stopping: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def status(self) -> str:
        code = self.process.poll()
        if code is None and self.stopping:
            return "stopping"
        return status_of_exit(code)


class Launcher:
    """Start, stop and resume ``lightplug train`` processes.

    Args:
        cwd: the working folder of the runs (relative paths in overrides are taken from it).
        program: the command that runs lightplug; ``[python, -m, lightplug]`` by default (tests put a stub).
    """

    def __init__(self, cwd: Path, program: list[str] | None = None) -> None:
        self.cwd = cwd
        self.program = program or [sys.executable, "-m", "lightplug"]
        self._jobs: dict[Path, Job] = {}
        self._lock = threading.Lock()

    def job(self, run_dir: Path) -> Job | None:
        """The process this UI started in ``run_dir`` (the latest one), if any."""
        return self._jobs.get(run_dir.resolve())

    def running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.process.poll() is None]

    def new_run_dir(self, outputs: Path) -> Path:
        """Create ``outputs/DATE/TIME`` as ``lightplug train`` names its folders (``TIME-2``, ... when taken)."""
        now = datetime.now()
        base = outputs / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")
        base.parent.mkdir(parents=True, exist_ok=True)
        path, n = base, 1
        while True:
            try:
                path.mkdir()  # atomic: two launches in the same second get two folders
                return path
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}-{n}")

    def start(self, overrides: list[str], run_dir: Path, resume: str | None = None) -> Job:
        """Run ``lightplug train OVERRIDES [resume=CKPT] hydra.run.dir=RUN_DIR`` in the background.

        The overrides must have been checked (:func:`~lightplug.ui.checks.check_overrides`).
        """
        run_dir = run_dir.resolve()
        with self._lock:
            old = self._jobs.get(run_dir)
            if old is not None and old.process.poll() is None:
                raise RuntimeError(f"a run is already going on in {run_dir}")
            run_dir.mkdir(parents=True, exist_ok=True)
            args = [*overrides, *([f"resume={resume}"] if resume else []), f"hydra.run.dir={run_dir}"]
            argv = [*self.program, "train", *args]
            record = read_launch(run_dir)
            record.update(overrides=list(overrides), argv=argv, command=command_line(args), started=_now(), ended=None,
                          returncode=None, resumed=record.get("resumed", 0) + (1 if resume else 0))
            log = (run_dir / LOG_FILE).open("ab")
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
            process = subprocess.Popen(argv, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)  # Ctrl-C in the UI's terminal does not reach the runs
            record["pid"] = process.pid
            _write_launch(run_dir, record)
            job = Job(run_dir, argv, process, log)
            self._jobs[run_dir] = job
        threading.Thread(target=self._watch, args=(job,), daemon=True, name=f"watch-{process.pid}").start()
        return job

    def _watch(self, job: Job) -> None:
        code = job.process.wait()
        job.log.close()
        record = read_launch(job.run_dir)
        record.update(ended=_now(), returncode=code)
        _write_launch(job.run_dir, record)
        job.done.set()

    def stop(self, run_dir: Path) -> Job | None:
        """Send SIGINT to the run in ``run_dir`` (a second call sends it again: the run then stops at once)."""
        job = self.job(run_dir)
        if job is None or job.process.poll() is not None:
            return None
        job.stopping = True
        job.process.send_signal(signal.SIGINT)
        return job

    def shutdown(self, timeout: float = 20.0) -> None:
        """Stop every running job gracefully; kill the ones still running after ``timeout`` seconds."""
        jobs = self.running()
        for job in jobs:
            job.stopping = True
            job.process.send_signal(signal.SIGINT)
        for job in jobs:
            try:
                job.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                job.process.kill()
            job.done.wait(timeout=5)


def read_launch(run_dir: Path) -> dict[str, Any]:
    """The ``launch.json`` of a run folder ({} when there is none)."""
    try:
        data = json.loads((run_dir / LAUNCH_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_launch(run_dir: Path, record: dict[str, Any]) -> None:
    tmp = run_dir / f".{LAUNCH_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(run_dir / LAUNCH_FILE)

