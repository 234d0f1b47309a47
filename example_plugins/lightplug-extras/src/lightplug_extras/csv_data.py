"""``data=csv data.path=FILE data.target=COLUMN``: a CSV table for classification or regression.

The plugin class is light (the standard library's ``csv`` reads the header and the target column for the
facts); tensors are built in :mod:`lightplug_extras.csv_tensors` when a run starts.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from lightplug import DataError, DataPlugin, Param

__all__ = ["CsvTable", "CsvConfig", "read_table"]


@dataclass
class CsvConfig:
    path: Annotated[str, Param(help="the CSV file (a header row, then one sample per row)")] = "???"
    target: Annotated[str, Param(help="the column to predict")] = "???"
    task: Annotated[Literal["auto", "classification", "regression"], Param(help="auto: classification for text or few integer values")] = "auto"
    features: Annotated[list[str], Param(help="input columns (empty: every other column)")] = field(default_factory=list)
    standardize: Annotated[bool, Param(help="scale inputs (and regression targets) to mean 0, std 1")] = True
    batch_size: Annotated[int, Param(ge=1, help="rows per batch")] = 32
    num_workers: Annotated[int, Param(ge=0, help="loader worker processes", group="loader", advanced=True)] = 0
    pin_memory: Annotated[bool, Param(help="page-locked memory", group="loader", advanced=True)] = False
    persistent_workers: Annotated[bool, Param(help="keep workers between epochs", group="loader", advanced=True)] = False
    val_fraction: Annotated[float, Param(gt=0, lt=1, help="share of rows held out for validation", group="split")] = 0.2
    test_fraction: Annotated[float, Param(ge=0, lt=1, help="share of rows held out for testing", group="split")] = 0.0
    split_seed: Annotated[int, Param(ge=0, help="seed of the split", group="split")] = 0


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_table(cfg: CsvConfig) -> tuple[list[str], list[list[str]], list[str]]:
    """(feature names, feature rows as text, target column as text), checked.

    Raises:
        DataError: missing file, unknown column, empty table, or a row with a missing or non-numeric value
            (named by line number).
    """
    if cfg.path in ("", "???") or cfg.target in ("", "???"):
        raise DataError("data=csv needs data.path=FILE and data.target=COLUMN")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(f"data.path={cfg.path}: no such file")
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 3:
        raise DataError(f"data.path={cfg.path}: needs a header row and at least 2 data rows")
    header = [h.strip() for h in rows[0]]
    if cfg.target not in header:
        raise DataError(f"data.target={cfg.target}: no such column in {cfg.path} (columns: {', '.join(header)})")
    features = list(cfg.features) or [h for h in header if h != cfg.target]
    missing = [f for f in features if f not in header]
    if missing:
        raise DataError(f"data.features: no column {missing[0]!r} in {cfg.path}")
    idx = [header.index(f) for f in features]
    t = header.index(cfg.target)
    x_rows, y = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{cfg.path}:{line}: {len(row)} values, the header has {len(header)}")
        values = [row[i].strip() for i in idx]
        bad = next((f for f, v in zip(features, values, strict=True) if not _is_number(v)), None)
        if bad is not None:
            raise DataError(f"{cfg.path}:{line}: column {bad!r} is not a number ({row[header.index(bad)]!r})")
        x_rows.append(values)
        y.append(row[t].strip())
    return features, x_rows, y


def _task(cfg: CsvConfig, y: list[str]) -> str:
    if cfg.task != "auto":
        return cfg.task
    if not all(_is_number(v) for v in y):
        return "classification"
    values = {float(v) for v in y}
    return "classification" if all(v.is_integer() for v in values) and len(values) <= 20 else "regression"


def label_names(y: list[str]) -> list[str]:
    """Class names in a stable order: numerically when they are numbers, else alphabetically."""
    names = sorted(set(y), key=lambda v: (0, float(v), v) if _is_number(v) else (1, 0.0, v))
    return names


class CsvTable(DataPlugin):
    """A CSV table: every numeric column but the target is an input feature."""

    task = "classification"
    Config = CsvConfig

    def check(self, cfg: CsvConfig) -> list[str]:
        if cfg.val_fraction + cfg.test_fraction >= 1:
            return [f"data.val_fraction={cfg.val_fraction:g} with data.test_fraction={cfg.test_fraction:g}: no row is left for training "
                    "(the two shares must add up to less than 1)"]
        return []

    def facts(self, cfg: CsvConfig) -> dict[str, Any]:
        features, _, y = read_table(cfg)
        task = _task(cfg, y)
        if task == "classification":
            names = label_names(y)
            return {"task": task, "in_features": len(features), "num_classes": len(names), "num_outputs": len(names), "label_names": names}
        if not all(_is_number(v) for v in y):
            raise DataError(f"data.target={cfg.target}: regression needs numbers in that column")
        return {"task": task, "in_features": len(features), "num_classes": 1, "num_outputs": 1, "label_names": [cfg.target]}

    def build(self, cfg: CsvConfig) -> Any:
        from .csv_tensors import csv_datamodule

        return csv_datamodule(cfg, self.facts(cfg))
