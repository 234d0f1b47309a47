"""The pytest plugin of lightplug (entry point ``pytest11``: ``lightplug``): the ``lightplug_train`` fixture, and
``lightplug_home``, which gives every test its own ``LIGHTPLUG_HOME``.

It is loaded by every pytest run in an environment with lightplug installed, so it imports nothing
heavy: the fixture imports what it needs when a test uses it. Because of ``lightplug_home``, the runs that tests
start (in the process or in ``lightplug`` subprocesses, which inherit the variable) are recorded in a temporary
runs index, never in the user's ``~/.lightplug/runs.db``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["lightplug_home", "lightplug_train"]


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
