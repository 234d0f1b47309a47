"""The run's own data for export: calibration samples from the training split (static int8 quantization)
and the validation split (the int8 task-level check and the benchmark's task metric, computed with the
torchmetrics code of training, :mod:`lightplug.metrics`).

The data is rebuilt from the checkpoint's ``data`` section as ``lightplug test`` does
(:func:`lightplug.evaluation.evaluate.build_datamodule`); only an installed data plugin is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ._util import first_line
from .report import ExportError

__all__ = ["RunData", "load_run_data", "MAIN_METRIC", "task_metric", "agreement", "run_batched"]

#: The metric the benchmark reports per task, as training logs it after ``val/`` (lower is better for ``mse``).
MAIN_METRIC = {"classification": "acc", "regression": "mse", "segmentation": "miou"}


class RunData:
    """A built data module of a checkpoint, with the two views export needs."""

    def __init__(self, name: str, dm: Any) -> None:
        self.name, self.dm = name, dm

    def _loader(self, stage: str) -> Any:
        if stage == "train":
            self.dm.setup("fit")
            return self.dm.train_dataloader()
        self.dm.setup("validate")
        return self.dm.val_dataloader()

    def calibration(self, samples: int, batch: int, seed: int = 0) -> list[Any]:
        """The inputs of the first ``samples`` training samples (the loader's order under ``seed``), in batches
        of at most ``batch``, as float32 numpy arrays."""
        import torch

        torch.manual_seed(seed)
        out: list[Any] = []
        taken = 0
        for item in self._loader("train"):
            x = item["input"][: samples - taken]
            for start in range(0, len(x), batch):
                out.append(x[start : start + batch].float().numpy())
            taken += len(x)
            if taken >= samples:
                break
        return out

    def validation(self, limit: int | None = None) -> Iterator[tuple[Any, Any]]:
        """``(inputs, targets)`` batches of the validation split (its first ``limit`` samples)."""
        seen = 0
        for item in self._loader("val"):
            x, y = item["input"], item["target"]
            if limit is not None:
                x, y = x[: limit - seen], y[: limit - seen]
            if len(x):
                yield x, y
            seen += len(x)
            if limit is not None and seen >= limit:
                return


def load_run_data(meta: dict[str, Any]) -> tuple[RunData | None, str | None]:
    """The run's data, or ``(None, why not)`` in one line (no data plugin, files gone, ...)."""
    from ..evaluation.evaluate import build_datamodule

    try:
        name, _, dm = build_datamodule(meta)
        return RunData(name, dm), None
    except Exception as exc:  # noqa: BLE001 - a data plugin may raise anything; export goes on without it
        return None, f"the run's data cannot be loaded ({first_line(exc)})"


def run_batched(runner: Callable[[Any], list[Any]], x: Any, batch: int | None) -> Any:
    """The first output of ``runner`` on ``x``, in chunks of ``batch`` (a file exported with a fixed batch)."""
    import numpy as np

    if batch is None or len(x) == batch:
        return np.asarray(runner(x)[0])
    return np.concatenate([np.asarray(runner(x[i : i + batch])[0]) for i in range(0, len(x), batch)])


def agreement(task: str, reference: Any, candidate: Any) -> float:
    """How often ``candidate`` gives the task's answer ``reference`` gives: the same top-1 class
    (classification), the same class per pixel (segmentation), or, for any other output, a value within
    0.1 standard deviations of the reference outputs of the same column."""
    import numpy as np

    ref, got = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if task in ("classification", "segmentation") and ref.ndim >= 2 and ref.shape[1] > 1:
        return float((ref.argmax(axis=1) == got.argmax(axis=1)).mean())
    flat_ref, flat_got = ref.reshape(len(ref), -1), got.reshape(len(got), -1)
    scale = flat_ref.std(axis=0) if len(ref) > 1 else np.abs(flat_ref).max(axis=0)
    return float((np.abs(flat_got - flat_ref) <= 0.1 * np.maximum(scale, 1e-12)).mean())


def task_metric(task: str, meta: dict[str, Any], runner: Callable[[Any], list[Any]], batches: list[tuple[Any, Any]],
                batch: int | None = None) -> dict[str, float]:
    """The task's metrics (:func:`lightplug.metrics.task_metrics`) of ``runner`` on ``batches``, keyed ``val/<name>``."""
    import torch

    from ..metrics import metric_inputs, task_metrics

    facts = meta.get("facts") or {}
    metrics = task_metrics(task, facts.get("num_classes"), int(facts.get("num_outputs") or 1))
    try:
        for x, y in batches:
            out = torch.from_numpy(run_batched(runner, x, batch)).float()
            metrics.update(*metric_inputs(task, out, y))
        return {f"val/{k}": float(v) for k, v in metrics.compute().items()}
    except (RuntimeError, ValueError) as exc:  # the checkpoint's task or facts do not fit its model's outputs (an untrusted file)
        raise ExportError(f"the {task} metrics cannot be computed on this model's outputs and the validation targets "
                          f"({str(exc).strip().splitlines()[0][:160]}); the checkpoint's task or facts do not fit its model") from None
