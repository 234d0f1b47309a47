"""Whether the process that recorded a run in ``runs.db`` still runs, and what to record when it does not;
stdlib only (``lightplug runs`` never imports torch)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

__all__ = ["process_alive", "last_sign_of_life", "crash_note"]


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from /proc on Linux; None elsewhere or when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the parenthesised command name
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def process_alive(pid: int | None, started: str | None = None) -> bool:
    """Whether the process ``pid`` of this host still runs and, given the ISO time ``started`` the run recorded, is
    the same process (a pid reused by a process that started after the run is not).

    Example:
        >>> process_alive(os.getpid())
        True
    """
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    except OSError:
        return False
    if started:
        began = _process_start(pid)
        try:
            recorded = datetime.fromisoformat(started).timestamp()
        except ValueError:
            return True
        if began is not None and began > recorded + 5.0:  # the row was written after its process started
            return False
    return True


def last_sign_of_life(run_dir: str | None) -> str | None:
    """When a run that died last wrote into its folder (its log, metrics or checkpoints), as the run's end."""
    if not run_dir:
        return None
    folder = Path(run_dir)
    stamps = [p.stat().st_mtime for d in (folder, folder / "checkpoints") if d.is_dir() for p in d.iterdir() if p.is_file()]
    return datetime.fromtimestamp(max(stamps)).astimezone().isoformat(timespec="seconds") if stamps else None


def crash_note(pid: int | None, run_dir: str, overrides: list[str]) -> str:
    """The error recorded for a run whose process vanished: what happened and, with a ``last.ckpt``, how to go on."""
    note = f"the process (pid {pid}) ended without recording an end: killed (SIGKILL), out of memory, or the machine stopped"
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    if last.is_file():
        from ._resume_command import resume_command

        note += f"; resume with: {resume_command(last, run_dir, overrides)}"
    return note
