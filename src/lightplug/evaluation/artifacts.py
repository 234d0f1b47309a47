"""Files about the best validation epoch, at almost no cost per epoch.

Drawing a figure costs 0.2-0.4 s and importing matplotlib's backend about as much again, while Lightning
validates a small model in a few milliseconds. So the evaluation callbacks accumulate on the device during
each validation (a confusion matrix, per-sample numbers), keep that data in memory when the validation is
the best so far (a clone), and write files only:

- at the end of fit, and when a run stops early (interrupt, early stopping, an exception after at least one
  validation): the best epoch's files, so that every file of a finished run shows the same, best, epoch;
- during a live run, at most once every ``results.refresh_seconds`` (default 60) when the best epoch changed,
  so that a short run pays nothing and a long run's files stay fresh for the web UI;
- with ``results.every_epoch=true``, also one file per epoch (``<name>/epoch_NNN.<ext>``).

Every file says which epoch it shows (a column of the CSV files, the title and a PNG text chunk ``epoch`` of the
figures), ``artifacts.json`` in the run folder lists the files written so far with their epoch, and
``summary.json`` gets ``best_epoch`` and ``artifacts_epoch`` at the end.

:class:`BestEpoch` decides, once per validation and identically on every process, whether the validation is
the best so far; :class:`BestEpochArtifacts` is the base class of the callbacks that write such files (the core's
confusion matrix, per-sample results, detection curves, and plugins' callbacks such as a prediction grid).
Under DDP every process takes part in the collectives of :meth:`BestEpochArtifacts.collect` in the same
order (the decision to collect comes from rank 0); only rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import lightning as L

__all__ = ["BestEpoch", "BestEpochArtifacts", "artifact_summary", "MANIFEST", "DEFAULT_REFRESH_SECONDS", "png_metadata"]

log = logging.getLogger("lightplug")

#: The list of written files and the epoch each shows, in the run folder.
MANIFEST = "artifacts.json"
#: Seconds between two writes of the best epoch's files during a run (``results.refresh_seconds``).
DEFAULT_REFRESH_SECONDS = 60.0


def png_metadata(epoch: int, what: str) -> dict[str, str]:
    """PNG text chunks of a figure: the epoch it shows (``PIL.Image.open(p).text["epoch"]``) and what it is."""
    return {"epoch": str(epoch), "Title": what, "Software": "lightplug"}


class BestEpoch(L.Callback):
    """Which validation is the best so far by the monitored metric, and when the best epoch's files are due.

    Args:
        monitor: the monitored metric (``None``: every validation counts as the best, the latest is shown).
        mode: ``"max"`` or ``"min"``.
        refresh_seconds: during a run, write the best epoch's files at most this often (``None``: only when the
            run ends; ``0``: whenever the best epoch changes).
        every_epoch: also write one file per epoch.
        out_dir: the run folder (for ``artifacts.json``); ``None``: the trainer's ``default_root_dir``.

    A validation improves when its value is strictly better than the best so far and not NaN, the rule of
    Lightning's ``ModelCheckpoint``, so the files show the epoch of ``best.ckpt``.
    """

    def __init__(self, monitor: str | None, mode: str = "max", refresh_seconds: float | None = DEFAULT_REFRESH_SECONDS,
                 every_epoch: bool = False, out_dir: str | Path | None = None) -> None:
        self.monitor, self.mode, self.refresh_seconds, self.every_epoch = monitor, mode, refresh_seconds, every_epoch
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_step: int | None = None
        self.improved = False  # the current validation is the best so far
        self.flush = False  # the best epoch's files are due now (rank 0)
        self.files: dict[str, int] = {}  # written file (relative to the run folder) -> epoch shown
        self._key: tuple[int, int] | None = None
        self._last_flush: float | None = None
        self._flushed_epoch: int | None = None

    # ------------------------------------------------------------ state (checkpoints)
    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_step": self.best_step, "files": dict(self.files)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.best_step = state_dict.get("best"), state_dict.get("best_epoch"), state_dict.get("best_step")
        self.files = {str(k): int(v) for k, v in (state_dict.get("files") or {}).items()}
        self._flushed_epoch = self.best_epoch if self.files and set(self.files.values()) == {self.best_epoch} else None

    # ------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_flush = time.monotonic()  # a run shorter than refresh_seconds writes its files once, at the end
        ckpt = trainer.checkpoint_callback
        score = getattr(ckpt, "best_model_score", None)
        if self.best is None and score is not None and getattr(ckpt, "monitor", None) == self.monitor:
            self.best = float(score)  # resumed from a checkpoint written before this callback existed

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.observe(trainer)

    # ------------------------------------------------------------ decisions
    def folder(self, trainer: L.Trainer) -> Path:
        """The run folder the files go to."""
        return self.out_dir if self.out_dir is not None else Path(trainer.default_root_dir)

    def _better(self, current: float) -> bool:
        if math.isnan(current):
            return False
        return self.best is None or (current > self.best if self.mode == "max" else current < self.best)

    def observe(self, trainer: L.Trainer) -> bool:
        """Decide, once per validation, whether it is the best so far (``improved``) and whether the best epoch's
        files are due (``flush``). Under DDP rank 0 decides and every process receives its decision (a broadcast:
        every process must call this, in the same order as its other collectives)."""
        if trainer.sanity_checking:  # a few batches before training: not a validation of the model being trained
            return False
        key = (int(trainer.current_epoch), int(trainer.global_step))
        if key == self._key:
            return self.improved
        self._key = key
        value = trainer.callback_metrics.get(self.monitor) if self.monitor else None
        current = float(value) if value is not None else None
        improved = current is None or self._better(current)
        if trainer.world_size > 1:
            improved = bool(trainer.strategy.broadcast(improved, src=0))
        self.improved = improved
        if improved:
            self.best = current if current is not None else self.best
            self.best_epoch, self.best_step = key
        now = time.monotonic()
        if self._last_flush is None:
            self._last_flush = now
        due = self.refresh_seconds is not None and now - self._last_flush >= self.refresh_seconds
        self.flush = due and self.best_epoch is not None and self.best_epoch != self._flushed_epoch
        if self.flush:
            self._last_flush, self._flushed_epoch = now, self.best_epoch
        return improved

    def record(self, trainer: L.Trainer, written: dict[str, int]) -> None:
        """Note files written (path relative to the run folder -> epoch) and rewrite ``artifacts.json`` (rank 0)."""
        self.files.update(written)
        folder = self.folder(trainer)
        data = {"monitor": self.monitor, "mode": self.mode, "best": self.best, "best_epoch": self.best_epoch, "best_step": self.best_step,
                "files": dict(sorted(self.files.items()))}
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, folder / MANIFEST)


def schedule_of(trainer: L.Trainer) -> BestEpoch | None:
    """The run's :class:`BestEpoch` callback, if the trainer has one."""
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, BestEpoch):
            return cb
    return None


