"""Shared helpers: run the real `lightplug` command in a subprocess, and build throw-away plugin
distributions (a real dist-info with entry points) on a private sys.path entry."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LIGHTPLUG = [sys.executable, "-m", "lightplug"]


def run_cli(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `lightplug ARGS...` and capture its output."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    # one torch thread per test process: tests may run side by side (pytest -n 2) on 2 cores, and
    # oversubscribed cores stall every op (measured: 48 ms vs 0.08 ms for a small MLP call)
    full_env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([*LIGHTPLUG, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def make_dist(site: Path, name: str, version: str = "1.0.0", entry_points: dict[str, dict[str, str]] | None = None,
              modules: dict[str, str] | None = None, requires: list[str] | None = None, summary: str = "a test plugin") -> Path:
    """Write an installed distribution into ``site`` (as pip would): modules plus a dist-info with
    METADATA and entry_points.txt. Put ``site`` on PYTHONPATH to make it visible."""
    site.mkdir(parents=True, exist_ok=True)
    for rel, code in (modules or {}).items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code))
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    meta += [f"Requires-Dist: {r}" for r in requires or []]
    (info / "METADATA").write_text("\n".join(meta) + "\n")
    lines = []
    for group, eps in (entry_points or {}).items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (info / "RECORD").write_text("")
    return site


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private plugin cache for this test (and its subprocesses)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LIGHTPLUG_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def site_env(tmp_path: Path, isolated_cache: Path) -> tuple[Path, dict[str, str]]:
    """A private site dir for throw-away distributions, and the env that makes it importable."""
    site = tmp_path / "site"
    site.mkdir()
    env = {"PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""), "LIGHTPLUG_CACHE_DIR": str(isolated_cache)}
    return site, env
