"""The names of the metrics a run logs, known before it starts, so that ``monitor=val/nope`` is refused at once instead of
after the first epoch. Nothing here imports torch.

What a run logs (see docs/evaluation.md, "Metrics"):

- ``train/loss`` and ``val/loss`` (detection: ``val/loss`` only when the plugin computes a loss from outputs);
- the task's metrics after ``val/``: classification ``acc``, ``precision``, ``recall``, ``f1``, ``auroc`` (and
  ``acc_top5`` with 5 classes or more) and per class ``acc_class/<label>``; regression ``mse``, ``rmse``,
  ``mae``, ``r2``; segmentation ``miou``, ``pixel_acc``, ``dice``; detection ``map``, ``map_50``, ``map_75``,
  ``mar_100``;
- loss parts: ``train/loss_task`` and ``train/loss_aux`` for a model whose forward returns an auxiliary loss;
  ``train/loss_<part>`` and ``val/loss_<part>`` for a plugin whose ``loss`` returns a dict of named losses;
- what a model plugin declares in ``logged_metrics`` (names or ``fnmatch`` patterns).

A model plugin that overrides ``training_step`` (it gets the LightningModule and may ``log`` anything) or a
callback plugin in the run may log names nobody can know in advance: then any name is accepted.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from typing import Any

__all__ = ["TASK_METRICS", "metric_key", "plugin_traits", "logged_metrics", "monitor_problem"]

#: The scalar metrics of each task, logged after ``val/`` (and ``test/``); metrics.py builds them.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("acc", "precision", "recall", "f1", "auroc"),
    "regression": ("mse", "rmse", "mae", "r2"),
    "segmentation": ("miou", "pixel_acc", "dice"),
    "detection": ("map", "map_50", "map_75", "mar_100"),
}


def metric_key(label: str) -> str:
    """A label made safe for a metric name: ``"sea lion"`` -> ``"sea_lion"``."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", str(label)).strip("_") or "_"


def plugin_traits(cls: Any) -> dict[str, Any]:
    """What a model plugin class tells about its logging (plain data, kept in the plugin cache)."""
    overrides = getattr(cls, "overrides", lambda _: False)
    return {"logged_metrics": [str(m) for m in getattr(cls, "logged_metrics", ()) or ()], "own_loss": bool(overrides("loss")),
            "own_step": bool(overrides("training_step")), "takes_targets": bool(getattr(cls, "takes_targets", False))}


def logged_metrics(task: str, facts: dict[str, Any], traits: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(names, patterns) a run of ``task`` logs with these data ``facts`` and plugin ``traits``."""
    names = [f"val/{m}" for m in TASK_METRICS.get(task, ())]
    patterns = [str(m) for m in traits.get("logged_metrics") or []]
    if task == "classification":
        classes = int(facts.get("num_classes") or 0)
        if classes >= 5:
            names.insert(1, "val/acc_top5")
        labels = [str(n) for n in facts.get("label_names") or range(classes)]
        names += [f"val/acc_class/{metric_key(n)}" for n in labels]
    names += ["train/loss", "train/loss_task", "train/loss_aux"]
    if task != "detection" or (traits.get("own_loss") and not traits.get("takes_targets")):
        names.append("val/loss")
    if traits.get("own_loss"):
        patterns += ["train/loss_*", "val/loss_*"]
    return names, patterns


def monitor_problem(monitor: str, task: str, facts: dict[str, Any], traits: dict[str, Any], owner: str, free: bool = False) -> str | None:
    """Why ``monitor`` will never be logged by this run, or None.

    Args:
        monitor: the metric named by ``monitor=``.
        task: the model's task.
        facts: the data facts (``num_classes``, ``label_names``).
        traits: :func:`plugin_traits` of the model plugin.
        owner: the model's name, for the message.
        free: a callback plugin takes part (it may log any name).
    """
    if free or traits.get("own_step"):
        return None
    names, patterns = logged_metrics(task, facts, traits)
    if monitor in names or any(fnmatch.fnmatchcase(monitor, p) for p in patterns):
        return None
    shown = [n for n in names if not n.startswith("val/acc_class/") and n not in ("train/loss_task", "train/loss_aux")] + patterns
    if any(n.startswith("val/acc_class/") for n in names):
        shown.append("val/acc_class/<label>")
    close = difflib.get_close_matches(monitor, names + patterns, n=1)
    did = f"did you mean {close[0]}? " if close else ""
    return f"monitor={monitor}: model={owner} ({task}) never logs it ({did}it logs {', '.join(shown)})"
