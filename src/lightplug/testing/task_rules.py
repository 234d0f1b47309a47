"""What each task requires of a model's outputs in the contract checks, and targets that fit them.

Used by :mod:`lightplug.testing.model_checks` (forward and backward checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .check import Fail

__all__ = ["shape_rule", "detection_rule", "targets"]


def shape_rule(task: str, values: Mapping[str, Any], x: Any, preds: Any) -> str:
    """Check the predictions' shape against what the task needs; return the rule it satisfies."""
    import torch

    batch = len(x)
    if not torch.is_tensor(preds):
        raise Fail(f"forward returned {type(preds).__name__}; a {task} model must return a tensor of predictions")
    shape = tuple(preds.shape)
    if task == "classification":
        n = values.get("num_classes")
        if n is None:
            if preds.ndim != 2 or shape[0] != batch:
                raise Fail(f"output {shape}, but classification needs (batch={batch}, num_classes)")
            return f"(batch, classes={shape[1]}); no num_classes field, so the data must have {shape[1]} classes"
        if shape != (batch, n):
            raise Fail(f"output {shape}, but classification needs (batch, num_classes) = {(batch, n)}")
        return f"(batch, num_classes={n})"
    if task == "regression":
        k = values.get("num_outputs")
        if k is None:
            if preds.ndim not in (1, 2) or shape[0] != batch:
                raise Fail(f"output {shape}, but regression needs (batch, num_outputs) or (batch,)")
            return "(batch, outputs); no num_outputs field"
        if shape != (batch, k) and not (k == 1 and shape == (batch,)):
            raise Fail(f"output {shape}, but regression needs (batch, num_outputs) = {(batch, k)}" + (f" or {(batch,)}" if k == 1 else ""))
        return f"(batch, num_outputs={k})"
    if task == "segmentation":
        n = values.get("num_classes") or (shape[1] if preds.ndim == 4 else None)
        want = (batch, n, *tuple(x.shape[-2:]))
        if shape != want:
            raise Fail(f"output {shape}, but segmentation needs (batch, num_classes, H, W) = {want}")
        return f"(batch, num_classes={n}, H, W)"
    return f"task {task}: shape not checked"


def detection_rule(plugin: Any, x: Any, outputs: Any) -> str:
    """A detector's eval outputs must become one ``{"boxes", "scores", "labels"}`` dict per image through ``postprocess``."""
    import torch

    from ..errors import PluginError
    from ..plugin import DetectionSettings
    from ..tasks import check_detections

    if not type(plugin).overrides("postprocess"):
        raise Fail("a detection plugin must override postprocess(outputs, batch, settings) to turn outputs into boxes")
    with torch.no_grad():
        dets = plugin.postprocess(outputs, None, DetectionSettings())
    try:
        check_detections(dets, len(x), "the model")
    except PluginError as exc:
        raise Fail(exc.message) from None
    boxes = sum(len(d["scores"]) for d in dets)
    return f"postprocess -> {len(dets)} dicts of boxes/scores/labels ({boxes} boxes at conf 0.001)"


def targets(task: str, preds: Any, x: Any) -> Any:
    """Random targets that fit the predictions, as the task's data would give them."""
    import torch

    gen = torch.Generator().manual_seed(0)
    batch = len(x)
    if task == "classification":
        return torch.randint(0, int(preds.shape[1]), (batch,), generator=gen)
    if task == "regression":
        return torch.randn(tuple(preds.shape) if preds.ndim == 2 else (batch, 1), generator=gen)
    if task == "segmentation":
        return torch.randint(0, int(preds.shape[1]), (batch, *preds.shape[2:]), generator=gen)
    h, w = (int(s) for s in x.shape[-2:])  # detection: 2 boxes in the first image, none in the last, 1 in the others
    one = {"boxes": torch.tensor([[0.0, 0.0, w / 2, h / 2]]), "labels": torch.tensor([0])}
    targets = [dict(one) for _ in range(batch)]
    targets[0] = {"boxes": torch.tensor([[0.0, 0.0, w / 2, h / 2], [w / 4, h / 4, w - 1.0, h - 1.0]]), "labels": torch.tensor([0, 0])}
    if batch > 1:
        targets[-1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    return targets
