"""Discovery through real entry points: listing reads metadata only, broken and clashing plugins are
reported and never break the others, local folders and explicit class paths work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_dist, run_cli

GOOD = '''
from torch import nn
class Good(nn.Module):
    """A good little model."""
    def __init__(self, in_features: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)
    def forward(self, x):
        return self.fc(x.flatten(1))
'''


SPY_IMPL = '''
raise RuntimeError("imported during listing")

class _Base:
    task = "regression"

class Spy(_Base):
    """Spies on listings: never imported, yet described."""
'''


def test_listing_right_after_install_shows_task_and_description_without_importing_any_plugin(site_env: tuple[Path, dict[str, str]]) -> None:
    site, env = site_env  # a fresh cache: nothing was ever loaded
    make_dist(site, "lp-spy", entry_points={"lightplug.models": {"spy": "lp_spy:Spy"}}, summary="the package's summary",
              modules={"lp_spy/__init__.py": "from .impl import Spy\nraise RuntimeError('imported during listing')\n", "lp_spy/impl.py": SPY_IMPL})
    code = ("import sys, json; from lightplug.cli.main import main; rc = main(['models', '--json']); "
            "heavy = sorted(m for m in ('torch', 'lightning', 'torchvision', 'ultralytics', 'lp_spy', 'lightplug_mlp') if m in sys.modules); "
            "print('HEAVY', heavy); sys.exit(rc)")
    for _ in range(2):  # read from the sources, then from the cache
        out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, **env}, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "HEAVY []" in out.stdout
        rows = {r["name"]: r for r in json.loads(out.stdout.split("HEAVY")[0])}
        assert (rows["spy"]["task"], rows["spy"]["description"], rows["spy"]["status"]) == (
            "regression", "Spies on listings: never imported, yet described.", "unchecked")
        expected = {"mlp": "classification", "mlp_regressor": "regression", "simple_cnn": "classification", "unet": "segmentation",
                    "yolo": "detection", "fcos": "detection"}
        assert {n: rows[n]["task"] for n in expected} == expected
        assert rows["mlp"]["description"] == "A multi-layer perceptron classifier for flat features (digits as 64 values)."


def test_broken_plugin_is_listed_with_cause_and_others_still_train(site_env: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    site, env = site_env
    make_dist(site, "lp-broken", entry_points={"lightplug.models": {"broken": "lp_broken:Net"}},
              modules={"lp_broken.py": "import not_a_real_module_xyz\n"})
    out = run_cli("models", "--check", "--json", env=env)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert out.returncode == 1  # --check reports a failure
    assert rows["broken"]["status"] == "broken"
    assert "not_a_real_module_xyz" in rows["broken"]["cause"] and rows["broken"]["package"] == "lp-broken"
    assert rows["mlp"]["status"] == "ok"
    listed = run_cli("models", env=env)
    assert listed.returncode == 0 and "broken" in listed.stdout and "No module named" in listed.stdout
    bad = run_cli("train", "model=broken", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "lp-broken" in bad.stderr and "not_a_real_module_xyz" in bad.stderr


def test_two_packages_with_one_name_are_both_reported_and_qualified_name_picks_one(site_env: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    site, env = site_env
    for dist in ("lp-one", "lp-two"):
        mod = dist.replace("-", "_")
        make_dist(site, dist, entry_points={"lightplug.models": {"twin": f"{mod}:Good"}}, modules={f"{mod}.py": GOOD})
    listed = run_cli("models", "--json", env=env)
    twins = [r for r in json.loads(listed.stdout) if r["name"] == "twin"]
    assert {r["package"] for r in twins} == {"lp-one", "lp-two"} and all(r["status"] == "conflict" for r in twins)
    clash = run_cli("train", "model=twin", env=env, cwd=tmp_path)
    assert clash.returncode == 2
    assert "lp-one" in clash.stderr and "lp-two" in clash.stderr and "model=lp-one:twin" in clash.stderr
    show = run_cli("models", "show", "lp-two:twin", "--json", env=env)
    assert show.returncode == 0 and json.loads(show.stdout)["x-plugin"]["package"] == "lp-two"


def test_incompatible_plugin_is_refused_with_versions(site_env: tuple[Path, dict[str, str]]) -> None:
    site, env = site_env
    make_dist(site, "lp-future", entry_points={"lightplug.models": {"future": "lp_future:Good"}},
              modules={"lp_future.py": GOOD}, requires=["lightplug>=99.0"])
    rows = {r["name"]: r for r in json.loads(run_cli("models", "--json", env=env).stdout)}
    assert rows["future"]["status"] == "incompatible"
    assert "needs lightplug>=99.0, you have 0.1.0" in rows["future"]["cause"]


def test_disable_autoload_keeps_only_named_plugins(site_env: tuple[Path, dict[str, str]]) -> None:
    _, env = site_env
    env = {**env, "LIGHTPLUG_DISABLE_AUTOLOAD": "1", "LIGHTPLUG_PLUGINS": "mlp"}
    names = {r["name"] for r in json.loads(run_cli("models", "--json", env=env).stdout)}
    assert "mlp" in names and "mlp_regressor" not in names
    every = {r["name"]: r for r in json.loads(run_cli("models", "--all", "--json", env=env).stdout)}
    assert every["mlp_regressor"]["status"] == "ignored"


def test_show_prints_fields_and_json_schema() -> None:
    out = run_cli("models", "show", "mlp")
    assert out.returncode == 0
    for text in ("model.hidden", "model.activation", "relu, gelu, tanh", "${data.num_classes}"):
        assert text in out.stdout
    schema = json.loads(run_cli("models", "show", "mlp", "--json").stdout)
    assert schema["properties"]["activation"]["enum"] == ["relu", "gelu", "tanh"]
    assert schema["properties"]["num_classes"]["x-bound-to"] == "data.num_classes"
    assert schema["x-plugin"]["package"] == "lightplug-mlp"


def test_local_plugin_folder_and_explicit_class_path(tmp_path: Path, isolated_cache: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "my_local.py").write_text(GOOD)
    listed = run_cli("models", "--json", cwd=tmp_path)
    assert "my_local" in {r["name"] for r in json.loads(listed.stdout)}
    shown = run_cli("models", "show", "my_local", cwd=tmp_path)
    assert shown.returncode == 0 and "model.in_features" in shown.stdout
    explicit = run_cli("models", "show", "lightplug_mlp:MLPRegressor", cwd=tmp_path)
    assert explicit.returncode == 0 and "regression" in explicit.stdout


@pytest.mark.parametrize("name", ["mlp", "mlp_regressor"])
def test_every_installed_example_builds_through_the_python_api(name: str) -> None:
    import lightplug

    net = lightplug.build_model(name)
    assert sum(p.numel() for p in net.parameters()) > 0


def test_doctor_reports_versions_accelerators_and_broken_plugins(site_env: tuple[Path, dict[str, str]]) -> None:
    site, env = site_env
    make_dist(site, "lp-bad-schema", entry_points={"lightplug.models": {"untyped": "lp_bad_schema:Net"}},
              modules={"lp_bad_schema.py": "from torch import nn\nclass Net(nn.Module):\n    def __init__(self, width):\n        super().__init__()\n"})
    out = run_cli("doctor", "--json", env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["lightplug"] and data["packages"]["torch"] and "cuda" in data["accelerators"]
    problem = next(p for p in data["problems"] if "untyped" in p)
    assert "lp-bad-schema" in problem and "no type annotation" in problem
    text = run_cli("doctor", env=env)
    assert "problems:" in text.stdout and "untyped" in text.stdout
