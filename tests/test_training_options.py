"""optimizer.impl (torch's fused kernels by default where it has them) and compile.enabled (torch.compile of the
model, with checkpoints, resume and export that know nothing of it)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def test_optimizer_impl_auto_is_fused_where_torch_has_it_and_an_explicit_choice_is_checked() -> None:
    from lightplug.errors import ConfigError
    from lightplug.optim import build_optimizer, optimizer_impl

    params = list(torch.nn.Linear(4, 3).parameters())
    picked = {name: optimizer_impl(build_optimizer(params, {"name": name, "impl": "auto"})) for name in ("adam", "adamw", "sgd", "rmsprop")}
    assert picked == {"adam": "fused", "adamw": "fused", "sgd": "fused", "rmsprop": "foreach"}
    assert optimizer_impl(build_optimizer(params, {"name": "adam"})) == "fused"  # a config without the key (an old checkpoint's)
    for impl in ("for_loop", "foreach", "fused"):
        assert optimizer_impl(build_optimizer(params, {"name": "adam", "impl": impl})) == impl
    # gradient clipping under a gradient scaler: a fused step unscales by itself, which Lightning refuses
    assert optimizer_impl(build_optimizer(params, {"name": "adam", "impl": "auto"}, scaler_clipping=True)) == "foreach"
    with pytest.raises(ConfigError, match="optimizer.impl=fused: torch has no fused rmsprop"):
        build_optimizer(params, {"name": "rmsprop", "impl": "fused"})
    with pytest.raises(ConfigError, match="gradient_clip_val under 16-mixed"):
        build_optimizer(params, {"name": "sgd", "impl": "fused"}, scaler_clipping=True)


def test_fused_and_for_loop_adam_take_the_same_steps() -> None:
    from lightplug.optim import build_optimizer

    torch.manual_seed(0)
    nets = [torch.nn.Linear(8, 4) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [build_optimizer(n.parameters(), {"name": "adam", "lr": 1e-2, "impl": impl}) for n, impl in zip(nets, ("fused", "for_loop"))]
    x = torch.randn(16, 8)
    for _ in range(5):
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bad_training_options_are_refused_before_torch_is_imported() -> None:
    r = run_cli("train", "model=mlp", "optimizer.impl=fuse", "compile.mode=fast", "results.refresh_seconds=-1")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "optimizer.impl=fuse" in r.stderr and "one of auto, fused, foreach, for_loop" in r.stderr
    assert "compile.mode=fast" in r.stderr and "results.refresh_seconds=-1" in r.stderr


@pytest.mark.slow
def test_a_compiled_run_checkpoints_resumes_and_exports_the_plain_module(tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = run_cli("train", "model=mlp", "compile.enabled=true", "trainer.max_epochs=1", "export.formats=[onnx]", f"hydra.run.dir={run}", *QUIET,
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["state_dict"] and not any("_orig_mod" in k for k in ckpt["state_dict"]), list(ckpt["state_dict"])
    report = json.loads((run / "export" / "export_report.json").read_text())
    assert report["formats"]["onnx"]["ok"] and report["formats"]["onnx"]["verification"]["max_abs"] < 1e-4, report["formats"]
    r = run_cli("train", "model=mlp", "compile.enabled=true", "trainer.max_epochs=2", "resume=last", f"hydra.run.dir={run}", *QUIET, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    epochs = {row["epoch"] for row in csv.DictReader((run / "metrics.csv").open()) if row.get("val/acc")}
    assert epochs == {"0", "1"}
    assert json.loads((run / "summary.json").read_text())["best_epoch"] in (0, 1)
