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
from .runs import record_run
from .trust import same_code

__all__ = ["run_training", "build_module", "checkpoint_meta", "check_checkpoint_settings"]

log = logging.getLogger("lightplug")


def checkpoint_meta(run: RunConfig, loaded: LoadedPlugin, datamodule: Any) -> dict[str, Any]:
    """The self-description stored in every checkpoint: plain data only (``weights_only`` safe)."""
    from . import __version__
    from .checkpoint import CHECKPOINT_FORMAT

    ref = loaded.ref
    version = ref.version or (_module_version(ref.target) if ref.source == "path" else None)
    return {
        "format": CHECKPOINT_FORMAT,
        "lightplug_version": __version__,
        "plugin": {"name": run.model_name, "kind": "model", "dist": ref.dist, "version": version, "target": ref.target, "source": ref.source},
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


def _module_version(target: str) -> str | None:
    """The installed version of the package an import path's module comes from (``torchvision.models:resnet18``:
    torchvision's), for the record; None when it is not an installed distribution's."""
    import sys

    top = target.split(":")[0].split(".")[0]
    version = getattr(sys.modules.get(top), "__version__", None)
    return str(version) if isinstance(version, str) else None


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
    if getattr(plugin, "loads_weights_file", False) and run.cfg["model"].get("weights_file"):
        from .weights import load_weights_file

        load_weights_file(getattr(net, "inner_model", net), run.cfg["model"]["weights_file"])
    return PluginModule(net, plugin, run.cfg, checkpoint_meta(run, loaded, datamodule)), who


def _check_first_batch(module: Any, datamodule: Any, run: RunConfig, who: str) -> None:
    """Run one validation batch through the model so a bad plugin fails now, not after an epoch."""
    import torch

    from .data.module_kind import empty_sampler
    from .module import split_outputs
    from .tasks import check_outputs

    def first_batch() -> Any:
        datamodule.prepare_data()  # Lightning's order: datasets may only exist after setup("fit")
        datamodule.setup("fit")
        try:
            train = datamodule.train_dataloader()
        except Exception as exc:  # noqa: BLE001 - fit reports it, with the plugin named
            train = [] if empty_sampler(exc) else None
        if train is not None:
            _refuse_an_empty_split(train, "train", run.data_name)
        return next(iter(datamodule.val_dataloader()), None)

    batch = _guard("load a validation batch", f"data {run.data_name!r}", first_batch)
    if batch is None:
        _refuse_an_empty_split([], "validation", run.data_name)
    module.eval()
    with torch.no_grad():
        outputs = _guard("run forward on a batch of the data", who, module.net, batch["input"])
        if run.task == "detection":
            from .tasks import check_detections

            if not type(module.plugin).overrides("postprocess"):
                raise PluginError(f"{who} is a detection plugin without a postprocess hook",
                                  hint="override postprocess(outputs, batch, settings) to return boxes, scores and labels per image")
            dets = _guard("postprocess the outputs of a batch", who, module.plugin.postprocess, outputs, batch, module.detection)
            check_detections(dets, len(batch["input"]), who)
    module.train()
    if isinstance(batch["input"], torch.Tensor) and run.cfg["trainer"].get("enable_model_summary", True):
        # one sample for Lightning's model summary: its FLOPs, In sizes and Out sizes columns (zeros and none without it)
        module.example_input_array = batch["input"][:1].clone()
    preds, _, _ = split_outputs(outputs)
    if preds is not None:
        check_outputs(run.task, preds, batch, run.facts, who)


def _refuse_an_empty_split(loader: Any, split: str, data_name: str) -> None:
    """One line instead of a crash in PyTorch's sampler (or a run that never trains) when a split has no sample."""
    try:
        empty = len(loader) == 0
    except TypeError:  # an iterable dataset: its length is unknown until it runs
        return
    if empty:
        raise DataError(f"data {data_name!r}: the {split} split is empty (no batch to {'train on' if split == 'train' else 'validate on'})",
                        hint="check the split settings (val_fraction, test_fraction) and that the data has samples")


def _resume_path(resume: str | None, run_dir: Path) -> str | None:
    """The checkpoint ``resume`` names: ``last`` is this run folder's ``last.ckpt``, else the newest under ./outputs."""
    if not resume:
        return None
    if resume == "last":
        here = run_dir / "checkpoints" / "last.ckpt"
        if here.is_file():
            return str(here)
        candidates = sorted(Path("outputs").glob("*/*/checkpoints/last.ckpt"), key=lambda p: (p.stat().st_mtime, str(p)))
        if not candidates:
            raise CheckpointError("resume=last: no last.ckpt in this run folder or under outputs/", hint="give resume=PATH")
        return str(candidates[-1])
    return resume


def _read(path: str, label: str, mmap: bool = False) -> dict[str, Any]:
    from .checkpoint import read_checkpoint

    return read_checkpoint(path, label=label, mmap=mmap)


def _check_same_run(ckpt: dict[str, Any], run: RunConfig, label: str) -> None:
    """A checkpoint to resume from must hold this run's model, optimizer and scheduler."""
    meta = ckpt["lightplug"]
    info, saved_cfg = meta.get("plugin") or {}, meta.get("config") or {}
    if not same_code(info, run.model_name):  # the same installed plugin, import path or local plugin (lightplug.trust)
        raise CheckpointError(f"{label}: it holds model {info.get('name')!r} ({info.get('dist') or info.get('source')}), but this run trains "
                              f"model={run.model_name}", hint="resume with the model it was trained with, or use init_from=PATH to start from its weights")
    for group in ("optimizer", "scheduler"):
        then, now = (saved_cfg.get(group) or {}).get("name"), (run.cfg.get(group) or {}).get("name")
        if then and now and then != now:
            raise CheckpointError(f"{label}: it was trained with {group}={then}, this run has {group}={now}",
                                  hint=f"resume with {group}={then}, or use init_from=PATH to start from its weights")


def check_checkpoint_settings(run: RunConfig) -> None:
    """Read the ``resume=`` and ``init_from=`` files safely and check what needs no model (format, plugin,
    optimizer, scheduler), before anything runs; tensor shapes are checked once the model is built.

    Raises:
        CheckpointError: one line naming the key, the file and the problem.
    """
    cfg = run.cfg
    if cfg.get("init_from"):
        _read(cfg["init_from"], f"init_from={cfg['init_from']}", mmap=True)
    if cfg.get("resume") and cfg["resume"] != "last":
        label = f"resume={cfg['resume']}"
        _check_same_run(_read(cfg["resume"], label, mmap=True), run, label)


def _check_fits(module: Any, ckpt: dict[str, Any], run: RunConfig, label: str, resuming: bool) -> None:
    """Refuse a checkpoint that does not fit this run, naming the first difference (plugin, optimizer,
    scheduler when resuming; settings and tensor shapes always)."""
    if resuming:
        _check_same_run(ckpt, run, label)
    meta = ckpt["lightplug"]
    info = meta.get("plugin") or {}
    own = module.net.state_dict()
    theirs = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    shapes = [f"{k} has shape {tuple(theirs[k].shape)} in the checkpoint, {tuple(v.shape)} here" for k, v in own.items()
              if k in theirs and tuple(theirs[k].shape) != tuple(v.shape)]
    missing, extra = [k for k in own if k not in theirs], [k for k in theirs if k not in own]
    if not (shapes or missing or extra):
        return
    settings = [f"model.{k}={v} in the checkpoint, {run.cfg['model'][k]} here" for k, v in (meta.get("model_config") or {}).items()
                if k in run.cfg["model"] and run.cfg["model"][k] != v]
    detail = shapes[:1] or ([f"{missing[0]} is missing from the checkpoint"] if missing else [f"the checkpoint has {extra[0]}, which this model lacks"])
    raise CheckpointError(f"{label} does not fit model {run.model_name}: {'; '.join(settings[:3] + detail)}",
                          hint=f"it was trained with model {info.get('name')!r}; use the same model settings")


def _init_from(module: Any, path: str, run: RunConfig) -> None:
    """Load the weights of checkpoint ``path`` (or ``store:NAME[/vN]``) into the freshly built model (fine-tuning)."""
    label = f"init_from={path}"
    ckpt = _read(path, label)
    if str(path).startswith("store:"):  # same plugin and structural settings; runtime ones may differ
        from .store import check_structural

        check_structural(ckpt["lightplug"], run.model_name, run.cfg["model"], label)
    _check_fits(module, ckpt, run, label, resuming=False)
    module.net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})


