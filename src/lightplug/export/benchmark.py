"""``lightplug benchmark``: export a checkpoint to each format and measure, per format, what users of the file
care about: its size, the largest difference to eager PyTorch, **the task metric on the run's validation split**
(computed with the torchmetrics code training logs, :mod:`lightplug.metrics`), p50/p95 latency at batch 1 and
throughput at batch 32. Writes ``benchmark.json``, ``benchmark.png`` (metric against latency, one point per
format) and the exported files into ``<run>/benchmark/``.

Example:
    >>> from lightplug.export.benchmark import benchmark_checkpoint
    >>> result = benchmark_checkpoint("outputs/.../checkpoints/best.ckpt", ["onnx", "onnx_int8"])  # doctest: +SKIP
    >>> [(row["format"], row["metric"]) for row in result["rows"]]  # doctest: +SKIP
    [('eager', 0.93), ('onnx', 0.93), ('onnx_int8', 0.925)]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .report import FORMATS, ExportError

__all__ = ["benchmark_checkpoint", "benchmark_folder", "print_benchmark", "BENCHMARK_JSON", "BENCHMARK_PNG"]

#: Files written into the benchmark folder.
BENCHMARK_JSON, BENCHMARK_PNG = "benchmark.json", "benchmark.png"


def benchmark_folder(checkpoint: str | os.PathLike[str]) -> Path:
    """``<run>/benchmark`` for ``<run>/checkpoints/X.ckpt``; else ``benchmark/`` beside the checkpoint."""
    ckpt = Path(checkpoint)
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run / "benchmark"


def benchmark_checkpoint(checkpoint: str | os.PathLike[str], formats: Iterable[str] = FORMATS, *, out_dir: str | os.PathLike[str] | None = None,
                         bench_seconds: float = 1.0, samples: int | None = None, seed: int = 0, model: str | None = None,
                         trust_code: bool | None = None, **export_options: Any) -> dict[str, Any]:
    """Export to each format (verified as :func:`lightplug.export.export_checkpoint` does), time it, and compute the
    task metric of eager PyTorch and of every verified file on the validation split.

    Args:
        checkpoint: a checkpoint written by ``lightplug train``.
        formats: any of :data:`lightplug.export.FORMATS`.
        out_dir: where the files, ``benchmark.json`` and ``benchmark.png`` go (default :func:`benchmark_folder`).
        bench_seconds: timing budget per backend.
        samples: the first ``samples`` validation samples only (default: all of them).
        export_options: passed to :func:`lightplug.export.export_checkpoint` (``quantization``, ``calibration_samples``, ...).

    Returns:
        The content of ``benchmark.json``: ``checkpoint``, ``model``, ``task``, ``data``, ``metric`` (``val/acc``, ...),
        ``higher_is_better``, ``samples``, ``rows`` (one per backend: ``format``, ``file``, ``size_bytes``,
        ``max_abs_diff``, ``metric``, ``metrics``, ``latency_p50_ms``, ``latency_p95_ms``, ``throughput``, ``ok``,
        ``error``), ``settings``, ``versions``, ``json`` and ``chart`` (the paths written).

    Raises:
        ExportError: the task has no metric here (detection), or the run's data cannot be loaded.
    """
    from ..checkpoint import read_checkpoint
    from . import export_checkpoint, load_runner, parse_formats
    from .rundata import MAIN_METRIC, load_run_data, task_metric

    fmts = parse_formats(list(formats))
    ckpt = read_checkpoint(checkpoint)
    meta = ckpt["lightplug"]
    task = str(meta.get("task") or "")
    if task not in MAIN_METRIC:
        raise ExportError(f"benchmark computes the metric of classification, regression and segmentation models; this one is {task}",
                          hint="lightplug export format=... times and verifies its files")
    data, why = load_run_data(meta)
    if data is None:
        raise ExportError(f"benchmark needs the run's validation data: {why}")
    folder = Path(out_dir) if out_dir else benchmark_folder(checkpoint)
    report = export_checkpoint(checkpoint, fmts, out_dir=folder, bench_seconds=bench_seconds, seed=seed, model=model,
                               trust_code=trust_code, run_data=data, **export_options)
    batches = list(data.validation(samples))
    n = sum(len(x) for x, _ in batches)
    metric = f"val/{MAIN_METRIC[task]}"

    from ..checkpoint import model_from_checkpoint
    from ..trust import consent
    from .verify import eager_runner

    net, _ = model_from_checkpoint(ckpt, where=f"checkpoint {checkpoint}", allowed=consent(model, trust_code))
    fixed = None if report.settings["dynamic_batch"] else int(report.input["export_batch"])
    eager_metrics = task_metric(task, meta, eager_runner(net.eval()), batches)
    et = report.eager.get("timing") or {}
    rows = [{"format": "eager", "runtime": "pytorch", "file": str(checkpoint), "size_bytes": report.eager.get("weights_bytes"),
             "max_abs_diff": 0.0, "metric": eager_metrics.get(metric), "metrics": eager_metrics, "latency_p50_ms": et.get("latency_p50_ms"),
             "latency_p95_ms": et.get("latency_p95_ms"), "throughput": et.get("throughput"), "ok": True, "error": None}]
    from .report import RUNTIMES

    for fmt, res in report.formats.items():
        values: dict[str, float] = {}
        if res.ok and res.path:
            values = task_metric(task, meta, load_runner(fmt, res.path, report.settings["torch_threads"]), batches, fixed)
        t, v = res.timing or {}, res.verification or {}
        rows.append({"format": fmt, "runtime": RUNTIMES[fmt], "file": res.path, "size_bytes": res.size_bytes, "max_abs_diff": v.get("max_abs"),
                     "metric": values.get(metric), "metrics": values, "latency_p50_ms": t.get("latency_p50_ms"),
                     "latency_p95_ms": t.get("latency_p95_ms"), "throughput": t.get("throughput"), "ok": res.ok, "error": res.error})
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint), "model": meta["plugin"]["name"], "task": task, "data": {"name": data.name, "split": "val"},
        "metric": metric, "higher_is_better": MAIN_METRIC[task] != "mse", "samples": n, "rows": rows,
        "settings": {**report.settings, "samples": samples}, "versions": report.versions, "export_report": report.report_path,
    }
    folder.mkdir(parents=True, exist_ok=True)
    from .chart import metric_latency_chart

    result["json"], result["chart"] = str(folder / BENCHMARK_JSON), str(folder / BENCHMARK_PNG)
    metric_latency_chart(result, folder / BENCHMARK_PNG)
    (folder / BENCHMARK_JSON).write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_benchmark(result: dict[str, Any], console: Any = None) -> None:
    """A Rich table of ``result``: one row per backend, then where the files are."""
    from rich.console import Console
    from rich.table import Table

    from .report import _num, _sci, _size

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 160))
    bs = result["settings"].get("throughput_batch", 32)
    table = Table(title=f"benchmark of {result['model']} on {result['data']['name']} ({result['samples']} validation samples)",
                  title_justify="left")
    for col in ("FORMAT", "SIZE", "MAX ABS DIFF", result["metric"].upper(), "P50 B1 (ms)", "P95 B1 (ms)", f"SAMPLES/S B{bs}", "STATUS"):
        table.add_column(col, justify="left" if col in ("FORMAT", "STATUS") else "right")
    for row in result["rows"]:
        status = "[dim]reference[/]" if row["format"] == "eager" else "[green]ok[/]" if row["ok"] else "[red]failed[/]"
        table.add_row(row["format"], _size(row["size_bytes"]), "-" if row["format"] == "eager" else _sci(row["max_abs_diff"]),
                      "-" if row["metric"] is None else f"{row['metric']:.4f}", _num(row["latency_p50_ms"], 3), _num(row["latency_p95_ms"], 3),
                      _num(row["throughput"], 0), status)
    console.print(table)
    for row in result["rows"]:
        if not row["ok"]:
            console.print(f"[red]{row['format']} failed[/]: {(row['error'] or '').removeprefix(row['format'] + ': ')}", highlight=False)
    console.print(f"wrote {result['json']} and {result['chart']}", highlight=False)
