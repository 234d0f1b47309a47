"""After Hydra composed a config: apply the model's preset, bind the data facts, resolve, and check every
field against its rules, reporting all problems at once. Nothing here imports torch."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..metric_names import monitor_problem, plugin_traits
from ..registry import Registry, get_registry
from ..schema import Schema, check_values
from .core_schemas import core_schemas, run_schema
from .plugin_fit import fit_to_model
from .preflight import checkpoint_problems, unknown_top_keys
from .values import coerce, data_facts, data_problems

__all__ = ["RunConfig", "finalize", "coerce", "data_problems", "cap_for_tests", "ENV_MAX_EPOCHS", "ENV_MAX_BATCHES", "DATA_FOR_TASK"]

#: The metric each task monitors by default, and whether higher is better.
DEFAULT_MONITOR = {
    "classification": ("val/acc", "max"),
    "regression": ("val/mse", "min"),
    "segmentation": ("val/miou", "max"),
    "detection": ("val/map_50", "max"),
}

#: The data ``lightplug train model=X`` uses when no ``data=`` is given, by the model's task: bundled data of that
#: task, so that every model trains as typed (``data=shapes`` serves segmentation, and detection with its ``task``).
DATA_FOR_TASK: dict[str, list[str]] = {
    "classification": ["data=digits"],
    "regression": ["data=diabetes"],
    "segmentation": ["data=shapes"],
    "detection": ["data=shapes", "data.task=detection"],
}


@dataclass
class RunConfig:
    """A validated run: the plain resolved config and what was learnt composing it."""

    cfg: dict[str, Any]
    model_name: str
    data_name: str
    task: str
    preset: str | None
    overrides: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _override_keys(overrides: list[str]) -> set[str]:
    keys = set()
    for text in overrides:
        key = text.split("=", 1)[0].lstrip("+~")
        keys.add(key)
    return keys


def _plain(container: Any) -> dict[str, Any]:
    """A config container as a ``dict[str, Any]`` (keys of our configs are strings)."""
    assert isinstance(container, dict)
    return {str(k): v for k, v in container.items()}


def plain_choices(choices: Any) -> dict[str, Any]:
    """Hydra's group choices (a DictConfig, or None) as a plain dict."""
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(choices) if choices is not None else {}
    return _plain(container) if isinstance(container, dict) else {}


def apply_preset(model_cfg: Any, schema: Schema, preset: str | None, overrides: list[str], notes: list[str]) -> list[str]:
    """Apply the model's own part of ``preset`` to fields that neither the command line nor an
    experiment set (precedence: schema default < preset < experiment < command line); return the fields it set."""
    if not preset:
        return []
    values = schema.presets.get(preset)
    if values is None:
        if schema.presets:
            notes.append(f"the model has no preset {preset!r} (it has {', '.join(schema.presets)}); only the training part applies")
        return []
    from omegaconf import OmegaConf

    given = _override_keys(overrides)
    defaults = schema.defaults()
    raw = OmegaConf.to_container(model_cfg, resolve=False)
    assert isinstance(raw, dict)
    applied = []
    for key, value in values.items():
        if f"model.{key}" in given:
            continue
        current = raw.get(key)
        is_default = current == defaults.get(key) or (isinstance(current, str) and current.startswith("${"))
        if is_default:
            model_cfg[key] = value
            applied.append(key)
    return applied


