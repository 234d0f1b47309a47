"""`lightplug export` and the export callback end to end: files written next to the checkpoint (or where
asked), verified against eager PyTorch (onnx checker, onnxruntime, reloaded TorchScript, batch 1 and 7),
timed, described in export_report.json and in the ONNX metadata; a model that cannot be exported fails
that format with one line naming the format and the cause, and a training run survives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]

TINY_CNN = '''
"""A small CNN for 1x8x8 digit images."""
import torch
from torch import nn


class TinyCNN(nn.Module):
    """A small CNN; unexportable=true adds erfinv, an operator the ONNX exporter does not support."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 8, unexportable: bool = False) -> None:
        super().__init__()
        self.unexportable = unexportable
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        if self.unexportable:
            h = torch.erfinv(torch.tanh(h) * 0.5)
        return self.head(h)
'''

BRANCHY = '''
"""A linear classifier whose forward branches on tensor values in Python: tracing cannot record that."""
import torch
from torch import nn


class Branchy(nn.Module):
    """Flips its logits when their sum is negative."""

    def __init__(self, in_features: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x.flatten(1))
        if y.sum() > 0:
            return y
        return -y
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A local plugin folder (tiny_cnn, branchy) and a private plugin cache for every command here.

    One torch thread: on a shared 2-core machine a second intra-op thread stalls for tens of ms whenever
    another process holds the other core (3 epochs of mlp: 13-23 s of fit instead of 1 s)."""
    root = tmp_path_factory.mktemp("export_env")
    plugins = root / "plugins"
    plugins.mkdir()
    (plugins / "tiny_cnn.py").write_text(textwrap.dedent(TINY_CNN))
    (plugins / "branchy.py").write_text(textwrap.dedent(BRANCHY))
    return {"LIGHTPLUG_PLUGIN_PATH": str(plugins), "LIGHTPLUG_CACHE_DIR": str(root / "cache"), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def mlp_ckpt(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    """best.ckpt of one epoch of `mlp` on digits (trained once for this module)."""
    work = tmp_path_factory.mktemp("mlp_run")
    run = work / "run"
    res = run_cli("train", "model=mlp", "trainer.max_epochs=1", f"hydra.run.dir={run}", *QUIET, cwd=work, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    ckpt = run / "checkpoints" / "best.ckpt"
    assert ckpt.is_file()
    return ckpt


def _report(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "export_report.json").read_text())


# ---------------------------------------------------------------- fast: arguments and pure helpers
def test_export_is_a_command_and_its_help_lists_the_keys() -> None:
    top = run_cli("--help")
    assert top.returncode == 0 and "export" in top.stdout
    res = run_cli("export", "--help")
    assert res.returncode == 0
    for key in ("ckpt=PATH", "format=", "opset=", "dynamic_batch=", "output=", "atol=", "rtol=", "quantization=", "calibration_samples=",
                "calibration_method="):
        assert key in res.stdout
    for fmt in ("onnx_int8", "onnx_fp16", "openvino", "pt2"):
        assert f"\n  {fmt} " in res.stdout
    for fmt, needs in (("tensorrt", "NVIDIA GPU"), ("coreml", "coremltools"), ("tflite", "TensorFlow")):  # one line each: what it needs
        line = next(ln for ln in res.stdout.splitlines() if ln.startswith(f"  {fmt} "))
        assert needs in line


def test_bad_export_arguments_are_all_reported_with_exit_code_2(tmp_path: Path) -> None:
    res = run_cli("export", "format=keras", "opset=3", "atol=-1", "dynamc_batch=true", "calibration_method=kl", cwd=tmp_path)
    assert res.returncode == 2
    err = res.stderr
    assert "format=keras: unknown export format 'keras'" in err
    assert "calibration_method=kl: unknown value 'kl' (minmax, entropy or percentile)" in err
    assert "opset=3: outside the supported range 7..25" in err
    assert "atol=-1: must be greater than 0" in err
    assert "dynamc_batch: unknown key (did you mean dynamic_batch?)" in err
    assert "ckpt: missing value" in err
    assert "Traceback" not in err
    res = run_cli("export", "format=onnx,tflite", "ckpt=x.ckpt", cwd=tmp_path)  # a format this machine cannot write: why, in one line
    assert res.returncode == 2 and "format=onnx,tflite: tflite is not written by lightplug: it needs TensorFlow" in res.stderr


def test_missing_checkpoint_is_one_error_line(tmp_path: Path) -> None:
    res = run_cli("export", "ckpt=nope.ckpt", "format=onnx", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip() == "error: ckpt=nope.ckpt: no such checkpoint file"  # the words of test and predict


def test_formats_and_target_paths() -> None:
    from lightplug.export import ExportError, parse_formats, target_paths

    assert parse_formats("torchscript,onnx") == ["onnx", "torchscript"]
    assert parse_formats("[onnx, torchscript]") == ["onnx", "torchscript"]
    with pytest.raises(ExportError, match="format=tflite"):
        parse_formats(["onnx", "tflite"])
    ck = Path("runs/a/checkpoints/best.ckpt")
    assert target_paths(ck, ["onnx", "torchscript"]) == {"onnx": ck.parent / "best.onnx", "torchscript": ck.parent / "best.pt"}
    assert target_paths(ck, ["onnx"], output="out/m.bin") == {"onnx": Path("out/m.bin")}
    assert target_paths(ck, ["onnx", "torchscript"], output="out/m.onnx") == {"onnx": Path("out/m.onnx"), "torchscript": Path("out/m.pt")}
    assert target_paths(ck, ["torchscript"], out_dir="run/export") == {"torchscript": Path("run/export/best.pt")}
    every = ["onnx", "onnx_int8", "onnx_fp16", "openvino", "torchscript", "pt2"]
    assert parse_formats(list(reversed(every))) == every
    assert {k: v.name for k, v in target_paths(ck, every, output="out/m.int8.onnx").items()} == {
        "onnx": "m.onnx", "onnx_int8": "m.int8.onnx", "onnx_fp16": "m.fp16.onnx", "openvino": "m.xml", "torchscript": "m.pt", "pt2": "m.pt2"}


def test_comparison_uses_atol_plus_rtol_and_reports_abs_and_rel() -> None:
    from lightplug.export.verify import compare

    max_abs, max_rel, ok = compare([1.0, 100.0, 0.0], [1.0 + 5e-5, 100.05, 2e-5], atol=1e-4, rtol=1e-3)
    assert ok and max_abs == pytest.approx(0.05) and max_rel == pytest.approx(5e-4)
    assert not compare([1.0], [1.01], atol=1e-4, rtol=1e-3)[2]
    assert not compare([1.0], [float("nan")], atol=1e-4, rtol=1e-3)[2]
    assert compare([float("nan")], [float("nan")], atol=1e-4, rtol=1e-3)[2]


def test_example_input_comes_from_the_hook_or_the_checkpoint() -> None:
    import torch

    from lightplug import ModelPlugin
    from lightplug.export import ExportError
    from lightplug.export.verify import example_input

    class WithHook(ModelPlugin):
        def example_input(self, cfg: Any) -> torch.Tensor:
            return torch.zeros(3, 5, dtype=torch.long)

    meta = {"plugin": {"name": "m"}, "preprocessing": {"layout": "image", "in_channels": 3, "image_size": 16}, "facts": {}, "model_config": {}}
    x, source = example_input(meta, WithHook(), batch=2)
    assert x.shape == (3, 5) and x.dtype == torch.long and "example_input hook" in source
    assert example_input(meta, ModelPlugin(), batch=2)[0].shape == (2, 3, 16, 16)
    flat = {"plugin": {"name": "m"}, "preprocessing": {}, "facts": {"in_features": 10}, "model_config": {"in_features": 10}}
    assert example_input(flat, None, batch=1)[0].shape == (1, 10)
    with pytest.raises(ExportError, match="cannot tell the input shape"):
        example_input({"plugin": {"name": "m"}, "preprocessing": {}, "facts": {}, "model_config": {}}, None, batch=1)


# ---------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_export_writes_verified_onnx_and_torchscript_with_report(mlp_ckpt: Path, env: dict[str, str]) -> None:
    res = run_cli("export", f"ckpt={mlp_ckpt}", "format=onnx,torchscript", "bench_seconds=0.3", cwd=mlp_ckpt.parent, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    folder = mlp_ckpt.parent
    onnx_path, ts_path = folder / "best.onnx", folder / "best.pt"
    assert onnx_path.is_file() and ts_path.is_file()
    assert "onnxruntime" not in res.stderr and "SAMPLES/S B32" in res.stdout
    rep = _report(folder)
    assert rep["ok"] and rep["versions"]["torch"] and rep["versions"]["onnxruntime"]
    assert rep["input"]["shape"] == ["batch", 64]
    for fmt in ("onnx", "torchscript"):
        r = rep["formats"][fmt]
        v = r["verification"]
        assert r["ok"] and r["size_bytes"] == Path(r["path"]).stat().st_size
        assert v["max_abs"] < 1e-4 and v["atol"] == 1e-4 and v["rtol"] == 1e-3
        assert sorted({i["batch"] for i in v["inputs"]}) == [1, 7] and all(i["ok"] for i in v["inputs"])
        t = r["timing"]
        assert t["latency_p50_ms"] > 0 and t["latency_p95_ms"] >= t["latency_p50_ms"] and t["throughput"] > 0 and t["throughput_batch"] == 32
    assert "onnx.checker.check_model passed" in rep["formats"]["onnx"]["verification"]["checks"]
    for name in ("onnxruntime_vs_eager", "torchscript_vs_eager"):
        assert all(rep["ratios"][name][k] > 0 for k in ("latency_p50", "latency_p95", "throughput"))
    assert rep["eager"]["timing"]["latency_p50_ms"] > 0

    # the files hold the self-description, and compute what the checkpoint computes on a new batch size
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    import lightplug

    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert props["lightplug.plugin"] == "mlp" and props["lightplug.version"]
    meta = json.loads(props["lightplug.meta"])
    assert meta["task"] == "classification" and meta["label_names"] == [str(i) for i in range(10)]
    assert meta["input"]["shape"] == ["batch", 64] and meta["preprocessing"]["layout"] == "flat" and len(meta["preprocessing"]["mean"]) == 1
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(99))
    with torch.inference_mode():
        eager = lightplug.load_model(mlp_ckpt)(x).numpy()
        extra = {"lightplug.meta": ""}
        scripted = torch.jit.load(str(ts_path), _extra_files=extra)(x).numpy()
    onnx_out = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(onnx_out, eager, atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(scripted, eager, atol=1e-4, rtol=1e-3)
    assert json.loads(extra["lightplug.meta"])["plugin"]["name"] == "mlp"


@pytest.mark.slow
def test_static_batch_export_to_a_chosen_file_with_opset(mlp_ckpt: Path, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out" / "digits.onnx"
    res = run_cli("export", f"ckpt={mlp_ckpt}", "format=onnx", f"output={out}", "opset=13", "dynamic_batch=false", "benchmark=false",
                  cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    import onnx

    model = onnx.load(str(out))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    rep = _report(out.parent)
    assert rep["formats"]["onnx"]["ok"] and {i["batch"] for i in rep["formats"]["onnx"]["verification"]["inputs"]} == {1}
    assert rep["formats"]["onnx"]["timing"] is None and rep["ratios"] == {}
    assert not (mlp_ckpt.parent / "digits.onnx").exists()


def _handmade_checkpoint(template: Path, dest: Path, plugins: Path) -> Path:
    """A lightplug checkpoint of the local `branchy` plugin, built from the mlp checkpoint's self-description."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("branchy_for_test", plugins / "branchy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ck = torch.load(template, map_location="cpu", weights_only=True)
    ck["lightplug"]["plugin"] = {"name": "branchy", "kind": "model", "dist": None, "version": None,
                                 "target": str(plugins / "branchy.py"), "source": "local"}
    ck["lightplug"]["model_config"] = {"in_features": 64, "num_classes": 10}
    torch.manual_seed(0)
    ck["state_dict"] = {f"net.{k}": v for k, v in module.Branchy().state_dict().items()}
    torch.save(ck, dest)
    return dest


