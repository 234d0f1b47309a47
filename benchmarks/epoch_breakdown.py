"""Where an epoch of ``lightplug train`` goes, beyond what a plain loop does: the profile behind the per-epoch and
validation ratios of ``overhead.py``.

``lightplug.train(model=NAME)`` runs in this process with its defaults (progress bar off: no terminal here) and
timers around the pieces of each epoch after the first: the training steps (``training_step`` to the next
step's start, everything Lightning does per step included), the validation run and, inside it, the
``self.log`` calls, the metric updates and computation and the evaluation callbacks' hooks, the checkpoint
writes (``torch.save`` to a temporary file, ``fsync``, rename), and the rest of the epoch. Wall time and CPU
time of the thread, per epoch, median over the epochs. Beside it, a validation run of a bare ``LightningModule``
that only runs the forward pass (the reference of the validation target), in the same process.

Run: ``python benchmarks/epoch_breakdown.py [--quick] [--epochs 12] [--models mlp,simple_cnn]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Section, md_table, median

__all__ = ["PIECES", "breakdown", "render", "run_benchmark"]

#: Timed pieces of an epoch (the last is what remains).
PIECES = ("training steps", "validation run", "  of which self.log", "  of which metric updates and compute",
          "  of which evaluation callbacks", "checkpoint writes", "rest of the epoch")


class _Clock:
    """Wall and thread-CPU seconds accumulated per piece, reset at each epoch start."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, tuple[float, float]]] = []
        self.current: dict[str, list[float]] = {}

    def add(self, piece: str, wall: float, cpu: float) -> None:
        w, c = self.current.setdefault(piece, [0.0, 0.0])
        self.current[piece] = [w + wall, c + cpu]

    def wrap(self, fn: Any, piece: str) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            w, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(piece, time.perf_counter() - w, time.thread_time() - c)

        return timed


