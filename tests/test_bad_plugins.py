"""Broken plugin packages (real dist-info with entry points, on a private sys.path entry): each is reported
at the earliest moment with the plugin, its package and the cause, exit code 2 and no traceback, while
the good plugins keep being listed and trained."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import make_dist, run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]

PLUGINS = {
    # name: (module source, words of the message besides the name and the package, fails before training data is built)
    "bad_import": ("import lightplug_no_such_dependency\n", ["failed to import", "No module named 'lightplug_no_such_dependency'"], True),
    "bad_exit": ("import sys\nsys.exit(3)\n", ["failed to import", "SystemExit: 3"], True),
    "bad_untyped": ('''
from torch import nn
class Net(nn.Module):
    """An untyped parameter without a default (with a default it would take the default's type)."""
    def __init__(self, hidden, num_classes: int = 10):
        super().__init__()
''', ["parameter 'hidden' has no type annotation"], True),
    "bad_type": ('''
from torch import nn
class Net(nn.Module):
    """A parameter of a type a config cannot hold, without a default (with one it would be kept fixed)."""
    def __init__(self, scale: complex, num_classes: int = 10):
        super().__init__()
''', ["'scale'", "unsupported type"], True),
    "bad_build": ('''
from torch import nn
class Net(nn.Module):
    """Raises when built."""
    def __init__(self, in_features: int = 64, num_classes: int = 10):
        super().__init__()
        raise ValueError("the layer sizes do not add up")
''', ["failed to build", "ValueError: the layer sizes do not add up"], False),
    "bad_shape": ('''
from torch import nn
class Net(nn.Module):
    """Ignores num_classes: three outputs for ten classes."""
    def __init__(self, in_features: int = 64, num_classes: int = 10):
        super().__init__()
        self.fc = nn.Linear(in_features, 3)
    def forward(self, x):
        return self.fc(x.flatten(1))
''', ["returned outputs of shape (64, 3)", "num_classes=10"], False),
}


def _dist(name: str) -> str:
    return f"lp-{name.replace('_', '-')}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("bad_plugins")
    site = tmp / "site"
    for name, (source, _, _) in PLUGINS.items():
        module = f"lp_{name}"
        make_dist(site, _dist(name), entry_points={"lightplug.models": {name: f"{module}:Net"}}, modules={f"{module}.py": source})
    yield {"PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""), "LIGHTPLUG_CACHE_DIR": str(tmp / "cache")}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if early else [pytest.mark.slow]) for n, (_, _, early) in PLUGINS.items()])
def test_broken_plugin_fails_at_once_naming_plugin_package_and_cause(name: str, env: dict[str, str], tmp_path: Path) -> None:
    _, words, early = PLUGINS[name]
    run = tmp_path / "run"
    out = run_cli("train", f"model={name}", "trainer.max_epochs=1", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path, env=env)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    for word in [f"'{name}'", _dist(name), *words]:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    assert "Traceback" not in out.stderr + out.stdout
    if early:
        assert not run.exists(), "the run folder was created for a plugin that cannot even be loaded"
    else:
        assert not (run / "checkpoints").exists() and "Epoch" not in out.stdout, "training started"


@pytest.mark.slow
def test_models_lists_the_good_plugins_and_marks_the_broken_ones(env: dict[str, str]) -> None:
    out = run_cli("models", "--check", "--json", env=env)
    import json

    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["mlp"]["status"] == "ok"
    for name, (_, _, early) in PLUGINS.items():
        assert rows[name]["package"] == _dist(name)
        if early:
            assert rows[name]["status"] == "broken" and rows[name]["cause"], rows[name]
    plain = run_cli("models", env=env)
    assert plain.returncode == 0 and "mlp" in plain.stdout and "broken" in plain.stdout


@pytest.mark.slow
def test_good_plugin_trains_with_broken_ones_installed(env: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = run_cli("train", "model=mlp", "trainer.max_epochs=1", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert "Traceback" not in out.stderr
