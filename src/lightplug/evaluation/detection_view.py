"""Pictures of detections: the worst validation images of a run with true and predicted boxes
(``lightplug results``), and image files with their predicted boxes drawn (``lightplug predict draw=true``).

True boxes are green, predicted boxes red; a predicted box is labelled with its class and score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .boxes import REPORT_SCORE

__all__ = ["TRUE_COLOUR", "PRED_COLOUR", "worst_detections", "boxes_figure", "draw_boxes"]

TRUE_COLOUR = "#22c55e"  # green
PRED_COLOUR = "#ef4444"  # red


def worst_detections(run: Path, rows: list[dict[str, str]], allowed: Any = None) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], list[str]]:
    """Images (``H x W x 3`` in [0, 1]), true boxes and predicted boxes (scoring at least the run's
    ``results.box_score``) of the given rows of ``val_predictions.csv``, by rebuilding the run's validation
    data and model from its checkpoint.

    Returns:
        (images, true boxes per image, predicted boxes per image, label names).
    """
    import torch

    from ..checkpoint import model_from_checkpoint, read_checkpoint
    from ..module import detection_settings
    from .evaluate import build_datamodule
    from .results import _denormalise, find_checkpoint

    ckpt_path = find_checkpoint(run)
    if ckpt_path is None:
        raise DataError(f"{run}: no checkpoint to draw the predictions with", hint="the run may have stopped before its first validation")
    ckpt = read_checkpoint(ckpt_path)
    meta = ckpt["lightplug"]
    config = meta.get("config") or {}
    score = float((config.get("results") or {}).get("box_score", REPORT_SCORE))
    net, plugin = model_from_checkpoint(ckpt, where=f"checkpoint {ckpt_path}", allowed=allowed)
    _, _, dm = build_datamodule(meta)
    position = {sid: p for p, sid in enumerate(dm.sample_ids.get("val") or [])}
    missing = [r["id"] for r in rows if r["id"] not in position]
    if missing:
        raise DataError(f"sample {missing[0]!r} is not in the validation split of the rebuilt data", hint="was the data changed since training?")
    items = [dm.datasets["val"][position[r["id"]]] for r in rows]
    with torch.inference_mode():
        x = torch.stack([item["input"] for item in items])
        dets = plugin.postprocess(net(x), None, detection_settings(config))
    pre = meta.get("preprocessing") or {}
    images = [_denormalise(item["input"].float().numpy(), pre) for item in items]
    trues = [{k: v.numpy() for k, v in item["target"].items()} for item in items]
    preds = []
    for d in dets:
        keep = d["scores"] >= score
        preds.append({k: d[k][keep].detach().float().cpu().numpy() if k != "labels" else d[k][keep].cpu().numpy() for k in ("boxes", "scores", "labels")})
    return images, trues, preds, list(meta.get("label_names") or [])


def _name(label: int, names: list[str]) -> str:
    return names[label] if 0 <= label < len(names) else str(label)


def boxes_figure(images: list[np.ndarray], titles: list[str], trues: list[dict[str, np.ndarray]], preds: list[dict[str, np.ndarray]],
                 label_names: list[str], path: Path) -> None:
    """Save a grid of images with their true (green, with class, below the box) and predicted (red, dashed, with
    class and score, above the box) boxes: a right box with the wrong class shows both names."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    per_row = min(4, len(images))
    n_rows = (len(images) + per_row - 1) // per_row
    fig = Figure(figsize=(3.0 * per_row, 3.3 * n_rows + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    for k, (img, title, true, pred) in enumerate(zip(images, titles, trues, preds)):
        ax = fig.add_subplot(n_rows, per_row, k + 1)
        ax.imshow(img, interpolation="nearest")
        for (x1, y1, x2, y2), label in zip(true["boxes"], true["labels"]):
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=TRUE_COLOUR, linewidth=2))
            ax.text(x1, y2 + 1, _name(int(label), label_names), color="white", fontsize=6, va="top",
                    bbox={"facecolor": TRUE_COLOUR, "alpha": 0.8, "pad": 1, "linewidth": 0})
        for (x1, y1, x2, y2), label, score in zip(pred["boxes"], pred["labels"], pred["scores"]):
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=PRED_COLOUR, linewidth=1.5, linestyle="--"))
            ax.text(x1, y1 - 1, f"{_name(int(label), label_names)} {score:.2f}", color="white", fontsize=6, va="bottom",
                    bbox={"facecolor": PRED_COLOUR, "alpha": 0.8, "pad": 1, "linewidth": 0})
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.legend(handles=[Line2D([], [], color=TRUE_COLOUR, linewidth=2, label="true"),
                        Line2D([], [], color=PRED_COLOUR, linewidth=1.5, linestyle="--", label="predicted")],
               loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path)


def draw_boxes(image: Any, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, label_names: list[str]) -> Any:
    """A copy of a PIL image with the boxes (in its own pixels) drawn in red with class and score."""
    from PIL import ImageDraw

    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(1, round(max(out.size) / 200))
    for (x1, y1, x2, y2), label, score in zip(boxes, labels, scores):
        draw.rectangle([float(x1), float(y1), float(x2), float(y2)], outline=PRED_COLOUR, width=width)
        text = f"{_name(int(label), label_names)} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((float(x1), float(y1)), text)
        h = bottom - top
        draw.rectangle([left, top - h - 2, right + 2, top], fill=PRED_COLOUR)
        draw.text((float(x1) + 1, float(y1) - h - 2), text, fill="white")
    return out
