"""`lightplug check-plugin` and `lightplug.testing`: every contract check is reported with its reason, the exit code
says pass (0), fail (1) or unloadable (2), and the pytest kit (PluginContract, train_plugin_once, the
`lightplug_train` fixture) runs the same checks and a real training run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import make_dist, plugins_discovered_here, run_cli
from lightplug.registry import Registry
from lightplug.testing import PluginCheckFailed, check_names, check_plugin

MODEL_CHECKS = ["load", "schema", "build", "forward", "backward", "state_dict", "torchscript", "onnx"]

# Three faults in one model: a head of the wrong size, frozen weights, and a random buffer that the
# state_dict does not carry.
BROKEN = '''
import torch
from torch import nn

class Broken(nn.Module):
    """A model with three faults."""
    def __init__(self, in_features: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, 3)
        self.fc.requires_grad_(False)
        self.register_buffer("noise", torch.randn(3), persistent=False)
    def forward(self, x):
        return self.fc(x.flatten(1)) + self.noise
'''

GOOD = '''
from torch import nn

class Good(nn.Module):
    """A linear classifier."""
    presets = {"easy": {"bias": False}}
    def __init__(self, in_features: int = 64, num_classes: int = 10, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes, bias=bias)
    def forward(self, x):
        return self.fc(x.flatten(1))
'''

# Traces at one batch size, but its graph depends on the batch size (as a head that caches by input shape does):
# `lightplug export format=torchscript` checks the trace at batch 1 and 7 and refuses it, so check-plugin must too.
BATCH_BRANCH = '''
from torch import nn

class BatchBranch(nn.Module):
    """Scales the logits of single samples: a Python branch on the batch size."""
    def __init__(self, in_features: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)
    def forward(self, x):
        out = self.fc(x.flatten(1))
        return out * 2.0 if x.shape[0] == 1 else out
'''

PLUGINS = '''
import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset
from lightplug import CallbackPlugin, DataPlugin


class Tuples(DataPlugin):
    """Yields (x, y) tuples instead of dict batches."""
    def facts(self, cfg):
        return {"in_features": 4, "num_classes": 2}
    def build(self, cfg):
        ds = TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))
        return L.LightningDataModule.from_datasets(train_dataset=ds, val_dataset=ds, batch_size=4)


class Counter(L.Callback):
    def __init__(self):
        self.batches = 0
    def on_train_batch_end(self, *args):
        self.batches += 1


class Counting(CallbackPlugin):
    """Counts training batches."""
    def build(self, cfg):
        return Counter()


class NotACallback(CallbackPlugin):
    """Builds something that is not a callback."""
    def build(self, cfg):
        return object()
'''


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with ./plugins/broken.py and ./plugins/good.py, a private cache, and a site dir with a data
    plugin and two callback plugins on sys.path (for in-process checks) and in `env` (for subprocesses)."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "broken.py").write_text(BROKEN)
    (tmp_path / "plugins" / "good.py").write_text(GOOD)
    (tmp_path / "plugins" / "batch_branch.py").write_text(BATCH_BRANCH)
    site = make_dist(tmp_path / "site", "lp-kit-extras", modules={"lp_kit_extras.py": PLUGINS},
                     entry_points={"lightplug.datamodules": {"tuples": "lp_kit_extras:Tuples"},
                                   "lightplug.callbacks": {"counting": "lp_kit_extras:Counting", "not_a_callback": "lp_kit_extras:NotACallback"}})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIGHTPLUG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LIGHTPLUG_PLUGIN_PATH", raising=False)
    monkeypatch.syspath_prepend(str(site))
    return tmp_path


def _env(folder: Path) -> dict[str, str]:
    return {"LIGHTPLUG_CACHE_DIR": str(folder / "cache"), "PYTHONPATH": os.pathsep.join([str(folder / "site"), os.environ.get("PYTHONPATH", "")])}


def test_unknown_plugin_exits_2_with_one_line(tmp_path: Path) -> None:
    out = run_cli("check-plugin", "no_such_model", cwd=tmp_path, env={"LIGHTPLUG_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "unknown model 'no_such_model'" in out.stderr
    assert out.stdout == ""


def test_bad_argument_exits_2_before_any_check(tmp_path: Path) -> None:
    out = run_cli("check-plugin", "mlp", "hidden", cwd=tmp_path)
    assert out.returncode == 2
    assert "hidden: expected KEY=VALUE" in out.stderr and out.stdout == ""


@pytest.mark.slow
def test_cli_fails_a_broken_plugin_with_exit_1_and_a_reason_per_check(plugin_dir: Path) -> None:
    out = run_cli("check-plugin", "broken", cwd=plugin_dir, env=_env(plugin_dir))
    assert out.returncode == 1, out.stderr
    lines = out.stdout.strip().splitlines()
    status = {line.split()[1]: line.split()[0] for line in lines[:-1]}
    assert status == {"load": "PASS", "schema": "PASS", "build": "PASS", "forward": "FAIL", "backward": "FAIL", "state_dict": "FAIL",
                      "torchscript": "PASS", "onnx": "PASS"}
    reason = {line.split()[1]: line.split(None, 2)[2] for line in lines[:-1]}
    assert "output (4, 3), but classification needs (batch, num_classes) = (4, 10)" in reason["forward"]
    assert "no trainable parameters" in reason["backward"]
    assert "other outputs" in reason["state_dict"]
    assert lines[-1] == "model broken: 5 passed, 3 failed, 0 skipped"


def test_torchscript_check_traces_as_export_does_and_refuses_a_graph_that_depends_on_the_batch(plugin_dir: Path) -> None:
    report = check_plugin("batch_branch", registry=Registry())
    assert [r.name for r in report.failures] == ["torchscript", "onnx"], [(r.name, r.reason) for r in report.failures]
    assert report["torchscript"].reason.startswith("the trace differs between inputs"), report["torchscript"].reason
    assert "a limit of the model's code, not of lightplug" in report["torchscript"].reason  # the model's branch, not lightplug
    # ONNX is traced once at batch 4 and, as `lightplug export` does, compared with eager PyTorch at batch 1 and 7
    assert report["onnx"].reason.startswith("outputs differ from eager PyTorch on an input of batch 1"), report["onnx"].reason
    good = check_plugin("good", registry=Registry())
    assert good["torchscript"].reason.startswith("torch.jit.trace, checked at batch 4 and 1 and 7, saved and reloaded")


@pytest.mark.slow
def test_api_report_raises_naming_every_failed_check(plugin_dir: Path) -> None:
    report = check_plugin("broken", registry=Registry())
    assert not report.ok and report.loaded
    assert [r.name for r in report.failures] == ["forward", "backward", "state_dict"]
    with pytest.raises(PluginCheckFailed) as info:
        report.raise_for_failures()
    message = str(info.value)
    assert "failed 3 checks" in message
    assert all(f"\n  {name}: " in message for name in ("forward", "backward", "state_dict"))
    good = check_plugin("good", registry=Registry())
    assert good.ok and good.names() == ["load", "schema", "build", "build:easy", *MODEL_CHECKS[3:]]
    assert good["build:easy"].reason.startswith("bias=False -> Good, 640 parameters")
    good.raise_for_failures()
    assert check_names("good", registry=Registry()) == good.names()
    assert check_names("nope", registry=Registry()) == ["load"]


@pytest.mark.slow
def test_cli_json_report_and_exit_0_for_a_good_plugin(plugin_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lightplug.cli.main import main

    with plugins_discovered_here():  # discover ./plugins of this test's folder
        code = main(["check-plugin", "good", "bias=false", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] is True
    assert report["plugin"] == "good" and report["kind"] == "model" and "plugins/good.py" in report["source"]
    assert [c["name"] for c in report["checks"]] == ["load", "schema", "build", "build:easy", *MODEL_CHECKS[3:]]
    assert all(c["status"] == "PASS" and c["reason"] and c["seconds"] >= 0 for c in report["checks"])
    assert "640 parameters" in report["checks"][2]["reason"]  # bias=false from the command line


@pytest.mark.slow
def test_data_and_callback_plugins_get_their_own_checks(plugin_dir: Path) -> None:
    digits = check_plugin("digits", kind="data", registry=Registry())
    assert digits.ok, "\n".join(digits.lines())
    assert digits.names() == ["load", "schema", "facts", "build", "train_batch", "val_batch", "facts_match", "preprocessing"]
    assert "input (64, 1, 8, 8)" in digits["train_batch"].reason
    assert "predict reads a sample written as .npy into the batches' input (1, 8, 8)" in digits["preprocessing"].reason

    tuples = check_plugin("tuples", kind="data", registry=Registry())
    assert [r.name for r in tuples.failures] == ["train_batch", "val_batch"]
    assert "not a dict with input, target and index" in tuples["train_batch"].reason

    folder = check_plugin("image_folder", kind="data", registry=Registry())
    assert folder["schema"].failed and "no default for data.root" in folder["schema"].reason

    counting = check_plugin("counting", kind="callback", registry=Registry())
    assert counting.ok and counting.names() == ["load", "schema", "build", "fit"], "\n".join(counting.lines())
    bad = check_plugin("not_a_callback", kind="callback", registry=Registry())
    assert bad["build"].failed and "not a lightning.pytorch.Callback" in bad["build"].reason
    assert bad["fit"].status == "SKIP"


@pytest.mark.slow
def test_plugin_contract_makes_one_test_per_check_and_the_fixture_trains(plugin_dir: Path) -> None:
    (plugin_dir / "test_kit.py").write_text(textwrap.dedent('''
        from lightplug.testing import PluginContract

        class TestMlp(PluginContract):
            plugin = "mlp"

        class TestBroken(PluginContract):
            plugin = "broken"

        class TestTuples(PluginContract):
            plugin = "tuples"
            kind = "data"

        def test_fixture_trains_a_local_plugin(lightplug_train):
            summary = lightplug_train("good", seed=3)
            assert summary["monitor"] == "val/acc" and summary["best"] is not None
    '''))
    env = {**os.environ, **_env(plugin_dir), "PYTHONWARNINGS": "ignore", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "lightplug.testing.pytest_plugin", "test_kit.py"],
                         cwd=plugin_dir, env=env, capture_output=True, text=True, timeout=600)
    outcome = {}
    for line in out.stdout.splitlines():
        if line.startswith("test_kit.py::") and " " in line:
            test, result = line.split()[:2]
            outcome[test.removeprefix("test_kit.py::")] = result
    assert out.returncode == 1, out.stdout[-3000:]
    assert {t: r for t, r in outcome.items() if t.startswith("TestMlp")} == {f"TestMlp::test_check[{c}]": "PASSED" for c in MODEL_CHECKS}
    failed = sorted(t for t, r in outcome.items() if r == "FAILED")
    assert failed == ["TestBroken::test_check[backward]", "TestBroken::test_check[forward]", "TestBroken::test_check[state_dict]",
                      "TestTuples::test_check[train_batch]", "TestTuples::test_check[val_batch]"], out.stdout[-3000:]
    assert outcome["TestTuples::test_check[facts_match]"] == outcome["TestTuples::test_check[preprocessing]"] == "SKIPPED"
    assert outcome["test_fixture_trains_a_local_plugin"] == "PASSED", out.stdout[-3000:]
    assert "failed the check forward: output (4, 3)" in out.stdout
