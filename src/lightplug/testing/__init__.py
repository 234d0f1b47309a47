"""Test kit for plugin authors: the checks of ``lightplug check-plugin`` as a Python API and as pytest tests.

- :func:`check_plugin` runs every contract check of a model, data or callback plugin and returns a
  :class:`CheckReport` (``report.ok``, ``report.raise_for_failures()``);
- :class:`PluginContract` is a pytest base class: one test per check;
- :func:`make_dist` writes a throw-away plugin distribution (e.g. to test a name clash);
- :func:`train_plugin_once` runs a real one-epoch ``lightplug train`` and returns its summary; the
  ``lightplug_train`` fixture (pytest plugin :mod:`lightplug.testing.pytest_plugin`) does the same.

Example::

    from lightplug.testing import PluginContract, check_plugin, train_plugin_once

    class TestMyModel(PluginContract):
        plugin = "my_model"

    def test_my_model_trains(tmp_path):
        assert train_plugin_once("my_model", tmp_path)["best"] is not None

Importing this package is cheap: torch and lightning load when a check runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["check_plugin", "check_names", "CheckReport", "CheckResult", "PluginCheckFailed", "PluginContract", "train_plugin_once", "make_dist"]

if TYPE_CHECKING:  # pragma: no cover
    from .check import check_names, check_plugin
    from .contract import PluginContract
    from .dists import make_dist
    from .report import CheckReport, CheckResult, PluginCheckFailed
    from .train import train_plugin_once

# Loaded on first use, so that the pytest plugin (imported by every pytest run) costs nothing.
_LAZY = {"check_plugin": "check", "check_names": "check", "PluginContract": "contract", "CheckReport": "report",
         "CheckResult": "report", "PluginCheckFailed": "report", "train_plugin_once": "train", "make_dist": "dists"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
