"""Plugin schemas as Hydra structured configs: ``model/<name>``, ``data/<name>``, ``callbacks/<name>``."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from ..plugin import DATA_FACTS
from ..schema import FieldSpec, Schema

__all__ = ["structured_node", "register", "GROUPS"]

#: plugin kind -> config group
GROUPS = {"model": "model", "data": "data", "callback": "callbacks"}

_PY = {"int": int, "float": float, "str": str, "bool": bool}


def _annotation(spec: FieldSpec) -> Any:
    if spec.type.startswith("list["):
        tp: Any = list[_PY[spec.item_type]]  # type: ignore[index,name-defined,valid-type]
    elif spec.type in ("number", "code") or (spec.type == "str" and spec.choices is None):
        tp = Any  # the command line reads 3 as an int; our validation decides what a str field takes
    else:
        tp = _PY[spec.type]
    return Optional[tp] if spec.optional else tp


def _default(spec: FieldSpec, kind: str) -> Any:
    if kind == "model" and spec.bind in DATA_FACTS:
        fallback = "null" if spec.default in ("???", None) else repr(spec.default)
        return f"${{oc.select:facts.{spec.bind},{fallback}}}"
    return spec.default


def _copier(items: list[Any]) -> Any:
    return lambda: list(items)


def structured_node(schema: Schema, name: str, kind: str) -> type:
    """A dataclass Hydra can type-check: the schema's fields, data-bound ones as interpolations of the
    data facts, and ``_plugin_`` naming the plugin."""
    fields: list[tuple[str, Any, Any]] = [("_plugin_", str, dataclasses.field(default=name))]
    for spec in schema.fields:
        default = _default(spec, kind)
        if isinstance(default, list):
            value = dataclasses.field(default_factory=_copier(default))
        else:
            value = dataclasses.field(default=default)
        fields.append((spec.name, _annotation(spec), value))
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return dataclasses.make_dataclass(f"{kind}_{safe}_config", fields)


def register(kind: str, name: str, schema: Schema) -> None:
    """Store the plugin's schema in Hydra's ConfigStore so that ``<group>=<name>`` selects it."""
    from hydra.core.config_store import ConfigStore

    group = GROUPS[kind]
    node = structured_node(schema, name, kind)
    if kind == "callback":
        ConfigStore.instance().store(group=group, name=name, node={name: node}, package="callbacks")
    else:
        ConfigStore.instance().store(group=group, name=name, node=node)
