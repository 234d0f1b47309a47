"""``check_plugin``: run the contract checks of one plugin (model, data or callback) and report each.

The checks themselves live in :mod:`.model_checks` and :mod:`.other_checks`; this module finds the
plugin, runs each check with a timer, and turns whatever a check raises into a ``FAIL`` line, so a
broken plugin never stops the remaining checks. Nothing heavy is imported until a check needs it.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Collection, Mapping
from typing import Any

from ..config.plugin_fit import refused_keys
from ..errors import ConfigError, LightplugError, PluginError
from ..registry import KINDS, LoadedPlugin, Registry, get_registry
from ..schema import Schema, check_values
from .report import FAIL, PASS, SKIP, CheckReport, CheckResult

__all__ = ["check_plugin", "check_names", "Skip", "Fail", "describe_exception", "config_values", "preset_values", "given_value_problems", "run_check"]

_MISSING = "???"


class Skip(Exception):
    """Raised by a check that cannot run here (a package is missing, an earlier check failed)."""


class Fail(Exception):
    """Raised by a check that ran and found a problem; the message is the reason shown."""


def describe_exception(exc: BaseException) -> str:
    """``ValueError: bad width`` (the last line of the exception, as Python would print it)."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def run_check(report: CheckReport, name: str, fn: Callable[[], str], on_result: Callable[[CheckReport, CheckResult], None] | None = None) -> None:
    """Run one check and append its result: ``PASS`` with the returned reason, ``SKIP``/``FAIL`` when it raised."""
    start = time.perf_counter()
    try:
        status, reason = PASS, fn()
    except Skip as exc:
        status, reason = SKIP, str(exc)
    except Fail as exc:
        status, reason = FAIL, str(exc)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - plugin code may raise anything, even SystemExit
        status, reason = FAIL, f"raised {describe_exception(exc)}"
    result = CheckResult(name, status, reason, round(time.perf_counter() - start, 3))
    report.results.append(result)
    if on_result is not None:
        on_result(report, result)


def config_values(schema: Schema, overrides: Mapping[str, Any], preset: str | None = None) -> dict[str, Any]:
    """The values a check builds with: schema defaults, then the preset, then ``overrides``, coerced to the
    fields' types (``3`` becomes ``3.0`` for a float field)."""
    from ..config.finalize import coerce

    values = schema.defaults()
    if preset is not None:
        values.update(schema.presets.get(preset, {}))
    values.update(overrides)
    return coerce(schema, values)


def preset_values(loaded: LoadedPlugin, overrides: Mapping[str, Any], preset: str) -> tuple[dict[str, Any], list[str]]:
    """The values of ``preset`` as ``lightplug train`` uses them: the preset's values that ``overrides`` leave, minus those
    the plugin's ``check`` refuses for this config (left at their defaults, see :mod:`lightplug.config.plugin_fit`).

    Returns:
        The values, and one note per preset value left out.
    """
    from ..config.plugin_fit import drop_refused_preset_values

    schema, cls = loaded.schema, loaded.cls
    values = config_values(schema, overrides, preset)
    keys = [k for k in schema.presets.get(preset, {}) if k not in overrides]
    if loaded.ref.kind != "model" or not keys or not getattr(cls, "overrides", lambda _: False)("check"):
        return values, []

    def check(vals: dict[str, Any]) -> list[str]:
        plugin = loaded.instantiate(vals)
        return [str(p) for p in plugin.check(plugin.cfg) or []]

    return drop_refused_preset_values(check, values, preset, keys, schema.defaults())


