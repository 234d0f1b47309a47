"""The evaluation callbacks a run gets from its config: the best-epoch schedule (:mod:`.artifacts`), the confusion
matrix (classification), the per-sample results (classification, regression, segmentation) and the detection
results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["evaluation_callbacks"]


def _every_epoch(cfg: dict[str, Any]) -> bool:
    value = (cfg.get("results") or {}).get("every_epoch", False)
    if not isinstance(value, bool):
        raise ConfigError(f"results.every_epoch={value}: expected true or false (write val_predictions/epoch_NNN.csv for every epoch)")
    return value


def _box_score(cfg: dict[str, Any]) -> float:
    value = (cfg.get("results") or {}).get("box_score", 0.25)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"results.box_score={value}: expected a number from 0 to 1 (boxes scoring less are not counted or drawn)")
    return float(value)


def _refresh_seconds(cfg: dict[str, Any]) -> float | None:
    from .artifacts import DEFAULT_REFRESH_SECONDS

    results = cfg.get("results") or {}
    value = results.get("refresh_seconds", DEFAULT_REFRESH_SECONDS)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"results.refresh_seconds={value}: expected a number of seconds >= 0, or null (write the best epoch's files "
                          "only when the run ends)")
    return float(value)


def evaluation_callbacks(cfg: dict[str, Any], out: Path, task: str | None) -> list[Any]:
    """The :class:`~.artifacts.BestEpoch` schedule and the callbacks that write ``confusion_matrix.*``,
    ``val_predictions.csv`` and the detection files into the run folder ``out``.

    Args:
        cfg: the resolved run config (``facts``, ``monitor``, ``monitor_mode``, ``results.every_epoch``,
            ``results.refresh_seconds``).
        out: the run folder.
        task: the model's task; ``None`` adds the schedule only (for callback plugins that draw).
    """
    from .artifacts import BestEpoch
    from .per_sample import PER_SAMPLE_TASKS

    callbacks: list[Any] = [BestEpoch(cfg.get("monitor"), cfg.get("monitor_mode") or "max", _refresh_seconds(cfg), _every_epoch(cfg), out)]
    facts = cfg.get("facts") or {}
    if task == "classification" and facts.get("num_classes"):
        from .confusion import ConfusionMatrix

        callbacks.append(ConfusionMatrix(out, int(facts["num_classes"]), list(facts.get("label_names") or [])))
    if task == "detection":
        from .detection import DetectionResults

        callbacks.append(DetectionResults(out, cfg["monitor"], cfg.get("monitor_mode") or "max", _every_epoch(cfg), _box_score(cfg)))
    if task in PER_SAMPLE_TASKS:
        from .predictions import PerSampleResults

        callbacks.append(PerSampleResults(out, task, cfg["monitor"], cfg.get("monitor_mode") or "max", _every_epoch(cfg)))
    return callbacks
