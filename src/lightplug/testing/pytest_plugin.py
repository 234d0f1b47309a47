"""The pytest plugin of lightplug (entry point ``pytest11``: ``lightplug``): the ``lightplug_train`` fixture, and
``lightplug_home``, which gives every test its own ``LIGHTPLUG_HOME``.

It is loaded by every pytest run in an environment with lightplug installed, so it imports nothing
heavy: the fixture imports what it needs when a test uses it. Because of ``lightplug_home``, the runs that tests
start (in the process or in ``lightplug`` subprocesses, which inherit the variable) are recorded in a temporary
runs index, never in the user's ``~/.lightplug/runs.db``.

Under pytest-xdist with more than one worker, each worker (and every process it starts) uses one torch thread
unless ``OMP_NUM_THREADS`` is set: two workers of two threads each on two cores oversubscribe them, and
OpenMP's waiting threads then stall every op (the torchvision zoo and the timm sample took 263 s that way, 215 s
with one thread each).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["lightplug_home", "lightplug_train"]


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per xdist worker when several run side by side (see the module's docstring)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = "1"  # read by torch when it starts, and inherited by subprocesses
        if "torch" in sys.modules:  # imported already (by another plugin): tell it directly
            sys.modules["torch"].set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _lightplug_session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ``LIGHTPLUG_HOME`` for the whole session, so that module- and session-scoped fixtures (which start before
    :func:`lightplug_home`) do not record their runs in the user's index either."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("lightplug-session-home")
        mp.setenv("LIGHTPLUG_HOME", str(home))
        mp.delenv("LIGHTPLUG_RUNS_DB", raising=False)
        yield home


@pytest.fixture(autouse=True)
def lightplug_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``LIGHTPLUG_HOME`` for each test (the runs index ``runs.db`` and MLflow's ``mlruns`` live there), so
    that tests never write into the user's ``~/.lightplug``; ``LIGHTPLUG_RUNS_DB`` is unset for the test, so the index
    is ``lightplug_home / "runs.db"``. Subprocesses started by the test inherit both."""
    home = tmp_path_factory.mktemp("lightplug-home")
    monkeypatch.setenv("LIGHTPLUG_HOME", str(home))
    monkeypatch.delenv("LIGHTPLUG_RUNS_DB", raising=False)
    return home


@pytest.fixture
def lightplug_train(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Train a model plugin for one epoch in a temporary folder and return the run's summary.

    Example::

        def test_my_model_trains(lightplug_train):
            summary = lightplug_train("my_model")          # data=synthetic shaped for the model
            assert summary["best"] is not None

    Keyword arguments are overrides, as for :func:`lightplug.testing.train_plugin_once`.
    """
    from .train import train_plugin_once

    counter = itertools.count()

    def train(name: str, **overrides: Any) -> dict[str, Any]:
        return train_plugin_once(name, tmp_path / f"lightplug-train-{next(counter)}", **overrides)

    return train