def given_value_problems(loaded: LoadedPlugin, overrides: Mapping[str, Any]) -> list[str]:
    """What is wrong with the values the user gave to check with, as ``lightplug train`` would refuse them: unknown keys
    (with close matches), values that break their field's rule, and what the plugin's ``check`` refuses once they are
    given (a problem of the defaults alone is the plugin's: the schema check reports it)."""
    schema, kind = loaded.schema, loaded.ref.kind
    problems = check_values(schema, dict(overrides), prefix=kind, owner=loaded.ref.name, partial=True)
    bad = refused_keys(problems, kind)
    good = {k: v for k, v in overrides.items() if k in schema.names() and k not in bad}
    if kind not in ("model", "data") or not good or not getattr(loaded.cls, "overrides", lambda _: False)("check"):
        return problems
    values = config_values(schema, good)
    if missing_values(values):
        return problems

    def check(vals: dict[str, Any]) -> list[str]:
        plugin = loaded.instantiate(vals)
        return [str(p) for p in plugin.check(plugin.cfg) or []]

    own = set(check(config_values(schema, {}))) if not missing_values(config_values(schema, {})) else set()
    return problems + [p for p in check(values) if p not in own]  # what the defaults alone pass is the user's to fix


def missing_values(values: Mapping[str, Any]) -> list[str]:
    """Fields that still have no value (no default and not given)."""
    return [k for k, v in values.items() if v == _MISSING]


def schema_check(loaded: LoadedPlugin, overrides: Mapping[str, Any]) -> str:
    """The schema is usable: every field has a value, defaults and presets keep every rule, the plugin's own
    ``check`` hook accepts them, and the schema survives JSON (the registry cache and forms need that)."""
    schema, kind, name = loaded.schema, loaded.ref.kind, loaded.ref.name
    values = config_values(schema, overrides)
    missing = missing_values(values)
    if missing:
        given = " ".join(f"{k}=..." for k in missing)
        raise Fail(f"no default for {', '.join(f'{kind}.{k}' for k in missing)}: give one in the Config, or check with `{given}`")
    problems = check_values(schema, values, prefix=kind, owner=name)
    for preset in schema.presets:
        problems += check_values(schema, config_values(schema, overrides, preset), prefix=f"{kind}[preset={preset}]", owner=name)
    dropped: list[str] = []
    text = json.dumps(schema.json_schema(title=name, description=loaded.description))
    if Schema.from_dict(json.loads(json.dumps(schema.to_dict()))).to_dict() != schema.to_dict():
        problems.append("the schema does not survive a JSON round trip (defaults must be plain numbers, strings, bools or lists)")
    cls: Any = loaded.cls
    if not problems and kind == "model" and cls.overrides("check"):
        choices: list[str | None] = [None, *schema.presets]
        for choice in choices:
            values, notes = (config_values(schema, overrides), []) if choice is None else preset_values(loaded, overrides, choice)
            dropped += notes
            plugin = loaded.instantiate(values)
            where = "" if choice is None else f" (preset {choice})"
            problems += [f"{p}{where}" for p in plugin.check(plugin.cfg)]
    if problems:
        raise Fail("; ".join(problems))
    bound = [f.name for f in schema.fields if f.bind] if kind == "model" else []
    no_help = [f.name for f in schema.fields if not f.help]
    parts = [f"{len(schema.fields)} fields"]
    if bound:
        parts.append(f"{len(bound)} bound to the data ({', '.join(bound)})")
    parts.append(f"{len(schema.presets)} presets" + (f" ({', '.join(schema.presets)})" if schema.presets else ""))
    reason = ", ".join(parts) + f"; defaults{' and presets' if schema.presets else ''} keep every rule; JSON Schema of {len(text)} bytes"
    if no_help and cls.Config is not None:
        reason += f"; no help text: {', '.join(no_help)}"
    if dropped:
        reason += f"; for these values {'; '.join(dropped)}"
    return reason


def _planned(loaded: LoadedPlugin) -> list[str]:
    if loaded.ref.kind == "model":
        from .model_checks import planned_model_checks

        return planned_model_checks(loaded)
    from .other_checks import planned_callback_checks, planned_data_checks

    return planned_data_checks(loaded) if loaded.ref.kind == "data" else planned_callback_checks(loaded)


