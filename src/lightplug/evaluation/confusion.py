"""The confusion matrix of classification runs: accumulated on the device over each validation epoch (synced
across processes by torchmetrics), per-class accuracy logged as ``val/acc_class/<label>`` every epoch, and the
best epoch's matrix written as ``confusion_matrix.csv`` and ``confusion_matrix.png`` in the run folder (when,
see :mod:`.artifacts`) and sent to the loggers that take images (TensorBoard, W&B)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..metric_names import metric_key
from .artifacts import BestEpochArtifacts, png_metadata

__all__ = ["ConfusionMatrix", "per_class_accuracy", "write_confusion_csv", "confusion_figure", "send_figure", "metric_key"]

#: Above this many classes the counts are not printed in the cells, nor the names on the axes.
_ANNOTATE_MAX = 20


def per_class_accuracy(matrix: torch.Tensor) -> torch.Tensor:
    """Recall of each class (the diagonal over the row sums); NaN for a class without samples."""
    m = matrix.double()
    support = m.sum(1)
    return torch.where(support > 0, m.diagonal() / support.clamp(min=1), torch.full_like(support, float("nan")))


def write_confusion_csv(path: Path, matrix: torch.Tensor, labels: list[str], epoch: int | None = None) -> None:
    """Rows: true class; columns: predicted class; cells: counts. The first row and column hold the labels; with
    ``epoch`` a last column ``epoch`` says which validation the counts come from."""
    tmp = path.with_name(f".{path.name}.tmp")
    tail = ["epoch"] if epoch is not None else []
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *labels, *tail])
        for label, row in zip(labels, matrix.tolist()):
            writer.writerow([label, *[int(v) for v in row], *([epoch] if epoch is not None else [])])
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


class ConfusionMatrix(BestEpochArtifacts):
    """Confusion matrix and per-class accuracy of each validation epoch of a classification run; the files show
    the best epoch (see :mod:`.artifacts`).

    Args:
        out_dir: the run folder (``confusion_matrix.csv`` and ``.png`` are written there by rank 0).
        num_classes: number of classes.
        label_names: a name per class (default: the class numbers).
    """

    def __init__(self, out_dir: str | Path, num_classes: int, label_names: list[str] | None = None) -> None:
        from torchmetrics.classification import MulticlassConfusionMatrix

        super().__init__()
        self.out_dir = Path(out_dir)
        self.labels = [str(x) for x in (label_names or [])][:num_classes]
        self.labels += [str(i) for i in range(len(self.labels), num_classes)]
        self.metric = MulticlassConfusionMatrix(num_classes, validate_args=False)  # the loss already checked the targets
        self._matrix: torch.Tensor | None = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metric = self.metric.to(pl_module.device)
        self.metric.reset()
        self._matrix = None

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking or not torch.is_tensor(outputs) or outputs.ndim != 2 or not isinstance(batch, dict):
            return
        self.metric.update(outputs.detach().argmax(dim=-1), batch["target"])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.metric.update_called:
            return
        matrix = self.metric.compute()  # summed over every process
        self.metric.reset()
        self._matrix = matrix
        for label, acc in zip(self.labels, per_class_accuracy(matrix).tolist()):
            if acc == acc:  # a class absent from the validation data has no accuracy
                pl_module.log(f"val/acc_class/{metric_key(label)}", float(acc), sync_dist=True)

    def collect(self, trainer: L.Trainer, pl_module: L.LightningModule) -> torch.Tensor | None:
        return self._matrix.detach().cpu().clone() if self._matrix is not None else None

    def render(self, trainer: L.Trainer, pl_module: L.LightningModule, data: torch.Tensor, epoch: int, per_epoch: bool) -> dict[str, int]:
        folder = self.out_dir / "confusion_matrix" if per_epoch else self.out_dir
        stem = f"epoch_{epoch:03d}" if per_epoch else "confusion_matrix"
        folder.mkdir(parents=True, exist_ok=True)
        csv_path, png = folder / f"{stem}.csv", folder / f"{stem}.png"
        write_confusion_csv(csv_path, data, self.labels, epoch)
        title = f"confusion matrix, epoch {epoch} ({int(data.sum())} samples)"
        fig = confusion_figure(data, self.labels, title)
        tmp = png.with_name(f".{png.name}.tmp.png")
        fig.savefig(tmp, metadata=png_metadata(epoch, title))
        os.replace(tmp, png)
        if not per_epoch:
            send_figure(list(trainer.loggers), "val/confusion_matrix", fig, png, trainer.global_step)
        return {str(csv_path): epoch, str(png): epoch}
