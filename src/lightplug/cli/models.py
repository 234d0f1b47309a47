"""``lightplug models|data|callbacks [show NAME] [--check] [--all] [--json]``: list and describe plugins.

The plain listing imports no plugin module and no torch: it reads distribution metadata, the plugin cache, and for a
plugin never loaded its task and description from its source (:mod:`lightplug._source_info`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import ConfigError, PluginError
from ..registry import LoadedPlugin, PluginRef, Registry, get_registry
from ._args import ArgumentParser

__all__ = ["main_models", "main_data", "main_callbacks", "listing_rows", "plugin_json_schema"]

_TITLES = {"model": "models", "data": "data", "callback": "callbacks"}


def listing_rows(registry: Registry, kind: str, check: bool = False, include_ignored: bool = False,
                 task: str | None = None) -> list[dict[str, Any]]:
    """One row per plugin: name, version, package, task, description, status (and the cause when broken).

    With ``check`` every plugin is loaded, so its status is current; otherwise it comes from the cache.
    """
    rows = []
    refs = registry.refs(kind, include_ignored=include_ignored)
    unloaded = [r for r in refs if not check and r.dist != "lightplug" and not r.problem and registry.cached(r) is None]
    from_source = registry.source_infos(unloaded) if unloaded else {}
    for ref in refs:
        status, cause, entry = "unchecked", "", registry.cached(ref) or from_source.get(ref.cache_key)
        if ref.problem:
            status, cause = ref.problem.split(":")[0], ref.problem
        elif check or ref.dist == "lightplug":  # built-in plugins are light: always describe them
            try:
                registry.load(ref)
            except PluginError:
                pass
            entry = registry.cached(ref)
        if entry and "status" in entry and not ref.problem:
            status, cause = entry["status"], entry.get("cause", "")
        row = {
            "name": ref.name,
            "version": ref.version or "-",
            "package": ref.dist or ref.target,
            "task": (entry or {}).get("task") or "?",
            "description": (entry or {}).get("description") or ref.summary,
            "status": status,
            "cause": cause,
            "entry_point": ref.target,
        }
        if task is None or row["task"] == task:
            rows.append(row)
    return rows


def _print_table(rows: list[dict[str, Any]], kind: str) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title=f"lightplug {_TITLES[kind]}", title_justify="left")
    for col in ("NAME", "VERSION", "PACKAGE", "TASK", "DESCRIPTION", "STATUS"):
        table.add_column(col, overflow="fold")
    for r in rows:
        style = {"ok": "green", "unchecked": "dim", "broken": "red", "conflict": "yellow", "ignored": "dim"}.get(r["status"], "red")
        table.add_row(r["name"], r["version"], r["package"], r["task"], r["description"], f"[{style}]{r['status']}[/]")
    console.print(table)
    for r in rows:
        if r["cause"]:
            console.print(f"[red]{r['name']}[/] ({r['package']}, {r['entry_point']}): {r['cause']}", highlight=False)
    if any(r["status"] == "unchecked" for r in rows):
        console.print(f"[dim]`lightplug {_TITLES[kind]} --check` loads every plugin and reports its status.[/]")


def _console() -> Any:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # pipes and CI get full-width rows instead of wrapped cells
        console = Console(width=max(console.width, 160))
    return console


def plugin_json_schema(plugin: LoadedPlugin) -> dict[str, Any]:
    """The JSON Schema of a plugin's config, with its identity and presets (what a form builder needs)."""
    ref = plugin.ref
    extra = {"x-plugin": {"name": ref.name, "kind": ref.kind, "version": ref.version, "package": ref.dist,
                          "entry_point": ref.target, "task": plugin.task}}
    return plugin.schema.json_schema(title=ref.name, description=plugin.description, extra=extra)


def _show(registry: Registry, kind: str, name: str, as_json: bool) -> int:
    plugin = registry.get(kind, name)
    if as_json:
        print(json.dumps(plugin_json_schema(plugin), indent=2))
        return 0
    from rich.table import Table

    console = _console()
    ref: PluginRef = plugin.ref
    console.print(f"[bold]{ref.name}[/] {ref.version or ''}  ({ref.dist or ref.source}, {ref.target})", highlight=False)
    console.print(f"task: {plugin.task or '-'}    {plugin.description}", highlight=False)
    table = Table(title_justify="left")
    for col in ("FIELD", "TYPE", "DEFAULT", "CONSTRAINT", "GROUP", "HELP"):
        table.add_column(col, overflow="fold")
    for f in plugin.schema.fields:
        default = f"${{data.{f.bind}}} (else {f.default})" if f.bind and kind == "model" else str(f.default)
        rule = (f.rule().split(" ", 1)[1] if " " in f.rule() else "") + (" (from the name)" if f.inferred else "")
        help_ = f.help + (" [advanced]" if f.advanced else "")
        type_ = "fixed" if f.fixed else f.type + ("?" if f.optional else "")
        table.add_row(f"{_TITLES[kind] if kind != 'model' else 'model'}.{f.name}", type_, default, rule, f.group, help_)
    console.print(table)
    if plugin.schema.presets:
        console.print("presets (+preset=NAME):")
        for pname, values in plugin.schema.presets.items():
            console.print(f"  {pname}: " + " ".join(f"{k}={v}" for k, v in values.items()), highlight=False)
    return 0


def _main(kind: str, argv: list[str]) -> int:
    title = _TITLES[kind]
    parser = ArgumentParser(prog=f"lightplug {title}", description=f"List {title} plugins, or `show NAME` for one.")
    parser.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    parser.add_argument("name", nargs="?", help="plugin name (with show)")
    parser.add_argument("--check", action="store_true", help="load every plugin and report its status")
    parser.add_argument("--all", action="store_true", help="also list plugins ignored by LIGHTPLUG_DISABLE_AUTOLOAD")
    parser.add_argument("--json", action="store_true", help="print JSON (a JSON Schema with show)")
    parser.add_argument("--task", help="only plugins of this task")
    args = parser.parse_args(argv)
    registry = get_registry()
    if args.action == "show":
        if not args.name or not args.name.strip():
            names = ", ".join(registry.names(kind)) or "none installed"
            raise ConfigError(f"lightplug {title} show {args.name!r}: needs a plugin NAME (installed: {names})")
        return _show(registry, kind, args.name, args.json)
    rows = listing_rows(registry, kind, check=args.check, include_ignored=args.all, task=args.task)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
    else:
        _print_table(rows, kind)
    if args.check and any(r["status"] not in ("ok",) for r in rows):
        return 1
    return 0


def main_models(argv: list[str]) -> int:
    return _main("model", argv)


def main_data(argv: list[str]) -> int:
    return _main("data", argv)


def main_callbacks(argv: list[str]) -> int:
    return _main("callback", argv)
