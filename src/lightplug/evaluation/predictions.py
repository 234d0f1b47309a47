"""Per-sample validation results: ``<run_dir>/val_predictions.csv`` for the best epoch (written when the run ends
and at most every ``results.refresh_seconds`` during it, see :mod:`.artifacts`), and one file per epoch in
``<run_dir>/val_predictions/`` with ``results.every_epoch=true``.

Columns: ``id`` (the sample's id in the data: a file path or a row number), ``index`` (its position in
the validation split), ``target``, ``prediction``, ``confidence`` (classification and segmentation: the
softmax maximum; regression: the absolute error), ``loss`` (the task's default loss of that sample),
``correct``, ``epoch``; segmentation adds ``iou`` and ``pixel_acc``. Class names are written, and
regression values are in the data's units (de-standardised when the data standardised its targets).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch

from .artifacts import BestEpochArtifacts
from .per_sample import batch_results
from .results import PREDICTIONS_FILE

__all__ = ["PerSampleResults", "PREDICTIONS_FILE", "sample_id_lookup", "result_rows"]


def sample_id_lookup(datamodule: Any, split: str = "val") -> dict[int, str]:
    """``batch["index"]`` value -> the sample's id (``datamodule.sample_ids[split]``).

    By the contract a batch's ``index`` is the sample's position in its split. A dataset that yields other
    index values and says which (an ``indices`` attribute aligned with its ids, as ``ArrayDataset`` has) is
    mapped through them instead.
    """
    ids = list((getattr(datamodule, "sample_ids", None) or {}).get(split) or [])
    dataset = (getattr(datamodule, "datasets", None) or {}).get(split)
    values = getattr(dataset, "indices", None)
    if values is not None and len(values) == len(ids):
        return {int(v): ids[p] for p, v in enumerate(values)}
    return dict(enumerate(ids))


def _names(values: torch.Tensor, label_names: list[str]) -> str:
    """The class names of a 0/1 presence vector (segmentation), background (class 0) left out."""
    present = [label_names[i] if i < len(label_names) else str(i) for i in torch.nonzero(values).flatten().tolist() if i > 0]
    return "+".join(present) or (label_names[0] if label_names else "0")


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def result_rows(task: str, parts: dict[str, torch.Tensor], ids: dict[int, str], label_names: list[str],
                preprocessing: dict[str, Any], epoch: int) -> list[dict[str, Any]]:
    """CSV rows (dicts) from the per-sample tensors of a whole epoch, sorted by index, duplicates dropped."""
    order = torch.argsort(parts["index"])
    rows, seen = [], set()
    mean = torch.as_tensor(preprocessing.get("target_mean") or [0.0], dtype=torch.float32)
    std = torch.as_tensor(preprocessing.get("target_std") or [1.0], dtype=torch.float32)
    for i in order.tolist():
        index = int(parts["index"][i])
        if index in seen:  # DistributedSampler pads the last batch with repeated samples
            continue
        seen.add(index)
        row: dict[str, Any] = {"id": ids.get(index, str(index)), "index": index}
        if task == "classification":
            ti, pi = int(parts["target"][i]), int(parts["prediction"][i])
            row.update(target=label_names[ti] if ti < len(label_names) else ti, prediction=label_names[pi] if pi < len(label_names) else pi,
                       confidence=_fmt(float(parts["confidence"][i])), correct=bool(parts["correct"][i]))
        elif task == "regression":
            k = parts["target"].shape[1]
            t = parts["target"][i] * std[:k].expand(k) + mean[:k].expand(k)
            p = parts["prediction"][i][:k] * std[:k].expand(k) + mean[:k].expand(k)
            row.update(target=" ".join(_fmt(v) for v in t.tolist()), prediction=" ".join(_fmt(v) for v in p.tolist()),
                       confidence=_fmt(float((p - t).abs().mean())), correct="")
        else:
            row.update(target=_names(parts["target"][i], label_names), prediction=_names(parts["prediction"][i], label_names),
                       confidence=_fmt(float(parts["confidence"][i])), correct=bool(parts["correct"][i]))
        row["loss"] = _fmt(float(parts["loss"][i]))
        row["epoch"] = epoch
        if task == "segmentation":
            row.update(iou=_fmt(float(parts["iou"][i])), pixel_acc=_fmt(float(parts["pixel_acc"][i])))
        rows.append(row)
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as CSV through a temporary file, so a reader never sees half a file."""
    columns = ["id", "index", "target", "prediction", "confidence", "loss", "correct", "epoch"]
    if rows:
        columns = [c for c in columns if c in rows[0]] + [k for k in rows[0] if k not in columns] if "target" in rows[0] else list(rows[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


class PerSampleResults(BestEpochArtifacts):
    """Collects per-sample validation results; writes them for the best epoch (and every epoch if asked).

    Each validation batch adds its per-sample tensors (a few numbers per sample); when the validation is the
    best so far they are concatenated (and gathered from every process under DDP) and kept until written.

    Args:
        out_dir: the run folder.
        task: the model's task.
        monitor, mode: kept for callers of the old signature; the run's :class:`~.artifacts.BestEpoch` decides.
        every_epoch: kept likewise (``results.every_epoch`` is read from the run's :class:`~.artifacts.BestEpoch`).
    """

    def __init__(self, out_dir: str | Path, task: str, monitor: str | None = None, mode: str = "max", every_epoch: bool = False) -> None:
        super().__init__()
        self.out_dir, self.task = Path(out_dir), task
        self._parts: list[dict[str, torch.Tensor]] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._parts = []

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking or not isinstance(batch, dict):
            return
        parts = batch_results(self.task, outputs, batch)
        if parts is not None:
            self._parts.append(parts)

    def collect(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, torch.Tensor] | None:
        gathered = self._gather(trainer)  # every process takes part
        self._parts = []
        if not trainer.is_global_zero or not gathered:
            return None
        return {k: torch.cat([p[k] for p in gathered]) for k in gathered[0]}

    def render(self, trainer: L.Trainer, pl_module: L.LightningModule, data: dict[str, torch.Tensor], epoch: int, per_epoch: bool) -> dict[str, int]:
        rows = self._rows(data, trainer, pl_module, epoch)
        path = self.out_dir / "val_predictions" / f"epoch_{epoch:03d}.csv" if per_epoch else self.out_dir / PREDICTIONS_FILE
        write_rows(path, rows)
        return {str(path): epoch}

    def _rows(self, merged: dict[str, torch.Tensor], trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> list[dict[str, Any]]:
        """CSV rows from the whole validation's per-sample tensors."""
        meta = getattr(pl_module, "meta", {}) or {}
        return result_rows(self.task, merged, sample_id_lookup(getattr(trainer, "datamodule", None)), list(meta.get("label_names") or []),
                           dict(meta.get("preprocessing") or {}), epoch)

    def _gather(self, trainer: L.Trainer) -> list[dict[str, torch.Tensor]]:
        """Every rank's batches on the CPU (all ranks take part; under one process, this rank's)."""
        parts = [{k: v.cpu() for k, v in p.items()} for p in self._parts]
        if trainer.world_size <= 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return parts
        everyone: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(everyone, parts)
        return [p for parts in everyone for p in (parts or [])]
