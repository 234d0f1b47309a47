"""The confusion matrix of classification runs: accumulated over each validation epoch (synced across
processes by torchmetrics), written as ``confusion_matrix.csv`` and ``confusion_matrix.png`` in the run
folder, per-class accuracy logged as ``val/acc_class/<label>``, and the image sent to the loggers that
take images (TensorBoard, W&B)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..metric_names import metric_key

__all__ = ["ConfusionMatrix", "per_class_accuracy", "write_confusion_csv", "confusion_figure", "send_figure", "metric_key"]

#: Above this many classes the counts are not printed in the cells, nor the names on the axes.
_ANNOTATE_MAX = 20


def per_class_accuracy(matrix: torch.Tensor) -> torch.Tensor:
    """Recall of each class (the diagonal over the row sums); NaN for a class without samples."""
    m = matrix.double()
    support = m.sum(1)
    return torch.where(support > 0, m.diagonal() / support.clamp(min=1), torch.full_like(support, float("nan")))


def write_confusion_csv(path: Path, matrix: torch.Tensor, labels: list[str]) -> None:
    """Rows: true class; columns: predicted class; cells: counts. The first row and column hold the labels."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *labels])
        for label, row in zip(labels, matrix.tolist()):
            writer.writerow([label, *[int(v) for v in row]])
    os.replace(tmp, path)


def confusion_figure(matrix: torch.Tensor, labels: list[str], title: str) -> Any:
    """A matplotlib ``Figure`` (Agg canvas, no pyplot): colours are row-normalised, cells show the counts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(labels)
    side = min(12.0, 2.5 + 0.45 * n)
    fig = Figure(figsize=(side, side * 0.9), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    counts = matrix.double()
    rows = counts / counts.sum(1, keepdim=True).clamp(min=1)
    image = ax.imshow(rows.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= _ANNOTATE_MAX:
        long = max(map(len, labels), default=0) > 3
        ax.set_xticks(range(n), labels, rotation=45 if long else 0, ha="right" if long else "center")
        ax.set_yticks(range(n), labels)
        for i in range(n):
            for j in range(n):
                value = int(counts[i, j])
                if value:
                    ax.text(j, i, str(value), ha="center", va="center", fontsize=8, color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def send_figure(loggers: list[Any], tag: str, fig: Any, image_path: Path, step: int) -> list[str]:
    """Send a figure to every logger that takes images; return the names of those that got it.

    TensorBoard gets ``add_figure``, W&B (any logger with ``log_image``) the PNG file; CSV and others are skipped.
    """
    from lightning.pytorch.loggers import TensorBoardLogger

    sent = []
    for lg in loggers:
        if isinstance(lg, TensorBoardLogger):
            lg.experiment.add_figure(tag, fig, global_step=step, close=False)
        elif callable(getattr(lg, "log_image", None)):
            lg.log_image(key=tag, images=[str(image_path)], step=step)
        else:
            continue
        sent.append(type(lg).__name__)
    return sent


class ConfusionMatrix(L.Callback):
    """Confusion matrix and per-class accuracy of each validation epoch of a classification run.

    Args:
        out_dir: the run folder (``confusion_matrix.csv`` and ``.png`` are written there by rank 0).
        num_classes: number of classes.
        label_names: a name per class (default: the class numbers).
    """

    def __init__(self, out_dir: str | Path, num_classes: int, label_names: list[str] | None = None) -> None:
        from torchmetrics.classification import MulticlassConfusionMatrix

        self.out_dir = Path(out_dir)
        self.labels = [str(x) for x in (label_names or [])][:num_classes]
        self.labels += [str(i) for i in range(len(self.labels), num_classes)]
        self.metric = MulticlassConfusionMatrix(num_classes)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metric = self.metric.to(pl_module.device)
        self.metric.reset()

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking or not torch.is_tensor(outputs) or outputs.ndim != 2 or not isinstance(batch, dict):
            return
        self.metric.update(outputs.detach().argmax(dim=-1), batch["target"])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.metric.update_called:
            return
        matrix = self.metric.compute().cpu()  # summed over every process
        self.metric.reset()
        for label, acc in zip(self.labels, per_class_accuracy(matrix).tolist()):
            if acc == acc:  # a class absent from the validation data has no accuracy
                pl_module.log(f"val/acc_class/{metric_key(label)}", float(acc), sync_dist=True)
        if not trainer.is_global_zero:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_confusion_csv(self.out_dir / "confusion_matrix.csv", matrix, self.labels)
        fig = confusion_figure(matrix, self.labels, f"confusion matrix, epoch {trainer.current_epoch} ({int(matrix.sum())} samples)")
        png = self.out_dir / "confusion_matrix.png"
        fig.savefig(png)
        send_figure(list(trainer.loggers), "val/confusion_matrix", fig, png, trainer.global_step)
