"""The ``lightplug.meta`` JSON of an exported file is untrusted: :func:`meta_problem` says, in one line, what in it
``predict`` cannot use (a task it does not know, preprocessing that is not numbers, labels that are not names)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["meta_problem"]

_TASKS = ("classification", "regression", "segmentation", "detection")
_LAYOUTS = ("image", "flat")


def _numbers(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items)


def meta_problem(meta: dict[str, Any]) -> str | None:
    """What makes ``meta`` unusable, or None.

    Example:
        >>> meta_problem({"task": "foo"})
        "its task 'foo' is not one of classification, regression, segmentation, detection"
    """
    task = meta.get("task", "classification")
    if task not in _TASKS:
        return f"its task {str(task)[:40]!r} is not one of {', '.join(_TASKS)}"
    pre = meta.get("preprocessing", {})
    if not isinstance(pre, dict):
        return "its preprocessing is not a JSON object"
    if pre.get("layout", "image") not in _LAYOUTS:
        return f"its preprocessing layout {str(pre.get('layout'))[:40]!r} is not one of {', '.join(_LAYOUTS)}"
    for key in ("mean", "std", "source_range", "target_mean", "target_std"):
        if key in pre and pre[key] is not None and not _numbers(pre[key]):
            return f"its preprocessing {key} is not a finite number or a list of them"
    for key in ("in_features", "image_size", "num_classes", "in_channels"):
        value = pre.get(key, meta.get(key) if key == "num_classes" else None)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 1_000_000):
            if not (key == "image_size" and isinstance(value, list) and all(isinstance(v, int) and 0 < v <= 100_000 for v in value)):
                return f"its {key} {str(value)[:40]!r} is not a positive whole number"
    names = meta.get("label_names", [])
    if not isinstance(names, list) or not all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in names):
        return "its label_names are not a list of names"
    return None
