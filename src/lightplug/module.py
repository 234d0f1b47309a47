"""``PluginModule``: the LightningModule that runs any model plugin with loss, metrics and optimizers
from config, calling the plugin's hooks where it has them."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from .metrics import detection_metric, metric_inputs, summarise_detection, task_metrics
from .optim import build_optimizer, build_scheduler, optimizer_impl
from .outputs import auxiliary_logits, split_outputs
from .plugin import DetectionSettings
from .tasks import default_loss

__all__ = ["PluginModule", "split_outputs", "sum_losses"]


def sum_losses(loss: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A loss hook's result as (the loss to minimise, named parts): a scalar, or a dict of scalars summed."""
    if isinstance(loss, dict):
        parts = {str(k).removeprefix("loss_"): v for k, v in loss.items()}
        return torch.stack([v.reshape(()) for v in loss.values()]).sum(), {k: v.detach() for k, v in parts.items()}
    return loss, {}


def detection_settings(run_cfg: dict[str, Any]) -> DetectionSettings:
    """The ``detection`` section of a run config (defaults where missing, e.g. in older checkpoints)."""
    d = run_cfg.get("detection") or {}
    base = DetectionSettings()
    return DetectionSettings(conf=float(d.get("conf", base.conf)), iou=float(d.get("iou", base.iou)), max_det=int(d.get("max_det", base.max_det)))


