"""A trained checkpoint on a data split, with the metrics of its task: what ``lightplug test`` runs.

The model is rebuilt from the checkpoint alone (:func:`lightplug.checkpoint.model_from_checkpoint`) and
the data from the checkpoint's ``data`` section (name and config), which the caller may change.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, LightplugError, PluginError

__all__ = ["data_config_from_meta", "build_datamodule", "evaluate_checkpoint"]

#: Facts the data must share with the checkpoint for the model to run on it and the metrics to mean anything.
_MUST_MATCH = ("num_classes", "in_channels")


def data_config_from_meta(meta: dict[str, Any], name: str | None = None, overrides: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The data plugin and its config for a checkpoint: the training data, or ``name``, changed by ``overrides``.

    Args:
        meta: the checkpoint's ``lightplug`` section.
        name: another data plugin (its defaults replace the training data's config).
        overrides: ``{key: value}`` set on top (``batch_size``, ``root``, ...).

    Raises:
        ConfigError: a value breaks the data plugin's rules (every problem listed).
    """
    from ..config.values import coerce, data_problems
    from ..schema import check_values

    trained = meta.get("data") or {}
    data_name = name or trained.get("name")
    if not data_name:
        raise ConfigError("the checkpoint does not say which data it was trained on", hint="give data=NAME")
    loaded = _data_plugin(str(data_name), from_file=not name)
    values = dict(trained.get("config") or {}) if data_name == trained.get("name") else {}
    values.update(overrides or {})
    names = set(loaded.schema.names())
    layout = (meta.get("preprocessing") or {}).get("layout")
    if "layout" in names and values.get("layout", "auto") == "auto" and layout in ("image", "flat"):
        values["layout"] = layout  # the model takes what it was trained on
    problems = check_values(loaded.schema, values, prefix="data", owner=data_name, partial=True)
    from ..trust import check_code_values

    recorded = {k: v for k, v in values.items() if k not in (overrides or {})}  # data.KEY=VALUE typed by the user is theirs
    check_code_values(loaded.schema, recorded, "the checkpoint")  # an import path recorded as a data setting: trust_code only
    config = coerce(loaded.schema, {**loaded.schema.defaults(), **values})
    if not problems:  # the plugin's rules across fields (data.val_fraction + data.test_fraction < 1)
        problems = data_problems(loaded.instantiate(config))
    if problems:
        raise ConfigError("invalid data config", problems=problems)
    return data_name, config


def _data_plugin(name: str, from_file: bool) -> Any:
    """The data plugin ``name``: typed by the user (``data=NAME``), or read from the checkpoint, then only an
    installed one (the trust rule, :mod:`lightplug.trust`)."""
    from ..registry import get_registry
    from ..trust import installed_ref

    registry = get_registry()
    return registry.load(installed_ref(registry, "data", name)) if from_file else registry.get("data", name)


def _check_facts(meta: dict[str, Any], facts: dict[str, Any], label_names: list[str], data_name: str) -> None:
    trained = meta.get("facts") or {}
    for key in _MUST_MATCH:
        if key in trained and key in facts and trained[key] != facts[key] and not (meta.get("task") == "regression" and key == "num_classes"):
            raise DataError(f"data={data_name} has {key}={facts[key]}, but the checkpoint was trained with {key}={trained[key]}",
                            hint="test on data of the same kind")
    names = list(meta.get("label_names") or [])
    if meta.get("task") in ("classification", "segmentation") and names and label_names and names != list(label_names):
        raise DataError(f"data={data_name} has the classes {', '.join(map(str, label_names))}, the checkpoint "
                        f"{', '.join(map(str, names))}", hint="the class folders must be the same as in training")


def build_datamodule(meta: dict[str, Any], name: str | None = None, overrides: dict[str, Any] | None = None) -> tuple[str, dict[str, Any], Any]:
    """Build the data module of a checkpoint (see :func:`data_config_from_meta`) and check it fits the model.

    Returns:
        (data name, its config, the data module).
    """
    data_name, values = data_config_from_meta(meta, name, overrides)
    loaded = _data_plugin(data_name, from_file=not name)
    from ..config.values import data_facts
    from ..data.module_kind import is_lightning_datamodule, wrong_datamodule

    plugin = loaded.instantiate(values)
    facts = data_facts(plugin)
    try:
        dm = plugin.build(plugin.cfg)
    except LightplugError:
        raise
    except Exception as exc:
        cause = traceback.format_exception_only(type(exc), exc)[-1].strip()
        raise PluginError(f"data {data_name!r} failed to build its data: {cause}") from exc
    if not is_lightning_datamodule(dm):
        raise PluginError(f"data {data_name!r}: {wrong_datamodule(dm)}")
    _check_facts(meta, facts, list(getattr(dm, "label_names", []) or facts.get("label_names") or []), data_name)
    return data_name, values, dm


def _split_size(dm: Any) -> tuple[str, int | None]:
    datasets = getattr(dm, "datasets", None) or {}
    for split in ("test", "val"):
        if split in datasets and len(datasets[split]):
            return split, len(datasets[split])
    return "test", None


def evaluate_checkpoint(path: str | Path, data_name: str | None = None, data_overrides: dict[str, Any] | None = None,
                        accelerator: str = "auto", progress: bool = True, allowed: Any = None) -> dict[str, Any]:
    """Run ``Trainer.test`` with a checkpoint's model on its data (or other data) and return a report.

    Args:
        path: the checkpoint file.
        data_name, data_overrides: other data, or other settings of the training data.
        accelerator: Lightning accelerator (``cpu``, ``gpu``, ``auto``).
        progress: show a Rich progress bar.
        allowed: the user's consent to load an import-path or local-plugin model (:class:`lightplug.trust.Consent`).

    Returns:
        ``{"checkpoint", "model", "task", "data": {"name", "config"}, "split", "num_samples", "metrics"}``.
    """
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from .._logging import quiet_lightning
    from ..checkpoint import model_from_checkpoint, read_checkpoint
    from ..module import PluginModule

    quiet_lightning()
    for logger_name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(logger_name).setLevel(logging.WARNING)  # "GPU available: False ..." says nothing here
    callbacks: list[Any] = []
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=False))
    try:  # before the checkpoint is read: an accelerator this machine lacks costs no wait
        trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False, enable_model_summary=False,
                            enable_progress_bar=progress, callbacks=callbacks, default_root_dir=str(Path(path).parent))
    except (ValueError, RuntimeError, ImportError, MisconfigurationException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"accelerator={accelerator}: cannot be used here ({first[:200]})", hint="use accelerator=cpu or auto") from exc
    ckpt = read_checkpoint(path)
    meta = ckpt["lightplug"]
    net, plugin = model_from_checkpoint(ckpt, where=f"checkpoint {path}", allowed=allowed)
    name, values, dm = build_datamodule(meta, data_name, data_overrides)
    run_cfg = dict(meta.get("config") or {})
    run_cfg.setdefault("facts", dict(meta.get("facts") or {}))
    module = PluginModule(net, plugin, run_cfg, meta)
    try:
        results = trainer.test(module, datamodule=dm, verbose=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data={name} does not fit the model of checkpoint {path}: {first[:200]}") from exc
    split, size = _split_size(dm)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    return {"checkpoint": str(path), "model": meta["plugin"]["name"], "task": meta.get("task"), "data": {"name": name, "config": values},
            "split": split, "num_samples": size, "metrics": dict(sorted(metrics.items()))}
