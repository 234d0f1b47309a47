"""The floor of any Lightning-based trainer: a minimal ``LightningModule`` on lightplug's own digits loader.

Same work as ``_raw_loop.py`` (the model from ``lightplug.build_model``, cross-entropy, Adam, batch 64, the
same thread count) through ``lightning.Trainer`` with everything optional switched off: no logger, no
checkpoints, no progress bar, no model summary, no ``self.log``; validation runs but logs nothing. The
batches come from lightplug's digits data module (the same ``DataLoader`` ``lightplug train`` uses), so
the difference to ``lightplug train`` is what lightplug adds, and the difference to the raw loop is
Lightning's loop plus the ``DataLoader``.

Run: ``python benchmarks/_lightning_loop.py --model simple_cnn --epochs 30 --threads 1 --out steps.json``.
"""

from __future__ import annotations

import argparse
import json
import types
from typing import Any


def train(model: str, epochs: int, batch_size: int = 64, lr: float = 1e-3, threads: int = 0, seed: int = 0) -> dict[str, Any]:
    """Fit with a bare ``Trainer``; return the timestamps of the ``bench_timer`` callback."""
    import lightning as L
    import torch
    import torch.nn.functional as F
    from lp_bench_timer import StepTimer  # installed by the benchmark into the site on PYTHONPATH

    import lightplug
    from lightplug.data.datamodule import digits_datamodule

    if threads:
        torch.set_num_threads(threads)
    L.seed_everything(seed, verbose=False)
    cfg = types.SimpleNamespace(batch_size=batch_size, num_workers=0, pin_memory=False, persistent_workers=False, val_fraction=0.2,
                                test_fraction=0.2, split_seed=0, layout="flat" if model.startswith("mlp") else "image")
    data = digits_datamodule(cfg)

    class Bare(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = lightplug.build_model(model)

        def training_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
            return F.cross_entropy(self.net(batch["input"]), batch["target"])

        def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
            self.net(batch["input"])

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.net.parameters(), lr=lr)

    timer = StepTimer()
    L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer]).fit(Bare(), datamodule=data)
    return {"batches": timer.batches, "val": timer.val, "epochs": timer.epochs, "first_step_wall": timer.first_step_wall, "source": "lightning"}


def main() -> None:
    """Command line: train and write the timestamps to ``--out``."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="simple_cnn")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="steps.json")
    a = p.parse_args()
    timing = train(a.model, a.epochs, a.batch_size, a.lr, a.threads, a.seed)
    with open(a.out, "w") as fh:
        json.dump(timing, fh)


if __name__ == "__main__":
    main()
