"""``lightplug test ckpt=PATH | run=RUN_DIR [ckpt=best|last] [data=NAME] [data.KEY=VALUE ...] [output=FILE]``:
a checkpoint's model on the test split of its data (or other data), as a metrics table and
``test_metrics.json`` next to the checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..evaluation.options import accelerator_choice, cli_consent, output_file, parse_options, parse_value, resolve_checkpoint

__all__ = ["main"]

_OPTIONS = {
    "ckpt": "a checkpoint file (or best|last with run=)",
    "run": "a run folder: its checkpoints/best.ckpt (or ckpt=last)",
    "data": "another data plugin (default: the training data, with its config)",
    "output": "where to write the metrics (default: test_metrics.json next to the checkpoint)",
    "accelerator": "cpu, gpu or auto (default)",
    "progress": "show a progress bar (true|false)",
    "model": "the import path (pkg.mod:Name) or local plugin NAME the checkpoint was trained with: naming it allows that code",
    "trust_code": "load whatever code the checkpoint names (true|false; default $LIGHTPLUG_TRUST_CODE)",
}

_HELP = (__doc__ or "").replace("``", "") + "\n\noptions:\n" + "\n".join(f"  {k}=...  {v}" for k, v in _OPTIONS.items()) + (
    "\n  data.KEY=VALUE  change a setting of the data (data.batch_size=256, data.root=DIR, ...)\n\n"
    "example: lightplug test run=outputs/2026-01-01/12-00-00 data.test_fraction=0.3"
)


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    n = report["num_samples"]
    console.print(f"{report['model']} on {report['data']['name']} ({report['split']} split{f', {n} samples' if n else ''}): "
                  f"{report['checkpoint']}", highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in report["metrics"].items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)


def main(args: list[str]) -> int:
    """Run ``lightplug test`` with ``args`` (everything after ``test``); returns the exit code."""
    if any(a in ("-h", "--help") for a in args):
        print(_HELP)
        return 0
    opts = parse_options(args, _OPTIONS, "lightplug test", prefixes=("data.",))
    accelerator = accelerator_choice(opts.get("accelerator", "auto"))
    given = output_file("output", opts["output"], "test_metrics.json") if "output" in opts else None
    path = resolve_checkpoint(opts, "test")
    overrides = {k[len("data."):]: parse_value(v) for k, v in opts.items() if k.startswith("data.")}
    progress = parse_value(opts.get("progress", "true")) is not False and sys.stderr.isatty()
    allowed = cli_consent(opts)

    from ..evaluation.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(path, opts.get("data") or None, overrides, accelerator=accelerator, progress=progress, allowed=allowed)
    _print_table(report)
    default = Path("test_metrics.json") if str(path).startswith("store:") else path.parent / "test_metrics.json"
    out = given or default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0
