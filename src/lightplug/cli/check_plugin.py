"""``lightplug check-plugin NAME [KEY=VALUE ...] [--kind model|data|callback] [--json]``: check a plugin against
the contract, one line per check.

Exit codes: 0 when every check passed (or was skipped), 1 when one failed, 2 when the plugin cannot be
found or loaded (or the command line is wrong).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import ConfigError, PluginError
from ._args import ArgumentParser

__all__ = ["main", "parse_values"]


def parse_values(items: list[str]) -> dict[str, Any]:
    """``["width=16", "act=relu", "sizes=[1,2]"]`` as typed values (YAML scalars and lists, as Hydra reads them).

    Raises:
        ConfigError: an item is not ``KEY=VALUE``.
    """
    import yaml

    out: dict[str, Any] = {}
    problems = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"{item}: expected KEY=VALUE")
            continue
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = text
    if problems:
        raise ConfigError("bad arguments", problems=problems)
    return out


def _printer(report: Any, result: Any) -> None:
    if not report.loaded:  # the error line says it
        return
    width = max(len(n) for n in report.planned or [result.name])
    print(result.line(width), flush=True)


def main(argv: list[str]) -> int:
    """Run ``lightplug check-plugin``; returns the exit code."""
    parser = ArgumentParser(
        prog="lightplug check-plugin",
        description="Check a plugin against the contract: schema, build with the defaults and each preset, forward shape, "
                    "a training step, state_dict round trip, TorchScript and ONNX export (models); facts, batches, facts against batches and "
                    "preprocessing through predict's reader (data); "
                    "build and a tiny fit (callbacks). Exit code 0: all passed, 1: a check failed, 2: the plugin cannot be loaded.")
    parser.add_argument("name", help="the plugin: NAME, DIST:NAME or (models) package.module:Class")
    parser.add_argument("values", nargs="*", metavar="KEY=VALUE", help="check with these settings instead of the defaults (e.g. width=16, root=DIR)")
    parser.add_argument("--kind", choices=["model", "data", "callback"], default="model", help="what kind of plugin NAME is (default: model)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_intermixed_args(argv)
    values = parse_values(args.values)

    from ..testing import check_plugin

    report = check_plugin(args.name, args.kind, values, on_result=None if args.json else _printer)
    if not report.loaded:
        raise PluginError(report.results[0].reason)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(f"{args.kind} {args.name}: {report.summary()}")
    return 0 if report.ok else 1
