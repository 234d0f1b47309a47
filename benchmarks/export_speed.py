"""Export speed: ONNX (onnxruntime) and TorchScript against eager PyTorch for ``mlp``, ``simple_cnn`` and
``tiny_resnet``.

Each model is trained for one epoch on digits (one ``lightplug train -m`` multirun), then its best
checkpoint goes through :func:`lightplug.export.export_checkpoint` (what ``lightplug export`` runs): written,
verified against eager PyTorch on seeded inputs (batch 1 and 7), and timed: latency p50/p95 at batch 1 and
throughput at batch 32, every backend in turns on the same inputs.

Run: ``python benchmarks/export_speed.py [--quick] [--seconds 2] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from _common import Section, bench_env, lightplug_cmd, md_table, run

__all__ = ["train_checkpoints", "export_all", "render", "run_benchmark", "MODELS"]

MODELS = ("mlp", "simple_cnn", "tiny_resnet")


def train_checkpoints(models: tuple[str, ...], workdir: Path, env: dict[str, str], threads: int | None) -> dict[str, Path]:
    """Train every model for one epoch (one multirun); model -> its best checkpoint."""
    out = workdir / "train"
    cmd = lightplug_cmd("train", "-m", f"model={','.join(models)}", "trainer=cpu", "trainer.max_epochs=1", "seed=0",
                        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", f"hydra.sweep.dir={out}",
                        *([f"threads={threads}"] if threads else []))
    code, text, _ = run(cmd, env=env, cwd=workdir)
    if code != 0:
        raise RuntimeError(f"lightplug train -m failed ({code}): {' '.join(cmd)}\n{text[-3000:]}")
    found = {}
    for job in (p for p in out.iterdir() if p.is_dir() and p.name.isdigit()):
        name = json.loads((job / "config.json").read_text())["model"]["_plugin_"]
        found[name] = job / "checkpoints" / "best.ckpt"
    return {m: found[m] for m in models}


def export_all(checkpoints: dict[str, Path], seconds: float, threads: int | None, log: Any = print) -> dict[str, Any]:
    """Export, verify and time every checkpoint in ONNX and TorchScript; model -> report (plain data)."""
    import torch

    from lightplug.export import export_checkpoint

    if threads:
        torch.set_num_threads(threads)
    reports = {}
    for model, ckpt in checkpoints.items():
        report = export_checkpoint(ckpt, ["onnx", "torchscript"], out_dir=ckpt.parent.parent / "export", bench_seconds=seconds)
        reports[model] = report.to_dict()
        log(f"  export {model}: ok={report.ok} ratios={report.ratios}")
    return reports


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(reports: dict[str, Any], settings: dict[str, Any]) -> Section:
    """The Markdown section: one row per model and backend."""
    rows, threads, load = [], set(), []
    for model, rep in reports.items():
        threads.add(rep["settings"].get("torch_threads"))
        load.append((rep["settings"].get("machine_load") or {}).get("load_average_before"))
        eager = rep["eager"].get("timing") or {}
        rows.append([f"`{model}`", "eager PyTorch", "-", _fmt(eager.get("latency_p50_ms")), _fmt(eager.get("latency_p95_ms")),
                     f"{eager.get('throughput', 0):,.0f}", "x1.00", "x1.00", "x1.00"])
        for fmt, res in rep["formats"].items():
            if not res["ok"]:
                rows.append([f"`{model}`", fmt, f"failed: {res['error']}", "-", "-", "-", "-", "-", "-"])
                continue
            t, v = res["timing"] or {}, res["verification"] or {}
            r = rep["ratios"].get(f"{'onnxruntime' if fmt == 'onnx' else 'torchscript'}_vs_eager", {})
            rows.append([f"`{model}`", f"{fmt} ({'onnxruntime' if fmt == 'onnx' else 'torch.jit'})", f"{v.get('max_abs', 0):.1e}",
                         _fmt(t.get("latency_p50_ms")), _fmt(t.get("latency_p95_ms")), f"{t.get('throughput', 0):,.0f}",
                         f"x{r.get('latency_p50') or 0:.2f}", f"x{r.get('latency_p95') or 0:.2f}", f"x{r.get('throughput') or 0:.2f}"])
    body = (f"Each model trained 1 epoch on digits, then `lightplug.export.export_checkpoint(ckpt, [onnx, torchscript])` (what "
            f"`lightplug export` runs): every file verified against eager PyTorch on seeded inputs of batch 1 and 7 (max abs diff "
            f"below; tolerance atol 1e-4 + rtol 1e-3), then timed for {settings['seconds']} s per backend in turns: latency at batch 1, "
            f"throughput at batch 32. torch threads: {', '.join(str(t) for t in sorted(threads))} (onnxruntime gets as many); "
            f"load average when timing started: {', '.join(str(x) for x in load)}. Ratios are speed-ups over eager (greater: faster).\n\n"
            + md_table(["model", "backend", "max abs diff", "p50 ms (b=1)", "p95 ms (b=1)", "samples/s (b=32)", "p50 vs eager",
                        "p95 vs eager", "throughput vs eager"], rows))
    return Section("Export speed: ONNX and TorchScript vs eager", body, {"reports": reports, "settings": settings})


def run_benchmark(quick: bool = False, workdir: Path | None = None, seconds: float | None = None, threads: int | None = None,
                  models: tuple[str, ...] | None = None, log: Any = print) -> Section:
    """Train, export, verify and time; ``quick``: ``mlp`` only, 0.3 s per backend (a smoke run)."""
    models = models or (("mlp",) if quick else MODELS)
    seconds = seconds or (0.3 if quick else 2.0)
    with tempfile.TemporaryDirectory(prefix="lp-export-") as tmp:
        base = Path(workdir or tmp)
        base.mkdir(parents=True, exist_ok=True)
        env = bench_env(None, base / "cache", threads)
        checkpoints = train_checkpoints(models, base, env, threads)
        reports = export_all(checkpoints, seconds, threads, log)
    return render(reports, {"seconds": seconds, "threads": threads, "models": list(models)})


def main() -> None:
    """Command line: print the section (and write JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seconds", type=float, help="timing budget per backend")
    p.add_argument("--threads", type=int, help="torch (and onnxruntime) threads; default: torch's")
    p.add_argument("--models", help="comma-separated (default: mlp,simple_cnn,tiny_resnet)")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    section = run_benchmark(a.quick, a.workdir, a.seconds, a.threads, tuple(a.models.split(",")) if a.models else None)
    print(section.markdown())
    if a.json:
        a.json.write_text(json.dumps(section.data, indent=2, default=str))


if __name__ == "__main__":
    main()
