"""``lightplug results RUN_DIR [--worst 20] [--no-image]``: the worst validation cases of a run as a table,
and for image data ``worst.png``, a grid of those images with target and prediction in each title."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._args import ArgumentParser, positive_int

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="lightplug results", description=(__doc__ or "").replace("``", ""))
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (or one of its val_predictions CSV files)")
    parser.add_argument("--worst", type=positive_int, default=20, metavar="N", help="how many cases to show (default 20)")
    parser.add_argument("--no-image", action="store_true", help="do not write worst.png")
    parser.add_argument("--output", metavar="PNG", help="where to write the image grid (default RUN_DIR/worst.png)")
    parser.add_argument("--model", metavar="CODE", help="the import path (pkg.mod:Name) or local plugin NAME the run was trained with, "
                        "when drawing needs its model: naming it allows that code (installed plugins need nothing)")
    parser.add_argument("--trust-code", action="store_true", default=None, help="load whatever code the run's checkpoint names")
    return parser


def main(args: list[str]) -> int:
    """Run ``lightplug results`` with ``args``; returns the exit code."""
    opts = _parser().parse_args(args)

    from rich.console import Console
    from rich.table import Table

    from ..evaluation.results import load_results, rank_worst, sample_images, task_of, worst_figure

    run, file, rows = load_results(opts.run_dir)
    task = task_of(rows)
    worst = rank_worst(rows, task, opts.worst)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    if task == "detection":
        return _detection(console, run, file, rows, worst, opts)
    measure = "abs error" if task == "regression" else "confidence"
    wrong = sum(r["correct"] == "False" for r in rows)
    summary = f", {wrong} wrong" if task == "classification" else ""
    console.print(f"{file} (epoch {rows[0].get('epoch', '?')}, {len(rows)} samples{summary}): the {len(worst)} worst", highlight=False)
    table = Table()
    columns = ["#", "id", "target", "prediction", measure, "loss"] + (["iou"] if task == "segmentation" else [])
    for col in columns:
        table.add_column(col, overflow="fold", justify="right" if col in ("#", measure, "loss", "iou") else "left")
    for rank, r in enumerate(worst, 1):
        style = "red" if r.get("correct") == "False" else None
        cells = [str(rank), r["id"], r["target"], r["prediction"], r["confidence"], r["loss"]] + ([r["iou"]] if task == "segmentation" else [])
        table.add_row(*cells, style=style)
    console.print(table)
    if opts.no_image or task == "regression":
        return 0
    found = sample_images(run, worst, want_masks=task == "segmentation", allowed=_consent(opts))
    if found is None:
        console.print("no worst.png: the data are not images", highlight=False)
        return 0
    images, masks = found
    titles = [f"#{k} {r['id'][-24:]}" + (f" iou={float(r['iou']):.2f}" if task == "segmentation" else "")
              + f"\nt={r['target'][:26]}\np={r['prediction'][:26]}" for k, r in enumerate(worst, 1)]
    out = Path(opts.output) if opts.output else run / "worst.png"
    num_classes = max((int(m.max()) for m in masks), default=0) + 1
    worst_figure(images, titles, masks, num_classes, out)
    console.print(f"wrote {out}", highlight=False)
    return 0


def _detection(console: Any, run: Path, file: Path, rows: list[dict[str, str]], worst: list[dict[str, str]], opts: argparse.Namespace) -> int:
    """The worst images of a detection run: a table, and a grid with true (green) and predicted (red) boxes."""
    from rich.table import Table

    from ..evaluation.detection_view import boxes_figure, worst_detections

    found = sum(int(r["matched"]) for r in rows)
    total = sum(int(r["true_boxes"]) for r in rows)
    console.print(f"{file} (epoch {rows[0].get('epoch', '?')}, {len(rows)} images, {found} of {total} true boxes found): "
                  f"the {len(worst)} worst", highlight=False)
    table = Table()
    for col in ("#", "id", "true boxes", "predicted", "matched", "ap50"):
        table.add_column(col, overflow="fold", justify="left" if col == "id" else "right")
    for rank, r in enumerate(worst, 1):
        style = "red" if int(r["matched"]) < int(r["true_boxes"]) else None
        table.add_row(str(rank), r["id"], r["true_boxes"], r["pred_boxes"], r["matched"], r["ap50"], style=style)
    console.print(table)
    if opts.no_image:
        return 0
    images, trues, preds, names = worst_detections(run, worst, allowed=_consent(opts))
    titles = [f"#{k} {r['id'][-24:]} ap50={float(r['ap50']):.2f}\n{r['matched']}/{r['true_boxes']} found" for k, r in enumerate(worst, 1)]
    out = Path(opts.output) if opts.output else run / "worst.png"
    boxes_figure(images, titles, trues, preds, names, out)
    console.print(f"wrote {out} (true boxes green, predicted red)", highlight=False)
    return 0


def _consent(opts: argparse.Namespace) -> Any:
    from ..trust import consent

    return consent(opts.model, opts.trust_code, how="store")  # the same spelling as store add: --model / --trust-code
