"""The metrics of each task as a torchmetrics collection (synced across processes under DDP)."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import MetricCollection

__all__ = ["task_metrics", "metric_inputs"]


def task_metrics(task: str, num_classes: int | None = None, num_outputs: int = 1) -> MetricCollection:
    """Scalar metrics of ``task``, keyed by the names logged after ``val/`` or ``test/``.

    classification: acc, acc_top5 (5+ classes), precision, recall, f1 (macro), auroc;
    regression: mse, rmse, mae, r2.
    """
    if task == "classification":
        from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score, MulticlassPrecision, MulticlassRecall

        n = int(num_classes or 2)
        metrics: dict[str, Any] = {
            "acc": MulticlassAccuracy(n, average="micro"),
            "precision": MulticlassPrecision(n, average="macro"),
            "recall": MulticlassRecall(n, average="macro"),
            "f1": MulticlassF1Score(n, average="macro"),
            "auroc": MulticlassAUROC(n, average="macro"),
        }
        if n >= 5:
            metrics["acc_top5"] = MulticlassAccuracy(n, top_k=5, average="micro")
        return MetricCollection(metrics)
    if task == "regression":
        from torchmetrics import MeanAbsoluteError, MeanSquaredError, R2Score

        return MetricCollection({"mse": MeanSquaredError(), "rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError(),
                                 "r2": R2Score()})
    if task == "segmentation":
        from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
        from torchmetrics.segmentation import DiceScore

        n = int(num_classes or 2)
        return MetricCollection({"miou": MulticlassJaccardIndex(n, average="macro"), "pixel_acc": MulticlassAccuracy(n, average="micro"),
                                 "dice": DiceScore(n, average="macro", input_format="index")})
    raise ValueError(f"no metrics for task {task!r}")


def metric_inputs(task: str, outputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape outputs and targets as the task's metrics expect them."""
    if task == "classification":
        return outputs.float().softmax(dim=-1), target
    if task == "regression":
        out = outputs.float()
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        tgt = target.float()
        if tgt.ndim == 2 and tgt.shape[1] == 1:
            tgt = tgt[:, 0]
        return out, tgt
    if task == "segmentation":
        return outputs.argmax(dim=1), target
    return outputs, target
