"""Ctrl-C and ``kill`` without losing work: the first SIGINT or SIGTERM finishes the current batch (the
epoch's validation too, when it was the epoch's last batch),
writes ``checkpoints/last.ckpt`` atomically, prints the command that resumes, and stops the run with
:class:`~lightplug.errors.Interrupted` (exit code 130 or 143); a second signal stops at once."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L

from ._resume_command import resume_command
from .errors import Interrupted

__all__ = ["GracefulStop", "resume_command"]

log = logging.getLogger("lightplug")


class GracefulStop(L.Callback):
    """Turns SIGINT and SIGTERM into a clean stop at the next train batch end.

    The handlers only record the signal. At the next ``on_train_batch_end`` that follows an optimizer step
    (agreed by all ranks), or at the epoch's end when the signal came during its last batch (a checkpoint
    between that batch and the validation would skip the validation on resume), the callback writes
    ``<checkpoints>/last.ckpt`` through the trainer (atomically,
    see :class:`~lightplug.callbacks.AtomicCheckpointIO`), logs how to resume and raises
    :class:`~lightplug.errors.Interrupted` with exit code ``128 + signal``. A second signal while stopping
    raises at once; the files already written stay complete. The previous handlers are restored when
    training ends, fails or stops.

    Args:
        signals: the signals handled.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.signals = tuple(signals)
        self.received: int | None = None
        self.checkpoint: Path | None = None
        self.resume_command: str | None = None
        self._previous: dict[int, Any] = {}
        self._trainer: L.Trainer | None = None

    # ------------------------------------------------------------ handlers
    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signum
            if self._trainer is None or self._trainer.is_global_zero:
                with contextlib.suppress(OSError):  # os.write: no buffered stream is re-entered from a handler
                    os.write(2, f"\n{name} received: stopping after this batch and saving a checkpoint "
                                f"(send it again to stop at once)\n".encode())
            return
        self.restore()
        last = self._last_path()
        hint = f"the last complete checkpoint is {last}" if last is not None and last.is_file() else None
        raise Interrupted(f"training stopped at once by a second {name}; no checkpoint was written for the current batch",
                          hint=hint, signal_number=signum, at_once=True)

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        connector = getattr(self._trainer, "_signal_connector", None)
        for signum in self.signals:
            current = signal.getsignal(signum)
            if current == self._handle:
                continue
            self._previous.setdefault(signum, current)
            signal.signal(signum, self._handle)
        originals = getattr(connector, "_original_handlers", None)
        if isinstance(originals, dict):  # Lightning restores its snapshot on teardown: make it hold the real originals
            for signum, previous in self._previous.items():
                if originals.get(signum) == self._handle:
                    originals[signum] = previous
        if connector is not None and getattr(connector, "received_sigterm", False):  # its own SIGTERM flag would exit 0
            connector.received_sigterm = False
            self.received = self.received or signal.SIGTERM

    def restore(self) -> None:
        """Put back the handlers that were installed before this callback's."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    # ------------------------------------------------------------ hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._trainer = trainer
            self.received = None
            self._install()

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()  # Lightning's SignalConnector replaced the SIGTERM handler after setup

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            # Not here: Lightning does not resume exactly from a checkpoint taken after an epoch's last batch but
            # before its validation (the validation is skipped and the runs part). Stop at the epoch's end instead,
            # after its validation and the callbacks that record it.
            return
        if (batch_idx + 1) % max(1, trainer.accumulate_grad_batches) != 0:
            return  # gradients of a partial accumulation are not in checkpoints: stop after the optimizer step
        if self._agreed(trainer):
            self._stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after every callback's on_validation_end: the best epoch is decided, best.ckpt and the kept files agree
        if self._agreed(trainer) and not self._finishing(trainer):
            self._stop(trainer)

    def _agreed(self, trainer: L.Trainer) -> bool:
        """Whether a signal arrived, on any process (every process calls this at the same points)."""
        stop = self.received is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        return stop

    @staticmethod
    def _finishing(trainer: L.Trainer) -> bool:
        """The epoch that just ended is the run's last: it ends normally (and ``teardown`` says so)."""
        epochs, steps = trainer.max_epochs, trainer.max_steps
        return bool(trainer.should_stop or (epochs is not None and epochs >= 0 and trainer.current_epoch + 1 >= epochs)
                    or (steps is not None and steps >= 0 and trainer.global_step >= steps))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.restore()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.received is not None and self.checkpoint is None and trainer.is_global_zero:
            log.info("%s arrived after the last training batch; the run finished normally", signal.Signals(self.received).name)
        self.restore()

    # ------------------------------------------------------------ stopping
    def _last_path(self) -> Path | None:
        trainer = self._trainer
        if trainer is None:
            return None
        dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
        folder = Path(dirpath) if dirpath else Path(trainer.default_root_dir) / "checkpoints"
        return (folder / "last.ckpt").resolve()

    def _stop(self, trainer: L.Trainer) -> None:
        signum = self.received or signal.SIGTERM
        name = signal.Signals(signum).name
        path = self._last_path()
        assert path is not None
        where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        trainer.save_checkpoint(path)
        self.checkpoint = path
        self.resume_command = resume_command(path, Path(trainer.default_root_dir).resolve())
        if trainer.is_global_zero:
            log.warning("%s: saved %s (%s)", name, path, where)
            log.warning("to resume: %s", self.resume_command)
        self.restore()
        raise Interrupted(f"training stopped by {name} at {where}; checkpoint saved: {path}",
                          hint=f"resume with: {self.resume_command}", signal_number=signum)

