"""The hand-written PyTorch loop that ``overhead.py`` times against ``lightplug train``.

Same work as ``lightplug train model=NAME`` with the default data (digits): the model built by
``lightplug.build_model`` with its defaults (they fit digits), the same train/val tensors (digits scaled to
[0, 1] and standardised, the same seeded split), the same batch size, Adam with the same learning rate,
cross-entropy, the same number of epochs and the same torch thread count; a shuffled pass over the train
set per epoch, then a validation pass (accuracy). Lightning, the data module and the logging are absent.

Run: ``python benchmarks/_raw_loop.py --model simple_cnn --epochs 30 --threads 1 --out steps.json``; it
writes the JSON of ``_step_timer.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def digits_tensors(layout: str, val_fraction: float = 0.2, test_fraction: float = 0.2, split_seed: int = 0) -> dict[str, tuple]:
    """The digits splits exactly as ``lightplug.data.datamodule.digits_datamodule`` makes them (no lightning import)."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    x = (x - float(x.mean())) / float(x.std())
    if layout == "image":
        x = x.reshape(-1, 1, 8, 8)
    y = data.target.astype(np.int64)
    n = len(x)
    perm = np.random.default_rng(split_seed).permutation(n)
    n_val, n_test = max(1, round(n * val_fraction)), round(n * test_fraction)
    idx = {"val": perm[:n_val], "train": perm[n_val + n_test:]}
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    return {k: (xt[v], yt[v]) for k, v in idx.items()}


def train(model: str, epochs: int, batch_size: int = 64, lr: float = 1e-3, threads: int = 0, seed: int = 0) -> dict[str, Any]:
    """Train ``model`` on digits with a plain loop; return the timestamps (the JSON of ``_step_timer.py``)."""
    import torch
    import torch.nn.functional as F

    import lightplug

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    net = lightplug.build_model(model)
    splits = digits_tensors("flat" if model.startswith("mlp") else "image")
    (x_train, y_train), (x_val, y_val) = splits["train"], splits["val"]
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    n, bs = len(x_train), batch_size
    batches: list[tuple[int, float, float]] = []
    val: list[list[float]] = []
    first_step_wall, correct = None, 0
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(n)
        for start in range(0, n, bs):
            idx = perm[start:start + bs]
            x, y = x_train[idx], y_train[idx]
            now, cpu = time.perf_counter(), time.process_time()
            if first_step_wall is None:
                first_step_wall = time.time()
            batches.append((epoch, now, cpu))
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
        v0, c0 = time.perf_counter(), time.process_time()
        net.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(x_val), bs):
                correct += int((net(x_val[start:start + bs]).argmax(1) == y_val[start:start + bs]).sum())
        val.append([epoch, v0, time.perf_counter(), c0, time.process_time()])
    return {"batches": batches, "val": val, "first_step_wall": first_step_wall, "fit_end": time.perf_counter(),
            "source": "raw", "val_acc": correct / len(x_val)}


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
