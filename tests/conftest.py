"""Shared helpers: run the real `lightplug` command in a subprocess, and build throw-away plugin
distributions (a real dist-info with entry points) on a private sys.path entry."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lightplug.testing import make_dist  # noqa: F401 - tests import it from here

LIGHTPLUG = [sys.executable, "-m", "lightplug"]


def run_cli(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `lightplug ARGS...` and capture its output."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    # one torch thread per test process: tests may run side by side (pytest -n 2) on 2 cores, and
    # oversubscribed cores stall every op (measured: 48 ms vs 0.08 ms for a small MLP call)
    full_env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([*LIGHTPLUG, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@contextmanager
def plugins_discovered_here() -> Iterator[None]:
    """Inside the block, the process-wide registry (``get_registry`` is cached per process) discovers plugins again,
    in this cwd and environment, as a new ``lightplug`` process would; after it, it is cleared, so that no later test
    of this worker sees the block's plugins."""
    from lightplug.registry import get_registry

    get_registry.cache_clear()
    try:
        yield
    finally:
        get_registry.cache_clear()


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


#: The files that keep one worker longest (seconds of CPU in a full run on a 2-core machine, 2026-12-04), run first:
#: under `pytest -n 2 --dist loadfile` a worker takes the next file when it is free, so a long file collected last
#: (test_torchvision_zoo.py, the timm sample) left the other worker idle for minutes at the end of the run.
LONGEST_FIRST = (
    "tests/test_docs_commands.py",  # 314 s
    "example_plugins/lightplug-timm/tests/test_timm_sample.py",  # 213 s
    "tests/test_torchvision_zoo.py",  # 144 s
    "tests/test_new_plugin.py",  # 141 s (the model and the data scaffolds installed, checked and trained)
    "tests/test_benchmarks_smoke.py",  # 134 s
    "tests/test_ddp.py",  # 107 s
)


def pytest_configure(config: pytest.Config) -> None:
    """Keep :data:`LONGEST_FIRST`'s order under ``--dist loadfile``: xdist otherwise sorts the files by their number of
    tests, so the one-test benchmark smoke run (100 s) started last, alone, while the other worker sat idle."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the tests of :data:`LONGEST_FIRST` to the front; every other order is kept (the sort is stable)."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}

    def key(item: pytest.Item) -> int:
        try:
            return rank.get(item.path.relative_to(config.rootpath).as_posix(), len(rank))
        except ValueError:  # a test outside the repository
            return len(rank)

    items.sort(key=key)
