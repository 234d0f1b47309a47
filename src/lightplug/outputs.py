"""What a model's forward returned, reduced to what the core needs: the predictions, a loss the model computed,
named loss parts, and auxiliary logits to train on.

The shapes real models return:

- a tensor: the predictions;
- ``(predictions, loss)`` with a scalar loss, or a dict of scalar losses (torchvision's detectors in training);
- a namedtuple of tensors (torchvision's GoogLeNet ``(logits, aux_logits2, aux_logits1)`` and Inception v3
  ``(logits, aux_logits)`` in training): the first field is the prediction, the others are auxiliary logits;
- a dict with ``out`` (torchvision's segmentation models, with ``aux`` when built with ``aux_loss=True``);
- an object with ``.logits`` (Hugging Face's ``ModelOutput``).

Validation, ``predict`` and export see the main output only. In training, auxiliary logits of the same shape add
the task's loss on them, weighted as the references do: 0.5 for a segmentation model's ``aux`` (torchvision's
segmentation reference), 0.3 for each auxiliary classifier of a namedtuple (the GoogLeNet paper's weight;
torchvision's classification reference trains neither GoogLeNet nor Inception v3, whose weights are ported).
"""

from __future__ import annotations

from typing import Any

__all__ = ["split_outputs", "main_output", "auxiliary_logits", "AUX_WEIGHT_SEGMENTATION", "AUX_WEIGHT_CLASSIFIER"]

#: Weight of the loss on a torchvision segmentation model's ``aux`` output (torchvision's segmentation reference).
AUX_WEIGHT_SEGMENTATION = 0.5
#: Weight of the loss on each auxiliary classifier of GoogLeNet and Inception v3 (the GoogLeNet paper).
AUX_WEIGHT_CLASSIFIER = 0.3


def _is_scalar(t: Any) -> bool:
    import torch

    return torch.is_tensor(t) and t.ndim == 0


def _is_namedtuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def main_output(outputs: Any) -> Any:
    """The predictions in ``outputs`` (see the module docstring); anything else is returned as it is.

    Example:
        >>> main_output({"out": 1, "aux": 2})
        1
    """
    import torch

    if isinstance(outputs, tuple) and len(outputs) == 2 and _is_scalar(outputs[1]):
        return outputs[0]
    if _is_namedtuple(outputs) and outputs and torch.is_tensor(outputs[0]):
        return outputs[0]
    if isinstance(outputs, dict) and "out" in outputs:
        return outputs["out"]
    if not torch.is_tensor(outputs) and not isinstance(outputs, (dict, list, tuple)) and torch.is_tensor(getattr(outputs, "logits", None)):
        return outputs.logits
    if isinstance(outputs, dict) and not (outputs and all(_is_scalar(v) for v in outputs.values())) and torch.is_tensor(outputs.get("logits")):
        return outputs["logits"]  # a ModelOutput is a dict too
    return outputs


def split_outputs(outputs: Any) -> tuple[Any, Any, dict[str, Any]]:
    """Separate what a model returned into predictions, a loss it computed, and named loss parts.

    A model may return predictions (in any of the forms of the module docstring), ``(predictions, loss)``, or a
    dict of losses (torchvision's detectors in training).
    """
    import torch

    if isinstance(outputs, tuple) and len(outputs) == 2 and _is_scalar(outputs[1]) and not _is_namedtuple(outputs):
        return outputs[0], outputs[1], {}
    if isinstance(outputs, dict) and outputs and all(_is_scalar(v) for v in outputs.values()):
        parts = {str(k).removeprefix("loss_"): v for k, v in outputs.items()}
        return None, torch.stack(list(outputs.values())).sum(), parts
    return main_output(outputs), None, {}


def auxiliary_logits(outputs: Any, preds: Any) -> list[tuple[str, Any, float]]:
    """Auxiliary outputs to train on, as ``(name, logits, weight)``: those of the same shape as ``preds``."""
    import torch

    if not torch.is_tensor(preds):
        return []
    found: list[tuple[str, Any, float]] = []
    if isinstance(outputs, dict) and "out" in outputs and torch.is_tensor(outputs.get("aux")):
        found.append(("aux", outputs["aux"], AUX_WEIGHT_SEGMENTATION))
    elif _is_namedtuple(outputs) and len(outputs) > 1 and outputs[0] is preds:
        for name, value in zip(outputs._fields[1:], outputs[1:], strict=True):
            if torch.is_tensor(value):
                found.append((str(name), value, AUX_WEIGHT_CLASSIFIER))
    return [(n, t, w) for n, t, w in found if t.shape == preds.shape]
