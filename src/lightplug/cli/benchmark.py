"""``lightplug benchmark ckpt=PATH|run=RUN_DIR [format=F[,F...]] [key=value ...]``: export a checkpoint to each
format and report, per format, the file size, the largest difference to eager PyTorch, the task metric on the
run's validation split, p50/p95 latency at batch 1 and throughput at batch 32 (a table, ``benchmark.json`` and
``benchmark.png`` in ``<run>/benchmark/``).

Exit codes: 0 every format was written, verified and measured; 2 bad arguments (one line, before torch is
imported), an unreadable checkpoint or data, or a format that failed (its row says why; the others are kept).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._args import parse_key_values
from .export import _bool, _choice, _formats, _fraction, _positive, _seed

__all__ = ["main", "parse_args", "USAGE"]

USAGE = """usage: lightplug benchmark ckpt=PATH|run=RUN_DIR [format=F[,F...]] [key=value ...]

Export a checkpoint to each format (verified as `lightplug export` does) and measure each file: size, max
difference to eager PyTorch, the task metric on the run's validation split (val/acc, val/mse, val/miou, with
the torchmetrics code of training), p50/p95 latency at batch 1 and throughput at batch 32. Writes a table,
benchmark.json and benchmark.png (metric against latency) into <run>/benchmark/.

keys:
  ckpt=PATH            the checkpoint (best.ckpt or last.ckpt of a run)                  required (or run=)
  run=RUN_DIR          a run folder: its checkpoints/best.ckpt (ckpt=last: last.ckpt)
  format=F[,F]         onnx, onnx_int8, onnx_fp16, openvino, torchscript, pt2 or all    default: all
  output=DIR           the folder for the files, benchmark.json and benchmark.png       default: <run>/benchmark
  samples=N            the first N validation samples only                              default: all
  bench_seconds=X      timing budget per backend                                        default: 1.0
  seed=N               seed of the compared and timed inputs                            default: 0
  quantization=Q calibration_samples=N calibration_method=M int8_min_agreement=X   as in `lightplug export --help`
  model=CODE trust_code=BOOL                                                        as in `lightplug export --help`

example: lightplug benchmark run=outputs/2026-01-01/12-00-00 format=onnx,onnx_int8,openvino"""

def _two_or_more(text: str) -> int:
    value = int(text)
    if value < 2:
        raise ValueError("must be at least 2")
    return value


_ALIASES = {"formats": "format", "checkpoint": "ckpt", "out": "output", "out_dir": "output"}
_KEYS: dict[str, Callable[[str], Any]] = {
    "ckpt": str, "run": str, "format": _formats, "output": str, "samples": _two_or_more, "bench_seconds": _positive(float), "seed": _seed,
    "model": str, "trust_code": _bool, "quantization": _choice("static", "dynamic"), "calibration_samples": _positive(int),
    "calibration_method": _choice("minmax", "entropy", "percentile"), "int8_min_agreement": _fraction}
_RULES = {"format": "onnx, onnx_int8, onnx_fp16, openvino, torchscript, pt2 or all", "samples": "a whole number >= 2 (regression's r2 needs two)",
          "bench_seconds": "a number > 0", "seed": "an integer from 0 to 2**32-1", "trust_code": "true or false",
          "quantization": "static or dynamic", "calibration_samples": "a whole number > 0",
          "calibration_method": "minmax, entropy or percentile", "int8_min_agreement": "a number from 0 to 1"}


def parse_args(argv: list[str]) -> dict[str, Any]:
    """``key=value`` arguments -> typed options with defaults.

    Raises:
        ConfigError: every problem in one line (unknown key, bad value, no checkpoint), before torch is imported.
    """
    from ..export.report import FORMATS

    opts: dict[str, Any] = {"format": list(FORMATS), "output": None, "samples": None, "bench_seconds": 1.0, "seed": 0}
    values, problems = parse_key_values(argv, _KEYS, _RULES, _ALIASES, "benchmark")
    opts.update(values)
    if not opts.get("ckpt") and not opts.get("run"):
        problems.append("ckpt: missing value (give ckpt=PATH or run=RUN_DIR)")
    if problems:
        raise ConfigError("; ".join(problems))
    from ..evaluation.options import resolve_checkpoint

    if opts["output"] is not None and Path(opts["output"]).expanduser().exists() and not Path(opts["output"]).expanduser().is_dir():
        raise ConfigError(f"output={opts['output']}: is a file, not a folder", hint="give a folder for the files, benchmark.json and benchmark.png")
    opts["ckpt"] = str(resolve_checkpoint({"run": opts.pop("run", None) or "", "ckpt": opts.get("ckpt") or ""}, "benchmark"))
    return opts


def main(argv: list[str]) -> int:
    """Run ``lightplug benchmark`` with ``argv``; returns the exit code."""
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return 0
    opts = parse_args(argv)
    from ..export import ExportError
    from ..export.benchmark import benchmark_checkpoint, print_benchmark

    extra = {k: opts[k] for k in ("quantization", "calibration_samples", "calibration_method", "int8_min_agreement") if k in opts}
    result = benchmark_checkpoint(opts["ckpt"], opts["format"], out_dir=opts["output"], bench_seconds=opts["bench_seconds"],
                                  samples=opts["samples"], seed=opts["seed"], model=opts.get("model") or None,
                                  trust_code=opts.get("trust_code"), **extra)
    print_benchmark(result)
    failed = [r for r in result["rows"] if not r["ok"]]
    if failed:
        raise ExportError(f"{len(failed)} of {len(result['rows']) - 1} formats failed: " + ", ".join(r["format"] for r in failed))
    return 0