@pytest.mark.slow
def test_untraceable_model_fails_each_format_with_one_clear_line(mlp_ckpt: Path, env: dict[str, str], tmp_path: Path) -> None:
    ckpt = _handmade_checkpoint(mlp_ckpt, tmp_path / "branchy.ckpt", Path(env["LIGHTPLUG_PLUGIN_PATH"]))
    res = run_cli("export", f"ckpt={ckpt}", "model=branchy", "format=onnx,torchscript", "benchmark=false", cwd=tmp_path, env=env)
    assert res.returncode == 2
    lines = [ln.strip() for ln in res.stderr.strip().splitlines()]
    assert lines[0] == "error: 2 formats failed:"
    ts = next(ln for ln in lines if ln.startswith("export to torchscript failed:"))
    assert "Python control flow on tensor values" in ts and "branchy.py:" in ts
    onnx_line = next(ln for ln in lines if ln.startswith("export to onnx failed:"))
    assert "outputs differ from eager PyTorch" in onnx_line and "max abs diff" in onnx_line and "branchy.py:" in onnx_line
    assert not (tmp_path / "branchy.onnx").exists() and not (tmp_path / "branchy.pt").exists()
    rep = _report(tmp_path)
    assert rep["ok"] is False and all(not r["ok"] and r["error"].startswith(f"{f}: ") for f, r in rep["formats"].items())


