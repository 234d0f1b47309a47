"""What an export produced: :class:`FormatResult` per format, the whole :class:`ExportReport` (written as
``export_report.json``, printed as a Rich table) and :class:`ExportError`. Plain data only, no torch."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LightplugError

__all__ = ["ExportError", "FormatResult", "ExportReport", "FORMATS", "SUFFIXES", "REPORT_NAME", "NOT_WRITTEN", "RUNTIMES"]

#: Formats lightplug exports, in the order they are written (the int8 and fp16 ONNX files and the OpenVINO IR
#: are converted from the fp32 ONNX graph).
FORMATS = ("onnx", "onnx_int8", "onnx_fp16", "openvino", "torchscript", "pt2")
#: File suffix of each format (``openvino`` writes ``.xml`` and its weights beside it as ``.bin``).
SUFFIXES = {"onnx": ".onnx", "onnx_int8": ".int8.onnx", "onnx_fp16": ".fp16.onnx", "openvino": ".xml", "torchscript": ".pt", "pt2": ".pt2"}
#: Formats lightplug knows but this package does not write, with what each needs (``lightplug export --help``).
NOT_WRITTEN = {
    "tensorrt": "needs an NVIDIA GPU with TensorRT to build and check the engine (onnx_fp16 is the file to give trtexec)",
    "coreml": "needs coremltools, and a real check needs Apple's Core ML runtime (macOS)",
    "tflite": "needs TensorFlow (or ai-edge-torch) to convert and the TFLite interpreter to check it",
}
#: Name of the JSON report written next to the exported files.
REPORT_NAME = "export_report.json"
#: Backend that runs each format in verification and benchmarks.
RUNTIMES = {"onnx": "onnxruntime", "onnx_int8": "onnxruntime_int8", "onnx_fp16": "onnxruntime_fp16", "openvino": "openvino",
            "torchscript": "torchscript", "pt2": "torch_export"}


class ExportError(LightplugError):
    """A model cannot be exported, or the export arguments are wrong (exit code 2 in the CLI)."""


@dataclass
class FormatResult:
    """The outcome of one format: the verified file, or the one-line reason it failed.

    Attributes:
        format: one of :data:`FORMATS`.
        path: the written file (``None`` when it failed: a file that fails verification is deleted).
        ok: written *and* verified within tolerance.
        error: one line naming the format and the cause, when not ``ok``.
        size_bytes: size of the file.
        verification: ``max_abs``, ``max_rel``, ``atol``, ``rtol``, ``inputs`` (each compared input:
            batch, shape, dtype, seed and its own differences), ``checks`` (what else was checked); for
            ``onnx_int8`` the task-level check instead (``agreement``, ``min_agreement``, ``samples``, ``on``).
        timing: ``latency_p50_ms``, ``latency_p95_ms`` (batch 1), ``throughput`` (samples/s at the
            throughput batch) and how many calls were timed.
        warnings: warnings raised while writing it (``Category: file:line: text``), e.g. the tracer's.
        seconds: wall time of writing and verifying the file.
    """

    format: str
    path: str | None = None
    ok: bool = False
    error: str | None = None
    size_bytes: int | None = None
    verification: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ExportReport:
    """Everything one export did: inputs, files, differences to eager PyTorch, timings and ratios.

    ``ratios`` are speed-ups over eager PyTorch on the same machine (greater than 1: faster than
    eager): ``latency_p50`` and ``latency_p95`` at batch 1 (eager time / format time) and
    ``throughput`` at the throughput batch (format samples/s / eager samples/s).
    """

    checkpoint: str
    plugin: dict[str, Any]
    task: str
    input: dict[str, Any]
    settings: dict[str, Any]
    versions: dict[str, Any]
    formats: dict[str, FormatResult] = field(default_factory=dict)
    eager: dict[str, Any] = field(default_factory=dict)
    ratios: dict[str, dict[str, float | None]] = field(default_factory=dict)
    report_path: str | None = None

    @property
    def ok(self) -> bool:
        """Whether every requested format was written and verified."""
        return all(r.ok for r in self.formats.values())

    def failures(self) -> list[str]:
        """One line per failed format, each naming the format and the cause."""
        return [r.error or f"{r.format}: failed" for r in self.formats.values() if not r.ok]

    def compute_ratios(self) -> None:
        """Fill :attr:`ratios` from the eager timing and each format's timing."""
        base = self.eager.get("timing")
        self.ratios = {}
        if not base:
            return
        for name, res in self.formats.items():
            t = res.timing
            if not (res.ok and t):
                continue
            self.ratios[f"{RUNTIMES[name]}_vs_eager"] = {
                "latency_p50": _ratio(base["latency_p50_ms"], t["latency_p50_ms"]),
                "latency_p95": _ratio(base["latency_p95_ms"], t["latency_p95_ms"]),
                "throughput": _ratio(t["throughput"], base["throughput"]),
            }

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        out = asdict(self)
        out["ok"] = self.ok
        return out

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as JSON to ``path`` and remember where."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.report_path = str(p)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    def busy_note(self) -> str | None:
        """A warning when other processes kept the CPUs busy as timing started (1-minute load average,
        which counts this process too, at least as high as the number of CPUs)."""
        m = self.settings.get("machine_load") or {}
        load, cpus = m.get("load_average_before"), m.get("cpus")
        if load is None or not cpus or load < cpus:
            return None
        return (f"timed on a busy machine (load average {load:.1f} on {cpus} CPUs): multi-threaded timings are noisy; "
                "OMP_NUM_THREADS=1 gives steadier figures")

    def table(self) -> Any:
        """A Rich table: one row for eager PyTorch and one per format."""
        from rich.table import Table

        bs = self.settings.get("throughput_batch", 32)
        title = f"export of {self.plugin.get('name')} ({Path(self.checkpoint).name}, input {self.input.get('shape')})"
        table = Table(title=title, title_justify="left", caption=self.busy_note(), caption_justify="left")
        for col in ("FORMAT", "FILE", "SIZE", "MAX ABS DIFF", "MAX REL DIFF", "P50 B1 (ms)", "P95 B1 (ms)", f"SAMPLES/S B{bs}", f"SPEED-UP B1 / B{bs}", "STATUS"):
            table.add_column(col, overflow="fold", justify="left" if col in ("FORMAT", "FILE", "STATUS") else "right")
        et = self.eager.get("timing") or {}
        weights = f"{_size(self.eager.get('weights_bytes'))} weights"
        table.add_row("eager", Path(self.checkpoint).name, weights, "-", "-", _num(et.get("latency_p50_ms")),
                      _num(et.get("latency_p95_ms")), _num(et.get("throughput"), 0), "1.00 / 1.00", "[dim]reference[/]")
        for name, res in self.formats.items():
            v, t = res.verification or {}, res.timing or {}
            r = self.ratios.get(f"{RUNTIMES[name]}_vs_eager", {})
            speed = f"{_num(r.get('latency_p50'))} / {_num(r.get('throughput'))}" if r else "-"
            status = "[green]ok[/]" if res.ok else "[red]failed[/] (see below)"
            if res.ok and "agreement" in v:  # int8: checked by the task's answer, not element by element
                status = f"[green]ok[/] ({v['agreement']:.1%} same answer)"
            table.add_row(name, Path(res.path).name if res.path else "-", _size(res.size_bytes), _sci(v.get("max_abs")), _sci(v.get("max_rel")),
                          _num(t.get("latency_p50_ms")), _num(t.get("latency_p95_ms")), _num(t.get("throughput"), 0), speed, status)
        return table

    def print(self, console: Any = None, paths: bool = True, failures: bool = True) -> None:
        """Print the table, each failure's cause and (with ``paths``) where the files and the report are."""
        if console is None:
            from rich.console import Console

            console = Console()
            if not console.is_terminal:  # logs and pipes get full rows instead of wrapped cells
                console = Console(width=max(console.width, 160))
        console.print(self.table())
        for res in self.formats.values():
            if not res.ok:  # a failed format has no file to show
                if failures:
                    console.print(f"[red]{res.format} failed[/]: {(res.error or '').removeprefix(res.format + ': ')}", highlight=False)
            elif paths:
                console.print(f"{res.format}: {res.path}", highlight=False)
        if paths and self.report_path:
            console.print(f"report: {self.report_path}", highlight=False)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(float(a) / float(b), 3) if a and b else None


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _sci(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"