class PluginModule(L.LightningModule):
    """Wraps a plugin's ``nn.Module`` (``self.net``) for training, validation and testing.

    Args:
        net: the module the plugin built.
        plugin: the plugin object (its hooks are used when it overrides them).
        run_cfg: the resolved run config (plain dict): optimizer, scheduler, loss, trainer, monitor.
        meta: the self-description stored in every checkpoint (plain data only).
    """

    def __init__(self, net: nn.Module, plugin: Any, run_cfg: dict[str, Any], meta: dict[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.plugin = plugin
        self.run_cfg = run_cfg
        self.meta = meta
        self.task: str = meta["task"]
        self.automatic_optimization = not getattr(plugin, "manual_optimization", False)
        facts = run_cfg.get("facts", {})
        num_outputs = int(facts.get("num_outputs") or 1)
        if self.task in ("classification", "regression", "segmentation"):
            metrics = task_metrics(self.task, facts.get("num_classes"), num_outputs)
            self.val_metrics = metrics.clone(prefix="val/")
            self.test_metrics = metrics.clone(prefix="test/")
        self.detection = detection_settings(run_cfg)
        if self.task == "detection":
            self.val_metrics = detection_metric()
            self.test_metrics = detection_metric()
        #: The last validation's per-class AP and precision-recall curves (detection), for the evaluation callbacks.
        self.detection_summary: dict[str, Any] | None = None
        self._label_smoothing = float(run_cfg.get("loss", {}).get("label_smoothing", 0.0))
        self._train_sums: dict[str, torch.Tensor] = {}  # this epoch's loss sums (weighted by batch size), on the device
        self._train_counts: dict[str, int] = {}
        self._eval_sums: dict[str, torch.Tensor] = {}  # the same for the current validation or test run
        self._eval_counts: dict[str, int] = {}
        #: The current validation's (test's) metric inputs, kept on the device for one ``update`` at its end.
        self._eval_inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: Any) -> Any:
        return self.net(x)

    def _hook(self, name: str) -> bool:
        return type(self.plugin).overrides(name) if hasattr(type(self.plugin), "overrides") else False

    def compute(self, batch: dict[str, Any]) -> tuple[Any, torch.Tensor, dict[str, torch.Tensor]]:
        """Forward a batch and return (predictions, loss, loss parts)."""
        takes_targets = getattr(self.plugin, "takes_targets", False)
        outputs = self.net(batch["input"], batch["target"]) if takes_targets else self.net(batch["input"])
        preds, loss, parts = split_outputs(outputs)
        if loss is not None and takes_targets:
            return preds, loss, parts
        aux = loss
        if self._hook("loss"):
            loss, parts = sum_losses(self.plugin.loss(preds, batch))
        else:
            smoothing = self._label_smoothing if self.training else 0.0
            loss = default_loss(self.task, preds, batch["target"], smoothing)
            extra = auxiliary_logits(outputs, preds) if self.training else []  # GoogLeNet, Inception v3, torchvision segmentation
            if extra:
                parts = {"main": loss.detach()}
                for name, logits, weight in extra:
                    part = default_loss(self.task, logits, batch["target"], smoothing)
                    parts[name] = part.detach()
                    loss = loss + weight * part
        if aux is not None:
            parts = {**parts, "task": loss.detach(), "aux": aux.detach()}
            loss = loss + aux
        return preds, loss, parts

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if self._hook("training_step"):
            loss = self.plugin.training_step(self, batch, batch_idx)
            if loss is None:  # the plugin stepped its own optimizers
                return None
            parts: dict[str, torch.Tensor] = {}
        else:
            _, loss, parts = self.compute(batch)
        size = len(batch["input"])
        self._accumulate("train/loss", loss, size)
        for name, value in parts.items():
            self._accumulate(f"train/loss_{name}", value, size)
        return loss

    def _accumulate(self, name: str, value: torch.Tensor, size: int, train: bool = True) -> None:
        """Add a batch's loss, weighted by its size, to this epoch's (or this validation's) sum: one in-place op
        on the device, no host sync. ``self.log`` on every step cost 0.4-0.6 ms of CPU per step on 2 cores
        (benchmarks/RESULTS.md)."""
        sums, counts = (self._train_sums, self._train_counts) if train else (self._eval_sums, self._eval_counts)
        total = sums.get(name)
        if total is None:
            total = sums[name] = torch.zeros((), dtype=torch.promote_types(value.dtype, torch.float32), device=value.device)
            counts[name] = 0
        total.add_(value.detach(), alpha=size)
        counts[name] += size

    def _log_eval_losses(self, stage: str) -> None:
        """Log the validation (test) losses once, as the mean over samples synced across processes, as a
        ``self.log(..., on_epoch=True)`` on every batch did."""
        for name, total in self._eval_sums.items():
            count = self._eval_counts[name]
            self.log(name, total / count, prog_bar=name == f"{stage}/loss" and stage == "val", batch_size=count, sync_dist=True)
        self._eval_sums, self._eval_counts = {}, {}

    def on_validation_epoch_start(self) -> None:
        self._eval_sums, self._eval_counts, self._eval_inputs = {}, {}, []

    def on_test_epoch_start(self) -> None:
        self._eval_sums, self._eval_counts, self._eval_inputs = {}, {}, []

    def on_train_epoch_start(self) -> None:
        self._train_sums, self._train_counts = {}, {}

    def on_train_epoch_end(self) -> None:
        """Log the epoch's mean losses, as ``self.log(..., on_epoch=True)`` on every step did: the mean over
        samples, synced across processes (Lightning sums value x batch_size and batch sizes over ranks)."""
        for name, total in self._train_sums.items():
            count = self._train_counts[name]
            self.log(name, total / count, prog_bar=name == "train/loss", batch_size=count, sync_dist=True)
        self._train_sums, self._train_counts = {}, {}

    def _detection_step(self, batch: dict[str, Any], stage: str) -> list[dict[str, torch.Tensor]]:
        """Raw outputs -> the plugin's loss (when it computes one from outputs) -> boxes after ``postprocess``.

        A ``takes_targets`` model (torchvision's detectors) returns detections, not losses, in eval mode:
        there is no validation loss then."""
        outputs = self.net(batch["input"])
        size = len(batch["input"])
        if not getattr(self.plugin, "takes_targets", False) and self._hook("loss"):
            loss, parts = sum_losses(self.plugin.loss(outputs, batch))
            self._accumulate(f"{stage}/loss", loss, size, train=False)
            for name, value in parts.items():
                self._accumulate(f"{stage}/loss_{name}", value, size, train=False)
        dets = self.plugin.postprocess(outputs, batch, self.detection)
        dets = [{k: dets[i][k].detach().to(self.device) for k in ("boxes", "scores", "labels")} for i in range(len(dets))]
        getattr(self, f"{stage}_metrics").update(dets, [{"boxes": t["boxes"], "labels": t["labels"]} for t in batch["target"]])
        return dets

    def _eval_step(self, batch: dict[str, Any], stage: str) -> Any:
        if self.task == "detection":
            return self._detection_step(batch, stage)
        preds, loss, _ = self.compute(batch)
        if self._hook("postprocess"):
            preds = self.plugin.postprocess(preds, batch)
        self._accumulate(f"{stage}/loss", loss, len(batch["input"]), train=False)  # logged once, at the end of the run
        metrics = getattr(self, f"{stage}_metrics", None)
        if metrics is not None:
            outputs, target = metric_inputs(self.task, preds, batch["target"])
            if self.task in ("classification", "regression"):  # N x C at most: one update at the end of the run
                self._eval_inputs.append((outputs.detach(), target.detach()))
            else:
                metrics.update(outputs, target)
        return preds

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        return self._eval_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        preds, _, _ = split_outputs(self.net(batch["input"]))
        if self.task == "detection":
            return self.plugin.postprocess(preds, batch, self.detection)
        return self.plugin.postprocess(preds, batch) if self._hook("postprocess") else preds

    def _log_metrics(self, stage: str) -> None:
        self._log_eval_losses(stage)
        metrics = getattr(self, f"{stage}_metrics", None)
        if metrics is None:
            return
        if self._eval_inputs:
            # One update with the whole run's outputs instead of one per batch: the six classification metrics cost
            # ~0.5 ms of Python per update, more than a small model's forward pass. The memory is what AUROC keeps anyway.
            outputs, target = (torch.cat(parts) for parts in zip(*self._eval_inputs))
            self._eval_inputs = []
            metrics.update(outputs, target)
        monitor = self.run_cfg.get("monitor")
        computed = metrics.compute()  # torchmetrics already synced them: the all-reduce below is a no-op
        if self.task == "detection":
            scalars, self.detection_summary = summarise_detection(computed, stage)
            computed = scalars
        for name, value in computed.items():
            self.log(name, value.float(), prog_bar=name == monitor, sync_dist=True)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def configure_optimizers(self) -> Any:
        opt_cfg = self.run_cfg["optimizer"]
        if self._hook("configure_optimizers"):
            return self.plugin.configure_optimizers(self.net, opt_cfg)
        params = self.plugin.param_groups(self.net, opt_cfg) if self._hook("param_groups") else self.net.parameters()
        trainer_cfg = self.run_cfg.get("trainer") or {}
        scaler_clipping = str(trainer_cfg.get("precision")) in ("16-mixed", "16") and bool(trainer_cfg.get("gradient_clip_val"))
        optimizer = build_optimizer(params, opt_cfg, scaler_clipping)
        #: The implementation the optimizer steps with (``optimizer.impl=auto`` resolved), for summary.json.
        self.optimizer_impl = optimizer_impl(optimizer)
        max_epochs = int(self.run_cfg["trainer"].get("max_epochs", 1))
        total = int(self.trainer.estimated_stepping_batches) if self.run_cfg["scheduler"].get("name") == "onecycle" else 0
        scheduler = build_scheduler(optimizer, self.run_cfg["scheduler"], max_epochs, total, self.run_cfg["monitor"])
        return {"optimizer": optimizer, "lr_scheduler": scheduler} if scheduler else optimizer

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lightplug"] = self.meta

    def compile_net(self, options: dict[str, Any]) -> None:
        """``torch.compile`` the plugin's module in place (``nn.Module.compile``), with the ``compile`` section's
        ``mode``, ``dynamic``, ``fullgraph`` and ``backend``. Parameters, ``state_dict`` keys (no ``_orig_mod.``)
        and hooks stay those of the plain module, so checkpoints, resume and export are unchanged; export
        rebuilds the plain module from the checkpoint."""
        kwargs = {k: options[k] for k in ("mode", "dynamic", "fullgraph", "backend") if options.get(k) is not None}
        if kwargs.get("mode") == "default":
            kwargs.pop("mode")
        self.net.compile(**kwargs)
