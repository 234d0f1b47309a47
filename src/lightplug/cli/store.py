"""``lightplug store``: publish trained models by name and version, list them, show their cards.

    lightplug store add RUN_DIR_OR_CKPT --name NAME [--version vN] [--notes TEXT] [--model CODE | --trust-code]
    lightplug store list [--plugin X] [--json]
    lightplug store show NAME[/vN] [--json]

``list`` and ``show`` read the YAML cards only (torch is never imported); ``add`` reads the checkpoint.
The store is ``$LIGHTPLUG_STORE`` (default ``~/.lightplug/store``); see :mod:`lightplug.store`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import store
from ._args import ArgumentParser

__all__ = ["main"]

_EPILOG = """examples:
  lightplug store add outputs/2026-01-01/12-00-00 --name digits_mlp --notes "first try"
  lightplug store list --plugin mlp
  lightplug store show digits_mlp/v1
  lightplug train model=mlp init_from=store:digits_mlp model.dropout=0.2   # fine-tune
  python -c 'import lightplug; print(lightplug.load_model("store:digits_mlp"))'

the store folder is $LIGHTPLUG_STORE (default ~/.lightplug/store)"""


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="lightplug store", description="Publish, list and load trained models by name and version.",
                                     epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True, metavar="{add,list,show}")
    add = sub.add_parser("add", help="publish a run's best (else last) checkpoint, or a .ckpt file")
    add.add_argument("source", metavar="RUN_DIR_OR_CKPT")
    add.add_argument("--name", required=True, help="the model's name: lowercase letters, digits, _ and -")
    add.add_argument("--version", help="vN (default: the next version); an existing version is never overwritten")
    add.add_argument("--notes", default="", help="free text kept in the card")
    add.add_argument("--model", metavar="CODE", help="the import path (pkg.mod:Name) or local plugin NAME the checkpoint was trained "
                     "with: naming it allows lightplug to load that code (installed plugins need nothing)")
    add.add_argument("--trust-code", action="store_true", default=None, help="load whatever code the checkpoint names")
    lst = sub.add_parser("list", help="every model with its versions and headline metric")
    lst.add_argument("--plugin", help="only models of this plugin")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = sub.add_parser("show", help="print the card of a model (the latest version unless /vN is given)")
    show.add_argument("ref", metavar="NAME[/vN]", help="NAME, NAME/vN, PLUGIN/NAME or PLUGIN/NAME/vN")
    show.add_argument("--json", action="store_true", help="print the card as JSON")
    return parser


def _console() -> Any:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # pipes and CI get full-width rows instead of wrapped cells
        console = Console(highlight=False, width=max(console.width, 160))
    return console


def _metric(card: dict[str, Any] | None) -> str:
    """``val/acc 0.9722``: the monitored metric of the version."""
    if not card or card.get("score") is None:
        return ""
    score = card["score"]
    return f"{card.get('monitor') or 'score'} {score:.4g}" if isinstance(score, (int, float)) else f"{card.get('monitor')} {score}"


def _add(args: argparse.Namespace) -> int:
    from .._store_publish import publish
    from ..trust import consent

    entry = publish(Path(args.source), args.name, args.version, args.notes, store.store_root(), consent(args.model, args.trust_code, how="store"))
    card = store.read_card(entry)
    metric = _metric(card)
    print(f"published {entry.plugin}/{entry.name}/{entry.version}{f' ({metric})' if metric else ''} in {entry.path}")
    others = [m for m in store.list_entries() if m["name"] == entry.name and m["plugin"] != entry.plugin]
    ref = f"store:{entry.plugin}/{entry.name}" if others else f"store:{entry.name}"
    if others:
        print(f"note: plugin {others[0]['plugin']} also has a model named {entry.name}; refer to this one as {ref}")
    plugin = card.get("plugin") or {}
    if plugin.get("source") in ("path", "local"):  # its code is not installed: loading it needs the same consent
        code = plugin.get("target") if plugin.get("source") == "path" else plugin.get("name")
        print(f"load it with lightplug.load_model(\"{ref}\", model=\"{code}\"), or ckpt={ref}/{entry.version} model={code}")
    else:
        print(f"load it with lightplug.load_model(\"{ref}\"), or ckpt={ref}/{entry.version} / init_from={ref}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    models = store.list_entries(plugin=args.plugin)
    if args.json:
        print(json.dumps(models, indent=2, default=str))
        return 0
    console = _console()
    if not models:
        where = f" for plugin {args.plugin}" if args.plugin else ""
        console.print(f"no models in the store {store.store_root()}{where}; publish one with `lightplug store add RUN_DIR --name NAME`")
        return 0
    table = Table(title=f"lightplug store: {store.store_root()}", title_justify="left")
    for column in ("NAME", "PLUGIN", "VERSION", "METRIC", "TASK", "CREATED", "NOTES"):
        table.add_column(column, overflow="fold")
    for model in models:
        last = model["versions"][-1]["version"]
        for i, row in enumerate(model["versions"]):
            card = row["card"] or {}
            version = row["version"] + (" (latest)" if row["version"] == last and len(model["versions"]) > 1 else "")
            metric = Text(_metric(card)) if not row["problem"] else Text(f"damaged: {row['problem']}", style="red")
            table.add_row(Text(model["name"] if i == 0 else ""), Text(model["plugin"] if i == 0 else ""), Text(version), metric,
                          Text(str(card.get("task") or "")), Text(str(card.get("created") or "")[:19].replace("T", " ")),
                          Text(str(card.get("notes") or "").splitlines()[0] if card.get("notes") else ""))
    console.print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    entry = store.resolve(args.ref)
    card = store.read_card(entry)
    if args.json:
        print(json.dumps(card, indent=2, default=str))
        return 0
    import hashlib

    weights = entry.weights_path
    if not weights.is_file():
        state = "MISSING"
    else:
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        state = "sha256 ok" if digest == card["weights"]["sha256"] else "sha256 MISMATCH: the file changed after it was published"
    print(f"# {entry.ref}  ({entry.card_path})")
    print(f"# weights: {weights} ({state})")
    sys.stdout.write(entry.card_path.read_text(encoding="utf-8"))
    return 0


def main(argv: list[str]) -> int:
    """Run ``lightplug store ACTION ...``; returns the exit code (user errors raise LightplugError)."""
    args = _parser().parse_args(argv)
    return {"add": _add, "list": _list, "show": _show}[args.action](args)
