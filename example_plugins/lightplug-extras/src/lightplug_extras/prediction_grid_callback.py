"""The Lightning callback behind the ``prediction_grid`` plugin."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch

__all__ = ["PredictionGridCallback"]


class PredictionGridCallback(L.Callback):
    """Keeps the first validation batch and its predictions, and draws them at the end of validation."""

    def __init__(self, num_images: int = 16, every_n_epochs: int = 1, folder: str = "prediction_grid") -> None:
        self.num_images, self.every_n_epochs, self.folder = num_images, every_n_epochs, folder
        self._sample: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.written: list[Path] = []

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx != 0 or not torch.is_tensor(outputs) or not isinstance(batch, dict):
            return
        n = self.num_images
        self._sample = (batch["input"][:n].detach().cpu(), batch["target"][:n].detach().cpu(), outputs[:n].detach().cpu())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self._sample is None or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        images, targets, outputs = self._sample
        self._sample = None
        if images.ndim != 4:  # only image inputs can be drawn
            return
        names = list(getattr(pl_module, "meta", {}).get("label_names", []))
        figure = _draw(images, targets, outputs, names)
        out = Path(trainer.default_root_dir) / self.folder / f"epoch_{trainer.current_epoch:03d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, dpi=80)
        self.written.append(out)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_figure"):  # TensorBoard
                experiment.add_figure("val/prediction_grid", figure, global_step=trainer.global_step)
            elif hasattr(logger, "log_image"):  # W&B
                logger.log_image(key="val/prediction_grid", images=[str(out)])
        import matplotlib.pyplot as plt

        plt.close(figure)


def _label(names: list[str], k: int) -> str:
    return names[k] if k < len(names) else str(k)


def _draw(images: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor, names: list[str]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    preds = outputs.argmax(dim=-1) if outputs.ndim == 2 else outputs
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:n]):
        img = images[i]
        img = (img - img.min()) / (img.max() - img.min() + 1e-8)
        ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)[..., :3], cmap="gray" if img.shape[0] == 1 else None)
        t, p = int(targets[i]), int(preds[i])
        ax.set_title(f"{_label(names, t)} / {_label(names, p)}", fontsize=8, color="green" if t == p else "red")
    fig.suptitle("true / predicted", fontsize=9)
    fig.tight_layout()
    return fig
