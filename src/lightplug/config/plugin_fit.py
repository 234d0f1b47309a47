"""Fitting a composed config to its model plugin, before it is validated:

- the data settings the model needs (:meth:`~lightplug.ModelPlugin.data_needs`, e.g. the image size an
  architecture runs on) are set on the data when it has that setting and the user did not set it;
- a value that the preset set and that the plugin's :meth:`~lightplug.ModelPlugin.check` refuses for this config
  is left at its default (``+preset=advanced model.arch=ghostnet_100``: the preset's ``drop_path_rate`` is not an
  argument of that architecture). A preset never makes a config invalid; the same value given by the user is
  refused.

Each change is noted (the run logs its notes). Nothing here imports torch; the plugin is loaded only when it has
one of these hooks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from ..registry import LoadedPlugin, PluginRef, Registry
from ..schema import Schema, check_values

__all__ = ["refused_keys", "drop_refused_preset_values", "fit_to_model"]


def refused_keys(problems: Iterable[str], prefix: str = "model") -> set[str]:
    """The keys that problem lines start with: ``model.drop_path_rate=0.05: ...`` gives ``drop_path_rate``."""
    return {m.group(1) for line in problems if (m := re.match(rf"{re.escape(prefix)}\.(\w+)[=:]", line))}


def drop_refused_preset_values(check: Callable[[dict[str, Any]], list[str]], values: dict[str, Any], preset: str,
                               preset_keys: Iterable[str], defaults: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``values`` with each value set by ``preset`` that ``check`` refuses put back to its default.

    Args:
        check: the plugin's check on a dict of values (returns problem lines, each starting with ``model.KEY``).
        values: the model's values, preset applied.
        preset: the preset's name (for the notes).
        preset_keys: the fields whose value came from the preset.
        defaults: the schema's defaults.

    Returns:
        The values, and one note per value left out.
    """
    problems = check(values)
    refused = refused_keys(problems)
    keys = [k for k in preset_keys if k in refused]
    if not keys:
        return values, []
    reasons = {k: next(p for p in problems if k in refused_keys([p])).split(": ", 1)[-1] for k in keys}
    notes = [f"+preset={preset}: model.{k}={values[k]} left out ({reasons[k]})" for k in keys]
    return {**values, **{k: defaults[k] for k in keys}}, notes


def _settings(schema: Schema, values: dict[str, Any]) -> str:
    """`` (arch=convnext_atto)``: the model's values that are neither defaults nor bound to the data."""
    changed = [f"{f.name}={values[f.name]}" for f in schema.fields if not f.bind and f.name in values and values[f.name] != f.default]
    return f" ({', '.join(changed)})" if changed else ""


def _hooks(registry: Registry, ref: PluginRef) -> LoadedPlugin | None:
    """The loaded plugin when it has a ``data_needs`` or ``check`` hook (the cache answers without loading it)."""
    entry = registry.cached(ref) or {}
    if entry.get("status") == "ok" and entry.get("has_check") is False and entry.get("has_data_needs") is False:
        return None
    loaded = registry.load(ref)
    has = getattr(loaded.cls, "overrides", lambda _: False)
    return loaded if has("data_needs") or has("check") else None


def _model_values(cfg: Any, schema: Schema, facts: dict[str, Any]) -> dict[str, Any] | None:
    """The model's values with these facts bound, coerced; ``None`` when a value breaks its rule (reported later)."""
    from omegaconf import OmegaConf, open_dict

    from .finalize import coerce

    with open_dict(cfg):
        cfg.facts = {k: v for k, v in facts.items() if k not in ("label_names", "task")}
    raw = OmegaConf.to_container(cfg.model, resolve=True, throw_on_missing=False)
    assert isinstance(raw, dict)
    values = {str(k): v for k, v in raw.items() if not str(k).startswith("_")}
    return None if check_values(schema, values, prefix="model", owner="") else coerce(schema, values)


def _data_facts(cfg: Any, data: LoadedPlugin) -> dict[str, Any] | None:
    """The data's facts, or ``None`` when its values break a rule (reported later)."""
    from omegaconf import OmegaConf

    from .finalize import coerce
    from .values import data_facts

    raw = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(raw, dict)
    values = {str(k): v for k, v in raw.items()}
    if check_values(data.schema, values, prefix="data", owner=""):
        return None
    obj = data.instantiate(coerce(data.schema, values))
    return data_facts(obj)


def fit_to_model(cfg: Any, registry: Registry, model_ref: PluginRef, schema: Schema, data: LoadedPlugin, preset: str | None,
                 preset_keys: list[str], overrides: list[str], notes: list[str]) -> None:
    """Set the data settings the model needs, and put back preset values its check refuses (``cfg`` is changed in
    place and each change noted). Does nothing for a plugin without ``data_needs`` or ``check``, or when a value
    breaks its rule (validation reports it).

    Args:
        cfg: the composed config (preset applied).
        registry: where the model plugin is loaded from.
        model_ref, schema: the model plugin and its schema.
        data: the data plugin.
        preset: the preset's name; preset_keys: the model fields it set.
        overrides: the command line's overrides (a data setting given there is the user's).
        notes: where each change is noted.
    """
    loaded = _hooks(registry, model_ref)
    facts = _data_facts(cfg, data) if loaded is not None else None
    values = _model_values(cfg, schema, facts) if facts is not None else None
    if loaded is None or values is None:
        return
    changed: list[tuple[str, Any, Any]] = []
    if loaded.cls.overrides("data_needs"):  # type: ignore[attr-defined]
        plugin = loaded.instantiate(values)
        given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
        data_defaults = data.schema.defaults()
        for key, value in (plugin.data_needs(plugin.cfg) or {}).items():
            if key not in data.schema.names() or f"data.{key}" in given or cfg.data[key] != data_defaults[key] or cfg.data[key] == value:
                continue  # the data cannot change it, or the user chose it: the plugin's check says what does not fit
            changed.append((key, cfg.data[key], value))
            cfg.data[key] = value
        facts = _data_facts(cfg, data) if changed else facts
        values = _model_values(cfg, schema, facts) if facts is not None else None
    if values is not None and preset and preset_keys and loaded.cls.overrides("check"):  # type: ignore[attr-defined]

        def check(vals: dict[str, Any]) -> list[str]:
            plugin = loaded.instantiate(vals)
            return [str(p) for p in plugin.check(plugin.cfg) or []]

        fitted, dropped = drop_refused_preset_values(check, values, preset, preset_keys, schema.defaults())
        for key in (k for k in preset_keys if fitted.get(k) != values.get(k)):
            cfg.model[key] = fitted[key]
        notes += dropped
        values = fitted
    for key, old, value in changed:
        notes.append(f"data.{key}={value} instead of the data's default {old}: what model {model_ref.name}{_settings(schema, values or {})} needs")
