"""One run per run folder, and no leftovers from a run that never started; stdlib only.

:func:`claim_run_folder` takes the folder's lock, ``<run>/.lightplug.lock``: a JSON record of the owner's pid,
host and start time, created with an atomic link so that it is never seen half written. A second run in
the same folder (the same ``hydra.run.dir``) is refused with one line before it writes anything. A lock
whose process is gone (SIGKILL, out of memory, a power cut), or whose pid now belongs to a newer process,
is stale and taken over; a lock of another host is never taken over, since its process cannot be seen
from here. The lock is removed when the run ends, however it ends.

A run that fails before training starts (a config, data, build or checkpoint error found late) leaves no
run folder: the folders the claim created are removed (a folder that existed before keeps its files).

Claims are re-entrant within a process (``lightplug train`` claims the folder before Hydra writes into it,
then :func:`lightplug.training.run_training` claims it again). DDP child ranks share rank 0's folder and
claim nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ._liveness import process_alive
from .errors import ConfigError

__all__ = ["LOCK_NAME", "RunFolder", "claim_run_folder", "is_main_process"]

LOCK_NAME = ".lightplug.lock"
#: Files a job folder holds when Hydra has just made it: its record and the job's log.
_HYDRA_ONLY = {".hydra", LOCK_NAME}
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def is_main_process() -> bool:
    """Whether this is the process that owns the run (not a DDP/torchrun/SLURM rank other than 0 of node 0)."""
    return all(os.environ.get(key, "0").strip() in ("", "0") for key in _RANK_VARIABLES)


@dataclass
class RunFolder:
    """A claimed run folder: ``started`` is set when training begins; until then a failure removes ``created``."""

    path: Path
    created: list[Path] = field(default_factory=list)  # folders this claim made, outermost first
    started: bool = False
    owner: bool = True  # False in a DDP child rank: nothing to lock or clean
    before: set[str] = field(default_factory=set)  # what an existing folder held when it was claimed

    def _lock(self) -> Path:
        return self.path / LOCK_NAME

    def acquire(self) -> None:
        """Create the folder if need be and take its lock.

        Raises:
            ConfigError: another live run holds the lock (or one of another host does).
        """
        if self.path.exists():
            self._refuse_if_busy()
            self.before = {p.name for p in _entries(self.path)} - {LOCK_NAME}
        else:
            missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
            self.path.mkdir(parents=True, exist_ok=True)
            self.created = [p for p in reversed(missing) if p.is_dir()]
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": datetime.now().astimezone().isoformat(timespec="seconds")})
        tmp = self.path / f"{LOCK_NAME}.{os.getpid()}.{os.urandom(4).hex()}"
        tmp.write_text(record)
        try:
            for _ in range(20):
                try:
                    os.link(tmp, self._lock())  # atomic: fails if the lock exists; never seen half written
                    return
                except FileExistsError:
                    self._refuse_if_busy()
                    stale = self.path / f"{LOCK_NAME}.stale.{os.getpid()}.{os.urandom(4).hex()}"
                    with contextlib.suppress(FileNotFoundError):  # another starter may take it over first
                        os.rename(self._lock(), stale)
                        stale.unlink()
            raise ConfigError(f"hydra.run.dir={self.path}: could not take the lock {self._lock()}")
        finally:
            tmp.unlink(missing_ok=True)

    def _refuse_if_busy(self) -> None:
        owner = _read_lock(self._lock())
        if owner is None:
            return
        pid, host, since = owner.get("pid"), owner.get("host"), owner.get("started")
        if host == socket.gethostname():
            if pid == os.getpid() or not process_alive(pid if isinstance(pid, int) else None, since if isinstance(since, str) else None):
                return  # stale: its process is gone (or the pid is now another, newer process)
            raise ConfigError(f"hydra.run.dir={self.path}: another run (pid {pid}, started {since}) is writing into this folder",
                              hint="wait for it to end, or choose another hydra.run.dir")
        raise ConfigError(f"hydra.run.dir={self.path}: a run of host {host} (pid {pid}, started {since}) holds this folder",
                          hint=f"choose another hydra.run.dir; if that run is over, delete {self._lock()}")

    def release(self) -> None:
        """Remove the lock if it is this process's."""
        owner = _read_lock(self._lock())
        if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            with contextlib.suppress(FileNotFoundError):
                self._lock().unlink()

    def remove_unstarted(self) -> None:
        """The run never started: remove the run folder when this claim created it, and the parents it created
        if nothing else is in them. A folder that existed keeps what it held when it was claimed (what this start
        added, Hydra's record and log included, is removed); one that Hydra just made for a multirun job (nothing
        in it but Hydra's record and the job's log) is removed."""
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            for folder in reversed(self.created[:-1]):  # outputs/DATE of outputs/DATE/TIME, unless another run is in it
                try:
                    folder.rmdir()
                except OSError:
                    break
        else:
            hydra_only = _holds_only_hydra_files(self.path)
            for entry in [e for e in _entries(self.path) if hydra_only or e.name not in self.before]:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            if hydra_only:
                with contextlib.suppress(OSError):
                    self.path.rmdir()


def _entries(folder: Path) -> Iterator[Path]:
    try:
        yield from folder.iterdir()
    except OSError:
        return


def _holds_only_hydra_files(folder: Path) -> bool:
    names = {p.name for p in _entries(folder)}
    return bool(names) and all(n in _HYDRA_ONLY or n.endswith(".log") for n in names)


def _read_lock(path: Path) -> dict[str, object] | None:
    """The lock's record; None when there is no lock or it cannot be read (then it is stale)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


_HELD: dict[Path, RunFolder] = {}


@contextlib.contextmanager
def claim_run_folder(run_dir: str | os.PathLike[str]) -> Iterator[RunFolder]:
    """Hold the run folder ``run_dir`` for the duration of the block (re-entrant within a process).

    On leaving, the lock is removed; when the block raised before ``folder.started`` was set, the folders the
    claim created are removed as well.

    Raises:
        ConfigError: another live run holds the folder (one line, nothing written).
    """
    path = Path(run_dir).resolve()
    if not is_main_process():
        yield RunFolder(path, owner=False)
        return
    held = _HELD.get(path)
    if held is not None:
        yield held
        return
    folder = RunFolder(path)
    folder.acquire()
    _HELD[path] = folder
    try:
        yield folder
    except BaseException:
        if not folder.started:
            folder.release()
            folder.remove_unstarted()
        raise
    finally:
        _HELD.pop(path, None)
        folder.release()