def breakdown(model: str, epochs: int, workdir: Path, threads: int = 1) -> dict[str, Any]:
    """Per-epoch medians (wall, CPU) of each piece for ``lightplug train model=MODEL``."""
    import lightning as L
    import torch

    import lightplug
    import lightplug.callbacks as lcb
    import lightplug.trainer_factory as tf
    from lightplug.evaluation.artifacts import BestEpoch, BestEpochArtifacts
    from lightplug.module import PluginModule

    torch.set_num_threads(threads)
    clock = _Clock()
    state: dict[str, Any] = {"epoch_start": None, "val": False}

    class Marks(L.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            now = (time.perf_counter(), time.thread_time())
            if state["epoch_start"] is not None and trainer.current_epoch >= 2:
                total = (now[0] - state["epoch_start"][0], now[1] - state["epoch_start"][1])
                clock.epochs.append({**{k: (v[0], v[1]) for k, v in clock.current.items()}, "epoch": total})
            clock.current, state["epoch_start"] = {}, now

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            state["step"] = (time.perf_counter(), time.thread_time())

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            w, c = state.pop("step")
            clock.add("training steps", time.perf_counter() - w, time.thread_time() - c)

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            state["val"] = not trainer.sanity_checking
            state["val_start"] = (time.perf_counter(), time.thread_time())

    class ValEnd(L.Callback):  # last: after every other callback's on_validation_end (checkpoints excepted)
        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if state["val"]:
                w, c = state["val_start"]
                clock.add("validation run", time.perf_counter() - w, time.thread_time() - c)
            state["val"] = False

    saved = [(lcb, "atomic_torch_save", lcb.atomic_torch_save), (tf, "build_callbacks", tf.build_callbacks)]
    lcb.atomic_torch_save = clock.wrap(lcb.atomic_torch_save, "checkpoint writes")
    log = PluginModule.log

    def timed_log(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not state["val"]:
            return log(self, *args, **kwargs)
        w, c = time.perf_counter(), time.thread_time()
        try:
            return log(self, *args, **kwargs)
        finally:
            clock.add("  of which self.log", time.perf_counter() - w, time.thread_time() - c)

    PluginModule.log = timed_log  # type: ignore[method-assign]
    metrics_update: list[Any] = []

    def with_timed_metrics(module: Any) -> Any:
        metrics = getattr(module, "val_metrics", None)
        if metrics is not None and not metrics_update:
            metrics.update = clock.wrap(metrics.update, "  of which metric updates and compute")
            metrics.compute = clock.wrap(metrics.compute, "  of which metric updates and compute")
            metrics_update.append(metrics)
        return module

    build = tf.build_callbacks

    def build_callbacks(*args: Any, **kwargs: Any) -> list[Any]:
        callbacks = build(*args, **kwargs)
        for cb in callbacks:
            if isinstance(cb, (BestEpoch, BestEpochArtifacts)):
                for hook in ("on_validation_batch_end", "on_validation_epoch_end", "on_validation_end", "on_validation_epoch_start"):
                    setattr(cb, hook, clock.wrap(getattr(cb, hook), "  of which evaluation callbacks"))
        return [Marks(), *callbacks, ValEnd()]

    tf.build_callbacks = build_callbacks
    original_fit = L.Trainer.fit

    def fit(self: Any, module: Any, *args: Any, **kwargs: Any) -> Any:
        return original_fit(self, with_timed_metrics(module), *args, **kwargs)

    L.Trainer.fit = fit  # type: ignore[method-assign]
    try:
        lightplug.train(f"model={model}", f"trainer.max_epochs={epochs}", "trainer=cpu", "seed=0", "trainer.enable_progress_bar=false",
                        f"hydra.run.dir={workdir / model}")
    finally:
        L.Trainer.fit = original_fit  # type: ignore[method-assign]
        for owner, name, value in saved:
            if value is not None:
                setattr(owner, name, value)
        PluginModule.log = log  # type: ignore[method-assign]
    out: dict[str, Any] = {}
    for piece in (*PIECES, "epoch"):
        if piece == "rest of the epoch":
            continue
        out[piece] = (median([e.get(piece, (0.0, 0.0))[0] for e in clock.epochs]), median([e.get(piece, (0.0, 0.0))[1] for e in clock.epochs]))
    known = ("training steps", "validation run", "checkpoint writes")
    out["rest of the epoch"] = (median([e["epoch"][0] - sum(e.get(k, (0.0, 0.0))[0] for k in known) for e in clock.epochs]),
                                median([e["epoch"][1] - sum(e.get(k, (0.0, 0.0))[1] for k in known) for e in clock.epochs]))
    out["epochs"] = len(clock.epochs)
    out["bare_validation"] = _bare_validation(model, threads)
    return out


def _bare_validation(model: str, threads: int, runs: int = 10) -> tuple[float, float]:
    """Median wall and CPU seconds of a validation run of a LightningModule that only runs the forward pass."""
    import types

    import lightning as L

    import lightplug
    from lightplug.data.datamodule import digits_datamodule

    cfg = types.SimpleNamespace(batch_size=64, num_workers=0, pin_memory=False, persistent_workers=False, val_fraction=0.2, test_fraction=0.2,
                                split_seed=0, layout="flat" if model.startswith("mlp") else "image")
    data = digits_datamodule(cfg)
    times: list[tuple[float, float]] = []

    class Bare(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = lightplug.build_model(model)

        def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
            self.net(batch["input"])

        def on_validation_start(self) -> None:
            self._t = (time.perf_counter(), time.thread_time())

        def on_validation_end(self) -> None:
            times.append((time.perf_counter() - self._t[0], time.thread_time() - self._t[1]))

    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    module = Bare()
    for _ in range(runs):
        trainer.validate(module, datamodule=data, verbose=False)
    return median([t[0] for t in times[2:]]), median([t[1] for t in times[2:]])


def render(results: dict[str, Any], settings: dict[str, Any]) -> Section:
    """The Markdown section."""
    rows = []
    for model, r in results.items():
        for piece in (*PIECES, "epoch"):
            w, c = r[piece]
            rows.append([f"`{model}`", "whole epoch" if piece == "epoch" else piece, f"{w * 1e3:.1f}", f"{c * 1e3:.1f}"])
        bw, bc = r["bare_validation"]
        rows.append([f"`{model}`", "a bare Lightning validation run (forward only)", f"{bw * 1e3:.1f}", f"{bc * 1e3:.1f}"])
    body = (f"`lightplug.train(model=NAME)` in one process with its defaults (progress bar off), {settings['epochs']} epochs, the first two "
            f"left out, {settings['threads']} torch thread; wall and thread-CPU milliseconds per epoch, medians over the epochs. Checkpoint "
            "writes are `best.ckpt` (when the epoch is the best so far) and `last.ckpt` (every epoch), each `torch.save` + `fsync` + rename "
            "+ `fsync` of the folder; their wall time is mostly the disk's. The validation pieces overlap: each is part of the validation "
            "run.\n\n" + md_table(["model", "piece", "wall ms per epoch", "CPU ms per epoch"], rows))
    return Section("Where an epoch goes", body, {"results": results, "settings": settings})


def run_benchmark(quick: bool = False, epochs: int | None = None, models: tuple[str, ...] = ("mlp", "simple_cnn"), threads: int = 1,
                  log: Any = print) -> Section:
    """Measure and render; ``quick``: ``mlp``, 4 epochs."""
    epochs = epochs or (4 if quick else 12)
    models = ("mlp",) if quick else models
    results = {}
    with tempfile.TemporaryDirectory(prefix="lp-epoch-") as tmp:
        for model in models:
            results[model] = breakdown(model, epochs, Path(tmp), threads)
            log(f"  epoch breakdown {model}: epoch {results[model]['epoch'][0] * 1e3:.1f} ms wall")
    return render(results, {"epochs": epochs, "threads": threads})


def main() -> None:
    """Command line: print the section (and write JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--epochs", type=int)
    p.add_argument("--models", default="mlp,simple_cnn")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    section = run_benchmark(a.quick, a.epochs, tuple(a.models.split(",")), a.threads)
    print(section.markdown())
    if a.json:
        a.json.write_text(json.dumps(section.data, indent=2, default=str))


if __name__ == "__main__":
    main()
