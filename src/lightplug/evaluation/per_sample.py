"""Per-sample numbers of a validation batch: prediction, confidence, loss and whether it was right.

What each task reports (one entry per sample):

- classification: the predicted class, the softmax maximum (confidence), the cross-entropy, correct;
- regression: the predicted values, the mean absolute error (in the ``confidence`` column), the squared
  error, no ``correct``;
- segmentation: the classes present in the true and predicted masks, the mean softmax maximum over
  pixels, the mean cross-entropy, the image's mean IoU (``correct`` when it is at least 0.5) and its pixel
  accuracy.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["PER_SAMPLE_TASKS", "batch_results", "image_iou"]

#: Tasks whose validation outputs can be split into per-sample results.
PER_SAMPLE_TASKS = ("classification", "regression", "segmentation")


def image_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean IoU of each image over the classes present in its target or prediction.

    Args:
        pred, target: ``B x H x W`` class indices.
        num_classes: number of classes.

    Returns:
        ``B`` values in [0, 1].

    Example:
        >>> t = torch.tensor([[[0, 1], [1, 1]]])
        >>> image_iou(t, t, 2)
        tensor([1.])
    """
    p = F.one_hot(pred.flatten(1), num_classes).bool()
    t = F.one_hot(target.flatten(1), num_classes).bool()
    inter = (p & t).sum(1).float()
    union = (p | t).sum(1).float()
    present = union > 0
    return torch.where(present, inter / union.clamp(min=1), torch.zeros_like(union)).sum(1) / present.sum(1).clamp(min=1)


def _classification(preds: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    logits = preds.float()
    probs = logits.softmax(dim=-1)
    conf, pred = probs.max(dim=-1)
    return {"target": target, "prediction": pred, "confidence": conf, "loss": F.cross_entropy(logits, target, reduction="none"),
            "correct": pred == target}


def _regression(preds: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    n = len(target)
    tgt = target.float().reshape(n, -1)
    out = preds.float().reshape(n, -1)
    return {"target": tgt, "prediction": out, "loss": ((out - tgt) ** 2).mean(1)}


def _segmentation(preds: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    logits = preds.float()
    num_classes = logits.shape[1]
    probs = logits.softmax(dim=1)
    conf, pred = probs.max(dim=1)
    loss = F.cross_entropy(logits, target, reduction="none").flatten(1).mean(1)
    iou = image_iou(pred, target, num_classes)
    present_t = F.one_hot(target.flatten(1), num_classes).any(1)
    present_p = F.one_hot(pred.flatten(1), num_classes).any(1)
    return {"target": present_t, "prediction": present_p, "confidence": conf.flatten(1).mean(1), "loss": loss, "iou": iou,
            "pixel_acc": (pred == target).float().flatten(1).mean(1), "correct": iou >= 0.5}


def batch_results(task: str, preds: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """Per-sample tensors of one validation batch (detached, on the batch's device: no copy or sync per batch),
    or ``None`` when ``preds`` cannot be split.

    Args:
        task: the model's task.
        preds: what ``validation_step`` returned (the model's predictions).
        batch: the batch (``target`` and ``index`` are used).

    Returns:
        ``index``, ``target``, ``prediction``, ``loss`` (every task), ``confidence``, ``correct``
        (classification, segmentation), ``iou`` and ``pixel_acc`` (segmentation).
    """
    if not torch.is_tensor(preds) or task not in PER_SAMPLE_TASKS:
        return None
    with torch.no_grad():
        target = batch["target"]
        if task == "classification":
            if preds.ndim != 2:
                return None
            out = _classification(preds, target)
        elif task == "regression":
            out = _regression(preds, target)
        else:
            if preds.ndim != 4:
                return None
            out = _segmentation(preds, target)
        out["index"] = batch["index"]
        return {k: v.detach() for k, v in out.items()}
