"""The core groups as the form shows them: for optimizer, scheduler and trainer the options (YAML files of
``conf/``), each option's values (its YAML over the rules' defaults) and the rules as JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config.core_schemas import core_schemas, run_schema
from ..config.paths import conf_dir
from ..config.preflight import group_options
from ..registry import Registry

__all__ = ["core_settings", "FORM_GROUPS"]

#: The core groups the form offers.
FORM_GROUPS = ("optimizer", "scheduler", "trainer")


def _yaml(path: Path, seen: int = 0) -> dict[str, Any]:
    """A group option's values, after the options its ``defaults:`` list names (``trainer/cpu`` extends ``default``)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict):
        return {}
    merged: dict[str, Any] = {}
    for base in data.pop("defaults", None) or []:
        if isinstance(base, str) and base != "_self_" and seen < 5:
            merged.update(_yaml(path.with_name(f"{base}.yaml"), seen + 1))
    merged.update(data)
    return merged


def _chosen_defaults() -> dict[str, Any]:
    """The option each group starts with and the top-level values, from ``train.yaml``."""
    train = _yaml_plain(conf_dir() / "train.yaml")
    chosen: dict[str, Any] = {}
    for item in train.get("defaults") or []:
        if isinstance(item, dict):
            chosen.update({str(k): v for k, v in item.items()})
    return {"choices": chosen, "values": {k: v for k, v in train.items() if not isinstance(v, (dict, list)) and k != "defaults"}}


def _yaml_plain(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    return data if isinstance(data, dict) else {}


def core_settings(registry: Registry) -> dict[str, Any]:
    """Options, per-option values and rules of the core groups, and the run keys.

    Returns:
        ``{"groups": {"optimizer": {"options": [...], "default": "adam", "values": {"sgd": {"lr": 0.05, ...}},
        "schema": {...}}, ...}, "choices": {"data": "digits", ...}, "run": {"schema": {...}, "values": {"seed": 42, ...}}}``
    """
    schemas = core_schemas()
    top = _chosen_defaults()
    groups = {}
    for group in FORM_GROUPS:
        rules = {k: v for k, v in schemas[group].defaults().items() if v != "???"}
        options = group_options(group, registry)
        groups[group] = {
            "options": options,
            "default": top["choices"].get(group),
            "values": {opt: {**rules, **_yaml(conf_dir() / group / f"{opt}.yaml")} for opt in options},
            "schema": schemas[group].json_schema(title=group),
        }
    return {"groups": groups, "choices": top["choices"], "run": {"schema": run_schema().json_schema(title="run"), "values": top["values"]}}