def _check_resume(module: Any, path: str, run: RunConfig, out: Path) -> list[dict[str, str]]:
    """Check the checkpoint to resume from; return the rows of this folder's metrics.csv logged before it
    (the CSV logger starts its file anew, :func:`_keep_history` puts them back)."""
    import csv

    label = f"resume={path}"
    ckpt = _read(path, label, mmap=True)  # shapes and metadata only: Lightning's fit reads the file for real
    _check_fits(module, ckpt, run, label, resuming=True)
    _check_epochs_left(ckpt, run, label)
    file = out / "metrics.csv"
    if not file.is_file():
        return []
    step = int(ckpt.get("global_step", 0))
    with file.open(newline="") as f:
        return [row for row in csv.DictReader(f) if (row.get("step") or "").isdigit() and int(row["step"]) < step]


def _check_epochs_left(ckpt: dict[str, Any], run: RunConfig, label: str) -> None:
    """Refuse, in one line, a resume whose ``trainer.max_epochs`` is below the epochs the checkpoint has already
    finished (Lightning raises a MisconfigurationException from inside ``fit``). Equal is fine: nothing is left to do."""
    max_epochs = (run.cfg.get("trainer") or {}).get("max_epochs")
    try:
        done = int(ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"])
    except (KeyError, TypeError, ValueError):
        done = int(ckpt.get("epoch", -1)) + 1
    if isinstance(max_epochs, int) and max_epochs >= 0 and done > max_epochs:
        raise CheckpointError(f"{label} has finished {done} epochs, more than trainer.max_epochs={max_epochs}",
                              hint=f"give trainer.max_epochs={done} or more to go on training")


def _keep_history(trainer: Any, rows: list[dict[str, str]]) -> None:
    """Write the metrics of the run being resumed back into the CSV logger's file at once (on rank 0: the
    logger of every other DDP rank has no file, its ``experiment`` is a stand-in that takes nothing)."""
    from lightning.pytorch.loggers import CSVLogger

    for lg in trainer.loggers if rows and trainer.is_global_zero else []:
        if isinstance(lg, CSVLogger):
            lg.experiment.metrics[:0] = [dict(r) for r in rows]
            lg.save()


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
    """Train as ``run`` says, writing everything into ``run_dir``; return the best monitored metric.

    The run folder is held by one run at a time (:func:`lightplug._run_folder.claim_run_folder`). Everything
    that can fail before training (data, plugin build, first batch, ``init_from=``/``resume=`` checks, the
    trainer) runs first: a failure there leaves no run folder and no ``runs.db`` row.
    """
    from ._run_folder import claim_run_folder

    with claim_run_folder(run_dir) as folder:
        prepared = _prepare(run, Path(run_dir))
        folder.started = True  # from here on the folder and its runs.db row hold a run, whatever happens
        return _fit(run, run_dir, prepared)


def _prepare(run: RunConfig, out: Path) -> dict[str, Any]:
    """Everything before ``fit``: data, module, first-batch check, checkpoints to start from, trainer, config.json."""
    from ._heavy_imports import gc_paused

    with gc_paused():  # a quarter less CPU for the imports (see _heavy_imports); the command line already did them
        import lightning as L

    from ._logging import quiet_lightning
    from .data.module_kind import is_lightning_datamodule, wrong_datamodule
    from .trainer_factory import build_trainer

    quiet_lightning()
    cfg = run.cfg
    for note in run.notes:
        log.info(note)
    _set_threads(cfg)
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    data = get_registry().get("data", run.data_name)
    data_plugin = data.instantiate(cfg["data"])
    datamodule = _guard("build its data", f"data {run.data_name!r}", data_plugin.build, data_plugin.cfg)
    if not is_lightning_datamodule(datamodule):
        raise PluginError(f"data {run.data_name!r} ({data.ref.dist or data.ref.source}): {wrong_datamodule(datamodule)}")
    module, who = build_module(run, datamodule)
    _check_first_batch(module, datamodule, run, who)
    if cfg.get("init_from"):
        _init_from(module, cfg["init_from"], run)
    if (cfg.get("compile") or {}).get("enabled"):
        module.compile_net(cfg["compile"])  # after the eager first-batch check: a plugin's own error stays readable
    resume = _resume_path(cfg.get("resume"), out)
    history = _check_resume(module, resume, run, out) if resume else []
    trainer = build_trainer(cfg, out, run)
    _keep_history(trainer, history)
    if trainer.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    return {"trainer": trainer, "module": module, "datamodule": datamodule, "resume": resume}


def _target_out_of_range(exc: BaseException, run: RunConfig) -> None:
    """Torch's "Target 7 is out of bounds" (a class index outside the data's ``num_classes``, met in a batch after the
    first) as one :class:`DataError` line naming the data, instead of a traceback from inside the loss.

    Raises:
        DataError: when ``exc`` is that error.
    """
    import re

    found = re.search(r"Target (-?\d+) is out of bounds", str(exc))
    if found is None:
        return
    n = run.facts.get("num_classes")
    raise DataError(f"data {run.data_name!r}: a target is {found.group(1)}, outside the classes 0..{int(n) - 1 if n else '?'} "
                    f"(num_classes={n} from the data's facts)", hint="fix the data's labels or its num_classes fact") from exc


@record_run  # recorded in runs.db: running when training starts, completed/failed/interrupted at the end
def _fit(run: RunConfig, run_dir: str | os.PathLike[str], prepared: dict[str, Any]) -> float | None:
    from .trainer_factory import finish_loggers

    out, cfg = Path(run_dir), run.cfg
    trainer, resume = prepared["trainer"], prepared["resume"]
    saved_env = {k: os.environ.get(k) for k in _DDP_ENV}
    ok = False
    try:
        try:
            trainer.fit(prepared["module"], datamodule=prepared["datamodule"], ckpt_path=resume, weights_only=True if resume else None)
        except (IndexError, RuntimeError) as exc:
            _target_out_of_range(exc, run)
            raise
        ok = not trainer.interrupted
    finally:
        finish_loggers(trainer.loggers, ok)
        _end_process_group(saved_env)
    best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    score = float(best) if best is not None else None
    if score is None and cfg["monitor"] in trainer.callback_metrics:
        score = float(trainer.callback_metrics[cfg["monitor"]])
    if trainer.is_global_zero:
        from .evaluation.artifacts import artifact_summary

        summary = {"monitor": cfg["monitor"], "best": score,
                   "best_checkpoint": getattr(trainer.checkpoint_callback, "best_model_path", None),
                   **artifact_summary(trainer),  # best_epoch, and the epoch the validation files show
                   "optimizer_impl": getattr(prepared["module"], "optimizer_impl", None),
                   "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        log.info("best %s = %s; checkpoints in %s", cfg["monitor"], score, out / "checkpoints")
    return score


_ = (ConfigError, DataError)
