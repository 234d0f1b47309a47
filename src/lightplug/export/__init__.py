"""Export a lightplug checkpoint to ONNX and TorchScript: write, verify against eager PyTorch, benchmark.

Nothing is reported done before it is verified: the ONNX file passes ``onnx.checker.check_model``, and
the outputs of onnxruntime (``CPUExecutionProvider``) and of the TorchScript module reloaded from disk
match eager PyTorch on seeded random inputs (batch sizes 1 and 7 when the batch axis is dynamic) within
``atol``/``rtol``. Each file is written under a temporary name beside its target and renamed only once
verified. A format that fails is reported with one line naming the format and the cause, leaves no file of
its own (a file an earlier export wrote and verified stays as it was), and the other formats go on. See :mod:`lightplug.export.exporters` for the metadata
stored in the files and ``docs/export.md`` for the figures.

Example:
    >>> from lightplug.export import export_checkpoint
    >>> report = export_checkpoint("outputs/.../checkpoints/best.ckpt", ["onnx", "torchscript"])  # doctest: +SKIP
    >>> report.ok, report.formats["onnx"].verification["max_abs"]  # doctest: +SKIP
    (True, 4.76e-07)
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from ._util import first_line
from .report import FORMATS, REPORT_NAME, SUFFIXES, ExportError, ExportReport, FormatResult

__all__ = ["export_checkpoint", "ExportReport", "FormatResult", "ExportError", "FORMATS", "parse_formats", "target_paths"]

#: Batch sizes compared when the batch axis is dynamic.
DYNAMIC_BATCHES = (1, 7)


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    """``"onnx,torchscript"``, ``"[onnx, torchscript]"`` or a list -> the formats in a fixed order.

    Raises:
        ExportError: an unknown format, or none.
    """
    items = formats.strip("[] ").split(",") if isinstance(formats, str) else list(formats)
    names = [str(f).strip().strip("'\"").lower() for f in items if str(f).strip()]
    bad = [f for f in names if f not in FORMATS]
    if bad:
        raise ExportError(f"format={bad[0]}: unknown export format (choose from {', '.join(FORMATS)}; several: format=onnx,torchscript)")
    if not names:
        raise ExportError(f"no export format given (choose from {', '.join(FORMATS)})")
    return [f for f in FORMATS if f in names]


def target_paths(checkpoint: str | os.PathLike[str], formats: list[str], out_dir: str | os.PathLike[str] | None = None,
                 output: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Where each format is written.

    Default: ``<out_dir or the checkpoint's folder>/<checkpoint stem>.onnx`` / ``.pt``. ``output`` is the
    file itself for a single format; with several formats its suffix is replaced by each format's; an
    existing folder (or a path ending in ``/``) gets the default file names.
    """
    ckpt = Path(checkpoint)
    if str(checkpoint).startswith("store:"):  # store:NAME/vN -> ./NAME-vN.onnx in the current folder
        from ..store import resolve

        entry = resolve(str(checkpoint))
        ckpt = Path.cwd() / f"{entry.name}-{entry.version}.ckpt"
    if output:
        out = Path(output)
        if out.is_dir() or str(output).endswith(("/", os.sep)):
            return {f: out / f"{ckpt.stem}{SUFFIXES[f]}" for f in formats}
        if len(formats) == 1:
            return {formats[0]: out}
        base = out.with_suffix("") if out.suffix in SUFFIXES.values() else out
        return {f: base.with_name(base.name + SUFFIXES[f]) for f in formats}
    folder = Path(out_dir) if out_dir else ckpt.parent
    return {f: folder / f"{ckpt.stem}{SUFFIXES[f]}" for f in formats}


def _source_bytes(checkpoint: str | os.PathLike[str]) -> int:
    """Size of the checkpoint file, or of the weights of a ``store:`` entry."""
    if str(checkpoint).startswith("store:"):
        from ..store import resolve

        return resolve(str(checkpoint)).weights_path.stat().st_size
    return Path(checkpoint).stat().st_size


