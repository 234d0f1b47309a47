"""A Lightning ``Trainer`` from the resolved config: trainer settings, callbacks and loggers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config.finalize import RunConfig
from .errors import ConfigError

__all__ = ["build_trainer", "build_callbacks", "build_loggers"]

_TRAINER_KEYS_OURS: set[str] = set()


def build_callbacks(cfg: dict[str, Any], out: Path) -> list[Any]:
    """Checkpointing (best and last), early stopping, LR monitor, progress bar and RNG state."""
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar

    from .callbacks import RNGState

    cb = cfg.get("callbacks") or {}
    monitor, mode = cfg["monitor"], cfg["monitor_mode"]
    ck = cb.get("checkpoint", {})
    callbacks: list[Any] = [
        ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor, mode=mode, save_top_k=ck.get("save_top_k", 1),
                        save_last=ck.get("save_last", True), every_n_epochs=ck.get("every_n_epochs", 1), auto_insert_metric_name=False,
                        enable_version_counter=False),
        RNGState(),
    ]
    es = cb.get("early_stopping", {})
    if es.get("enabled"):
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=es.get("patience", 5), min_delta=es.get("min_delta", 0.0)))
    if cb.get("lr_monitor", {}).get("enabled") and cfg.get("logger"):
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if cb.get("progress_bar", {}).get("enabled", True) and cfg["trainer"].get("enable_progress_bar", True):
        callbacks.append(RichProgressBar(leave=True))
    return callbacks


def build_loggers(cfg: dict[str, Any], out: Path, run: RunConfig) -> list[Any]:
    """CSV, TensorBoard, W&B and MLflow loggers, as many as ``logger`` names."""
    loggers: list[Any] = []
    chosen = cfg.get("logger") or {}
    if "csv" in chosen:
        from lightning.pytorch.loggers import CSVLogger

        loggers.append(CSVLogger(save_dir=str(out), name="", version=""))
    if "tensorboard" in chosen:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(out), name="tensorboard", version=""))
    if "wandb" in chosen:
        from lightning.pytorch.loggers import WandbLogger

        w = chosen["wandb"]
        tags = list(w.get("tags") or []) + [run.model_name] + ([run.preset] if run.preset else [])
        loggers.append(WandbLogger(project=w.get("project"), entity=w.get("entity"), group=w.get("group") or run.model_name,
                                   tags=tags, save_dir=str(out), log_model=w.get("log_model", False)))
    if "mlflow" in chosen:
        from lightning.pytorch.loggers import MLFlowLogger

        m = chosen["mlflow"]
        uri = m.get("tracking_uri") or f"file:{(out.parent.parent / 'mlruns').resolve()}"
        loggers.append(MLFlowLogger(experiment_name=m.get("experiment_name", "lightplug"), tracking_uri=uri))
    for lg in loggers:
        lg.log_hyperparams(_flat(cfg))
    return loggers


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


def build_trainer(cfg: dict[str, Any], out: Path, run: RunConfig) -> Any:
    """The ``lightning.Trainer`` for this run, writing into ``out``."""
    import lightning as L

    kwargs = {k: v for k, v in cfg["trainer"].items() if v is not None and k not in _TRAINER_KEYS_OURS}
    loggers = build_loggers(cfg, out, run)
    try:
        return L.Trainer(default_root_dir=str(out), callbacks=build_callbacks(cfg, out), logger=loggers or False, **kwargs)
    except (ValueError, TypeError, ImportError) as exc:  # e.g. accelerator=gpu without a GPU
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"the trainer config cannot be used: {first}", hint="see `lightplug train --cfg job` and docs/scaling.md") from exc
