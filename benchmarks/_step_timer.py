"""The ``bench_timer`` callback plugin: timestamps every training step of a ``lightplug train`` run.

The benchmarks install this file as a throw-away distribution (module ``lp_bench_timer``, entry point
``bench_timer`` in ``lightplug.callbacks``) and switch it on with ``callbacks=[default,bench_timer]
callbacks.bench_timer.path=FILE``. ``_raw_loop.py`` writes the same JSON from its hand-written loop, so
both are summarised by the same code (:func:`timing.summarize` in ``overhead.py``).

JSON written at the end of fit:
    ``batches``: ``[epoch, perf_counter, process_time]`` at each ``on_train_batch_start`` (after the batch
    was fetched);
    ``val``: ``[epoch, start, end, cpu start, cpu end]`` of each validation run (not the sanity check);
    ``epochs``: ``[epoch, perf_counter, process_time]`` at each ``on_train_epoch_start`` (before the loader's
    iterator, and its workers, are created);
    ``first_step_wall``: ``time.time()`` at the first training batch (for the start-up time);
    ``fit_end``: ``perf_counter`` at the end of fit.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L


class StepTimer(L.Callback):
    """Records when each training step starts and when validation runs, and writes them to ``path``
    (empty: ``bench_steps.json`` in the run folder, so that every job of a multirun has its own).
    ``sync_cuda`` waits for the GPU at each epoch start and validation start/end, so that epoch times
    count the GPU work queued in them (for ``gpu_throughput.py``)."""

    def __init__(self, path: str = "", sync_cuda: bool = False) -> None:
        self.path, self.sync_cuda = path, sync_cuda
        self.batches: list[tuple[int, float, float]] = []
        self.val: list[list[float]] = []
        self.epochs: list[tuple[int, float, float]] = []
        self.first_step_wall: float | None = None

    def _sync(self) -> None:
        if self.sync_cuda:
            import torch

            torch.cuda.synchronize()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sync()
        self.epochs.append((trainer.current_epoch, time.perf_counter(), time.process_time()))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if self.first_step_wall is None:
            self.first_step_wall = time.time()
        self.batches.append((trainer.current_epoch, now, cpu))

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._sync()
            self.val.append([trainer.current_epoch, time.perf_counter(), float("nan"), time.process_time(), float("nan")])

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self.val:
            self._sync()
            self.val[-1][2], self.val[-1][4] = time.perf_counter(), time.process_time()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            with open(self.path or Path(trainer.default_root_dir) / "bench_steps.json", "w") as fh:
                json.dump({"batches": self.batches, "val": self.val, "epochs": self.epochs, "first_step_wall": self.first_step_wall,
                           "fit_end": time.perf_counter(), "source": "lightplug"}, fh)
