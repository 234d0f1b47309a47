"""A plain PyTorch loop over the same ``DataLoader``: what a user writes without a framework.

Same work as ``lightplug train model=NAME`` with the default data (digits): the model built by
``lightplug.build_model``, the train and validation loaders of lightplug's digits data module (the very
``DataLoader`` objects ``lightplug train`` and the bare Lightning loop iterate: same split, batch size 64,
shuffling, ``__getitems__`` batches), ``torch.optim.Adam`` as a user writes it (torch's default implementation),
cross-entropy, the same epochs and torch thread count. Each epoch: a shuffled pass over the train loader, then a
validation pass (loss and accuracy summed on the device, one host sync at the end). No Lightning loop, no hooks,
no logging, no checkpoints. It imports lightplug's data module (which imports lightning) only to get the loaders.

Run: ``python benchmarks/_dataloader_loop.py --model simple_cnn --epochs 30 --threads 1 --out steps.json``; it
writes the JSON of ``_step_timer.py``.
"""

from __future__ import annotations

import argparse
import json
import time
import types
from typing import Any


def train(model: str, epochs: int, batch_size: int = 64, lr: float = 1e-3, threads: int = 0, seed: int = 0) -> dict[str, Any]:
    """Train ``model`` on digits with a plain loop over the DataLoader; return the timestamps."""
    import torch
    import torch.nn.functional as F

    import lightplug
    from lightplug.data.datamodule import digits_datamodule

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    net = lightplug.build_model(model)
    cfg = types.SimpleNamespace(batch_size=batch_size, num_workers=0, pin_memory=False, persistent_workers=False, val_fraction=0.2,
                                test_fraction=0.2, split_seed=0, layout="flat" if model.startswith("mlp") else "image")
    data = digits_datamodule(cfg)
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    batches: list[tuple[int, float, float]] = []
    val: list[list[float]] = []
    epoch_marks: list[tuple[int, float, float]] = []
    first_step_wall, acc = None, 0.0
    for epoch in range(epochs):
        epoch_marks.append((epoch, time.perf_counter(), time.process_time()))
        net.train()
        for batch in train_loader:
            now, cpu = time.perf_counter(), time.process_time()
            if first_step_wall is None:
                first_step_wall = time.time()
            batches.append((epoch, now, cpu))
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(batch["input"]), batch["target"])
            loss.backward()
            opt.step()
        v0, c0 = time.perf_counter(), time.process_time()
        net.eval()
        correct, total, loss_sum = torch.zeros(()), 0, torch.zeros(())
        with torch.no_grad():
            for batch in val_loader:
                out = net(batch["input"])
                loss_sum += F.cross_entropy(out, batch["target"], reduction="sum")
                correct += (out.argmax(1) == batch["target"]).sum()
                total += len(batch["target"])
        acc = float(correct) / total
        val.append([epoch, v0, time.perf_counter(), c0, time.process_time()])
    return {"batches": batches, "val": val, "epochs": epoch_marks, "first_step_wall": first_step_wall, "fit_end": time.perf_counter(),
            "source": "dataloader", "val_acc": acc}


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
