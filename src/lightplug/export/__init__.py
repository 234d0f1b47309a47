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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ._util import first_line
from .report import FORMATS, NOT_WRITTEN, REPORT_NAME, SUFFIXES, ExportError, ExportReport, FormatResult

__all__ = ["export_checkpoint", "ExportReport", "FormatResult", "ExportError", "FORMATS", "NOT_WRITTEN", "parse_formats", "target_paths",
           "load_runner"]

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
        known = next((x for x in sorted(SUFFIXES.values(), key=len, reverse=True) if out.name.endswith(x) and out.name != x), None)
        base = out.with_name(out.name[: -len(known)]) if known else out
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
    for dist in ("onnx", "onnxruntime", "openvino"):  # read from metadata: nothing is imported for a TorchScript-only export
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


#: Formats converted from the fp32 ONNX graph.
FROM_ONNX = ("onnx_int8", "onnx_fp16", "openvino")
#: Verification tolerance of the fp16 ONNX file (at least this loose, whatever atol/rtol say): float16 keeps
#: 11 significant bits, so logits of a few units differ by up to about 1e-2.
FP16_TOLERANCE = (2e-2, 2e-2)


def _files(fmt: str, path: Path) -> list[Path]:
    return [path, path.with_suffix(".bin")] if fmt == "openvino" else [path]


