"""A Lightning ``Trainer`` from the resolved config: trainer settings, callbacks and loggers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config.finalize import RunConfig
from .errors import ConfigError

__all__ = ["build_trainer", "build_callbacks", "build_loggers", "finish_loggers"]

_TRAINER_KEYS_OURS: set[str] = set()


def build_callbacks(cfg: dict[str, Any], out: Path, task: str | None = None) -> list[Any]:
    """Checkpointing (best and last, written atomically), RNG state, graceful SIGINT/SIGTERM, early stopping,
    LR monitor and progress bar."""
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor

    from .callbacks import AtomicCheckpoints, LastCheckpoint, RNGState
    from .interrupt import GracefulStop

    cb = cfg.get("callbacks") or {}
    monitor, mode = cfg["monitor"], cfg["monitor_mode"]
    ck = cb.get("checkpoint", {})
    callbacks: list[Any] = [
        LastCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor, mode=mode, save_top_k=ck.get("save_top_k", 1),
                       save_last=ck.get("save_last", True), every_n_epochs=ck.get("every_n_epochs", 1), auto_insert_metric_name=False,
                       enable_version_counter=False),
        RNGState(),
        AtomicCheckpoints(out / "checkpoints"),
        GracefulStop(),
    ]
    ema = cfg.get("ema") or {}
    if ema.get("enabled"):  # before the checkpoints: the saved "state_dict" is the average, the raw weights "current_model_state"
        from lightning.pytorch.callbacks import EMAWeightAveraging

        warmup = int(ema.get("warmup", 0))
        callbacks.insert(0, EMAWeightAveraging(decay=float(ema.get("decay", 0.999)), update_starting_at_step=warmup or None))
    es = cb.get("early_stopping", {})
    if es.get("enabled"):
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=es.get("patience", 5), min_delta=es.get("min_delta", 0.0)))
    if cb.get("lr_monitor", {}).get("enabled") and cfg.get("logger"):
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if cb.get("progress_bar", {}).get("enabled", True) and cfg["trainer"].get("enable_progress_bar", True):
        callbacks.append(progress_bar())
    export = cfg.get("export") or {}
    if export.get("formats"):
        from .export.callback import ExportCallback

        callbacks.append(ExportCallback(out / "export", export["formats"], opset=export.get("opset", 17), dynamic_batch=export.get("dynamic_batch", True),
                                        atol=export.get("atol", 1e-4), rtol=export.get("rtol", 1e-3), benchmark=export.get("benchmark", True),
                                        model=(cfg.get("model") or {}).get("_plugin_")))
    from .evaluation.callbacks import evaluation_callbacks  # confusion matrix, per-sample results

    callbacks += evaluation_callbacks(cfg, out, task)
    callbacks += plugin_callbacks(cfg)
    return callbacks


#: Keys of the ``callbacks`` group that are the core's own; every other key names a callback plugin.
BUILTIN_CALLBACKS = ("checkpoint", "early_stopping", "lr_monitor", "progress_bar")


def plugin_callbacks(cfg: dict[str, Any]) -> list[Any]:
    """Callbacks from plugins (entry-point group ``lightplug.callbacks``) switched on in the config with
    ``callbacks=[default,NAME]`` or ``+callbacks.NAME.param=...``."""
    from .registry import get_registry
    from .training import _guard

    out = []
    for name, values in (cfg.get("callbacks") or {}).items():
        if name in BUILTIN_CALLBACKS or values is None:
            continue
        loaded = get_registry().get("callback", name)
        plugin = loaded.instantiate(values)
        out.append(_guard("build its callback", f"callback {name!r} ({loaded.ref.dist or loaded.ref.source})", plugin.build, plugin.cfg))
    return out


def build_loggers(cfg: dict[str, Any], out: Path, run: RunConfig) -> list[Any]:
    """CSV, TensorBoard, W&B and MLflow loggers, as many as ``logger`` names; each gets the flat resolved config
    with the plugin's name and version. W&B runs are grouped by model and tagged with model, task and preset."""
    loggers: list[Any] = []
    chosen = cfg.get("logger") or {}
    if "csv" in chosen:
        from lightning.pytorch.loggers import CSVLogger

        loggers.append(CSVLogger(save_dir=str(out), name="", version=""))
    if "tensorboard" in chosen:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(out), name="tensorboard", version=""))
    tags = [run.model_name, run.task] + ([f"preset:{run.preset}"] if run.preset else [])
    if "wandb" in chosen:
        w = chosen["wandb"]
        loggers.append(_wandb_logger(project=w.get("project"), entity=w.get("entity"), group=w.get("group") or run.model_name,
                                     job_type=run.preset or "train", tags=list(w.get("tags") or []) + tags, save_dir=str(out),
                                     log_model=w.get("log_model", False)))
    if "mlflow" in chosen:
        from lightning.pytorch.loggers import MLFlowLogger

        from ._home import home_dir

        m = chosen["mlflow"]
        uri = m.get("tracking_uri") or f"file:{(home_dir() / 'mlruns').resolve()}"  # one store per user, beside the runs index
        if uri.startswith("file:"):  # recent MLflow refuses its file store unless told (a database is its new default)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        loggers.append(MLFlowLogger(experiment_name=m.get("experiment_name", "lightplug"), tracking_uri=uri, run_name=out.name,
                                    tags={"model": run.model_name, "task": run.task, "preset": run.preset or "", "run_dir": str(out.resolve())}))
    hparams = _flat({**cfg, "plugin": _plugin_info(run)})
    for lg in loggers:
        lg.log_hyperparams(hparams)
    return loggers


