"""Callbacks the core adds to every run so that checkpoints can be trusted: the random-number state saved
with each checkpoint (exact resume, also from the middle of an epoch), a ``last.ckpt`` refreshed after
every epoch, and checkpoint files written atomically (a temporary file next to the target, then
``os.replace``)."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint

from .errors import CheckpointError, in_chain

__all__ = ["RNGState", "LastCheckpoint", "AtomicCheckpoints", "AtomicCheckpointIO", "atomic_torch_save", "rng_state", "set_rng_state",
           "TEMP_SUFFIX"]

#: Ending of the temporary files a checkpoint is written to before it takes its real name.
TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + "$")
_NOT_RESUMABLE = "You're resuming from a checkpoint that ended before the epoch ended"


# ------------------------------------------------------------------ random-number state
def rng_state() -> dict[str, Any]:
    """The torch, numpy, Python (and CUDA) generator states as plain data (``weights_only`` safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _ReplayIterator:
    """Stands in for the train loader's iterator of a resumed epoch.

    On first use it recreates the real iterator from the generator state the interrupted run had when it
    created its own (so the shuffle is the same), skips the batches that run already trained on, and then
    restores the generator state of the moment the checkpoint was written.
    """

    def __init__(self, fetcher: Any, start: dict[str, Any], skip: int, after: dict[str, Any], owner: RNGState) -> None:
        self.fetcher, self.start, self.skip, self.after, self.owner = fetcher, start, skip, after, owner
        self._it: Any = None

    def __iter__(self) -> _ReplayIterator:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            set_rng_state(self.start)
            self.owner.epoch_start = self.start
            self._it = iter(self.fetcher.combined_loader)
            for _ in range(self.skip):
                next(self._it)
            if self.skip:
                set_rng_state(self.after)
        return next(self._it)


class RNGState(L.Callback):
    """Saves the generator states with every checkpoint and restores them on resume, so that a resumed run
    shuffles, drops out and augments exactly like the run left alone.

    Lightning checkpoints hold no RNG state. Besides the state at the moment of saving, the checkpoint
    records the state the train loader's iterator was (or will be) created from and how many batches of the
    current epoch were already used; resuming in the middle of an epoch replays that shuffle and skips them.
    """

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._pending: dict[str, Any] | None = None
        self.epoch_start: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        now = rng_state()
        trainer = self._trainer
        if trainer is None or not trainer.training or self.epoch_start is None:
            return {"rng": now, "iterator_rng": now, "skip_batches": 0}
        progress = trainer.fit_loop.epoch_loop.batch_progress
        epoch: Any = trainer.fit_loop.epoch_progress.current  # a _ProcessedTracker (typed as its base)
        if progress.is_last_batch or epoch.processed >= epoch.started:  # the next iterator is a new epoch's, made from `now`
            return {"rng": now, "iterator_rng": now, "skip_batches": 0}
        return {"rng": now, "iterator_rng": self.epoch_start, "skip_batches": int(progress.current.ready)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "rng" not in state_dict:  # written before the iterator state was recorded
            state_dict = {"rng": state_dict, "iterator_rng": state_dict, "skip_batches": 0}
        self._pending = state_dict

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_start = rng_state()  # the first epoch's iterator is created from this state (in setup_data)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        set_rng_state(state["rng"])
        self.epoch_start = state["iterator_rng"]
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
        if fetcher is None or getattr(fetcher, "length", None) is None or getattr(fetcher, "fetched", 1) != 0:
            if state["skip_batches"]:
                warnings.warn("lightplug: this loader cannot replay a partly trained epoch; the resumed epoch is shuffled anew", stacklevel=1)
            return
        fetcher.iterator = _ReplayIterator(fetcher, state["iterator_rng"], int(state["skip_batches"]), state["rng"], self)
        warnings.filterwarnings("ignore", message=_NOT_RESUMABLE)  # the replay makes the loader resumable

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
        if fetcher is not None and getattr(fetcher, "fetched", 0) != 0:  # Lightning creates this epoch's iterator next
            self.epoch_start = rng_state()


# ------------------------------------------------------------------ checkpoint files
def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed over ``path``.

    A reader, or a kill at any moment, sees the previous file or the complete new one, never a part. The
    temporary file (``.NAME.PID.RANDOM.tmp``) is removed if the write fails or is interrupted.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}{TEMP_SUFFIX}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        full = _storage_error(exc)
        if full is not None:
            kept = f"the previous {target.name} is intact" if target.is_file() else f"no earlier {target.name} was there to keep"
            raise CheckpointError(f"could not write checkpoint {target}: {full.strerror or full}; {kept}",
                                  hint="free disk space or raise the file-size limit (ulimit -f), then resume") from exc
        raise
    _fsync_dir(target.parent)


def _storage_error(exc: BaseException) -> OSError | None:
    """The full-disk, quota or file-size error behind ``exc`` (torch's zip writer wraps it in a RuntimeError), or None."""
    found = in_chain(exc, lambda e: isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT), depth=5)
    return found if isinstance(found, OSError) else None


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary checkpoint files left in ``folder`` by processes that no longer run (killed mid-write)."""
    removed: list[Path] = []
    base = Path(folder)
    if not base.is_dir():
        return removed
    for path in base.iterdir():
        m = _TEMP_NAME.match(path.name)
        if not m or int(m.group("pid")) == os.getpid():
            continue
        try:
            os.kill(int(m.group("pid")), 0)
            continue  # its writer is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with :func:`atomic_torch_save` for local files.

    Lightning's own ``_atomic_save`` stages the file in the system temp folder and moves it; when that
    folder is another file system (``/tmp`` on tmpfs) the move is a copy, and a kill leaves a truncated file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        protocol = get_filesystem(path).protocol
        if storage_options is not None or "file" not in (protocol if isinstance(protocol, tuple) else (protocol,)):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)
        return None


class AtomicCheckpoints(L.Callback):
    """Makes the trainer write checkpoints with :class:`AtomicCheckpointIO` and clears stale temporaries."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = folder

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        strategy = trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:  # strategies with their own format (DeepSpeed, ...) keep it
            strategy.checkpoint_io = AtomicCheckpointIO()
        if self.folder is not None and trainer.is_global_zero:
            remove_stale_temporaries(self.folder)


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is written after every epoch.

    Lightning 2.6 refreshes ``last.ckpt`` only when a top-k checkpoint was saved at the same step, so with
    ``save_top_k=1`` it lags behind whenever the monitored metric did not improve.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: L.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
