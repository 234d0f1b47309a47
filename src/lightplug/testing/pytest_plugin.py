"""The pytest plugin of lightplug (entry point ``pytest11``: ``lightplug``): the ``lightplug_train`` fixture.

It is loaded by every pytest run in an environment with lightplug installed, so it imports nothing
heavy: the fixture imports what it needs when a test uses it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

__all__ = ["lightplug_train"]


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
