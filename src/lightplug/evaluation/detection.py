"""What a detection run writes about its validations, next to its metrics (the best epoch's files when the run
ends and at most every ``results.refresh_seconds`` during it, see :mod:`.artifacts`):

- ``val_predictions.csv`` (best epoch): one row per image: ``id``, ``index``, ``true_boxes``, ``pred_boxes``
  (boxes scoring at least ``results.box_score``, default 0.25), ``matched`` (true boxes those found at IoU 0.5 with
  the right label), ``ap50`` (the image's AP at IoU 0.5, see :func:`~lightplug.evaluation.boxes.image_ap50`), ``epoch``;
- ``per_class_ap.csv`` (every validation, appended): ``epoch``, ``class``, ``ap`` (COCO AP at IoU 0.50:0.95),
  ``ap50``; empty where the validation split has no box of that class;
- ``pr_curve.png`` (best epoch): the precision-recall curve of each class at IoU 0.5, its epoch in the title and in
  the PNG text chunk ``epoch``.

With ``results.every_epoch=true`` also ``val_predictions/epoch_NNN.csv`` and ``pr_curve/epoch_NNN.png``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from .artifacts import png_metadata
from .boxes import REPORT_SCORE, image_ap50, matched_boxes
from .predictions import PerSampleResults, sample_id_lookup

__all__ = ["DetectionResults", "PER_CLASS_FILE", "PR_CURVE_FILE", "detection_rows", "pr_curve_figure"]

PER_CLASS_FILE = "per_class_ap.csv"
PR_CURVE_FILE = "pr_curve.png"


def _numpy(d: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: (v.detach().float().cpu().numpy() if k != "labels" else v.detach().cpu().numpy()) for k, v in d.items() if torch.is_tensor(v)}


def detection_rows(merged: dict[str, torch.Tensor], ids: dict[int, str], epoch: int) -> list[dict[str, Any]]:
    """CSV rows from the per-image tensors of a whole validation, by index, duplicates (DDP padding) dropped."""
    rows, seen = [], set()
    for i in torch.argsort(merged["index"]).tolist():
        index = int(merged["index"][i])
        if index in seen:
            continue
        seen.add(index)
        rows.append({"id": ids.get(index, str(index)), "index": index, "true_boxes": int(merged["true_boxes"][i]),
                     "pred_boxes": int(merged["pred_boxes"][i]), "matched": int(merged["matched"][i]),
                     "ap50": f"{float(merged['ap50'][i]):.4f}", "epoch": epoch})
    return rows


def pr_curve_figure(summary: dict[str, Any], label_names: list[str], path: Path, title: str, epoch: int | None = None) -> None:
    """Save the precision-recall curve of each class at IoU 0.5 (legend: class and its AP50)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for cls, ap50, curve in zip(summary["classes"], summary["ap50"], summary["precision50"]):
        if curve:
            name = label_names[cls] if 0 <= cls < len(label_names) else str(cls)
            ax.plot(summary["recall"], curve, label=f"{name} (AP50 {ap50:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, metadata=png_metadata(epoch, title) if epoch is not None else None)
    os.replace(tmp, path)


class DetectionResults(PerSampleResults):
    """Per-image results, per-class AP and the precision-recall curves of a detection run (see the module's docstring).

    Args:
        out_dir: the run folder.
        monitor, mode: the monitored metric; the epoch that improves it is the best.
        every_epoch: also write ``val_predictions/epoch_NNN.csv`` for every epoch.
        report_score: boxes scoring below it are not counted in ``pred_boxes`` and ``matched``.
    """

    def __init__(self, out_dir: str | Path, monitor: str, mode: str = "max", every_epoch: bool = False, report_score: float = REPORT_SCORE) -> None:
        super().__init__(out_dir, "detection", monitor, mode, every_epoch)
        self.report_score = report_score

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking or not isinstance(outputs, (list, tuple)) or not isinstance(batch, dict):
            return
        stats = []
        for pred, true in zip(outputs, batch["target"]):
            p, t = _numpy(pred), _numpy(true)
            stats.append((len(t["labels"]), int((p["scores"] >= self.report_score).sum()), matched_boxes(p, t, self.report_score),
                          image_ap50(p, t, self.report_score)))
        if stats:
            n_true, n_pred, matched, ap50 = zip(*stats)
            self._parts.append({"index": batch["index"].detach().cpu(), "true_boxes": torch.tensor(n_true), "pred_boxes": torch.tensor(n_pred),
                                "matched": torch.tensor(matched), "ap50": torch.tensor(ap50, dtype=torch.float32)})

    def collect(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any] | None:
        merged = super().collect(trainer, pl_module)
        summary = getattr(pl_module, "detection_summary", None)
        if merged is None:
            return None
        return {"images": merged, "summary": dict(summary) if summary else None}

    def render(self, trainer: L.Trainer, pl_module: L.LightningModule, data: dict[str, Any], epoch: int, per_epoch: bool) -> dict[str, int]:
        written = super().render(trainer, pl_module, data["images"], epoch, per_epoch)
        if data.get("summary"):
            names = list((getattr(pl_module, "meta", {}) or {}).get("label_names") or [])
            path = self.out_dir / "pr_curve" / f"epoch_{epoch:03d}.png" if per_epoch else self.out_dir / PR_CURVE_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            pr_curve_figure(data["summary"], names, path, f"precision-recall at IoU 0.5, epoch {epoch}", epoch)
            written[str(path)] = epoch
        return written

    def _rows(self, merged: dict[str, torch.Tensor], trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> list[dict[str, Any]]:
        return detection_rows(merged, sample_id_lookup(getattr(trainer, "datamodule", None)), epoch)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        summary = getattr(pl_module, "detection_summary", None)
        if trainer.sanity_checking or not trainer.is_global_zero or not summary:
            return
        names = list((getattr(pl_module, "meta", {}) or {}).get("label_names") or [])
        self._append_per_class(summary, names, trainer.current_epoch)  # a few rows: cheap, every validation

    def _append_per_class(self, summary: dict[str, Any], names: list[str], epoch: int) -> None:
        path = self.out_dir / PER_CLASS_FILE
        new = not path.is_file()
        ap50 = summary["ap50"] or [-1.0] * len(summary["classes"])
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["epoch", "class", "ap", "ap50"])
            for cls, ap, a50 in zip(summary["classes"], summary["ap"], ap50):
                name = names[cls] if 0 <= cls < len(names) else str(cls)
                writer.writerow([epoch, name, f"{ap:.4f}" if ap >= 0 else "", f"{a50:.4f}" if a50 >= 0 else ""])
