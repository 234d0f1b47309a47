"""The worst validation cases of a run, from its ``val_predictions.csv``: ranked rows and their images.

Ranking: classification, the wrong predictions first, lowest confidence first (then the right ones,
lowest confidence first); regression, the largest absolute error first; segmentation, the lowest
image IoU first; detection, the lowest image AP50 first (then the most true boxes missed).

Images come from the files themselves when the sample ids are paths (``image_folder``), otherwise from
the data module rebuilt from the checkpoint's ``data`` section, de-normalised with its ``mean``/``std``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

#: The per-sample results of the best epoch, in the run folder.
PREDICTIONS_FILE = "val_predictions.csv"

__all__ = ["PREDICTIONS_FILE", "load_results", "task_of", "rank_worst", "find_checkpoint", "sample_images", "worst_figure"]


def load_results(path: str | Path) -> tuple[Path, Path, list[dict[str, str]]]:
    """Read ``val_predictions.csv`` of a run folder (or that file itself).

    Returns:
        (run folder, CSV file, rows).

    Raises:
        DataError: no such folder or file, or an empty file.
    """
    p = Path(path)
    if p.is_file():
        file, run = p, (p.parent.parent if p.parent.name == "val_predictions" else p.parent)
    elif p.is_dir():
        file, run = p / PREDICTIONS_FILE, p
        if not file.is_file():
            raise DataError(f"{path}: no {PREDICTIONS_FILE} in this run folder", hint="it is written at the first validation of a run")
    else:
        raise DataError(f"{path}: no such run folder or file")
    try:
        data = file.read_bytes()
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{file}:{line}: not UTF-8 text (byte {data[exc.start]:#04x})", hint=f"it is not a {PREDICTIONS_FILE} written by lightplug") from exc
    except (csv.Error, OSError) as exc:
        raise DataError(f"{file}: cannot be read as CSV ({exc})") from exc
    if not rows:
        raise DataError(f"{file}: no rows")
    _check_rows(file, rows)
    return run, file, rows


#: The columns each task's rows need, and which of them must hold numbers.
_COLUMNS = {"detection": (("id", "true_boxes", "pred_boxes", "matched", "ap50"), ("true_boxes", "pred_boxes", "matched", "ap50")),
            "segmentation": (("id", "target", "prediction", "confidence", "loss", "iou"), ("iou",)),
            "regression": (("id", "target", "prediction", "confidence", "loss"), ("confidence",)),
            "classification": (("id", "target", "prediction", "confidence", "loss", "correct"), ("confidence",))}


def _check_rows(file: Path, rows: list[dict[str, str]]) -> None:
    """The columns the ranking reads are there and hold numbers; the first bad cell is named by file:line."""
    columns, numeric = _COLUMNS[task_of(rows)]
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise DataError(f"{file}: no column {', '.join(missing)}", hint=f"it is not a {PREDICTIONS_FILE} written by lightplug")
    for line, row in enumerate(rows, start=2):
        for column in numeric:
            try:
                float(row[column] or "nan")
            except (TypeError, ValueError):
                raise DataError(f"{file}:{line}: {column}={row[column]!r} is not a number") from None


def task_of(rows: list[dict[str, str]]) -> str:
    """The task the rows were written for, from their columns."""
    if "ap50" in rows[0]:
        return "detection"
    if "iou" in rows[0]:
        return "segmentation"
    if rows[0].get("correct", "") == "":
        return "regression"
    return "classification"


def rank_worst(rows: list[dict[str, str]], task: str, n: int) -> list[dict[str, str]]:
    """The ``n`` worst rows, worst first (see the module's docstring)."""

    def badness(r: dict[str, str]) -> tuple[bool, float]:
        if task == "classification":
            return r["correct"] == "True", float(r["confidence"])
        if task == "regression":
            return False, -float(r["confidence"])  # the absolute error
        if task == "detection":  # lowest AP50 first, then the most true boxes missed
            return False, float(r["ap50"]) - 1e-3 * (int(r["true_boxes"]) - int(r["matched"]))
        return False, float(r["iou"])

    return sorted(rows, key=badness)[:n]


def find_checkpoint(run: Path) -> Path | None:
    """The run's ``best.ckpt`` (or ``last.ckpt``)."""
    for name in ("best.ckpt", "last.ckpt"):
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    return None


def _denormalise(x: np.ndarray, pre: dict[str, Any]) -> np.ndarray:
    """``C x H x W`` model input -> ``H x W x C`` in [0, 1]."""
    c = x.shape[0]
    mean = np.resize(np.asarray(pre.get("mean") or [0.0], dtype=np.float32), c).reshape(c, 1, 1)
    std = np.resize(np.asarray(pre.get("std") or [1.0], dtype=np.float32), c).reshape(c, 1, 1)
    img = x * std + mean
    lo, hi = float(img.min()), float(img.max())
    if lo < -0.05 or hi > 1.05:  # not in [0, 1] after all (e.g. synthetic data): stretch for display
        img = (img - lo) / max(hi - lo, 1e-8)
    return np.clip(img, 0.0, 1.0).transpose(1, 2, 0)


def sample_images(run: Path, rows: list[dict[str, str]], want_masks: bool = False, allowed: Any = None) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """Images of the given rows (``H x W x C`` in [0, 1]) and, for segmentation, true and predicted masks.

    Returns ``None`` when the data are not images (e.g. tabular features).
    """
    ids = [r["id"] for r in rows]
    if not want_masks and all(Path(i).is_file() for i in ids):
        from PIL import Image

        images = []
        for i in ids:
            with Image.open(i) as img:
                images.append(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)
        return images, []
    ckpt_path = find_checkpoint(run)
    if ckpt_path is None:
        return None
    from ..checkpoint import read_checkpoint

    meta = read_checkpoint(ckpt_path)["lightplug"]
    pre = meta.get("preprocessing") or {}
    if not pre.get("image_size"):
        return None
    from .evaluate import build_datamodule

    _, _, dm = build_datamodule(meta)
    split_ids = list(dm.sample_ids.get("val") or [])
    position = {sid: p for p, sid in enumerate(split_ids)}
    missing = [i for i in ids if i not in position]
    if missing:
        raise DataError(f"sample {missing[0]!r} is not in the validation split of the rebuilt data", hint="was the data changed since training?")
    items = [dm.datasets["val"][position[i]] for i in ids]
    c, s = int(pre.get("in_channels") or 1), int(pre["image_size"])
    inputs = np.stack([np.asarray(item["input"], dtype=np.float32).reshape(c, s, s) for item in items])
    images = [_denormalise(x, pre) for x in inputs]
    masks: list[np.ndarray] = []
    if want_masks:
        import torch

        from ..checkpoint import model_from_checkpoint
        from ..outputs import main_output

        net, _ = model_from_checkpoint(read_checkpoint(ckpt_path), where=f"checkpoint {ckpt_path}", allowed=allowed)
        with torch.inference_mode():
            out = net(torch.stack([torch.as_tensor(item["input"]) for item in items]))
        predicted = main_output(out).argmax(1).numpy()
        for item, pred in zip(items, predicted):
            masks += [np.asarray(item["target"]), pred]
    return images, masks


def worst_figure(images: list[np.ndarray], titles: list[str], masks: list[np.ndarray], num_classes: int, path: Path) -> None:
    """Save a grid of the images with their titles (segmentation: image, true mask, predicted mask per row)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    per_row = 3 if masks else min(5, len(images))
    cells: list[tuple[np.ndarray, str, bool]] = []
    for i, (img, title) in enumerate(zip(images, titles)):
        cells.append((img, title, False))
        if masks:
            cells += [(masks[2 * i], "true mask", True), (masks[2 * i + 1], "predicted mask", True)]
    n_rows = (len(cells) + per_row - 1) // per_row
    fig = Figure(figsize=(2.2 * per_row, 2.7 * n_rows), dpi=100)
    FigureCanvasAgg(fig)
    for k, (img, title, is_mask) in enumerate(cells):
        ax = fig.add_subplot(n_rows, per_row, k + 1)
        if is_mask:
            ax.imshow(img, cmap="tab10", vmin=0, vmax=max(9, num_classes - 1), interpolation="nearest")
        elif img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
