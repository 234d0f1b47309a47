"""What each task means for the core: the default loss and the check that outputs fit the data."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .errors import PluginError

__all__ = ["default_loss", "check_outputs"]


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
