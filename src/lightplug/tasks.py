"""What each task means for the core: the default loss and the check that outputs fit the data."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .errors import PluginError

__all__ = ["default_loss", "check_outputs", "check_detections"]


def default_loss(task: str, outputs: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy (classification, segmentation) or mean squared error (regression)."""
    if task in ("classification", "segmentation"):
        return F.cross_entropy(outputs, target, label_smoothing=label_smoothing)
    if task == "regression":
        return F.mse_loss(outputs.reshape(target.shape) if outputs.numel() == target.numel() else outputs, target.float())
    raise PluginError(f"task {task!r} has no default loss: the plugin must provide a loss hook")


def check_outputs(task: str, outputs: Any, batch: dict[str, Any], facts: dict[str, Any], who: str) -> None:
    """Refuse outputs that cannot fit the data, before training starts.

    Raises:
        PluginError: naming the plugin, the shape it gave and the shape the data needs.
    """
    if isinstance(outputs, tuple):
        outputs = outputs[0]
    if not torch.is_tensor(outputs) or task == "detection":
        return
    batch_size = len(batch["input"])
    target = batch["target"]
    if task == "classification":
        want = (batch_size, facts.get("num_classes"))
        if outputs.ndim != 2 or tuple(outputs.shape) != want:
            raise PluginError(f"{who} returned outputs of shape {tuple(outputs.shape)}, but the data needs {want} "
                              f"(batch, num_classes={facts.get('num_classes')})", hint="do not set num_classes by hand, or fix the model's head")
    elif task == "regression":
        if outputs.numel() != target.numel():
            raise PluginError(f"{who} returned outputs of shape {tuple(outputs.shape)}, but the targets have shape {tuple(target.shape)}")
    elif task == "segmentation":
        want = (batch_size, facts.get("num_classes"), *target.shape[1:])
        if tuple(outputs.shape) != want:
            raise PluginError(f"{who} returned outputs of shape {tuple(outputs.shape)}, but the data needs {want} (batch, classes, H, W)")


def check_detections(dets: Any, batch_size: int, who: str) -> None:
    """Refuse what a detection plugin's ``postprocess`` returned unless it is one dict per image with ``boxes``
    (``N x 4``), ``scores`` (``N``) and integer ``labels`` (``N``).

    Raises:
        PluginError: naming the plugin and the first thing that is wrong.
    """
    where = f"{who}: postprocess"
    if not isinstance(dets, (list, tuple)) or len(dets) != batch_size:
        got = f"a {type(dets).__name__} of {len(dets)}" if isinstance(dets, (list, tuple)) else type(dets).__name__
        raise PluginError(f"{where} returned {got}, but detection needs a list of {batch_size} dicts (one per image)",
                          hint="return [{'boxes': N x 4, 'scores': N, 'labels': N}, ...]; see docs/detection.md")
    for i, d in enumerate(dets):
        missing = [k for k in ("boxes", "scores", "labels") if not isinstance(d, dict) or k not in d]
        if missing:
            raise PluginError(f"{where} returned image {i} without {', '.join(missing)}", hint="each image needs boxes, scores and labels")
        boxes, scores, labels = d["boxes"], d["scores"], d["labels"]
        if not all(torch.is_tensor(t) for t in (boxes, scores, labels)):
            raise PluginError(f"{where}: image {i}'s boxes, scores and labels must be tensors")
        n = len(scores)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) != n or labels.shape != (n,) or scores.ndim != 1:
            raise PluginError(f"{where}: image {i} has boxes {tuple(boxes.shape)}, scores {tuple(scores.shape)} and labels {tuple(labels.shape)}; "
                              "expected N x 4, N and N")
        if labels.is_floating_point():
            raise PluginError(f"{where}: image {i}'s labels are {labels.dtype}; expected integers (class indices)")