def _versions() -> dict[str, Any]:
    import sys

    import torch

    from .. import __version__

    out: dict[str, Any] = {"lightplug": __version__, "torch": torch.__version__, "python": sys.version.split()[0],
                           "platform": platform.platform(), "processor": platform.processor() or platform.machine()}
    for dist in ("onnx", "onnxruntime"):  # read from metadata: nothing is imported for a TorchScript-only export
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _load_average() -> float | None:
    """The 1-minute load average (``None`` where the OS does not tell)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _export_one(fmt: str, net: Any, example: Any, path: Path, inputs: list[tuple[dict[str, Any], Any]], reference: list[Any],
                meta: dict[str, Any], opset: int, dynamic_batch: bool, atol: float, rtol: float) -> tuple[FormatResult, Any]:
    """Write one format to a temporary file beside ``path``, verify it, and only then rename it to ``path``:
    a failed or refused export never removes or replaces a file an earlier export wrote and verified.
    Every failure becomes ``FormatResult.error`` (one line)."""
    import torch

    from . import exporters, verify

    res, start, runner = FormatResult(fmt), time.perf_counter(), None
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{os.urandom(4).hex()}.tmp{path.suffix}")
    try:
        try:
            if fmt == "onnx":
                import onnx  # noqa: F401 - fail early and clearly when the extra is missing
                import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise ExportError(f"onnx: needs the packages onnx and onnxruntime ({exc.name or 'onnx'} is missing; pip install 'lightplug[export]')") from exc
        check_inputs = [x for _, x in inputs]
        if fmt == "onnx":
            notes = exporters.write_onnx(net, example, tmp, opset, dynamic_batch, meta)
            extra = verify.check_onnx_file(str(tmp), dynamic_batch)
            runner = verify.onnx_runner(str(tmp), torch.get_num_threads())
        else:
            notes = exporters.write_torchscript(net, example, tmp, check_inputs, {**meta, "opset": None})
            extra = ["torch.jit.trace sanity check on every compared input passed", "reloaded with torch.jit.load"]
            runner = verify.torchscript_runner(str(tmp))
        res.warnings = notes
        try:
            res.verification = verify.verify(fmt, reference, runner, inputs, atol, rtol)
        except ExportError as exc:
            hint = exporters.tracer_hint(notes)
            raise ExportError(f"{exc}; the tracer warned: {hint}" if hint else str(exc)) from exc
        res.verification["checks"] = extra + [f"outputs match eager PyTorch on {len(inputs)} inputs"]
        os.replace(tmp, path)  # verified: only now does it take the place of an earlier file
        res.ok, res.path, res.size_bytes = True, str(path), path.stat().st_size
    except ExportError as exc:
        res.error, runner = str(exc), None
    except Exception as exc:  # noqa: BLE001 - a failing format must never stop the others
        res.error, runner = f"{fmt}: {first_line(exc)}", None
    finally:
        tmp.unlink(missing_ok=True)  # a file that is not verified is not left behind
    if not res.ok and path.is_file():
        res.error = f"{res.error}; the earlier {path} is kept"
    res.seconds = round(time.perf_counter() - start, 3)
    return res, runner


def export_checkpoint(checkpoint: str | os.PathLike[str], formats: str | Iterable[str] = ("onnx",), *,
                      out_dir: str | os.PathLike[str] | None = None, output: str | os.PathLike[str] | None = None,
                      opset: int = 17, dynamic_batch: bool = True, atol: float = 1e-4, rtol: float = 1e-3,
                      benchmark: bool = True, bench_seconds: float = 1.0, throughput_batch: int = 32, seed: int = 0,
                      model: str | None = None, trust_code: bool | None = None) -> ExportReport:
    """Export a checkpoint to each format, verify every file, time it against eager PyTorch and write
    ``export_report.json`` next to the files.

    Args:
        checkpoint: a ``best.ckpt``/``last.ckpt`` written by ``lightplug train``.
        formats: ``onnx``, ``torchscript`` or both (list or comma-separated).
        out_dir: folder for the files (default: the checkpoint's folder); see :func:`target_paths`.
        output: the file to write (one format) or its base name (several).
        opset: ONNX opset.
        dynamic_batch: export with a dynamic batch axis (checked with batch sizes 1 and 7).
        atol, rtol: verification tolerance (``|exported - eager| <= atol + rtol * |eager|``).
        benchmark: time eager PyTorch and every verified file.
        bench_seconds: timing budget per backend.
        throughput_batch: batch size for throughput (a static export uses its fixed batch).
        seed: seed of the compared and timed inputs.
        model, trust_code: consent to load the code of a model trained from an import path (``model="pkg.mod:Name"``)
            or a local plugin (``model="NAME"``), see :mod:`lightplug.trust`; installed plugins need nothing.

    Returns:
        The report; a failed format has ``ok=False`` and a one-line ``error`` (nothing is raised for it).

    Raises:
        ExportError: bad arguments, or an input cannot be built for this model.
        CheckpointError: the checkpoint is missing, damaged or its plugin cannot be loaded.
    """
    import torch

    from ..checkpoint import model_from_checkpoint, read_checkpoint
    from ..trust import consent
    from . import bench, exporters, verify

    fmts = parse_formats(formats)
    paths = target_paths(checkpoint, fmts, out_dir, output)
    ckpt = read_checkpoint(checkpoint)
    net, plugin = model_from_checkpoint(ckpt, where=f"checkpoint {checkpoint}", allowed=consent(model, trust_code))
    meta = ckpt["lightplug"]
    overrides = getattr(type(plugin), "overrides", None) if plugin is not None else None
    if meta.get("task") == "detection" and not (overrides and overrides("export_module")):
        raise ExportError(f"model {meta['plugin']['name']!r} is a detector without an export_module hook, so lightplug does not know which "
                          "of its outputs to export", hint="give the plugin export_module(net) returning a module with one raw output "
                          "tensor (see docs/detection.md), or predict with the checkpoint")
    if overrides and overrides("export_module"):  # e.g. a detector's raw head output only
        try:
            net = plugin.export_module(net).eval()
        except ExportError:
            raise
        except Exception as exc:  # noqa: BLE001 - plugin code may raise anything
            raise ExportError(f"the export_module hook of model {meta['plugin']['name']!r} failed: {first_line(exc)}") from exc
    example, source = verify.example_input(meta, plugin, batch=2 if dynamic_batch else 1)
    if not dynamic_batch:
        example = example[:1]
    inputs = verify.random_inputs(example, DYNAMIC_BATCHES if dynamic_batch else (1,), per_batch=3, seed=seed)
    name = meta["plugin"]["name"]
    try:
        to_export = exporters.prepare(net, example)
        eager = verify.eager_runner(net)
        reference = [eager(x) for _, x in inputs]
        inp, outs = exporters.describe_io(to_export, example, dynamic_batch)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - plugin code may raise anything
        raise ExportError(f"model {name!r} fails on its example input {list(example.shape)}: {first_line(exc)}") from exc
    file_meta = exporters.export_meta(meta, inp, outs, opset, dynamic_batch, str(checkpoint))
    if getattr(plugin, "raw_output_format", None):  # predict post-processes this layout without torch
        file_meta["raw_output_format"] = plugin.raw_output_format
        file_meta["detection"] = dict((meta.get("config") or {}).get("detection") or {})
    report = ExportReport(
        checkpoint=str(checkpoint), plugin=dict(meta["plugin"]), task=meta.get("task", ""),
        input={**inp, "source": source, "export_batch": int(example.shape[0])},
        settings={"formats": fmts, "opset": opset, "dynamic_batch": dynamic_batch, "atol": atol, "rtol": rtol, "seed": seed,
                  "benchmark": benchmark, "bench_seconds": bench_seconds, "latency_batch": 1,
                  "throughput_batch": throughput_batch if dynamic_batch else 1, "torch_threads": torch.get_num_threads()},
        versions=_versions(),
        eager={"checkpoint_bytes": _source_bytes(checkpoint), "parameters": sum(p.numel() for p in net.parameters()),
               "weights_bytes": sum(t.numel() * t.element_size() for t in net.state_dict().values())},
    )
    runners: dict[str, Any] = {}
    for fmt in fmts:
        res, runner = _export_one(fmt, to_export, example, paths[fmt], inputs, reference, file_meta, opset, dynamic_batch, atol, rtol)
        report.formats[fmt] = res
        if runner is not None:
            runners[fmt] = runner
    if benchmark and runners:
        before = _load_average()
        timings = bench.benchmark({"eager": eager, **runners}, example, throughput_batch=report.settings["throughput_batch"],
                                  seconds=bench_seconds, seed=seed)
        report.settings["machine_load"] = {"cpus": os.cpu_count(), "load_average_before": before, "load_average_after": _load_average()}
        report.eager["timing"] = timings.pop("eager")
        for fmt, timing in timings.items():
            report.formats[fmt].timing = timing
        report.compute_ratios()
    report.write(next(iter(paths.values())).parent / REPORT_NAME)
    return report