def finalize(cfg: Any, choices: dict[str, Any], overrides: list[str], registry: Registry | None = None) -> RunConfig:
    """Turn a composed ``DictConfig`` into a validated :class:`RunConfig`.

    Args:
        cfg: the config Hydra composed, modified in place so that it is the config that runs, interpolations kept:
            the model's preset, the data facts, ``data.layout`` and the monitored metric.
        choices: Hydra's group choices (``hydra.runtime.choices``), for the preset.
        overrides: the command-line overrides of this job.
        registry: where plugins are looked up.

    Raises:
        ConfigError: listing every bad field, one line each.
        PluginError, DataError: a plugin or the data cannot be used.
    """
    from omegaconf import OmegaConf, open_dict

    registry = registry or get_registry()
    model_name = str(cfg.model._plugin_)
    data_name = str(cfg.data._plugin_)
    model_ref = registry.find("model", model_name)
    model_schema, task = registry.schema(model_ref)
    data_plugin = registry.get("data", data_name)
    notes: list[str] = []
    preset = choices.get("preset")
    applied = apply_preset(cfg.model, model_schema, preset, overrides, notes)
    fit_to_model(cfg, registry, model_ref, model_schema, data_plugin, preset, applied, overrides, notes)  # data_needs; refused preset values

    data_values = _plain(OmegaConf.to_container(cfg.data, resolve=True))
    problems = check_values(data_plugin.schema, data_values, prefix="data", owner=data_name)
    facts: dict[str, Any] = {}
    if data_values.get("layout") == "auto":  # images or flat features, as the model takes them
        names = set(model_schema.names())
        data_values["layout"] = cfg.data.layout = "flat" if "in_features" in names and "in_channels" not in names else "image"
    if not problems:
        data_obj = data_plugin.instantiate(coerce(data_plugin.schema, data_values))
        problems += data_problems(data_obj)
    if not problems:
        facts = data_facts(data_obj)
    with open_dict(cfg):
        cfg.facts = {k: v for k, v in facts.items() if k not in ("label_names", "task")}
        cfg.pop("hydra", None)  # the compose API's copy; its interpolations need a running Hydra
    resolved = _plain(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
    resolved.pop("hydra", None)

    model_problems = check_values(model_schema, resolved["model"], prefix="model", owner=model_name)
    problems += unknown_top_keys(resolved) + model_problems
    problems += _callback_plugins(registry, resolved)
    for key, schema in core_schemas().items():
        problems += check_values(schema, resolved.get(key) or {}, prefix=key, owner=key, partial=True)
    top = {k: resolved.get(k) for k in run_schema().names() if k in resolved}
    problems += check_values(run_schema(), top, prefix="", owner="run", partial=True) or checkpoint_problems(top)
    data_task = facts.get("task", data_plugin.task)  # data whose task is a setting says so in its facts
    if task and data_task and task != data_task and not problems:
        problems.append(f"model={model_name} is a {task} model but data={data_name} is {data_task} data "
                        f"(choose data for {task}: {' '.join(DATA_FOR_TASK[task])}, or see `lightplug data`)")
    if not model_problems:  # the plugin's own rules, reported with the other sections' problems
        problems += _plugin_check(registry, model_ref, coerce(model_schema, resolved["model"]))
    if not problems and resolved.get("monitor") is not None:
        problems += _monitor_problems(registry, model_ref, resolved, task or "classification", facts, model_name)
    if problems:
        raise ConfigError("invalid config", problems=problems)

    resolved["model"] = coerce(model_schema, resolved["model"])
    resolved["data"] = coerce(data_plugin.schema, resolved["data"])
    for key, schema in core_schemas().items():
        resolved[key] = coerce(schema, resolved.get(key) or {})
    monitor, mode = DEFAULT_MONITOR[task or "classification"]
    if resolved.get("monitor") is None:
        resolved["monitor"] = monitor
    if resolved.get("monitor_mode") is None:
        resolved["monitor_mode"] = mode if resolved["monitor"] == monitor else _guess_mode(resolved["monitor"])
    if cfg.get("monitor") is None or cfg.get("monitor_mode") is None:  # the composed config says what ran too
        with open_dict(cfg):
            cfg.monitor, cfg.monitor_mode = resolved["monitor"], resolved["monitor_mode"]
    resolved["facts"] = facts
    cap_for_tests(resolved["trainer"], notes)
    return RunConfig(resolved, model_name, data_name, task or "classification", preset, list(overrides), facts, notes)


#: Testing aids (docs/reliability.md): any run trains at most this many epochs / batches per epoch, so that a
#: documented command runs as typed, only shorter.
ENV_MAX_EPOCHS, ENV_MAX_BATCHES = "LIGHTPLUG_MAX_EPOCHS", "LIGHTPLUG_MAX_BATCHES"


def _cap(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{name}={text}: not a whole number of at least 1", hint=f"unset {name} to train as configured")
    return int(text)


def cap_for_tests(trainer: dict[str, Any], notes: list[str]) -> None:
    """Apply ``LIGHTPLUG_MAX_EPOCHS`` (``trainer.max_epochs`` at most N; -1, no limit, becomes N) and
    ``LIGHTPLUG_MAX_BATCHES`` (``limit_train_batches``/``limit_val_batches`` at most N batches; a fraction
    becomes N, 0 stays) to the resolved trainer section, with a note saying what changed."""
    epochs, batches = _cap(ENV_MAX_EPOCHS), _cap(ENV_MAX_BATCHES)
    changed = []
    if epochs is not None and (trainer.get("max_epochs") in (None, -1) or trainer["max_epochs"] > epochs):
        changed.append(f"trainer.max_epochs={epochs} (was {trainer.get('max_epochs')})")
        trainer["max_epochs"] = epochs
    for key in ("limit_train_batches", "limit_val_batches") if batches is not None else ():
        value = trainer.get(key)
        if value != 0 and not (isinstance(value, int) and value <= (batches or 0)):  # 0 (no batches) stays
            changed.append(f"trainer.{key}={batches} (was {value})")
            trainer[key] = batches
    if changed:
        notes.append(f"testing caps from {ENV_MAX_EPOCHS}/{ENV_MAX_BATCHES}: {', '.join(changed)}")


_BUILTIN_CALLBACKS = ("checkpoint", "early_stopping", "lr_monitor", "progress_bar")


def _callback_plugins(registry: Registry, resolved: dict[str, Any]) -> list[str]:
    """Check each callback plugin named under ``callbacks`` and fill in its defaults."""
    problems: list[str] = []
    for name, values in list((resolved.get("callbacks") or {}).items()):
        if name in _BUILTIN_CALLBACKS:
            continue
        schema = registry.get("callback", name).schema
        values = {k: v for k, v in (values or {}).items() if not k.startswith("_")}
        found = check_values(schema, values, prefix=f"callbacks.{name}", owner=name, partial=True)
        problems += found
        if not found:
            resolved["callbacks"][name] = coerce(schema, {**schema.defaults(), **values})
    return problems


def _plugin_check(registry: Registry, ref: Any, values: dict[str, Any]) -> list[str]:
    """The plugin's own ``check`` hook, when it has one (this loads the plugin)."""
    entry = registry.cached(ref) or {}
    if entry.get("has_check") is False:
        return []
    loaded = registry.load(ref)
    if not getattr(loaded.cls, "overrides", lambda _: False)("check"):
        return []
    plugin = loaded.instantiate(values)
    return [str(p) for p in plugin.check(plugin.cfg)]


def _monitor_problems(registry: Registry, ref: Any, resolved: dict[str, Any], task: str, facts: dict[str, Any], name: str) -> list[str]:
    """``monitor=`` naming a metric this run never logs (see :mod:`lightplug.metric_names`)."""
    monitor = str(resolved["monitor"])
    free = any(k not in _BUILTIN_CALLBACKS for k in resolved.get("callbacks") or {})  # a callback plugin may log anything
    traits = (registry.cached(ref) or {}).get("traits")
    if traits is None:  # not cached: load the plugin only when the name is not one every run of the task logs
        if monitor_problem(monitor, task, facts, {}, name, free) is None:
            return []
        traits = plugin_traits(registry.load(ref).cls)
    problem = monitor_problem(monitor, task, facts, traits, name, free)
    return [problem] if problem else []


def _guess_mode(metric: str) -> str:
    lower = ("loss", "mse", "mae", "rmse", "error")
    return "min" if any(metric.endswith(x) for x in lower) else "max"