def _load(name: str, kind: str, registry: Registry) -> tuple[LoadedPlugin | None, CheckResult]:
    if kind not in KINDS:
        raise PluginError(f"kind={kind!r}: not one of {', '.join(KINDS)}")
    start = time.perf_counter()
    try:
        loaded = registry.get(kind, name)
    except LightplugError as exc:
        return None, CheckResult("load", FAIL, str(exc), round(time.perf_counter() - start, 3))
    ref = loaded.ref
    origin = f"{ref.dist} {ref.version}" if ref.dist else ref.source
    task = f", task {loaded.task}" if kind == "model" else ""
    reason = f"{ref.name} from {origin} ({ref.target}){task}: {loaded.description or 'no description'}"
    return loaded, CheckResult("load", PASS, reason, round(time.perf_counter() - start, 3))


def check_names(name: str, kind: str = "model", registry: Registry | None = None) -> list[str]:
    """The names of the checks :func:`check_plugin` would run, without running them (``["load"]`` when the
    plugin cannot be loaded). Loads the plugin to learn its presets."""
    loaded, _ = _load(name, kind, registry or get_registry())
    return ["load"] if loaded is None else ["load", *_planned(loaded)]


def check_plugin(name: str, kind: str = "model", overrides: Mapping[str, Any] | None = None, *, registry: Registry | None = None,
                 on_result: Callable[[CheckReport, CheckResult], None] | None = None, checks: Collection[str] | None = None) -> CheckReport:
    """Check a plugin against the contract and report every check (nothing is raised for a bad plugin).

    Models: schema, build with the defaults and each preset, forward shape for the task, backward and one
    optimizer step, state_dict round trip, TorchScript and ONNX export. Data: facts, the data module and
    its dict batches. Callbacks: build and one tiny fit.

    Args:
        name: the plugin's name, ``dist:name`` or (models) ``package.module:Class``.
        kind: ``model``, ``data`` or ``callback``.
        overrides: field values to check with instead of the defaults (e.g. ``{"root": "images/"}``).
        registry: where to look the plugin up (default: the process-wide registry).
        on_result: called after each check, e.g. to print it as it finishes.
        checks: (models) run only the checks named here, the others are reported as skipped (``"not selected"``);
            name what they need too (``forward`` needs ``build``, ``onnx`` needs ``forward``).

    Returns:
        The report; ``report.ok`` is True when no check failed, ``report.raise_for_failures()`` fails a test.

    Raises:
        ConfigError: ``overrides`` holds an unknown key, a value that breaks its rule, or one the plugin's ``check``
            refuses (the user's values are wrong, not the plugin), one line each, as ``lightplug train`` says it.

    Example:
        >>> from lightplug.testing import check_plugin
        >>> check_plugin("mlp").raise_for_failures()  # doctest: +SKIP
    """
    registry = registry or get_registry()
    report = CheckReport(name, kind)
    loaded, result = _load(name, kind, registry)
    report.results.append(result)
    prefix = f"{'callbacks' if kind == 'callback' else kind}."
    values = {k.removeprefix(prefix): v for k, v in (overrides or {}).items()}
    problems = given_value_problems(loaded, values) if loaded is not None else []
    if problems:  # the user's values, not the plugin, are wrong: refused as `lightplug train` refuses them
        raise ConfigError(f"invalid values for {kind} {name!r}", problems=problems)
    if loaded is not None:
        ref = loaded.ref
        report.source = f"{ref.dist or ref.source} {ref.version or ''}".strip() + f", {ref.target}"
        report.planned = ["load", *_planned(loaded)]
    if on_result is not None:
        on_result(report, result)
    if loaded is None:
        return report
    if kind == "model":
        from .model_checks import run_model_checks

        run_model_checks(report, loaded, values, on_result, checks)
    elif kind == "data":
        from .other_checks import run_data_checks

        run_data_checks(report, loaded, values, on_result)
    else:
        from .other_checks import run_callback_checks

        run_callback_checks(report, loaded, values, on_result)
    return report

