"""In-memory data (digits, diabetes, synthetic) as a LightningDataModule whose loaders yield dict batches
``{"input", "target", "index"}``; a batch is gathered with one indexing op, not sample by sample."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["ArrayDataset", "LightplugDataModule", "TensorDataModule", "digits_datamodule", "diabetes_datamodule",
           "synthetic_datamodule", "split_indices", "passthrough_collate"]


class ArrayDataset(Dataset):
    """Inputs and targets held as tensors; ``__getitems__`` returns a whole batch at once."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, indices: np.ndarray) -> None:
        self.inputs, self.targets, self.indices = inputs, targets, torch.as_tensor(indices)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input": self.inputs[i], "target": self.targets[i], "index": self.indices[i]}

    def __getitems__(self, idx: list[int]) -> dict[str, torch.Tensor]:
        # numpy turns the sampler's list into a tensor 7x faster than torch.as_tensor, and index_select gathers
        # 2-3x faster than x[t]: 34 -> 13 us per batch of 64 (benchmarks/RESULTS.md)
        t = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        return {"input": self.inputs.index_select(0, t), "target": self.targets.index_select(0, t), "index": self.indices.index_select(0, t)}


def passthrough_collate(batch: Any) -> Any:
    """Collate that keeps a batch already gathered by ``__getitems__``."""
    if isinstance(batch, dict):
        return batch
    return torch.utils.data.default_collate(batch)


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """A seeded train/val/test split of ``range(n)``."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val, n_test = max(1, round(n * val_fraction)), round(n * test_fraction)
    return {"val": perm[:n_val], "test": perm[n_val : n_val + n_test], "train": perm[n_val + n_test :]}


class LightplugDataModule(L.LightningDataModule):
    """What the core needs of any data module: dict batches, label names and preprocessing facts.

    Attributes:
        label_names: class names (classification) or target names (regression).
        preprocessing: plain dict stored in checkpoints so that ``predict`` can prepare raw files the
            same way (``layout``, ``in_channels``, ``image_size``, ``mean``, ``std``, ``input_scale``, ...).
        sample_ids: split -> id of each sample (file path or index), for per-sample results.
    """

    def __init__(self, batch_size: int, num_workers: int = 0, pin_memory: bool = False, persistent_workers: bool = False) -> None:
        super().__init__()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers and num_workers > 0
        self.label_names: list[str] = []
        self.preprocessing: dict[str, Any] = {}
        self.sample_ids: dict[str, list[str]] = {}
        self.datasets: dict[str, Dataset] = {}
        self.collate_fn: Any = passthrough_collate
        #: ``mix(inputs, targets) -> (inputs, soft targets)`` applied to training batches once on the device (MixUp,
        #: CutMix: see :func:`lightplug.data.augment.batch_mix`); ``None``: batches are used as loaded.
        self.batch_mix: Any = None

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.persistent_workers, collate_fn=self.collate_fn)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        has_test = "test" in self.datasets and len(self.datasets["test"]) > 0  # type: ignore[arg-type]
        return self._loader("test" if has_test else "val", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches through :attr:`batch_mix` (validation, test and prediction batches never, nor anything
        that is not a batch dict)."""
        trainer = self.trainer
        if self.batch_mix is None or trainer is None or not trainer.training or not (isinstance(batch, dict) and "target" in batch):
            return batch  # the model summary's example input comes through here too
        inputs, targets = self.batch_mix(batch["input"], batch["target"])
        return {**batch, "input": inputs, "target": targets}

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """A dict of tensors already on ``device`` (in-memory data on CPU) is used as it is: Lightning's generic move
        walks the collection every step (10 us per batch); anything else goes to Lightning. The data's hook, not the
        module's: Lightning warns on every run when a module overrides it and a data module is passed to ``fit``."""
        if type(batch) is dict and all(isinstance(v, torch.Tensor) and v.device == device for v in batch.values()):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)


