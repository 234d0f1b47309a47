"""`lightplug new-plugin`: names are checked, nothing is overwritten, and the package it writes installs with pip,
is listed, trains, and passes its own tests (which use lightplug.testing)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from conftest import run_cli
from lightplug.cli.new_plugin import LAYOUTS, TASKS

PLACEHOLDER = re.compile(r"\{(name|class_name|module|dist|task|description|core_version|kind|entry_group|entry_use|submodule|dependencies|"
                         r"test_model|facts|" + "|".join([*next(iter(TASKS.values())), *next(iter(LAYOUTS.values()))]) + r")\}")


def test_templates_ship_inside_the_lightplug_package() -> None:
    folder = resources.files("lightplug") / "templates" / "plugin"
    names = {p.name for p in folder.iterdir()}
    assert {"pyproject.toml.tmpl", "README.md.tmpl", "__init__.py.tmpl", "test_plugin.py.tmpl"} <= names
    assert {spec["template"] for spec in TASKS.values()} <= names


@pytest.mark.parametrize("bad", ["My-Model", "2fast", "class", "my model", "_hidden"])
def test_invalid_name_exits_2_and_writes_nothing(tmp_path: Path, bad: str) -> None:
    out = run_cli("new-plugin", bad, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "invalid plugin name" in out.stderr and "lower-case Python identifier" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_non_empty_folder_and_leaves_it_untouched(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    out = run_cli("new-plugin", "my_model", "--dir", str(taken), cwd=tmp_path)
    assert out.returncode == 2
    assert "already exists and is not an empty folder" in out.stderr
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("new-plugin", "my_model", "--dir", str(empty), cwd=tmp_path).returncode == 0
    assert (empty / "pyproject.toml").is_file()


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_writes_a_complete_package_for_the_task(tmp_path: Path, task: str) -> None:
    out = run_cli("new-plugin", "my_model", "--task", task, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    dest = tmp_path / "lightplug-my_model"
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "src/lightplug_my_model/__init__.py", "src/lightplug_my_model/model.py", "tests/test_my_model.py"]
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((dest / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "hatchling.build"
    assert project["project"]["entry-points"]["lightplug.models"] == {"my_model": "lightplug_my_model.model:MyModel"}
    assert "lightplug>=0.1" in project["project"]["dependencies"]
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["src/lightplug_my_model"]
    for path in dest.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not PLACEHOLDER.search(text), f"{path.name}: unfilled placeholder {PLACEHOLDER.search(text).group(0)}"  # type: ignore[union-attr]
            if path.suffix == ".py":
                compile(text, str(path), "exec")
    model = (dest / "src/lightplug_my_model/model.py").read_text()
    assert "class MyModel(ModelPlugin):" in model and f'task = "{task}"' in model
    assert all(f'"{p}":' in model for p in ("easy", "medium", "advanced")) and "Param(" in model and "help=" in model
    test = (dest / "tests/test_my_model.py").read_text()
    assert "PluginContract" in test and "train_plugin_once" in test
    data = TASKS[task]["data"]
    assert f'data="{TASKS[task]["test_data"]}"' in test
    readme = (dest / "README.md").read_text()
    assert "lightplug train model=my_model" in readme and f"data={data}" in readme
    if task == "regression":
        assert "lightplug train model=my_model data=diabetes" in readme


def _steps(out: str) -> list[str]:
    """The commands `new-plugin` prints after `next:`."""
    return [line.strip() for line in out.split("next:\n", 1)[1].splitlines() if line.strip()]


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_printed_steps_readme_and_test_instructions_agree(tmp_path: Path, task: str) -> None:
    out = run_cli("new-plugin", "my_model", "--task", task, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    steps = _steps(out.stdout)
    data = TASKS[task]["data_arg"]
    assert steps == ["pip install -e 'lightplug-my_model[test]'", "lightplug check-plugin my_model",
                     f"lightplug train model=my_model{data} +preset=easy", "python -m pytest lightplug-my_model/tests"]
    dest = tmp_path / "lightplug-my_model"
    readme = (dest / "README.md").read_text()
    for command in ('pip install -e ".[test]"', "lightplug check-plugin my_model", f"lightplug train model=my_model{data} +preset=easy",
                    "python -m pytest tests"):  # the same steps, typed from the package's folder
        assert command in readme, command
    assert 'pip install -e ".[test]"' in (dest / "tests" / "test_my_model.py").read_text()
    tomllib = pytest.importorskip("tomllib")
    assert "pytest>=8" in tomllib.loads((dest / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]


@pytest.mark.slow
def test_generated_packages_install_list_train_and_pass_their_own_tests(tmp_path: Path) -> None:
    """What a user does: new-plugin, pip install, lightplug models, the printed train command, pytest of the package."""
    img, tab = tmp_path / "lightplug-img_net", tmp_path / "tabular"
    made = run_cli("new-plugin", "img_net", cwd=tmp_path)
    assert made.returncode == 0
    steps = _steps(made.stdout)
    assert run_cli("new-plugin", "tab_net", "--task", "regression", "--dir", str(tab), cwd=tmp_path).returncode == 0
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check", "-q",
                          "--target", str(site), str(img), str(tab)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "LIGHTPLUG_CACHE_DIR": str(tmp_path / "cache")}

    listed = run_cli("models", "--json", cwd=tmp_path, env=env)
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["img_net"]["package"] == "lightplug-img-net" and rows["img_net"]["entry_point"] == "lightplug_img_net.model:ImgNet"
    assert rows["tab_net"]["package"] == "lightplug-tab-net" and rows["tab_net"]["version"] == "0.1.0"

    run = tmp_path / "run"  # the printed train command, every default on: a new author's first result is a good one
    assert steps[2] == "lightplug train model=img_net +preset=easy"
    trained = run_cli(*steps[2].split()[1:], f"hydra.run.dir={run}", cwd=tmp_path, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["monitor"] == "val/acc" and summary["best"] >= 0.9, summary

    for command in (steps[3].split(), ["python", "-m", "pytest", str(tab / "tests")]):  # as printed, from where it was printed
        tests = subprocess.run([sys.executable, *command[1:], "-q", "-p", "no:cacheprovider"], cwd=tmp_path,
                               env={**os.environ, "PYTHONWARNINGS": "ignore", **env}, capture_output=True, text=True, timeout=900)
        assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
        assert re.search(r"\b1[0-9] passed", tests.stdout), tests.stdout[-500:]


@pytest.mark.parametrize("layout", ["table", "folder"])
def test_writes_a_complete_data_package_for_the_layout(tmp_path: Path, layout: str) -> None:
    out = run_cli("new-plugin", "my_data", "--kind", "data", "--layout", layout, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    dest = tmp_path / "lightplug-my_data"
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    main = ["src/lightplug_my_data/__main__.py"] if layout == "folder" else []
    assert files == sorted(["README.md", "pyproject.toml", "src/lightplug_my_data/__init__.py", *main, "src/lightplug_my_data/data.py",
                            "tests/test_my_data.py"])
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((dest / "pyproject.toml").read_text())
    assert project["project"]["entry-points"] == {"lightplug.datamodules": {"my_data": "lightplug_my_data.data:MyData"}}
    for path in dest.rglob("*"):
        text = path.read_text() if path.is_file() else ""
        assert not PLACEHOLDER.search(text), f"{path.name}: unfilled placeholder {PLACEHOLDER.search(text).group(0)}"  # type: ignore[union-attr]
        if path.suffix == ".py":
            compile(text, str(path), "exec")
    data = (dest / "src/lightplug_my_data/data.py").read_text()
    assert "class MyData(LoaderData):" in data and "class MyDataConfig(LoaderConfig):" in data and "preprocessing" in data
    steps = _steps(out.stdout)
    root = " root=example" if layout == "folder" else ""
    assert steps[-3:] == [f"lightplug check-plugin my_data --kind data{root}", f"lightplug train model=mlp data=my_data{root.replace(' ', ' data.')}",
                          "python -m pytest lightplug-my_data/tests"]
    readme = (dest / "README.md").read_text()
    assert all(step.replace("'lightplug-my_data[test]'", '".[test]"') in readme for step in steps[:-1] if "check-plugin" not in step)


def test_layout_is_for_data_plugins_only(tmp_path: Path) -> None:
    out = run_cli("new-plugin", "my_model", "--layout", "folder", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: --layout is for data plugins (lightplug new-plugin my_model --kind data --layout folder)"]
    out = run_cli("new-plugin", "my_data", "--kind", "data", "--task", "regression", cwd=tmp_path)  # wrote a classifier silently
    assert out.returncode == 2 and out.stderr.startswith("error: --task is for model plugins") and not list(tmp_path.iterdir())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_generated_data_packages_install_list_check_and_train(tmp_path: Path) -> None:
    """new-plugin --kind data for both layouts, pip install, `lightplug data`, then the printed steps as typed: the table's
    package passes its own tests (the contract checks and a training run), the folder's example folder is written, checked
    and trained on. (Predicting from a data plugin's run: tests/test_docs_data_plugin.py.)"""
    made = {layout: run_cli("new-plugin", f"my_{layout}", "--kind", "data", "--layout", layout, cwd=tmp_path) for layout in LAYOUTS}
    assert all(out.returncode == 0 for out in made.values()), [out.stderr for out in made.values()]
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check", "-q",
                          "--target", str(site), *(str(tmp_path / f"lightplug-my_{layout}") for layout in LAYOUTS)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "LIGHTPLUG_CACHE_DIR": str(tmp_path / "cache")}
    rows = {r["name"]: r for r in json.loads(run_cli("data", "--json", cwd=tmp_path, env=env).stdout)}
    assert rows["my_table"]["entry_point"] == "lightplug_my_table.data:MyTable" and rows["my_table"]["task"] == "classification"
    assert rows["my_folder"]["package"] == "lightplug-my-folder" and rows["my_folder"]["status"] != "error"

    folder_steps = _steps(made["folder"].stdout)  # pip install, example, check-plugin, train, pytest
    assert folder_steps[1] == "python -m lightplug_my_folder example"
    example = subprocess.run([sys.executable, *folder_steps[1].split()[1:]], cwd=tmp_path, env={**os.environ, **env},
                             capture_output=True, text=True, timeout=120)
    assert example.returncode == 0, example.stderr
    assert len(list((tmp_path / "example").glob("*/*.npy"))) == 400
    checked = run_cli(*folder_steps[2].split()[1:], cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "PASS  preprocessing" in checked.stdout and "data my_folder: " in checked.stdout
    run = tmp_path / "run"
    trained = run_cli(*folder_steps[3].split()[1:], f"hydra.run.dir={run}", cwd=tmp_path, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["monitor"] == "val/acc" and summary["best"] >= 0.8, summary

    tests = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path / "lightplug-my_table" / "tests"), "-q", "-p", "no:cacheprovider"],
                           cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "ignore", **env}, capture_output=True, text=True, timeout=900)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert re.search(r"\b\d+ passed", tests.stdout), tests.stdout[-500:]
