"""docs/writing-plugins.md is true: every Python block runs, in order, in a fresh folder; every plugin it defines
(a block starting with `# plugins/NAME.py`) is written to that local plugin folder, built with
lightplug.build_model and passes every contract check."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"
HEADER = re.compile(r"# (plugins/(\w+)\.py)\n")


def python_blocks(text: str) -> list[str]:
    """The code of every ```python block, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_page_covers_both_tiers_every_hook_and_every_way_to_find_a_plugin() -> None:
    text = DOC.read_text()
    for word in ("nn.Module", "ModelPlugin", "Param(", "presets", "num_classes", "in_channels", "in_features", "image_size", "num_outputs",
                 "def loss", "def training_step", "manual_optimization", "def configure_optimizers", "def param_groups",
                 "def example_input", "def postprocess", "def check", "takes_targets", "aux_loss",
                 "./plugins/", "LIGHTPLUG_PLUGIN_PATH", "package.module:Class", "DIST:NAME", "lightplug.models",
                 "lightplug new-plugin", "lightplug check-plugin", "check_plugin", "PluginContract", "train_plugin_once", "lightplug_train"):
        assert word in text, f"docs/writing-plugins.md does not mention {word}"
    blocks = python_blocks(text)
    assert len(blocks) >= 10 and all(len(b.splitlines()) <= 45 for b in blocks), "keep the blocks small"


@pytest.mark.slow
def test_every_python_block_runs_and_every_plugin_builds_and_passes_its_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch import nn

    import lightplug
    from lightplug.registry import Registry, get_registry
    from lightplug.testing import check_plugin

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIGHTPLUG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LIGHTPLUG_PLUGIN_PATH", raising=False)
    (tmp_path / "plugins").mkdir()
    module = types.ModuleType("writing_plugins_doc")  # the blocks run as one module (dataclasses need it in sys.modules)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    plugins = []
    try:
        for number, block in enumerate(python_blocks(DOC.read_text()), start=1):
            header = HEADER.match(block)
            if header:
                (tmp_path / header.group(1)).write_text(block)
            get_registry.cache_clear()  # the registry rediscovers ./plugins, as a new process would
            exec(compile(block, f"{DOC.name}, python block {number}", "exec"), module.__dict__)  # noqa: S102 - the doc's own code
            if header:
                name = header.group(2)
                assert isinstance(lightplug.build_model(name), nn.Module), f"block {number}: {name} does not build"
                plugins.append(name)
    finally:
        get_registry.cache_clear()
    assert len(plugins) >= 9
    for name in plugins:
        report = check_plugin(name, registry=Registry())
        assert report.ok, "\n".join(report.lines())