@pytest.mark.slow
def test_training_exports_the_best_checkpoint_and_survives_a_failing_format(env: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = run_cli("train", "model=tiny_cnn", "model.unexportable=true", "trainer.max_epochs=1", f"hydra.run.dir={run}",
                  "export.formats=[onnx,torchscript,pt2]", "export.benchmark=false", *QUIET, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "summary.json").is_file()
    export = run / "export"
    assert (export / "best.pt").is_file() and not (export / "best.onnx").exists()
    log = (run / "train.log").read_text()
    failed = [ln for ln in log.splitlines() if "export onnx failed:" in ln]
    assert len(failed) == 1 and "aten::erfinv" in failed[0] and "not supported" in failed[0]
    assert "export torchscript: " in log
    rep = _report(export)
    assert rep["checkpoint"] == str(run / "checkpoints" / "best.ckpt") and rep["input"]["shape"] == ["batch", 1, 8, 8]
    assert rep["formats"]["torchscript"]["ok"] and rep["formats"]["torchscript"]["verification"]["max_abs"] < 1e-4
    assert rep["formats"]["onnx"]["ok"] is False and "erfinv" in rep["formats"]["onnx"]["error"]
    assert rep["settings"]["benchmark"] is False and rep["formats"]["torchscript"]["timing"] is None
    # the .pt2 holds graph and weights: a fresh process without the local plugin (no LIGHTPLUG_PLUGIN_PATH, no lightplug) runs it
    assert rep["formats"]["pt2"]["ok"] and rep["formats"]["pt2"]["verification"]["max_abs"] < 1e-4
    code = ("import sys, torch\n"
            f"m = torch.export.load({str(export / 'best.pt2')!r}).module()\n"
            "y = m(torch.zeros(5, 1, 8, 8))\n"
            "print('SHAPE', list(y.shape), bool(torch.isfinite(y).all()), sorted(k for k in sys.modules if k.startswith(('tiny_cnn', 'lightplug'))))\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LIGHTPLUG_", "PYTHONPATH"))}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120, env=clean)
    assert p.returncode == 0 and "SHAPE [5, 10] True []" in p.stdout, p.stderr[-2000:]


@pytest.mark.slow
def test_onnx_without_the_export_extra_fails_that_format_only(mlp_ckpt: Path, env: dict[str, str], tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "onnxruntime.py").write_text("raise ImportError(\"No module named 'onnxruntime'\", name='onnxruntime')\n")
    out = tmp_path / "out" / "m.onnx"
    res = run_cli("export", f"ckpt={mlp_ckpt}", "format=onnx,torchscript", f"output={out}", "benchmark=false", cwd=tmp_path,
                  env={**env, "PYTHONPATH": str(shim)})
    assert res.returncode == 2
    assert res.stderr.strip() == ("error: export to onnx failed: needs the packages onnx and onnxruntime "
                                  "(onnxruntime is missing; pip install 'lightplug[export]')")
    assert (tmp_path / "out" / "m.pt").is_file() and not out.exists()
    assert f"torchscript: {tmp_path / 'out' / 'm.pt'}" in res.stdout and "onnx: None" not in res.stdout  # a failed format has no path
