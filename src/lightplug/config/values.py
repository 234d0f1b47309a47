"""Config values as their plugin takes them: typed by their fields, and checked by the plugin's rules across
fields. Shared by the command-line checks (preflight) and the composed config's (finalize); no torch."""

from __future__ import annotations

from typing import Any

from ..schema import Schema

__all__ = ["coerce", "data_problems"]


def coerce(schema: Schema, values: dict[str, Any]) -> dict[str, Any]:
    """Give every value its field's Python type (3 -> 3.0 for floats, 3 -> "3" for strings)."""
    out = dict(values)
    for spec in schema.fields:
        value = out.get(spec.name)
        if value is None:
            continue
        if spec.item_type == "float":
            out[spec.name] = [float(v) for v in value] if isinstance(value, list) else float(value)
        elif spec.item_type == "str":
            out[spec.name] = [str(v) for v in value] if isinstance(value, list) else str(value)
    return out


def data_problems(data_obj: Any) -> list[str]:
    """The data plugin's own ``check`` hook (rules across its fields), when it has one."""
    if not getattr(type(data_obj), "overrides", lambda _: False)("check"):
        return []
    return [str(p) for p in data_obj.check(data_obj.cfg)]