class BestEpochArtifacts(L.Callback):
    """Base of the callbacks that write files about a validation epoch (see the module's docstring).

    A subclass accumulates what it needs during validation in its own hooks (cheaply, on the device) and
    implements:

    - :meth:`collect`: called on every process at the end of a validation whose data is kept (the best so far,
      or every epoch with ``results.every_epoch``); may take part in collectives (``all_gather``); returns the
      data to keep (plain tensors, dicts, lists and numbers: it goes into checkpoints until it is written),
      or ``None``. On rank 0 it must not return a view of a buffer the next validation overwrites.
    - :meth:`render`: called on rank 0 only, writes the files for ``epoch`` and returns them as a dict of
      ``path -> epoch``; ``per_epoch`` asks for the files of ``results.every_epoch`` instead of the best epoch's.

    The run's :class:`BestEpoch` callback (added by the core) is used when the trainer has one, else a private
    one that shows the latest validation (a plugin's callback in a bare ``lightning.Trainer``).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None  # {"epoch", "step", "data"}: kept, not yet written
        self._own: BestEpoch | None = None

    # ------------------------------------------------------------ to implement
    def collect(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Any:
        """The data of this validation to keep (every process); ``None`` keeps nothing."""
        raise NotImplementedError

    def render(self, trainer: L.Trainer, pl_module: L.LightningModule, data: Any, epoch: int, per_epoch: bool) -> dict[str, int]:
        """Write the files for ``epoch`` (rank 0); return ``{path relative to the run folder or absolute: epoch}``."""
        raise NotImplementedError

    # ------------------------------------------------------------ state (checkpoints)
    def state_dict(self) -> dict[str, Any]:
        return {"pending": self._pending}  # data kept but not yet written survives a kill and a resume

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pending = state_dict.get("pending")
        self._pending = pending if isinstance(pending, dict) and "data" in pending else None

    # ------------------------------------------------------------ the schedule
    def schedule(self, trainer: L.Trainer) -> BestEpoch:
        """The run's :class:`BestEpoch` (or this callback's own)."""
        shared = schedule_of(trainer)
        if shared is not None:
            return shared
        if self._own is None:
            ckpt = trainer.checkpoint_callback
            monitor = getattr(ckpt, "monitor", None)
            self._own = BestEpoch(monitor, getattr(ckpt, "mode", "max"), out_dir=Path(trainer.default_root_dir))
        return self._own

    # ------------------------------------------------------------ hooks
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        sched = self.schedule(trainer)
        improved = sched.observe(trainer)
        data = self.collect(trainer, pl_module) if improved or sched.every_epoch else None
        if not trainer.is_global_zero or data is None:
            return
        epoch, step = int(trainer.current_epoch), int(trainer.global_step)
        if sched.every_epoch:
            sched.record(trainer, self._relative(sched, trainer, self.render(trainer, pl_module, data, epoch, True)))
        if improved:
            self._pending = {"epoch": epoch, "step": step, "data": data}
        if sched.flush:
            self.write_best(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write_best(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) or _stopping_at_once(trainer):
            return  # the user asked to stop now; the data kept is in last.ckpt (if one was written) for a resume
        try:
            self.write_best(trainer, pl_module)
        except Exception as exc:  # noqa: BLE001 - the run's own exception is what the user must see
            log.warning("the best epoch's %s files were not written: %s", type(self).__name__, exc)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self._pending is not None:
            try:
                self.write_best(trainer, pl_module)
            except Exception as exc:  # noqa: BLE001 - see on_exception
                log.warning("the best epoch's %s files were not written: %s", type(self).__name__, exc)

    # ------------------------------------------------------------ writing
    def write_best(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the files of the best epoch kept in memory, if any is waiting (rank 0; no collective)."""
        if self._pending is None or not trainer.is_global_zero:
            return
        pending, self._pending = self._pending, None
        sched = self.schedule(trainer)
        try:
            written = self.render(trainer, pl_module, pending["data"], int(pending["epoch"]), False)
        except BaseException:
            self._pending = pending
            raise
        sched.record(trainer, self._relative(sched, trainer, written))

    @staticmethod
    def _relative(sched: BestEpoch, trainer: L.Trainer, written: dict[str, int]) -> dict[str, int]:
        root = sched.folder(trainer).resolve()
        out = {}
        for path, epoch in written.items():
            p = Path(path)
            try:
                out[(p.resolve().relative_to(root)).as_posix()] = int(epoch)
            except ValueError:
                out[str(p)] = int(epoch)
        return out


def _stopping_at_once(trainer: L.Trainer) -> bool:
    """A second Ctrl-C/SIGTERM: the graceful-stop callback got a signal but wrote no checkpoint."""
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if type(cb).__name__ == "GracefulStop" and getattr(cb, "received", None) is not None and getattr(cb, "checkpoint", None) is None:
            return True
    return False


def artifact_summary(trainer: L.Trainer) -> dict[str, Any]:
    """For ``summary.json``: ``best_epoch``, the files written with the epoch each shows, and ``artifacts_epoch``
    (the one epoch they all show, ``None`` when they disagree or none was written)."""
    sched = schedule_of(trainer)
    if sched is None:
        return {}
    best = {k: v for k, v in sched.files.items() if "/epoch_" not in k}  # per-epoch files show their own epoch
    epochs = set(best.values())
    return {"best_epoch": sched.best_epoch, "artifacts_epoch": epochs.pop() if len(epochs) == 1 else None, "artifacts": dict(sorted(best.items()))}
