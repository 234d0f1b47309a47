"""The Lightning callback behind the ``prediction_grid`` plugin: a :class:`lightplug.BestEpochArtifacts`, so that
keeping a sample costs a slice per validation and the figure is drawn only for the best epoch, when lightplug
writes the run's other validation files (at the end of the run, and at most every ``results.refresh_seconds``)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lightplug import BestEpochArtifacts

__all__ = ["PredictionGridCallback"]


class PredictionGridCallback(BestEpochArtifacts):
    """Keeps the first validation batch and its predictions; draws the best epoch's as ``<folder>/best.png``
    (and every ``every_n_epochs`` validations as ``<folder>/epoch_NNN.png``)."""

    def __init__(self, num_images: int = 16, every_n_epochs: int = 0, folder: str = "prediction_grid") -> None:
        super().__init__()
        self.num_images, self.every_n_epochs, self.folder = num_images, every_n_epochs, folder
        self._sample: dict[str, torch.Tensor] | None = None
        self.written: list[Path] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sample = None

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx != 0 or not torch.is_tensor(outputs) or not isinstance(batch, dict) or batch["input"].ndim != 4:
            return  # only image inputs can be drawn
        n = self.num_images
        self._sample = {"images": batch["input"][:n].detach().cpu().clone(), "targets": batch["target"][:n].detach().cpu().clone(),
                        "outputs": outputs[:n].detach().float().cpu().clone()}

    def collect(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, torch.Tensor] | None:
        return self._sample  # rank 0's first batch; nothing to gather

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)  # keeps the best epoch's sample, writes it when due
        epoch = trainer.current_epoch
        if (not trainer.sanity_checking and trainer.is_global_zero and self._sample is not None and self.every_n_epochs
                and epoch % self.every_n_epochs == 0 and not self.schedule(trainer).every_epoch):
            self.render(trainer, pl_module, self._sample, epoch, per_epoch=True)

    def render(self, trainer: L.Trainer, pl_module: L.LightningModule, data: dict[str, torch.Tensor], epoch: int,
               per_epoch: bool) -> dict[str, int]:
        names = list(getattr(pl_module, "meta", {}).get("label_names", []))
        title = f"true / predicted, epoch {epoch}"
        figure = _draw(data["images"], data["targets"], data["outputs"], names, title)
        out = Path(trainer.default_root_dir) / self.folder / (f"epoch_{epoch:03d}.png" if per_epoch else "best.png")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp.png")
        figure.savefig(tmp, dpi=80, metadata={"epoch": str(epoch), "Title": title})
        os.replace(tmp, out)
        self.written.append(out)
        if not per_epoch:
            for logger in trainer.loggers:
                experiment = getattr(logger, "experiment", None)
                if hasattr(experiment, "add_figure"):  # TensorBoard
                    experiment.add_figure("val/prediction_grid", figure, global_step=trainer.global_step)
                elif hasattr(logger, "log_image"):  # W&B
                    logger.log_image(key="val/prediction_grid", images=[str(out)])
        return {str(out): epoch}


def _label(names: list[str], k: int) -> str:
    return names[k] if k < len(names) else str(k)


def _draw(images: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor, names: list[str], title: str) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.6 * cols, 1.8 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    preds = outputs.argmax(dim=-1) if outputs.ndim == 2 else outputs
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:n]):
        img = images[i]
        img = (img - img.min()) / (img.max() - img.min() + 1e-8)
        ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)[..., :3], cmap="gray" if img.shape[0] == 1 else None)
        t, p = int(targets[i]), int(preds[i])
        ax.set_title(f"{_label(names, t)} / {_label(names, p)}", fontsize=8, color="green" if t == p else "red")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