def finish_loggers(loggers: list[Any], ok: bool) -> None:
    """End what Lightning leaves open after ``fit``: a W&B run is finished (``wandb.finish``) with the run's exit
    code, so that its files are complete when the process (or the next job of a multirun) goes on; without it W&B
    abandons the run at exit (``HandleAbandonedError`` in its ``debug.log``)."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger) and getattr(lg, "_experiment", None) is not None:
            lg.experiment.finish(exit_code=0 if ok else 1)
            lg._experiment = None


def _plugin_info(run: RunConfig) -> dict[str, Any]:
    """Name, distribution and version of the model plugin and of lightplug, logged with the hyperparameters."""
    from . import __version__
    from .registry import get_registry

    ref = get_registry().find("model", run.model_name)
    return {"name": run.model_name, "dist": ref.dist, "version": ref.version, "lightplug_version": __version__}


def _wandb_logger(**kwargs: Any) -> Any:
    """A ``WandbLogger`` that also keeps the best checkpoint's path and score in the run summary."""
    from lightning.pytorch.loggers import WandbLogger
    from lightning.pytorch.utilities import rank_zero_only

    class _Wandb(WandbLogger):  # type: ignore[misc]
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            if self._wandb_init.get("anonymous") is None:  # Lightning passes None, which W&B warns about on every run
                self._wandb_init.pop("anonymous", None)

        @rank_zero_only  # type: ignore[misc]
        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            super().after_save_checkpoint(checkpoint_callback)
            path, score = getattr(checkpoint_callback, "best_model_path", ""), getattr(checkpoint_callback, "best_model_score", None)
            if path:
                self.experiment.summary["best_checkpoint"] = str(path)
            if score is not None:
                self.experiment.summary[f"best/{checkpoint_callback.monitor}"] = float(score)

    return _Wandb(**kwargs)


#: Seconds between two updates of the progress bar (Rich draws it once per second anyway).
PROGRESS_BAR_INTERVAL = 0.1


def progress_bar(min_interval: float = PROGRESS_BAR_INTERVAL) -> Any:
    """Lightning's ``RichProgressBar`` (``leave=True``), updated at most every ``min_interval`` seconds and at
    the last batch of each epoch and validation run.

    Lightning's updates the Rich task and re-reads every progress-bar metric after each batch, about 0.1 ms
    per training step on a 2-core CPU (benchmarks/RESULTS.md), although Rich redraws only once per second.
    The metrics shown are read again when an epoch's bar is finished (next epoch's start, end of training), so
    that values logged in ``LightningModule.on_train_epoch_end`` (the epoch's ``train/loss``) are on it.
    """
    import time

    from lightning.pytorch.callbacks import RichProgressBar

    class _ThrottledRichProgressBar(RichProgressBar):  # type: ignore[misc]
        _last = float("-inf")

        def _due(self, batch_idx: int, total: Callable[[], float]) -> bool:
            """Whether to draw after batch ``batch_idx``. Never on a disabled bar: Lightning disables it on every
            rank but 0 (DDP), where the batch counts behind ``total`` are never set and reading them fails."""
            if self.is_disabled:
                return False
            now = time.monotonic()
            if batch_idx + 1 >= total() or now - self._last >= min_interval:
                self._last = now
                return True
            return False

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self._due(batch_idx, lambda: self.total_train_batches):
                super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

        def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            if self._due(batch_idx, lambda: self.total_val_batches_current_dataloader):
                super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._update_metrics(trainer, pl_module)  # the previous epoch's bar is finished next, with these
            super().on_train_epoch_start(trainer, pl_module)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._update_metrics(trainer, pl_module)
            self.refresh()

    return _ThrottledRichProgressBar(leave=True)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v if _loggable(v) else str(v)
    return out


def _loggable(value: Any) -> bool:
    """Numbers, strings, booleans, None and lists of them reach the loggers as they are (W&B keeps lists as lists;
    TensorBoard and MLflow turn them into text themselves)."""
    if isinstance(value, list):
        return all(_loggable(v) and not isinstance(v, list) for v in value)
    return isinstance(value, (int, float, str, bool)) or value is None


def build_trainer(cfg: dict[str, Any], out: Path, run: RunConfig) -> Any:
    """The ``lightning.Trainer`` for this run, writing into ``out``."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    kwargs = {k: v for k, v in cfg["trainer"].items() if v is not None and k not in _TRAINER_KEYS_OURS}
    loggers = build_loggers(cfg, out, run)
    try:
        return L.Trainer(default_root_dir=str(out), callbacks=build_callbacks(cfg, out, run.task), logger=loggers or False, **kwargs)
    except (ValueError, TypeError, ImportError, MisconfigurationException) as exc:  # e.g. accelerator=gpu without a GPU
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"the trainer config cannot be used: {first}", hint="see `lightplug train --cfg job` and docs/scaling.md") from exc
