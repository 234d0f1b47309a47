"""One training run, top to bottom: data, plugin, module, trainer, fit, best metric.

:func:`run_training` takes a validated :class:`~lightplug.config.RunConfig`; the CLI and
:func:`lightplug.train` both end here.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from pathlib import Path
from typing import Any

from .config.finalize import RunConfig
from .errors import CheckpointError, ConfigError, DataError, LightplugError, PluginError
from .registry import LoadedPlugin, get_registry

__all__ = ["run_training", "build_module", "checkpoint_meta"]

log = logging.getLogger("lightplug")


def checkpoint_meta(run: RunConfig, loaded: LoadedPlugin, datamodule: Any) -> dict[str, Any]:
    """The self-description stored in every checkpoint: plain data only (``weights_only`` safe)."""
    from . import __version__
    from .checkpoint import CHECKPOINT_FORMAT

    ref = loaded.ref
    return {
        "format": CHECKPOINT_FORMAT,
        "lightplug_version": __version__,
        "plugin": {"name": run.model_name, "kind": "model", "dist": ref.dist, "version": ref.version, "target": ref.target, "source": ref.source},
        "task": run.task,
        "model_config": {k: v for k, v in run.cfg["model"].items() if not k.startswith("_")},
        "data": {"name": run.data_name, "config": {k: v for k, v in run.cfg["data"].items() if not k.startswith("_")}},
        "label_names": list(getattr(datamodule, "label_names", []) or run.facts.get("label_names", [])),
        "preprocessing": dict(getattr(datamodule, "preprocessing", {}) or {}),
        "facts": {k: v for k, v in run.facts.items() if k != "label_names"},
        "preset": run.preset,
        "monitor": run.cfg["monitor"],
        "config": json.loads(json.dumps(run.cfg, default=str)),
    }


def _guard(what: str, who: str, fn: Any, *args: Any) -> Any:
    """Call plugin code; anything it raises becomes one PluginError naming the plugin."""
    try:
        return fn(*args)
    except LightplugError:
        raise
    except Exception as exc:
        cause = traceback.format_exception_only(type(exc), exc)[-1].strip()
        raise PluginError(f"{who} failed to {what}: {cause}", hint="this is a bug in the plugin; --debug shows the traceback") from exc


def build_module(run: RunConfig, datamodule: Any) -> Any:
    """Build the plugin's ``nn.Module`` and wrap it in a :class:`~lightplug.module.PluginModule`."""
    from .module import PluginModule

    loaded = get_registry().get("model", run.model_name)
    who = f"model {run.model_name!r} ({loaded.ref.dist or loaded.ref.source})"
    plugin = _guard("take its config", who, loaded.instantiate, run.cfg["model"])
    net = _guard("build", who, plugin.build, plugin.cfg)
    return PluginModule(net, plugin, run.cfg, checkpoint_meta(run, loaded, datamodule)), who


def _check_first_batch(module: Any, datamodule: Any, run: RunConfig, who: str) -> None:
    """Run one validation batch through the model so a bad plugin fails now, not after an epoch."""
    import torch

    from .module import split_outputs
    from .tasks import check_outputs

    batch = next(iter(datamodule.val_dataloader()))
    module.eval()
    with torch.no_grad():
        outputs = _guard("run forward on a batch of the data", who, module.net, batch["input"])
    module.train()
    preds, _, _ = split_outputs(outputs)
    if preds is not None:
        check_outputs(run.task, preds, batch, run.facts, who)


def _resume_path(resume: str | None, run_dir: Path) -> str | None:
    if not resume:
        return None
    if resume == "last":
        here = run_dir / "checkpoints" / "last.ckpt"
        if here.is_file():
            return str(here)
        candidates = sorted(Path("outputs").glob("*/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise CheckpointError("resume=last: no last.ckpt in this run folder or under outputs/", hint="give resume=PATH")
        return str(candidates[-1])
    if not Path(resume).is_file():
        raise CheckpointError(f"resume={resume}: no such checkpoint file")
    return resume


def _init_from(module: Any, path: str) -> None:
    from .checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        module.net.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"init_from={path} does not fit this model: {str(exc).splitlines()[-1].strip()[:200]}") from exc


#: Set by Lightning's DDP launcher in the launching process; left behind, they make the next job of a
#: multirun believe its ranks were started externally, and it waits for them forever.
_DDP_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _end_process_group(saved_env: dict[str, str | None]) -> None:
    """After fit: destroy the DDP process group and restore the launcher's environment variables, so
    the next job of a multirun launches its own ranks."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    if saved_env.get("LOCAL_RANK") is None:  # we launched the ranks ourselves (not torchrun/SLURM)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _set_threads(cfg: dict[str, Any]) -> None:
    """``threads``, or on CPU DDP the cores shared among the ranks: oversubscribed cores stall every op."""
    import torch

    threads = cfg.get("threads")
    t = cfg["trainer"]
    devices = t.get("devices")
    if threads is None and t.get("accelerator") == "cpu" and str(t.get("strategy", "")).startswith("ddp") and str(devices).isdigit():
        threads = max(1, (os.cpu_count() or 1) // max(1, int(devices)))
    if threads:
        torch.set_num_threads(int(threads))


def run_training(run: RunConfig, run_dir: str | os.PathLike[str]) -> float | None:
    """Train as ``run`` says, writing everything into ``run_dir``; return the best monitored metric."""
    import lightning as L

    from ._logging import quiet_lightning
    from .trainer_factory import build_trainer

    quiet_lightning()

    out = Path(run_dir)
    cfg = run.cfg
    for note in run.notes:
        log.info(note)
    _set_threads(cfg)
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    data = get_registry().get("data", run.data_name)
    data_plugin = data.instantiate(cfg["data"])
    datamodule = _guard("build its data", f"data {run.data_name!r}", data_plugin.build, data_plugin.cfg)
    module, who = build_module(run, datamodule)
    _check_first_batch(module, datamodule, run, who)
    if cfg.get("init_from"):
        _init_from(module, cfg["init_from"])
    resume = _resume_path(cfg.get("resume"), out)
    trainer = build_trainer(cfg, out, run)
    if trainer.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    saved_env = {k: os.environ.get(k) for k in _DDP_ENV}
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True if resume else None)
    finally:
        _end_process_group(saved_env)
    best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    score = float(best) if best is not None else None
    if score is None and cfg["monitor"] in trainer.callback_metrics:
        score = float(trainer.callback_metrics[cfg["monitor"]])
    if trainer.is_global_zero:
        summary = {"monitor": cfg["monitor"], "best": score,
                   "best_checkpoint": getattr(trainer.checkpoint_callback, "best_model_path", None),
                   "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        log.info("best %s = %s; checkpoints in %s", cfg["monitor"], score, out / "checkpoints")
    return score


_ = (ConfigError, DataError)
