"""Done when (issue 25): a data plugin written from docs/writing-plugins.md alone, a folder of CSV files with a
regression target, is listed, checked, trained on and predicted from.

The package is written from the page's own blocks (those headed `# lightplug-csv-folder/PATH`, a `(continued)` block
appended to its file), so that the docs and this test cannot drift; the commands are the page's own too
(tests/doc_commands.py finds them), run as typed except the install, which goes to a private --target folder."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from doc_commands import find

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"
PAGE = "docs/writing-plugins.md"
BLOCK = re.compile(r"^```(?:python|toml)\n# (lightplug-csv-folder/[\w/.-]+|make_tables\.py)( \(continued\))?\n(.*?)^```", re.S | re.M)
COMMANDS = ["pip install ./lightplug-csv-folder", "lightplug data", "lightplug check-plugin csv_folder --kind data root=tables",
            "lightplug check-plugin epoch_log --kind callback",
            "lightplug train model=mlp_regressor data=csv_folder data.root=tables callbacks=[default,epoch_log]",
            "lightplug predict run=outputs/DATE/TIME input=tables/part0.csv"]


def documented_files() -> dict[str, str]:
    """Path -> text of every file the page's blocks spell out (a `(continued)` block goes on at the end of its file)."""
    files: dict[str, str] = {}
    for path, continued, body in BLOCK.findall(DOC.read_text()):
        if continued:
            assert path in files, f"{path} (continued) before its first block"
            files[path] += "\n\n" + body
        else:
            assert path not in files, f"two blocks start {path}"
            files[path] = f"# {path}\n{body}"
    return files


def test_the_page_spells_out_a_whole_package_and_its_commands() -> None:
    files = documented_files()
    assert set(files) == {"lightplug-csv-folder/pyproject.toml", "lightplug-csv-folder/src/lightplug_csv_folder/data.py",
                          "lightplug-csv-folder/src/lightplug_csv_folder/callbacks.py", "make_tables.py"}
    for path, text in files.items():
        if path.endswith(".py"):
            compile(text, path, "exec")
    for key in COMMANDS:
        assert find(key, PAGE).key == key
    text = DOC.read_text()
    for word in ("label_names", "num_classes", "in_features", "num_outputs", "`task`", "DataError", "from lightplug import DataError",
                 "import lightning as L", "pytorch_lightning", "preprocessing", "LoaderConfig", "batch_size", "num_workers", "split_seed",
                 "def check", "segmentation", "detection", "boxes", "mask", "lightplug.datamodules", "lightplug.callbacks", "CallbackPlugin",
                 "--kind data --layout folder"):
        assert word in text, word


def _lightplug(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command.split("  #")[0])
    assert argv[0] == "lightplug", command
    return run_cli(*argv[1:], cwd=cwd, env=env)


@pytest.mark.slow
def test_a_data_plugin_written_from_the_docs_is_listed_checked_trained_on_and_predicted_from(tmp_path: Path) -> None:
    for path, text in documented_files().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    made = subprocess.run([sys.executable, "make_tables.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["part0.csv", "part1.csv", "part2.csv"]

    install, listing, check_data, check_callback, train, predict = (find(key, PAGE).text for key in COMMANDS)
    site = tmp_path / "site"  # the documented `pip install`, into a private folder put on PYTHONPATH
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check", "-q",
                          "--target", str(site), *shlex.split(install)[2:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "LIGHTPLUG_CACHE_DIR": str(tmp_path / "cache"),
           "LIGHTPLUG_HOME": str(tmp_path / "home")}

    listed = _lightplug(listing, tmp_path, env)
    assert listed.returncode == 0 and re.search(r"csv_folder .*lightplug-csv-folder.* regression", listed.stdout.replace("│", " ")), listed.stdout
    checks = {command: _lightplug(command, tmp_path, env) for command in (check_data, check_callback)}
    assert all(out.returncode == 0 for out in checks.values()), [out.stdout + out.stderr for out in checks.values()]
    assert "PASS  preprocessing" in checks[check_data].stdout and "PASS  fit" in checks[check_callback].stdout

    trained = _lightplug(train, tmp_path, env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = [p.parent for p in (tmp_path / "outputs").glob("*/*/summary.json")]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["monitor"] == "val/mse" and summary["metrics"]["val/r2"] > 0.2, summary  # targets standardised: better than their mean
    log = (run / "epoch_log.csv").read_text().splitlines()  # the callback of the same package
    assert log[0] == "epoch,val/loss" and len(log) == 1 + json.loads((run / "config.json").read_text())["trainer"]["max_epochs"], log

    relative = str(run.relative_to(tmp_path))
    predicted = _lightplug(re.sub(r"outputs/DATE/TIME", relative, predict), tmp_path, env)
    assert predicted.returncode == 0, predicted.stderr
    with (tmp_path / "preds.csv").open() as fh:
        preds = list(csv.DictReader(fh))
    with (tmp_path / "tables" / "part0.csv").open() as fh:
        truth = [float(r["target"]) for r in csv.DictReader(fh)]
    assert len(preds) == len(truth) == 148
    import numpy as np

    values = np.asarray([float(next(v for k, v in p.items() if k not in ("file", "row"))) for p in preds])
    assert 50 < values.mean() < 250, values.mean()  # in the target's own unit (disease progression, 25 to 346)
    assert np.corrcoef(values, truth)[0, 1] > 0.5

    refused = run_cli("train", "model=mlp_regressor", "data=csv_folder", "data.root=tables", "data.features=[bmi,target]", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "data.features: holds the target 'target'" in refused.stderr, refused.stderr
    missing = run_cli("train", "model=mlp_regressor", "data=csv_folder", "data.root=nowhere", cwd=tmp_path, env=env)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == ["error: data.root=nowhere: no .csv file in it"], missing.stderr
