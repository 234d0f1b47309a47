"""Checkpoints are read with ``weights_only=True``: one that would run code is refused (and runs none), and
damaged, foreign or mismatched ones give one clear message, from ``lightplug.load_model`` (CheckpointError)
and from ``lightplug train resume=...`` / ``init_from=...`` (exit code 2, no traceback)."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


class RunsShell:
    """Unpickling this calls ``os.system`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


class OpensFile:
    """Unpickling this calls the builtin ``open`` and creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (builtins.open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Malicious, foreign and damaged files, made without training."""
    import torch

    tmp = tmp_path_factory.mktemp("unsafe")
    marker = tmp / "PWNED"
    meta = {"format": 1, "plugin": {"name": "mlp"}, "model_config": {}}
    out = {"marker": marker, "tmp": tmp}
    out["shell"] = tmp / "shell.ckpt"
    torch.save({"state_dict": {}, "lightplug": meta, "payload": RunsShell(marker)}, out["shell"])
    out["open"] = tmp / "open.ckpt"
    torch.save({"state_dict": {}, "lightplug": {**meta, "note": OpensFile(marker)}}, out["open"])
    out["foreign"] = tmp / "foreign.ckpt"
    torch.save({"a": 1}, out["foreign"])
    out["random"] = tmp / "random.ckpt"
    out["random"].write_bytes(os.urandom(20_000))
    out["empty"] = tmp / "empty.ckpt"
    out["empty"].write_bytes(b"")
    whole = tmp / "whole.ckpt"
    torch.save({"state_dict": {"net.w": torch.randn(256, 256)}, "lightplug": meta}, whole)
    out["truncated"] = tmp / "truncated.ckpt"
    out["truncated"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out["text"] = tmp / "notes.ckpt"
    out["text"].write_text("these are not weights\n")
    return out


UNSAFE = ["shell", "open"]
DAMAGED = {"foreign": "not a lightplug checkpoint", "random": "not a PyTorch checkpoint", "empty": "the file is empty",
           "truncated": "truncated", "text": "not a PyTorch checkpoint"}


@pytest.mark.parametrize("kind", UNSAFE)
def test_load_model_refuses_a_checkpoint_that_would_run_code_and_runs_none(files: dict[str, Path], kind: str) -> None:
    import lightplug
    from lightplug.errors import CheckpointError

    with pytest.raises(CheckpointError, match="refused, it would import and call") as info:
        lightplug.load_model(files[kind])
    assert str(files[kind]) in str(info.value) and "\n" not in str(info.value)
    assert not files["marker"].exists()


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_load_model_gives_one_clear_error_for_damaged_or_foreign_files(files: dict[str, Path], kind: str) -> None:
    import lightplug
    from lightplug.errors import CheckpointError

    with pytest.raises(CheckpointError, match=DAMAGED[kind]) as info:
        lightplug.load_model(files[kind])
    assert str(files[kind]) in str(info.value) and "\n" not in str(info.value) and info.value.exit_code == 2


def test_load_model_of_a_missing_file_names_it(tmp_path: Path) -> None:
    import lightplug
    from lightplug.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no such file"):
        lightplug.load_model(tmp_path / "nope.ckpt")


# ---------------------------------------------------------------- with real checkpoints
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """best.ckpt of an mlp with model.hidden=32 and of an mlp_regressor (trained side by side, one epoch)."""
    tmp = tmp_path_factory.mktemp("trained")
    jobs = {"mlp32": ["model=mlp", "model.hidden=32"], "regressor": ["model=mlp_regressor", "data=diabetes"]}
    procs = {name: subprocess.Popen([sys.executable, "-m", "lightplug", "train", *args, "trainer.max_epochs=1", f"hydra.run.dir={tmp / name}", *QUIET],
                                    cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for name, args in jobs.items()}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
    yield {name: tmp / name / "checkpoints" / "best.ckpt" for name in jobs}


@pytest.mark.slow
def test_load_model_refuses_weights_that_do_not_fit_the_stored_settings(trained: dict[str, Path], tmp_path: Path) -> None:
    import torch

    import lightplug
    from lightplug.errors import CheckpointError

    assert lightplug.load_model(trained["mlp32"]).lightplug_meta["model_config"]["hidden"] == 32
    ckpt = torch.load(trained["mlp32"], weights_only=True)
    ckpt["lightplug"]["model_config"]["hidden"] = 64  # the settings say 64, the weights are 32 wide
    tampered = tmp_path / "tampered.ckpt"
    torch.save(ckpt, tampered)
    with pytest.raises(CheckpointError, match="does not fit model 'mlp'"):
        lightplug.load_model(tampered)


CLI_CASES = [
    # (id, overrides, checkpoint file or key of `trained`, words of the message)
    ("resume-runs-code", ["model=mlp"], "resume", "shell", ["resume=", "refused", "posix.system"]),
    ("init-from-opens-file", ["model=mlp"], "init_from", "open", ["init_from=", "refused", "open"]),
    ("resume-foreign", ["model=mlp"], "resume", "foreign", ["resume=", "not a lightplug checkpoint"]),
    ("resume-random-bytes", ["model=mlp"], "resume", "random", ["resume=", "not a PyTorch checkpoint"]),
    ("init-from-truncated", ["model=mlp"], "init_from", "truncated", ["init_from=", "truncated"]),
    ("resume-empty", ["model=mlp"], "resume", "empty", ["resume=", "empty"]),
    ("resume-other-plugin", ["model=mlp"], "resume", "regressor", ["resume=", "'mlp_regressor'", "model=mlp"]),
    ("resume-other-optimizer", ["model=mlp", "model.hidden=32", "optimizer=sgd"], "resume", "mlp32", ["resume=", "optimizer=adam", "optimizer=sgd"]),
    ("init-from-other-shape", ["model=mlp", "model.hidden=64"], "init_from", "mlp32", ["init_from=", "does not fit model mlp", "model.hidden=32",
                                                                                      "64 here"]),
    ("init-from-other-plugin", ["model=mlp"], "init_from", "regressor", ["init_from=", "does not fit model mlp", "shape"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_train_refuses_a_bad_checkpoint_with_exit_2_and_one_line(case: tuple[Any, ...], files: dict[str, Path], trained: dict[str, Path],
                                                               tmp_path: Path) -> None:
    _, overrides, key, which, words = case
    path = files.get(which) or trained[which]
    run = tmp_path / "run"
    out = run_cli("train", *overrides, f"{key}={path}", "trainer.max_epochs=1", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and str(path) in errors[0], out.stderr[-3000:]
    for word in words:
        assert word in errors[0], f"{word!r} not in {errors[0]!r}"
    assert "Traceback" not in out.stderr + out.stdout
    assert not files["marker"].exists()
    assert not (run / "checkpoints").exists(), "training started"