class TensorDataModule(LightplugDataModule):
    """A data module over arrays already in memory, split into train, val and test by the loader fields of ``cfg``.

    Public as ``lightplug.TensorDataModule`` (see docs/writing-plugins.md, "Data plugins").

    Args:
        x: inputs, one row per sample (``N x F`` or ``N x C x H x W``), as the model takes them.
        y: targets (``N`` int class indices, or ``N x num_outputs`` floats for regression).
        cfg: a config with :class:`~lightplug.data.plugins.LoaderConfig`'s fields (``batch_size``, ``num_workers``,
            ``pin_memory``, ``persistent_workers``, ``val_fraction``, ``test_fraction``, ``split_seed``).
        label_names: class names (classification) or target names (regression).
        preprocessing: what ``predict`` needs to prepare a raw file as ``x`` was prepared (``layout``, ``in_features``,
            ``mean``, ``std``, ...).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, cfg: Any, label_names: list[str], preprocessing: dict[str, Any]) -> None:
        super().__init__(cfg.batch_size, cfg.num_workers, cfg.pin_memory, cfg.persistent_workers)
        self.label_names, self.preprocessing = label_names, preprocessing
        splits = split_indices(len(x), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
        xt, yt = torch.as_tensor(x), torch.as_tensor(y)
        for name, idx in splits.items():
            self.datasets[name] = ArrayDataset(xt[idx], yt[idx], np.arange(len(idx)))  # index: position in the split
            self.sample_ids[name] = [str(i) for i in idx]  # id: the row of the source data


def _layout(cfg: Any, layout: str) -> str:
    value = getattr(cfg, "layout", "image")
    return layout if value == "auto" else value


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (features, targets), read from the file ``load_digits`` reads: importing
    scikit-learn costs 0.2 s of CPU, reading its gzip-compressed CSV 0.02 s. ``load_digits`` when the file is
    not where scikit-learn keeps it, or not as expected."""
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            with gzip.open(Path(folder) / "datasets" / "data" / "digits.csv.gz", "rt") as fh:
                table = np.loadtxt(fh, delimiter=",")
        except (OSError, ValueError):
            continue
        if table.shape == (1797, 65):
            return table[:, :-1], table[:, -1].astype(int)
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data, data.target


def digits_datamodule(cfg: Any, layout: str = "image") -> TensorDataModule:
    """Digits scaled to [0, 1] and standardised; images ``1x8x8`` or 64 flat features."""
    features, targets = _digits()
    x = (features / 16.0).astype(np.float32)
    mean, std = float(x.mean()), float(x.std())
    x = (x - mean) / std
    shape = _layout(cfg, layout)
    if shape == "image":
        x = x.reshape(-1, 1, 8, 8)
    pre = {"layout": shape, "in_channels": 1, "image_size": 8, "input_scale": 1.0, "mean": [mean], "std": [std], "source_range": [0, 16]}
    return TensorDataModule(x, targets.astype(np.int64), cfg, [str(i) for i in range(10)], pre)


def diabetes_datamodule(cfg: Any, layout: str = "flat") -> TensorDataModule:
    """Diabetes features as given by scikit-learn (already scaled); the target standardised."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    y = data.target.astype(np.float32)
    y_mean, y_std = float(y.mean()), float(y.std())
    y = ((y - y_mean) / y_std).reshape(-1, 1)
    pre = {"layout": "flat", "in_features": 10, "target_mean": [y_mean], "target_std": [y_std], "feature_names": list(data.feature_names)}
    return TensorDataModule(data.data.astype(np.float32), y, cfg, ["progression"], pre)


def synthetic_datamodule(cfg: Any, layout: str = "image") -> TensorDataModule:
    """A noisy fixed pattern per class (classification) or a fixed linear map plus noise (regression)."""
    rng = np.random.default_rng(cfg.seed)
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    n_feat = int(np.prod(shape))
    if cfg.task == "classification":
        patterns = rng.normal(size=(cfg.num_classes, n_feat)).astype(np.float32)
        y = rng.integers(0, cfg.num_classes, size=cfg.num_samples)
        x = patterns[y] + cfg.noise * rng.normal(size=(cfg.num_samples, n_feat)).astype(np.float32)
        y = y.astype(np.int64)
        names = [f"class_{i}" for i in range(cfg.num_classes)]
    else:
        w = rng.normal(size=(n_feat, cfg.num_outputs)).astype(np.float32) / np.sqrt(n_feat)
        x = rng.normal(size=(cfg.num_samples, n_feat)).astype(np.float32)
        y = (x @ w + cfg.noise * 0.1 * rng.normal(size=(cfg.num_samples, cfg.num_outputs))).astype(np.float32)
        names = [f"y{i}" for i in range(cfg.num_outputs)]
    kind = _layout(cfg, layout)
    if kind == "image":
        x = x.reshape(-1, *shape)
    pre = {"layout": kind, "in_channels": cfg.in_channels, "image_size": cfg.image_size, "mean": [0.0], "std": [1.0]}
    return TensorDataModule(x.astype(np.float32), y, cfg, names, pre)
