"""``PluginContract``: subclass it in a test module and pytest runs every check of ``check-plugin`` as its own test.

Example::

    from lightplug.testing import PluginContract

    class TestMyModel(PluginContract):
        plugin = "my_model"            # kind = "data" or "callback" for other plugins

``pytest -v`` then shows ``TestMyModel::test_check[forward] PASSED`` and so on, one test per check;
a skipped check (ONNX without onnxruntime) is a skipped test. The checks run once per class.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from .check import check_names, check_plugin
from .report import FAIL, SKIP, CheckReport

__all__ = ["PluginContract"]

_REPORTS: dict[str, CheckReport] = {}


def _report(plugin: str, kind: str, overrides: dict[str, Any]) -> CheckReport:
    key = json.dumps([plugin, kind, overrides], sort_keys=True, default=str)
    if key not in _REPORTS:
        _REPORTS[key] = check_plugin(plugin, kind, overrides)
    return _REPORTS[key]


class PluginContract:
    """A pytest base class: one test per contract check of :attr:`plugin`.

    Attributes:
        plugin: the plugin's name (``dist:name`` and, for models, ``package.module:Class`` work too).
        kind: ``model`` (default), ``data`` or ``callback``.
        overrides: field values to check with instead of the defaults.
    """

    plugin: ClassVar[str] = ""
    kind: ClassVar[str] = "model"
    overrides: ClassVar[dict[str, Any]] = {}

    def pytest_generate_tests(self, metafunc: Any) -> None:
        """Parametrize :meth:`test_check` with the names of the checks (pytest calls this at collection)."""
        if "check" not in metafunc.fixturenames:
            return
        if not self.plugin:
            raise TypeError(f"{type(self).__name__}: set the class attribute plugin = 'NAME' (the plugin to check)")
        names = check_names(self.plugin, self.kind)
        metafunc.parametrize("check", names, ids=names)

    def test_check(self, check: str) -> None:
        """Pass, fail or skip as the check named ``check`` did."""
        import pytest

        result = _report(self.plugin, self.kind, dict(self.overrides))[check]
        if result.status == SKIP:
            pytest.skip(f"{check}: {result.reason}")
        if result.status == FAIL:
            pytest.fail(f"{self.kind} {self.plugin!r} failed the check {check}: {result.reason}", pytrace=False)
