"""``callbacks=[default,prediction_grid]``: a grid of validation images with their true and predicted labels,
for the best epoch (``<run>/prediction_grid/best.png``, written when lightplug writes the run's other validation
files), and optionally every N validations; sent to the loggers that take images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from lightplug import CallbackPlugin, Param

__all__ = ["PredictionGrid", "PredictionGridConfig"]


@dataclass
class PredictionGridConfig:
    num_images: Annotated[int, Param(ge=1, le=64, help="images in the grid (from the first validation batch)")] = 16
    every_n_epochs: Annotated[int, Param(ge=0, help="also draw every N validations as epoch_NNN.png (0: only the best epoch's grid)")] = 0
    folder: Annotated[str, Param(help="sub-folder of the run folder for the PNGs")] = "prediction_grid"


class PredictionGrid(CallbackPlugin):
    """Draws sample predictions of the first validation batch of the best epoch as an image grid."""

    Config = PredictionGridConfig

    def build(self, cfg: PredictionGridConfig) -> Any:
        from .prediction_grid_callback import PredictionGridCallback

        return PredictionGridCallback(cfg.num_images, cfg.every_n_epochs, cfg.folder)
