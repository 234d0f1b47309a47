"""What a data plugin's ``build`` must return, and the one line that says what to change when it returns something else.

The core trains with the ``lightning`` package; ``pytorch_lightning`` (installed beside it, the same code under its
old name) has its own ``LightningDataModule`` class, which ``lightning``'s Trainer does not accept (it fails deep
inside with ``ValueError: Expected a parent``). This module names the fix before training starts.
"""

from __future__ import annotations

from typing import Any

__all__ = ["wrong_datamodule", "is_lightning_datamodule", "empty_sampler"]


def is_lightning_datamodule(obj: Any) -> bool:
    """Whether ``obj`` is a ``lightning.LightningDataModule`` (imports lightning)."""
    import lightning as L

    return isinstance(obj, L.LightningDataModule)


def wrong_datamodule(obj: Any) -> str:
    """The problem with a ``build()`` result that is not a ``lightning.LightningDataModule``, as one line.

    Example:
        >>> wrong_datamodule([1, 2])
        'build() returned list, not a lightning.LightningDataModule (subclass lightning.LightningDataModule, or return lightplug.TensorDataModule)'
    """
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__}
    if any(n.startswith("pytorch_lightning.") and n.endswith(".LightningDataModule") for n in names):
        return (f"build() returned {type(obj).__name__}, a pytorch_lightning.LightningDataModule; lightplug trains with the "
                f"lightning package: change `import pytorch_lightning as pl` to `import lightning as L` and subclass L.LightningDataModule")
    return (f"build() returned {type(obj).__name__}, not a lightning.LightningDataModule "
            f"(subclass lightning.LightningDataModule, or return lightplug.TensorDataModule)")


def empty_sampler(exc: BaseException) -> bool:
    """Whether ``exc`` is PyTorch refusing to shuffle an empty dataset (a ``DataLoader`` over a split of 0 samples)."""
    return isinstance(exc, ValueError) and "num_samples=0" in str(exc)
