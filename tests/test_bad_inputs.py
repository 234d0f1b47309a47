"""Every mistake a user can type into ``lightplug train``: exit code 2, one ``error: ...`` line that names
the culprit, no traceback, and an existing run folder left exactly as it was.

Each case fails before torch is imported (about half a second each) except where noted."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import make_dist, run_cli

WIDE = '''
from torch import nn
class Wide(nn.Module):
    """A one-layer model with a width."""
    def __init__(self, in_features: int = 64, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, num_classes))
    def forward(self, x):
        return self.net(x)
'''


@dataclass
class Case:
    """One bad command line and the words its message must contain."""

    id: str
    args: list[str]
    culprits: list[str]
    run_dir: bool = True  # add hydra.run.dir=<an existing run folder>
    early: bool = True  # fails before Hydra writes anything (the run folder stays byte for byte)
    command: str = "train"
    slow: bool = False  # imports torch before failing


def _cases() -> list[Case]:
    m = ["model=mlp"]
    return [
        Case("unknown-key-close-match", m + ["model.hiden=3"], ["model.hiden", "did you mean model.hidden"]),
        Case("misspelt-key-of-plugin", ["model=wide", "model.widht=3"], ["model.widht", "did you mean model.width"]),
        Case("wrong-type", m + ["trainer.max_epochs=abc"], ["trainer.max_epochs=abc", "expected int"]),
        Case("wrong-type-float", m + ["model.dropout=abc"], ["model.dropout=abc", "expected float"]),
        Case("out-of-range", m + ["optimizer.lr=-1"], ["optimizer.lr=-1", "greater than 0"]),
        Case("bad-choice", m + ["optimizer=adamm"], ["optimizer=adamm", "did you mean adam"]),
        Case("bad-literal-choice", m + ["model.activation=sigmoid"], ["model.activation=sigmoid", "relu"]),
        Case("unknown-model", ["model=mpl"], ["mpl", "did you mean mlp"]),
        Case("no-model", ["trainer.max_epochs=1"], ["no model chosen", "mlp"]),
        Case("unknown-data", m + ["data=digitz"], ["digitz", "did you mean digits"]),
        Case("missing-data-folder", m + ["data=image_folder", "data.root={tmp}/no_such_folder"], ["data.root=", "no_such_folder", "no such folder"]),
        Case("empty-data-folder", m + ["data=image_folder", "data.root={tmp}/empty"], ["data.root=", "empty", "no class folders"]),
        # Found when the loader opens the images, after Hydra wrote .hydra/ into the run folder (see docs/reliability.md).
        Case("class-folder-without-readable-image", m + ["data=image_folder", "data.root={tmp}/corrupt"], ["data.root=", "'cat'", "no readable image"],
             early=False, slow=True),
        Case("task-mismatch", m + ["data=diabetes"], ["model=mlp", "classification", "data=diabetes", "regression"]),
        Case("unwritable-output-folder", m + ["hydra.run.dir={readonly}/run"], ["hydra.run.dir=", "readonly", "cannot write"], run_dir=False),
        Case("negative-epochs", m + ["trainer.max_epochs=-5"], ["trainer.max_epochs=-5", "below the minimum -1"]),
        Case("zero-batch-size", m + ["data.batch_size=0"], ["data.batch_size=0", "below the minimum 1"]),
        Case("val-fraction-above-one", m + ["data.val_fraction=1.5"], ["data.val_fraction=1.5", "less than 1"]),
        Case("too-many-workers", m + ["data.num_workers=100"], ["data.num_workers=100", "above the maximum 64"]),
        Case("resume-missing-file", m + ["resume={tmp}/missing.ckpt"], ["resume=", "missing.ckpt", "no such file"]),
        Case("resume-last-without-checkpoint", m + ["resume=last"], ["resume=last", "no last.ckpt"]),
        Case("init-from-random-bytes", m + ["init_from={tmp}/garbage.ckpt"], ["init_from=", "garbage.ckpt", "not a PyTorch checkpoint"]),
        Case("init-from-empty-file", m + ["init_from={tmp}/empty.ckpt"], ["init_from=", "empty.ckpt", "empty"]),
        Case("bad-optimizer-option", m + ["optimizer.momentum=1.5"], ["optimizer.momentum=1.5", "less than 1"]),
        Case("unknown-optimizer-option", m + ["optimizer.foo=1"], ["optimizer.foo", "unknown key"]),
        Case("misspelt-group", m + ["optimiser=adam"], ["optimiser", "did you mean optimizer"]),
        Case("misspelt-top-level-key", m + ["sed=3"], ["sed", "did you mean seed"]),
        Case("misspelt-nested-key", m + ["callbacks.early_stoping.enabled=true"], ["callbacks.early_stoping", "did you mean callbacks.early_stopping"]),
        Case("bad-precision", m + ["trainer.precision=17"], ["trainer.precision=17", "32-true"]),
        Case("bad-seed", m + ["seed=abc"], ["seed=abc", "expected int"]),
        Case("bad-monitor-mode", m + ["monitor_mode=sideways"], ["monitor_mode=sideways", "min, max"]),
        Case("bad-logger", m + ["logger=csvv"], ["logger=csvv", "did you mean csv"]),
        Case("bad-scheduler", m + ["scheduler=cosin"], ["scheduler=cosin", "did you mean cosine"]),
        Case("bad-export-format", m + ["export.formats=[onxx]"], ["export.formats", "onxx", "onnx"]),
        Case("several-bad-fields", m + ["trainer.max_epochs=-5", "optimizer.lr=0", "data.batch_size=0"],
             ["3 problems", "trainer.max_epochs=-5", "optimizer.lr=0", "data.batch_size=0"]),
        Case("bad-override-syntax", m + ["trainer.max_epochs=[1,"], ["cannot parse the command line", "[1,"]),
        Case("unknown-preset", m + ["+preset=nonexistent"], ["preset=nonexistent", "easy"]),
        Case("append-existing-key", m + ["+seed=3"], ["seed is already set"]),
        Case("unknown-command", ["model=mlp"], ["unknown command", "trian", "lightplug train"], run_dir=False, command="trian"),
    ]


CASES = [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in _cases()]


def _snapshot(folder: Path, skip_hydra: bool = False) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and not (skip_hydra and p.relative_to(folder).parts[0] == ".hydra")}


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[bool]:
    """Make ``folder`` unwritable even for root (chattr +i), else by permissions; yields whether it worked."""
    folder.mkdir()
    if os.geteuid() == 0:
        ok = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        try:
            yield ok
        finally:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    else:
        folder.chmod(0o555)
        try:
            yield True
        finally:
            folder.chmod(0o755)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Data folders, checkpoint files, a plugin with a ``width`` field and an existing run folder."""
    tmp = tmp_path_factory.mktemp("bad_inputs")
    (tmp / "empty").mkdir()
    for cls in ("cat", "dog"):
        (tmp / "corrupt" / cls).mkdir(parents=True)
        (tmp / "corrupt" / cls / "broken.png").write_bytes(b"not an image")
    (tmp / "garbage.ckpt").write_bytes(os.urandom(4096))
    (tmp / "empty.ckpt").write_bytes(b"")
    run = tmp / "existing_run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / ".hydra" / "config.yaml").write_text("model: {_plugin_: mlp}\n")
    (run / "config.json").write_text('{"seed": 1}\n')
    (run / "metrics.csv").write_text("epoch,val/acc\n0,0.5\n")
    (run / "train.log").write_text("an earlier run\n")
    (run / "checkpoints" / "best.ckpt").write_bytes(b"PK earlier bytes")
    site = make_dist(tmp / "site", "lp-wide", entry_points={"lightplug.models": {"wide": "lp_wide:Wide"}}, modules={"lp_wide.py": WIDE})
    env = {"PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""), "LIGHTPLUG_CACHE_DIR": str(tmp / "cache")}
    work = tmp / "cwd"
    work.mkdir()
    with _read_only(tmp / "readonly") as ok:
        yield {"tmp": tmp, "run": run, "env": env, "cwd": work, "readonly_ok": ok}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line_naming_the_culprit(case: Case, world: dict[str, object]) -> None:
    tmp, run, cwd = Path(str(world["tmp"])), Path(str(world["run"])), Path(str(world["cwd"]))
    if "{readonly}" in " ".join(case.args) and not world["readonly_ok"]:
        pytest.skip("cannot make a folder unwritable here")
    args = [a.format(tmp=tmp, readonly=tmp / "readonly") for a in case.args]
    cmd = [case.command, *args, *([f"hydra.run.dir={run}"] if case.run_dir else [])]
    before = _snapshot(run, skip_hydra=not case.early)
    before_cwd = sorted(p.name for p in cwd.iterdir())
    out = run_cli(*cmd, cwd=cwd, env=dict(world["env"]))  # type: ignore[arg-type]
    assert out.returncode == 2, f"exit {out.returncode}\n{out.stdout[-1500:]}\n{out.stderr[-3000:]}"
    lines = out.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), out.stderr[-3000:]
    for word in case.culprits:
        assert word in out.stderr, f"{word!r} not in: {out.stderr}"
    assert "Traceback" not in out.stderr + out.stdout
    if case.culprits[0] != "3 problems":
        assert len(lines) == 1, f"more than one line: {out.stderr}"
    assert _snapshot(run, skip_hydra=not case.early) == before, "the existing run folder changed"
    assert sorted(p.name for p in cwd.iterdir()) == before_cwd, "files appeared in the working folder"