def _export_one(fmt: str, path: Path, write: Callable[[Path], tuple[list[str], list[str]]], load: Callable[[str], Any],
                check: Callable[[Any], dict[str, Any]]) -> tuple[FormatResult, Any]:
    """Write one format to a temporary file beside ``path`` (``write(tmp) -> (notes, checks)``), load it
    (``load(file) -> runner``), verify it (``check(runner) -> verification``), and only then rename it to
    ``path``: a failed or refused export never removes or replaces a file an earlier export wrote and
    verified. Every failure becomes ``FormatResult.error`` (one line)."""
    res, start, runner = FormatResult(fmt), time.perf_counter(), None
    tmp = path.with_name(f".{path.name.split('.')[0]}.{os.getpid()}.{os.urandom(4).hex()}.tmp{SUFFIXES.get(fmt, path.suffix)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        notes, extra = write(tmp)
        runner = load(str(tmp))
        res.warnings = notes
        res.verification = check(runner)
        res.verification["checks"] = extra + res.verification.get("checks", [])
        for src, dst in zip(_files(fmt, tmp), _files(fmt, path), strict=True):
            os.replace(src, dst)  # verified: only now does it take the place of an earlier file
        if fmt == "openvino":  # reload from its final name (the IR reads its .bin by name)
            runner = load(str(path))
        res.ok, res.path, res.size_bytes = True, str(path), sum(f.stat().st_size for f in _files(fmt, path))
    except ExportError as exc:
        res.error, runner = str(exc), None
    except Exception as exc:  # noqa: BLE001 - a failing format must never stop the others
        res.error, runner = f"{fmt}: {first_line(exc)}", None
    finally:
        for f in _files(fmt, tmp):
            f.unlink(missing_ok=True)  # a file that is not verified is not left behind
    if not res.ok and path.is_file():
        res.error = f"{res.error}; the earlier {path} is kept"
    res.seconds = round(time.perf_counter() - start, 3)
    return res, runner


def _needs(fmt: str, *modules: str) -> None:
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            what = f"the packages {' and '.join(modules)}" if len(modules) > 1 else f"the package {modules[0]}"
            raise ExportError(f"{fmt}: needs {what} ({exc.name or name} is missing; pip install 'lightplug[export]')") from exc


@dataclass
class _Context:
    """What every format's writer and check need."""

    fmt_meta: dict[str, Any]
    net: Any
    example: Any
    inputs: list[tuple[dict[str, Any], Any]]
    reference: list[Any]
    opset: int
    dynamic_batch: bool
    atol: float
    rtol: float
    threads: int
    task: str
    eager: Any
    run_data: Any
    data_note: str | None
    quantization: str
    calibration_samples: int
    calibration_method: str
    seed: int
    min_agreement: float
    check_samples: int
    onnx_source: Path | None = None
    onnx_error: str | None = None


def load_runner(fmt: str, path: str, threads: int | None = None) -> Any:
    """A runner for an exported file (takes a torch batch, returns the outputs as numpy arrays).

    Example:
        >>> run = load_runner("openvino", "checkpoints/best.xml")  # doctest: +SKIP
        >>> run(torch.zeros(1, 64))[0].shape  # doctest: +SKIP
        (1, 10)
    """
    import torch

    from . import verify

    threads = threads or torch.get_num_threads()
    if fmt.startswith("onnx"):
        return verify.onnx_runner(path, threads)
    if fmt == "openvino":
        from .openvino_ir import openvino_runner

        return openvino_runner(path, threads)
    if fmt == "pt2":
        from .pt2 import pt2_runner

        return pt2_runner(path)
    if fmt == "torchscript":
        return verify.torchscript_runner(path)
    raise ExportError(f"format={fmt}: unknown export format (choose from {', '.join(FORMATS)})")


def _plan(fmt: str, ctx: _Context) -> tuple[Callable[[Path], tuple[list[str], list[str]]], Callable[[str], Any], Callable[[Any], dict[str, Any]]]:
    """``(write, load, check)`` of one format for :func:`_export_one`."""
    from . import exporters, verify

    def elementwise(atol: float, rtol: float) -> Callable[[Any], dict[str, Any]]:
        def check(runner: Any) -> dict[str, Any]:
            try:
                out = verify.verify(fmt, ctx.reference, runner, ctx.inputs, atol, rtol)
            except ExportError as exc:
                hint = exporters.tracer_hint(notes)
                raise ExportError(f"{exc}; the tracer warned: {hint}" if hint else str(exc)) from exc
            out["checks"] = [f"outputs match eager PyTorch on {len(ctx.inputs)} inputs"]
            return out
        return check

    notes: list[str] = []
    load = lambda p: load_runner(fmt, p, ctx.threads)  # noqa: E731
    if fmt == "onnx":
        def write(tmp: Path) -> tuple[list[str], list[str]]:
            _needs(fmt, "onnx", "onnxruntime")
            notes[:] = exporters.write_onnx(ctx.net, ctx.example, tmp, ctx.opset, ctx.dynamic_batch, ctx.fmt_meta)
            return notes, verify.check_onnx_file(str(tmp), ctx.dynamic_batch)
        return write, load, elementwise(ctx.atol, ctx.rtol)
    if fmt == "torchscript":
        def write(tmp: Path) -> tuple[list[str], list[str]]:
            notes[:] = exporters.write_torchscript(ctx.net, ctx.example, tmp, [x for _, x in ctx.inputs], {**ctx.fmt_meta, "opset": None})
            return notes, ["torch.jit.trace sanity check on every compared input passed", "reloaded with torch.jit.load"]
        return write, load, elementwise(ctx.atol, ctx.rtol)
    if fmt == "pt2":
        def write(tmp: Path) -> tuple[list[str], list[str]]:
            from .pt2 import write_pt2

            notes[:] = write_pt2(ctx.net, ctx.example, tmp, ctx.dynamic_batch, {**ctx.fmt_meta, "opset": None})
            return notes, ["reloaded with torch.export.load"]
        return write, load, elementwise(ctx.atol, ctx.rtol)
    source = ctx.onnx_source
    assert source is not None
    if fmt == "onnx_fp16":
        def write(tmp: Path) -> tuple[list[str], list[str]]:
            from .quantize import write_onnx_fp16

            notes[:] = write_onnx_fp16(source, tmp)
            return notes, verify.check_onnx_file(str(tmp), ctx.dynamic_batch, fmt)
        return write, load, elementwise(max(ctx.atol, FP16_TOLERANCE[0]), max(ctx.rtol, FP16_TOLERANCE[1]))
    if fmt == "openvino":
        def write(tmp: Path) -> tuple[list[str], list[str]]:
            from .openvino_ir import write_openvino

            notes[:] = write_openvino(source, tmp, ctx.fmt_meta)
            return notes, ["read and compiled by the OpenVINO runtime (CPU, f32 precision)"]
        return write, load, elementwise(ctx.atol, ctx.rtol)
    if fmt == "onnx_int8":
        def write(tmp: Path) -> tuple[list[str], list[str]]:
            from .quantize import CALIBRATION_METHODS, write_onnx_int8

            _needs(fmt, "onnxruntime.quantization")
            if ctx.calibration_method not in CALIBRATION_METHODS:
                raise ExportError(f"onnx_int8: calibration_method={ctx.calibration_method}: choose from {', '.join(CALIBRATION_METHODS)}")
            why = ("quantization=dynamic" if ctx.quantization == "dynamic" else ctx.data_note if ctx.run_data is None
                   else "the input is not floating point" if not ctx.example.dtype.is_floating_point else None)
            batches = None if why else ctx.run_data.calibration(ctx.calibration_samples, 32 if ctx.dynamic_batch else 1, ctx.seed)
            notes[:] = write_onnx_int8(source, tmp, batches, ctx.calibration_method, why)
            return notes, verify.check_onnx_file(str(tmp), ctx.dynamic_batch, fmt)
        return write, load, lambda runner: _check_int8(runner, ctx)
    raise ExportError(f"format={fmt}: unknown export format (choose from {', '.join(FORMATS)})")


def _check_int8(runner: Any, ctx: _Context) -> dict[str, Any]:
    """The int8 file's outputs have eager's shapes on every random input, and give eager's answer on at least
    ``min_agreement`` of the validation samples (of the random inputs when the run's data is not there)."""
    import numpy as np

    from .rundata import agreement, run_batched
    from .verify import compare

    for (desc, x), ref in zip(ctx.inputs, ctx.reference, strict=True):
        got = runner(x)
        if [tuple(g.shape) for g in got] != [tuple(r.shape) for r in ref]:
            raise ExportError(f"onnx_int8: output shapes {[list(g.shape) for g in got]} instead of {[list(r.shape) for r in ref]} "
                              f"on an input of batch {desc['batch']}")
    fixed = None if ctx.dynamic_batch else int(ctx.example.shape[0])
    if ctx.run_data is not None:
        pairs = [(x, None) for x, _ in ctx.run_data.validation(ctx.check_samples)]
        on = "validation samples"
    else:
        pairs, on = [(x, None) for _, x in ctx.inputs], "random inputs (the run's data is not available)"
    refs = [run_batched(ctx.eager, x, None) for x, _ in pairs]
    gots = [run_batched(runner, x, fixed) for x, _ in pairs]
    ref, got = np.concatenate(refs), np.concatenate(gots)
    agree = agreement(ctx.task, ref, got)
    max_abs, max_rel, _ = compare(ref, got, ctx.atol, ctx.rtol)
    what = "top-1 agreement" if ctx.task == "classification" else "pixel agreement" if ctx.task == "segmentation" else "agreement"
    out = {"max_abs": max_abs, "max_rel": max_rel, "agreement": agree, "min_agreement": ctx.min_agreement, "samples": int(len(ref)),
           "on": on, "checks": [f"output shapes match eager on {len(ctx.inputs)} random inputs",
                                f"{what} with eager {agree:.4f} on {len(ref)} {on}"]}
    if agree < ctx.min_agreement:
        why = ("; a detector's raw head outputs (box coordinates and class scores) are compared value by value, as no "
               "box-level int8 check exists yet" if ctx.task == "detection" else "")
        raise ExportError(f"onnx_int8: {what} with eager PyTorch is {agree:.4f} on {len(ref)} {on}, below "
                          f"int8_min_agreement={ctx.min_agreement:g} (max abs diff {max_abs:.3g}){why}")
    return out


def export_checkpoint(checkpoint: str | os.PathLike[str], formats: str | Iterable[str] = ("onnx",), *,
                      out_dir: str | os.PathLike[str] | None = None, output: str | os.PathLike[str] | None = None,
                      opset: int = 17, dynamic_batch: bool = True, atol: float = 1e-4, rtol: float = 1e-3,
                      benchmark: bool = True, bench_seconds: float = 1.0, throughput_batch: int = 32, seed: int = 0,
                      model: str | None = None, trust_code: bool | None = None, quantization: str = "static",
                      calibration_samples: int = 256, calibration_method: str = "minmax", int8_min_agreement: float = 0.97,
                      int8_check_samples: int = 512, run_data: Any = None) -> ExportReport:
    """Export a checkpoint to each format, verify every file, time it against eager PyTorch and write
    ``export_report.json`` next to the files.

    Args:
        checkpoint: a ``best.ckpt``/``last.ckpt`` written by ``lightplug train``.
        formats: any of :data:`FORMATS` (list or comma-separated).
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
        quantization: ``static`` (calibrated) or ``dynamic`` int8 (see :mod:`lightplug.export.quantize`).
        calibration_samples, calibration_method: static int8: how many training samples, and ``minmax``,
            ``entropy`` or ``percentile``.
        int8_min_agreement: the int8 file passes when it gives eager's answer (top-1 class, class per pixel, or a
            value within 0.1 standard deviations) on at least this share of ``int8_check_samples`` validation samples.
        run_data: the run's data (:class:`lightplug.export.rundata.RunData`) when the caller has it already.

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
                  "throughput_batch": throughput_batch if dynamic_batch else 1, "torch_threads": torch.get_num_threads(),
                  "fp16_tolerance": list(FP16_TOLERANCE), "quantization": quantization, "calibration_samples": calibration_samples,
                  "calibration_method": calibration_method, "int8_min_agreement": int8_min_agreement},
        versions=_versions(),
        eager={"checkpoint_bytes": _source_bytes(checkpoint), "parameters": sum(p.numel() for p in net.parameters()),
               "weights_bytes": sum(t.numel() * t.element_size() for t in net.state_dict().values())},
    )
    threads = torch.get_num_threads()
    data_note: str | None = None
    if "onnx_int8" in fmts and run_data is None:
        from .rundata import load_run_data

        run_data, data_note = load_run_data(meta)
    ctx = _Context(fmt_meta=file_meta, net=to_export, example=example, inputs=inputs, reference=reference, opset=opset,
                   dynamic_batch=dynamic_batch, atol=atol, rtol=rtol, threads=threads, task=str(meta.get("task") or ""),
                   eager=eager, run_data=run_data, data_note=data_note, quantization=quantization,
                   calibration_samples=calibration_samples, calibration_method=calibration_method, seed=seed,
                   min_agreement=int8_min_agreement, check_samples=int8_check_samples)
    runners: dict[str, Any] = {}
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lightplug-export-") as scratch:
        for fmt in fmts:
            if fmt in FROM_ONNX and ctx.onnx_source is None and ctx.onnx_error is None:
                if report.formats.get("onnx") is not None and report.formats["onnx"].ok:
                    ctx.onnx_source = Path(str(report.formats["onnx"].path))
                else:  # the fp32 graph to convert from, verified like the onnx format, then thrown away
                    src, _ = _export_one("onnx", Path(scratch) / "source.onnx", *_plan("onnx", ctx))
                    ctx.onnx_source, ctx.onnx_error = (Path(str(src.path)), None) if src.ok else (None, src.error)
            if fmt in FROM_ONNX and ctx.onnx_source is None:
                res, runner = FormatResult(fmt, error=f"{fmt}: the fp32 ONNX graph it is converted from failed: "
                                                      f"{(ctx.onnx_error or '').removeprefix('onnx: ')}"), None
            else:
                res, runner = _export_one(fmt, paths[fmt], *_plan(fmt, ctx))
                if fmt == "onnx" and res.ok:
                    ctx.onnx_source = Path(str(res.path))
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
