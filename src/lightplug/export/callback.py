"""``ExportCallback``: at the end of ``fit`` (rank 0 only), export the best checkpoint into
``<run_dir>/export/``, verified and benchmarked. A format that fails is logged as one error line naming
the format and the cause; the other formats, the checkpoints and the run's success are kept."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from ..errors import LightplugError
from ._util import first_line
from .report import RUNTIMES

__all__ = ["ExportCallback"]

log = logging.getLogger("lightplug")


class ExportCallback(Callback):
    """Export the best checkpoint after training (config keys ``export.*`` of ``lightplug train``).

    Args:
        out_dir: the folder for the files and ``export_report.json`` (``<run_dir>/export``).
        formats: any of :data:`lightplug.export.FORMATS`.
        opset: ONNX opset.
        dynamic_batch: export with a dynamic batch axis.
        atol, rtol: verification tolerance.
        benchmark: time the files against eager PyTorch.
        bench_seconds: timing budget per backend.
        model: the run's ``model=`` (the code the user named), so that the checkpoint of an import-path or
            local-plugin model is reloaded for export (see :mod:`lightplug.trust`).

    Example:
        >>> trainer = L.Trainer(callbacks=[ExportCallback("run/export", ["onnx"])])  # doctest: +SKIP
    """

    def __init__(self, out_dir: str | os.PathLike[str], formats: Iterable[str], opset: int = 17, dynamic_batch: bool = True,
                 atol: float = 1e-4, rtol: float = 1e-3, benchmark: bool = True, bench_seconds: float = 1.0, model: str | None = None) -> None:
        from . import parse_formats

        super().__init__()
        self.out_dir = Path(out_dir)
        self.formats = parse_formats(list(formats))
        self.options: dict[str, Any] = {"opset": int(opset), "dynamic_batch": bool(dynamic_batch), "atol": float(atol),
                                        "rtol": float(rtol), "benchmark": bool(benchmark), "bench_seconds": float(bench_seconds),
                                        # the checkpoint this run just wrote: its code and settings are the user's own command line
                                        "model": model, "trust_code": model is not None}
        self.report: Any = None

    def _checkpoint(self, trainer: Any) -> str | None:
        ck = trainer.checkpoint_callback
        for path in (getattr(ck, "best_model_path", ""), getattr(ck, "last_model_path", "")):
            if path and Path(path).is_file():
                return str(path)
        return None

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        """Export from the best checkpoint (the last one when no best was kept); never raise."""
        if not trainer.is_global_zero:
            return
        names = ", ".join(self.formats)
        ckpt = self._checkpoint(trainer)
        if ckpt is None:
            log.error("export %s skipped: no checkpoint was saved in this run", names)
            return
        from . import export_checkpoint

        log.info("exporting %s to %s (%s) ...", Path(ckpt).name, names, self.out_dir)
        try:
            self.report = export_checkpoint(ckpt, self.formats, out_dir=self.out_dir, **self.options)
        except LightplugError as exc:
            log.error("export %s failed: %s", names, exc)
            return
        except Exception as exc:  # noqa: BLE001 - the training run must succeed whatever export does
            log.error("export %s failed: %s", names, first_line(exc))
            return
        for fmt, res in self.report.formats.items():
            if res.ok:
                v, r = res.verification or {}, self.report.ratios.get(f"{RUNTIMES[fmt]}_vs_eager") or {}
                speed = f"; {r['latency_p50']:.2f}x eager speed at batch 1, {r['throughput']:.2f}x at batch 32" if r.get("latency_p50") and r.get("throughput") else ""
                agree = f", answer agreement {v['agreement']:.4f} on {v['samples']} {v['on']}" if "agreement" in v else ""
                log.info("export %s: %s (max abs diff %.2g, max rel diff %.2g vs eager PyTorch%s%s)", fmt, res.path, v.get("max_abs"), v.get("max_rel"),
                         agree, speed)
            else:
                log.error("export %s failed: %s", fmt, (res.error or "").removeprefix(f"{fmt}: "))
        if self.report.busy_note():
            log.warning("export timings: %s", self.report.busy_note())
        if any(r.ok for r in self.report.formats.values()):
            self.report.print(paths=False)
        log.info("export report: %s", self.report.report_path)
