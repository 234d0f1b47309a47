"""Box arithmetic in numpy (no torch, so the ONNX path of ``predict`` can use it): IoU, class-wise NMS,
decoding of raw YOLO-style outputs, and the per-image numbers of ``val_predictions.csv``.

Boxes are ``N x 4`` arrays of ``x1, y1, x2, y2`` in pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["box_iou", "nms", "decode_raw", "image_ap50", "matched_boxes", "REPORT_SCORE"]

#: Predicted boxes scoring below this are not counted, drawn or written by ``results`` and ``predict`` (mAP uses all).
REPORT_SCORE = 0.25


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``len(a) x len(b)`` IoU matrix.

    Example:
        >>> box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2], [0, 0, 2, 2]])).round(3).tolist()
        [[0.333, 1.0]]
    """
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Indices of the boxes kept by class-wise non-maximum suppression, best score first (at most ``max_det``)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(len(boxes), dtype=bool)
    overlaps = box_iou(boxes, boxes) if len(boxes) else np.zeros((0, 0))
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        if len(keep) >= max_det:
            break
        suppressed |= (overlaps[i] > iou) & (labels == labels[i])
    return np.asarray(keep, dtype=np.int64)


def decode_raw(raw: np.ndarray, fmt: str, conf: float, iou: float, max_det: int) -> list[dict[str, np.ndarray]]:
    """Boxes, scores and labels per image from a raw output of a known layout (see ``lightplug.RAW_OUTPUT_FORMATS``).

    ``"yolo"``: ``B x (4 + C) x N``, rows ``cx, cy, w, h`` then one score per class; each candidate takes its
    best class, candidates under ``conf`` are dropped, then class-wise NMS at ``iou``.
    """
    if fmt != "yolo":
        raise ValueError(f"unknown raw output format {fmt!r}")
    out = []
    for pred in np.asarray(raw, dtype=np.float32):
        xywh, cls = pred[:4].T, pred[4:].T
        labels = cls.argmax(1)
        scores = cls[np.arange(len(cls)), labels]
        keep = scores >= conf
        xywh, scores, labels = xywh[keep], scores[keep], labels[keep]
        boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
        k = nms(boxes, scores, labels, iou, max_det)
        out.append({"boxes": boxes[k].reshape(-1, 4), "scores": scores[k], "labels": labels[k].astype(np.int64)})
    return out


def _greedy_matches(pred_boxes: np.ndarray, pred_scores: np.ndarray, pred_labels: np.ndarray, true_boxes: np.ndarray,
                    true_labels: np.ndarray, threshold: float) -> np.ndarray:
    """For predictions in descending score order: whether each matched a still unmatched true box of its label."""
    order = np.argsort(-pred_scores, kind="stable")
    ious = box_iou(pred_boxes[order], true_boxes)
    taken = np.zeros(len(true_boxes), dtype=bool)
    hits = np.zeros(len(order), dtype=bool)
    for r, i in enumerate(order):
        candidates = np.where((~taken) & (true_labels == pred_labels[i]) & (ious[r] >= threshold))[0]
        if len(candidates):
            best = candidates[np.argmax(ious[r, candidates])]
            taken[best], hits[r] = True, True
    return hits


def image_ap50(pred: dict[str, Any], true: dict[str, Any], report_score: float = REPORT_SCORE) -> float:
    """Average precision of one image at IoU 0.5 over all its boxes (a prediction counts when its label matches),
    interpolated at 101 recall points as COCO does. An image without true boxes scores 1 when no prediction
    reaches ``report_score``, else 0.

    Example:
        >>> t = {"boxes": np.array([[0, 0, 10, 10]]), "labels": np.array([1])}
        >>> image_ap50({"boxes": np.array([[0, 0, 10, 9]]), "scores": np.array([0.9]), "labels": np.array([1])}, t)
        1.0
    """
    tb, tl = np.asarray(true["boxes"]).reshape(-1, 4), np.asarray(true["labels"]).reshape(-1)
    pb, ps, pl = np.asarray(pred["boxes"]).reshape(-1, 4), np.asarray(pred["scores"]).reshape(-1), np.asarray(pred["labels"]).reshape(-1)
    if len(tb) == 0:
        return 0.0 if (ps >= report_score).any() else 1.0
    if len(pb) == 0:
        return 0.0
    hits = _greedy_matches(pb, ps, pl, tb, tl, 0.5)
    tp = np.cumsum(hits)
    recall = tp / len(tb)
    precision = tp / np.arange(1, len(hits) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the precision envelope
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0).mean())


def matched_boxes(pred: dict[str, Any], true: dict[str, Any], report_score: float = REPORT_SCORE) -> int:
    """How many true boxes a prediction scoring at least ``report_score`` found (same label, IoU >= 0.5)."""
    ps = np.asarray(pred["scores"]).reshape(-1)
    keep = ps >= report_score
    if not keep.any() or len(np.asarray(true["labels"]).reshape(-1)) == 0:
        return 0
    hits = _greedy_matches(np.asarray(pred["boxes"]).reshape(-1, 4)[keep], ps[keep], np.asarray(pred["labels"]).reshape(-1)[keep],
                           np.asarray(true["boxes"]).reshape(-1, 4), np.asarray(true["labels"]).reshape(-1), 0.5)
    return int(hits.sum())
