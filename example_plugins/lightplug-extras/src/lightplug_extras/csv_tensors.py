"""The tensors of ``data=csv`` (imported when a run starts)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lightplug.data.datamodule import TensorDataModule

from .csv_data import CsvConfig, read_table

__all__ = ["csv_datamodule"]


def csv_datamodule(cfg: CsvConfig, facts: dict[str, Any]) -> TensorDataModule:
    """A TensorDataModule over the table; standardisation statistics go into the preprocessing facts."""
    features, rows, y_text = read_table(cfg)
    x = np.asarray(rows, dtype=np.float32)
    pre: dict[str, Any] = {"layout": "flat", "in_features": len(features), "feature_names": features}
    if cfg.standardize:
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std == 0] = 1.0
        x = (x - mean) / std
        pre.update(mean=mean.tolist(), std=std.tolist())
    if facts["task"] == "classification":
        names = facts["label_names"]
        y = np.asarray([names.index(v) for v in y_text], dtype=np.int64)
    else:
        y = np.asarray(y_text, dtype=np.float32).reshape(-1, 1)
        if cfg.standardize:
            y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
            y = (y - y_mean) / y_std
            pre.update(target_mean=[y_mean], target_std=[y_std])
    return TensorDataModule(x, y, cfg, list(facts["label_names"]), pre)
