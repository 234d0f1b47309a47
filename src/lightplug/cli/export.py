"""``lightplug export ckpt=PATH format=F[,F...] [key=value ...]``: export a checkpoint (onnx, onnx_int8, onnx_fp16, openvino,
torchscript, pt2), verify the files against eager PyTorch, time them, print a table and write ``export_report.json``
next to them.

Exit codes: 0 every format was written and verified; 2 bad arguments, an unreadable checkpoint, or a
format that failed (one ``error:`` line per failed format; the formats that passed are kept).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._args import parse_key_values

__all__ = ["main", "parse_args", "USAGE", "usage"]

USAGE = """usage: lightplug export ckpt=PATH|run=RUN_DIR [format=F[,F...]] [key=value ...]

Export a checkpoint written by `lightplug train`. Every file is verified against eager PyTorch on seeded
random inputs, batch sizes 1 and 7 (int8: on the run's validation samples) and timed against it
(latency at batch 1, throughput at batch 32).

formats:
  onnx                 fp32 ONNX, run with onnxruntime (CPU)                            -> <stem>.onnx
  onnx_int8            int8 ONNX: static quantization calibrated on training samples      -> <stem>.int8.onnx
                       (dynamic without the run's data); checked by top-1/pixel agreement
  onnx_fp16            fp16 ONNX (float32 input/output), checked on onnxruntime's CPU       -> <stem>.fp16.onnx
  openvino             OpenVINO IR converted from the ONNX file, run by OpenVINO (CPU)     -> <stem>.xml + .bin
  torchscript          torch.jit.trace (deprecated in PyTorch; kept for compatibility)     -> <stem>.pt
  pt2                  torch.export ExportedProgram (torch.export.save)                    -> <stem>.pt2
not written here:
{not_written}

keys:
  ckpt=PATH            the checkpoint (best.ckpt or last.ckpt of a run)                  required (or run=)
  run=RUN_DIR          a run folder: its checkpoints/best.ckpt (ckpt=last: last.ckpt)
  format=F[,F]         one or more of the formats above, or all                         default: onnx
  output=FILE          the file to write, named for its format (several formats:     default: next to ckpt
                       its suffix is replaced); never the checkpoint itself
  opset=N              ONNX opset (7..25)                                               default: 17
  dynamic_batch=BOOL   a dynamic batch axis (checked with batch sizes 1 and 7)          default: true
  atol=X rtol=X        verification tolerance: |exported - eager| <= atol + rtol*|eager| default: 1e-4, 1e-3
  benchmark=BOOL       time the files against eager PyTorch                             default: true
  bench_seconds=X      timing budget per backend                                        default: 1.0
  seed=N               seed of the compared and timed inputs                            default: 0
  quantization=Q       onnx_int8: static (calibrated) or dynamic                        default: static
  calibration_samples=N  onnx_int8: training samples to calibrate on                    default: 256
  calibration_method=M onnx_int8: minmax, entropy or percentile                         default: minmax
  int8_min_agreement=X onnx_int8 passes when it gives eager's answer this often        default: 0.97
  model=CODE           the import path (pkg.mod:Name) or local plugin NAME the checkpoint was trained with:
                       naming it allows lightplug to load that code (installed plugins need nothing)
  trust_code=BOOL      load whatever code the checkpoint names                          default: $LIGHTPLUG_TRUST_CODE

example: lightplug export ckpt=outputs/2026-01-01/12-00-00/checkpoints/best.ckpt format=onnx,onnx_int8,pt2"""


def usage() -> str:
    """The help text, with one line per format this package does not write."""
    from ..export.report import NOT_WRITTEN

    return USAGE.format(not_written="\n".join(f"  {name:<20} {why}" for name, why in NOT_WRITTEN.items()))

_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
_ALIASES = {"formats": "format", "checkpoint": "ckpt", "out": "output"}


def _bool(text: str) -> bool:
    if text.lower() not in _BOOLS:
        raise ValueError("not a boolean (true or false)")
    return _BOOLS[text.lower()]


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not value > 0:  # NaN too
            raise ValueError("must be greater than 0")
        if value == float("inf"):
            raise ValueError("must be finite")
        return value

    return parse


def _opset(text: str) -> int:
    value = int(text)
    if not 7 <= value <= 25:
        raise ValueError("outside the supported range 7..25")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 2**32 - 1:
        raise ValueError("outside 0..4294967295")
    return value


def _formats(text: str) -> list[str]:
    from ..export.report import FORMATS, NOT_WRITTEN

    names = [f.strip().strip("'\"").lower() for f in text.strip("[] ").split(",") if f.strip()]
    if names == ["all"]:
        return list(FORMATS)
    bad = [f for f in names if f not in FORMATS]
    if bad and bad[0] in NOT_WRITTEN:
        raise ValueError(f"{bad[0]} is not written by lightplug: it {NOT_WRITTEN[bad[0]]}")
    if bad or not names:
        raise ValueError(f"unknown export format {bad[0]!r}" if bad else "no format given")
    return names


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError("outside 0..1")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"unknown value {text!r}")
        return text.lower()

    return parse


_KEYS: dict[str, Callable[[str], Any]] = {"ckpt": str, "run": str, "format": _formats, "output": str, "opset": _opset, "dynamic_batch": _bool,
                                          "atol": _positive(float), "rtol": _positive(float), "benchmark": _bool,
                                          "bench_seconds": _positive(float), "seed": _seed, "model": str, "trust_code": _bool,
                                          "quantization": _choice("static", "dynamic"), "calibration_samples": _positive(int),
                                          "calibration_method": _choice("minmax", "entropy", "percentile"), "int8_min_agreement": _fraction}
_RULES = {"format": "choose from onnx, onnx_int8, onnx_fp16, openvino, torchscript, pt2 or all; several: format=onnx,pt2",
          "quantization": "static or dynamic", "calibration_samples": "a whole number > 0", "calibration_method": "minmax, entropy or percentile",
          "int8_min_agreement": "a number from 0 to 1", "opset": "an integer from 7 to 25",
          "atol": "a number > 0", "rtol": "a number > 0", "bench_seconds": "a number > 0", "seed": "an integer from 0 to 2**32-1",
          "dynamic_batch": "true or false", "benchmark": "true or false", "trust_code": "true or false"}


def parse_args(argv: list[str]) -> dict[str, Any]:
    """``key=value`` arguments -> typed options, defaults filled in.

    Raises:
        ConfigError: every problem at once (unknown key, bad value, missing ``ckpt``), one line each.
    """
    opts: dict[str, Any] = {"format": ["onnx"], "output": None, "opset": 17, "dynamic_batch": True, "atol": 1e-4, "rtol": 1e-3,
                            "benchmark": True, "bench_seconds": 1.0, "seed": 0, "quantization": "static", "calibration_samples": 256,
                            "calibration_method": "minmax", "int8_min_agreement": 0.97}
    values, problems = parse_key_values(argv, _KEYS, _RULES, _ALIASES, "export")
    opts.update(values)
    if not opts.get("ckpt") and not opts.get("run"):
        problems.append("ckpt: missing value (give ckpt=PATH of a best.ckpt or last.ckpt written by `lightplug train`, or run=RUN_DIR)")
    if problems:
        raise ConfigError(problems[0], problems=problems)
    from ..evaluation.options import output_file, resolve_checkpoint

    if opts["output"] is not None:
        output_file("output", opts["output"], "model.onnx")

    # ckpt=PATH, or run=RUN_DIR [ckpt=best|last] as test and predict take them; a missing file is refused before torch loads
    opts["ckpt"] = str(resolve_checkpoint({"run": opts.pop("run", None) or "", "ckpt": opts.get("ckpt") or ""}, "export"))
    if opts["output"] is not None:
        _refuse_overwrites(opts["output"], opts["ckpt"], opts["format"])
    return opts


def _refuse_overwrites(output: str, ckpt: str, formats: list[str]) -> None:
    """``output=`` never replaces what it should not: the checkpoint read, a run's own files (``config.json``,
    ``last.ckpt``, ...: a file name must end in the format's suffix) or anything that is not a regular file
    (``/dev/null``).

    Raises:
        ConfigError: naming ``output`` and the file it would have replaced.
    """
    from ..export import target_paths
    from ..export.report import SUFFIXES

    source = Path(ckpt).resolve() if not ckpt.startswith("store:") else None
    for fmt, path in target_paths(ckpt, formats, None, output).items():
        ending = SUFFIXES[fmt].rsplit(".", 1)[-1]
        if path.suffix.lower() != f".{ending}":
            raise ConfigError(f"output={output}: {fmt} files are written as *.{ending}, not {path.name}",
                              hint=f"give a name ending in .{ending}, e.g. output={path.with_suffix('.' + ending)}")
        for file in (path, path.with_suffix(".bin")) if fmt == "openvino" else (path,):
            if file.exists() and not file.is_file():
                raise ConfigError(f"output={output}: {file} is not a regular file; export writes only regular files")
            if source is not None and file.exists() and file.resolve() == source:
                raise ConfigError(f"output={output}: {file} is the checkpoint being exported", hint="choose another output=")


def main(argv: list[str]) -> int:
    """Run ``lightplug export`` with ``argv`` (everything after ``export``); returns the exit code."""
    if any(a in ("-h", "--help", "help") for a in argv):
        print(usage())
        return 0
    opts = parse_args(argv)
    from ..export import ExportError, export_checkpoint

    report = export_checkpoint(opts["ckpt"], opts["format"], output=opts["output"], opset=opts["opset"], dynamic_batch=opts["dynamic_batch"],
                               atol=opts["atol"], rtol=opts["rtol"], benchmark=opts["benchmark"], bench_seconds=opts["bench_seconds"],
                               seed=opts["seed"], model=opts.get("model") or None, trust_code=opts.get("trust_code"),
                               quantization=opts["quantization"], calibration_samples=opts["calibration_samples"],
                               calibration_method=opts["calibration_method"], int8_min_agreement=opts["int8_min_agreement"])
    report.print(failures=False)
    failed = [r for r in report.formats.values() if not r.ok]
    if failed:
        lines = [f"export to {r.format} failed: {(r.error or '').removeprefix(r.format + ': ')}" for r in failed]
        raise ExportError("\n".join(lines) if len(lines) == 1 else "\n  ".join([f"{len(lines)} formats failed:", *lines]))
    return 0
