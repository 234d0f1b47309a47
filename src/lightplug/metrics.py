"""The metrics of each task as a torchmetrics collection (synced across processes under DDP)."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import MetricCollection

__all__ = ["task_metrics", "metric_inputs", "detection_metric", "summarise_detection", "DETECTION_SCALARS"]

#: What the detection task logs after ``val/`` (``map``: COCO AP at IoU 0.50:0.95; ``mar_100``: recall with 100 boxes).
DETECTION_SCALARS = ("map", "map_50", "map_75", "mar_100")


def detection_metric() -> Any:
    """torchmetrics' ``MeanAveragePrecision`` on ``faster_coco_eval``: boxes ``xyxy``, per-class AP and the
    precision-recall curves (``extended_summary``) kept for the evaluation callbacks; synced under DDP."""
    import logging

    from torchmetrics.detection import MeanAveragePrecision

    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)  # it logs COCO's summary table at INFO on every compute
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="faster_coco_eval", class_metrics=True, extended_summary=True)


def summarise_detection(result: dict[str, Any], stage: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``MeanAveragePrecision.compute()`` into the scalars to log and a plain summary.

    Returns:
        (``{stage/map: ..., stage/map_50: ..., ...}``, ``{"classes": [ids], "ap": [AP 0.50:0.95 per class],
        "ap50": [AP at IoU 0.5 per class], "recall": [101 points], "precision50": [[101 values] per class]}``).
        A class with no true box has AP ``-1`` (COCO's convention), written as empty in CSV files.
    """
    scalars = {f"{stage}/{k}": result[k] for k in DETECTION_SCALARS if k in result}
    classes = [int(c) for c in result.get("classes", torch.zeros(0)).reshape(-1).tolist()]
    per_class = result.get("map_per_class", torch.zeros(0)).reshape(-1).tolist()
    summary: dict[str, Any] = {"classes": classes, "ap": per_class if len(per_class) == len(classes) else [-1.0] * len(classes),
                               "recall": torch.linspace(0, 1, 101).tolist(), "ap50": [], "precision50": []}
    precision = result.get("precision")  # IoU thresholds x 101 recall points x classes x areas x max detections
    if torch.is_tensor(precision) and precision.ndim == 5 and precision.shape[2] == len(classes):
        curves = precision[0, :, :, 0, -1].T.float()  # IoU 0.5, all areas, 100 detections: classes x recall points
        for curve in curves:
            valid = curve[curve > -1]
            summary["ap50"].append(float(valid.mean()) if len(valid) else -1.0)
            summary["precision50"].append(curve.clamp(min=0).tolist() if len(valid) else [])
    return scalars, summary


def task_metrics(task: str, num_classes: int | None = None, num_outputs: int = 1) -> MetricCollection:
    """Scalar metrics of ``task``, keyed by the names logged after ``val/`` or ``test/``.

    classification: acc, acc_top5 (5+ classes), precision, recall, f1 (macro), auroc;
    regression: mse, rmse, mae, r2.
    """
    if task == "classification":
        from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score, MulticlassPrecision, MulticlassRecall

        n = int(num_classes or 2)
        # validate_args=False: the range checks cost ~100 us a batch and repeat the loss's (cross-entropy refuses a
        # target out of range before the metrics see it)
        metrics: dict[str, Any] = {
            "acc": MulticlassAccuracy(n, average="micro", validate_args=False),
            "precision": MulticlassPrecision(n, average="macro", validate_args=False),
            "recall": MulticlassRecall(n, average="macro", validate_args=False),
            "f1": MulticlassF1Score(n, average="macro", validate_args=False),
            "auroc": MulticlassAUROC(n, average="macro", validate_args=False),
        }
        if n >= 5:
            metrics["acc_top5"] = MulticlassAccuracy(n, top_k=5, average="micro", validate_args=False)
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
