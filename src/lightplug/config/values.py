"""Config values as their plugin takes them: typed by their fields, and checked by the plugin's rules across
fields. Shared by the command-line checks (preflight) and the composed config's (finalize); no torch."""

from __future__ import annotations

from typing import Any

from ..schema import Schema

__all__ = ["coerce", "data_problems", "data_facts"]


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


def _plugin_call(data_obj: Any, hook: str, what: str) -> Any:
    """``data_obj.<hook>(cfg)``; a ``LightplugError`` (``DataError``: the user's files) passes, anything else is one
    ``PluginError`` naming the plugin's class, since it is a bug in the plugin."""
    import traceback

    from ..errors import LightplugError, PluginError

    try:
        return getattr(data_obj, hook)(data_obj.cfg)
    except LightplugError:
        raise
    except Exception as exc:
        cause = traceback.format_exception_only(type(exc), exc)[-1].strip()
        who = f"{type(data_obj).__module__}.{type(data_obj).__qualname__}"
        raise PluginError(f"data plugin {who} failed to {what}: {cause}",
                          hint="raise lightplug.DataError for a problem of the user's data; --debug shows the traceback") from exc


def data_problems(data_obj: Any) -> list[str]:
    """The data plugin's own ``check`` hook (rules across its fields), when it has one."""
    if not getattr(type(data_obj), "overrides", lambda _: False)("check"):
        return []
    return [str(p) for p in _plugin_call(data_obj, "check", "check its config")]


def data_facts(data_obj: Any) -> dict[str, Any]:
    """The data plugin's ``facts``, as a dict.

    Raises:
        DataError: raised by the plugin (the user's data is wrong).
        PluginError: the plugin raised anything else, or returned something other than a dict.
    """
    from ..errors import PluginError

    facts = _plugin_call(data_obj, "facts", "compute its facts")
    if not isinstance(facts, dict):
        raise PluginError(f"data plugin {type(data_obj).__qualname__}: facts() returned {type(facts).__name__}, not a dict")
    return dict(facts)
