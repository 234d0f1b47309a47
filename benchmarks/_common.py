"""Helpers shared by the benchmarks: the machine and versions, throw-away plugin distributions, running
commands (optionally inside a pseudo-terminal, as a user sees them), statistics and Markdown tables.

Nothing here imports torch: ``startup.py`` must be able to time processes without it.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from lightplug.testing import make_dist

__all__ = ["HERE", "ROOT", "Section", "machine_info", "versions", "load_average", "make_dist", "install_step_timer",
           "bench_env", "run", "median", "percentile", "md_table", "fmt_ms", "fmt_ratio", "lightplug_cmd"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: The ``lightplug`` command, run with this interpreter (the venv's), as ``python -m lightplug``.
LIGHTPLUG = [sys.executable, "-m", "lightplug"]


@dataclass
class Section:
    """One part of RESULTS.md: a ``## title`` heading, its Markdown body and the raw figures (for JSON)."""

    title: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        """The section as Markdown, heading included."""
        return f"## {self.title}\n\n{self.body.strip()}\n"


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages (``None`` where the OS does not tell)."""
    try:
        one, five, fifteen = os.getloadavg()
    except (OSError, AttributeError):
        return None
    return round(one, 2), round(five, 2), round(fifteen, 2)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, logical cores (and the ones this process may use), memory, OS and the load average now."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "usable_cores": usable, "memory_gb": mem_gb,
            "os": platform.platform(), "python": platform.python_version(), "load_average": load_average()}


def versions() -> dict[str, str | None]:
    """Versions of the packages the figures depend on, read from metadata (nothing is imported)."""
    out: dict[str, str | None] = {}
    for dist in ("lightplug", "torch", "lightning", "hydra-core", "torchmetrics", "onnx", "onnxruntime", "timm", "rich", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def install_step_timer(site: Path) -> Path:
    """Install the ``bench_timer`` callback plugin (``benchmarks/_step_timer.py``) into ``site``."""
    make_dist(site, "lightplug-bench-timer", entry_points={"lightplug.callbacks": {"bench_timer": "lp_bench_timer:StepTimer"}},
              summary="timestamps of every training step, for the benchmarks")
    shutil.copyfile(HERE / "_step_timer.py", site / "lp_bench_timer.py")
    return site


def bench_env(site: Path | None, cache: Path, threads: int | None = None) -> dict[str, str]:
    """The environment of a benchmarked process: ``site`` first on PYTHONPATH, a private plugin cache,
    a fixed terminal size, bytecode kept as an installation keeps it, and (optionally) the thread count for
    every library that reads one (otherwise ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` are left as they are)."""
    env = {**os.environ, "LIGHTPLUG_CACHE_DIR": str(cache), "PYTHONWARNINGS": "ignore", "COLUMNS": "120", "LINES": "40"}
    env.pop("LIGHTPLUG_DEBUG", None)
    # as after `pip install`: modules are compiled once and their bytecode kept (a shell that sets
    # PYTHONDONTWRITEBYTECODE makes every process compile lightplug's sources again, 0.1-0.2 s of start-up)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if site is not None:
        env["PYTHONPATH"] = str(site) + os.pathsep + os.environ.get("PYTHONPATH", "")
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def lightplug_cmd(*args: str) -> list[str]:
    """The command line of ``lightplug ARGS`` with this interpreter."""
    return [*LIGHTPLUG, *args]


def _drain_terminal(master: int, chunks: list[bytes]) -> None:
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return
        if not data:
            return
        chunks.append(data)


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 1800,
        terminal: bool = False) -> tuple[int, str, float]:
    """Run ``cmd`` and return (exit code, its output, wall seconds).

    With ``terminal`` the command's stdout and stderr are a pseudo-terminal (as in an interactive shell), so
    progress bars draw exactly as a user sees them; otherwise both are captured through pipes.
    """
    start = time.perf_counter()
    if terminal and sys.platform != "win32":
        import pty
        import threading

        master, slave = pty.openpty()
        chunks: list[bytes] = []
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True)
        os.close(slave)
        reader = threading.Thread(target=_drain_terminal, args=(master, chunks), daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=timeout)
        finally:
            reader.join(timeout=5)
            os.close(master)
        return code, b"".join(chunks).decode(errors="replace"), time.perf_counter() - start
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout + out.stderr, time.perf_counter() - start


def median(values: list[float]) -> float:
    """The median (``nan`` for no values)."""
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fmt_ms(seconds: float | None, digits: int = 3) -> str:
    """Seconds as milliseconds text."""
    return "-" if seconds is None or seconds != seconds else f"{seconds * 1000:.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    """A ratio as ``x1.23``."""
    return "-" if value is None or value != value else f"x{value:.3f}"
