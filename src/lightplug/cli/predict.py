"""``lightplug predict ckpt=PATH|run=RUN_DIR|model=FILE input=FILE_OR_DIR [topk=3] [output=preds.csv] [batch_size=64]``:
predictions for image files, ``.npy`` arrays and CSV rows, prepared as the training data was. model=FILE takes
every file `lightplug export` writes: .onnx (fp32, int8, fp16; run through onnxruntime without importing torch
or lightning), OpenVINO .xml, torch.export .pt2 and TorchScript .pt."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..evaluation.options import cli_consent, output_file, parse_options, parse_value, resolve_checkpoint

__all__ = ["main"]

_OPTIONS = {
    "ckpt": "a checkpoint file (or best|last with run=)",
    "run": "a run folder: its checkpoints/best.ckpt (or ckpt=last)",
    "model": "a file written by `lightplug export` (.onnx, .xml, .pt2, .pt) or a checkpoint file; with ckpt=/run=: the import path (pkg.mod:Name) "
             "or local plugin NAME the checkpoint was trained with, naming it allows that code",
    "trust_code": "load whatever code the checkpoint names (true|false; default $LIGHTPLUG_TRUST_CODE)",
    "input": "an image, .npy or .csv file, or a folder of them",
    "topk": "labels per sample (classification, default 3)",
    "output": "the CSV file to write (default preds.csv)",
    "batch_size": "samples per forward pass (default 64)",
    "progress": "show a progress bar (true|false)",
    "conf": "detection: keep boxes scoring at least this (default 0.25)",
    "iou": "detection: NMS IoU threshold (default: the model's detection.iou)",
    "max_det": "detection: boxes per image (default: the model's detection.max_det)",
    "draw": "detection: also write each image with its boxes drawn (true|false)",
}

_HELP = (__doc__ or "").replace("``", "") + "\n\noptions:\n" + "\n".join(f"  {k}=...  {v}" for k, v in _OPTIONS.items()) + (
    "\n\nUnreadable files are reported on stderr and skipped; the exit code is 0 when at least one sample got a prediction.\n"
    "example: lightplug predict run=outputs/2026-01-01/12-00-00 input=my_digits/ topk=2"
)


def _positive_int(opts: dict[str, str], key: str, default: int) -> int:
    value = parse_value(opts[key]) if key in opts else default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={opts.get(key)}: expected a whole number of at least 1 ({_OPTIONS[key]})")
    return value


def _is_model_file(text: str) -> bool:
    """``model=`` names a file (ONNX or checkpoint) rather than the code a checkpoint was trained with."""
    return text.endswith((".onnx", ".xml", ".pt2", ".ckpt", ".pt", ".pth")) or "/" in text or os.sep in text or Path(text).is_file()


def _predictor(opts: dict[str, str]) -> Any:
    model = opts.get("model")
    names_code = bool(model) and not _is_model_file(str(model))
    if model and not names_code and (opts.get("ckpt") or opts.get("run")):
        raise ConfigError("give either model=FILE.onnx or ckpt=/run=, not both")
    if names_code and not (opts.get("ckpt") or opts.get("run")):
        raise ConfigError(f"model={model}: no such exported or checkpoint file",
                          hint=f"to name the code a checkpoint was trained with, give the checkpoint too: ckpt=PATH model={model}")
    if model and not names_code and model.endswith((".xml", ".pt2")):
        from ..evaluation.exported import OpenVinoPredictor, ProgramPredictor

        return OpenVinoPredictor(model) if model.endswith(".xml") else ProgramPredictor(model, "pt2")
    if model and not names_code and model.endswith((".pt", ".pth")):
        from ..evaluation.exported import ProgramPredictor, is_torchscript_export

        if is_torchscript_export(model):  # a TorchScript file lightplug exported, not a checkpoint
            return ProgramPredictor(model, "torchscript")
    if model and not names_code and not model.endswith((".ckpt", ".pt", ".pth")):
        from ..evaluation.inference import OnnxPredictor

        return OnnxPredictor(model)  # its metadata names no code: predict reads preprocessing, labels and output layout only
    path = Path(model) if model and not names_code else resolve_checkpoint(opts, "predict")
    allowed = cli_consent({**opts, "model": str(model) if names_code else ""})

    from ..evaluation.inference import TorchPredictor

    return TorchPredictor(path, allowed)


def _print_head(rows: list[list[Any]], total: int, output: Path, detection: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    columns, body = rows[0], rows[1:]
    title = f"first {len(body)} boxes" if detection else (f"first {len(body)} of {total} predictions" if total > len(body) else None)
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in body:
        table.add_row(*[str(c) for c in row])
    console.print(table)
    what = f"the boxes of {total} images" if detection else f"{total} predictions"
    console.print(f"wrote {what} to {output}", highlight=False)


def _refuse_overwrites(output: Path, files: list[Path], opts: dict[str, Any]) -> None:
    """The predictions never replace an input, the model or anything but a CSV file (``output=m.onnx``,
    ``output=in.csv`` with ``input=in.csv``, ``/dev/null``).

    Raises:
        ConfigError: naming ``output`` and what it would have replaced.
    """
    text = opts.get("output", str(output))
    if output.suffix.lower() != ".csv":
        raise ConfigError(f"output={text}: predictions are written as CSV, not {output.name}",
                          hint=f"give a name ending in .csv, e.g. output={output.with_suffix('.csv')}")
    if output.exists() and not output.is_file():
        raise ConfigError(f"output={text}: not a regular file; predict writes a CSV file")
    target = output.resolve()
    named = [Path(opts[k]).expanduser() for k in ("model", "ckpt") if opts.get(k)]
    if any(f.resolve() == target for f in [*files, *named]):
        raise ConfigError(f"output={text}: is one of the files it reads; the predictions would replace it", hint="choose another output=")


def main(args: list[str]) -> int:
    """Run ``lightplug predict`` with ``args`` (everything after ``predict``); returns the exit code."""
    if any(a in ("-h", "--help") for a in args):
        print(_HELP)
        return 0
    opts = parse_options(args, _OPTIONS, "lightplug predict")
    if not opts.get("input"):
        raise ConfigError("no input given", hint="add input=FILE_OR_DIR (images, .npy or .csv files)")
    from ..evaluation.inputs import collect_files

    files = collect_files(opts["input"])  # before the model is loaded: a typo or an empty folder costs no wait
    topk, batch_size = _positive_int(opts, "topk", 3), _positive_int(opts, "batch_size", 64)
    given = _detection_values(opts)
    output = output_file("output", opts["output"], "preds.csv") if "output" in opts else Path("preds.csv")
    _refuse_overwrites(output, files, opts)
    progress = parse_value(opts.get("progress", "true")) is not False and sys.stderr.isatty()
    predictor = _predictor(opts)

    from ..evaluation.inference import predict_files

    settings, draw = _detection_options(given, predictor.meta)
    count, problems, head = predict_files(predictor, files, output, topk=topk, batch_size=batch_size, progress=progress,
                                          settings=settings, draw=draw)
    if count == 0:  # one line: the first reason, and how many more
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(f"no prediction for input={opts['input']}: {problems[0] if problems else 'no sample'}{more}")
    for line in problems:
        print(f"skipped {line}", file=sys.stderr)
    labels = sum(c.startswith("label_") for c in head[0])
    if "topk" in opts and settings is None and labels and topk > labels:
        print(f"note: topk={topk}, but the model has {labels} classes: wrote all {labels}", file=sys.stderr)
    _print_head(head, count, output, detection=settings is not None)
    if draw:
        print(f"drew the boxes into {output.with_name(output.stem + '_boxes')}")
    return 0


_DETECTION_KEYS = ("conf", "iou", "max_det", "draw")


def _detection_values(opts: dict[str, str]) -> dict[str, Any]:
    """The detection options given on the command line, type- and range-checked (no model needed)."""
    problems: list[str] = []
    given: dict[str, Any] = {}
    for key in (k for k in _DETECTION_KEYS if k in opts):
        value = parse_value(opts[key])
        if key == "draw":
            ok = isinstance(value, bool)
            rule = "true or false"
        elif key == "max_det":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            rule = "a whole number of at least 1"
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
            rule = "a number from 0 to 1"
        if ok:
            given[key] = value
        else:
            problems.append(f"{key}={opts[key]}: expected {rule}" + ("" if key == "draw" else f" ({_OPTIONS[key]})"))
    if problems:
        raise ConfigError("invalid arguments of lightplug predict", problems=problems)
    return given


def _detection_options(given: dict[str, Any], meta: dict[str, Any]) -> tuple[Any, bool]:
    """The settings of a detection model: ``given`` over conf 0.25 and the run's own iou and max_det."""
    if meta.get("task") != "detection":
        if given:
            raise ConfigError(f"{next(iter(given))}=: only for detection models (this model's task is {meta.get('task')})")
        return None, False
    from ..plugin import DetectionSettings

    trained: dict[str, Any] = dict((meta.get("config") or {}).get("detection") or meta.get("detection") or {})
    settings = DetectionSettings(conf=float(given.get("conf", 0.25)), iou=float(given.get("iou", trained.get("iou", 0.6))),
                                 max_det=int(given.get("max_det", trained.get("max_det", 100))))
    return settings, bool(given.get("draw", False))
