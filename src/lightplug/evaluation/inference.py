"""Predictions for files (``lightplug predict``): a model from a checkpoint (PyTorch) or an ONNX file
(onnxruntime, without torch or lightning), raw inputs prepared as in training, outputs turned into
top-k labels, values or masks, written as CSV.

Output columns: ``file``, ``row`` (the sample's position in its file: 0 for an image, the data row of a
CSV file, the index in a stacked ``.npy``), then

- classification: ``label_1``, ``confidence_1`` ... ``label_k``, ``confidence_k`` (softmax probabilities);
- regression: ``value`` (one output) or ``value_<name>`` per output, in the data's units
  (de-standardised with ``target_mean``/``target_std`` when the data standardised its targets);
- segmentation: ``mask`` (a PNG of class indices written next to the CSV) and ``fraction_<class>``;
- detection (image files only): one row per box, ``file``, ``label``, ``score``, ``x1``, ``y1``, ``x2``, ``y2`` in
  pixels of the original image; with ``draw`` a copy of each image with its boxes is written next to the CSV.
  An ONNX file is post-processed in numpy when its plugin declared a raw output layout (``raw_output_format``).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, DataError
from .inputs import InputReader, Sample, collect_files, input_shape

__all__ = ["Predictor", "TorchPredictor", "OnnxPredictor", "RawOutputPredictor", "predict_files", "rows_for", "ONNX_META_KEY"]

#: Metadata key of an ONNX file holding the JSON self-description (as in the checkpoint's ``lightplug`` section).
ONNX_META_KEY = "lightplug.meta"
#: The same key as the extra file of a TorchScript or ``.pt2`` file.
META_KEY_NAME = ONNX_META_KEY


class Predictor:
    """A model that maps a batch of prepared inputs (numpy) to its raw outputs (numpy)."""

    meta: dict[str, Any]
    declared: list[Any] | None = None

    def image_fn(self) -> Any:
        """How images become inputs (``None``: the numpy twin of the training transform)."""
        return None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def detect(self, batch: np.ndarray, settings: Any) -> list[dict[str, np.ndarray]]:
        """Boxes, scores and labels per image (boxes in input pixels), after post-processing with ``settings``."""
        raise NotImplementedError


class TorchPredictor(Predictor):
    """The trained model of a lightplug checkpoint, in eval mode on the CPU."""

    def __init__(self, path: str | Path, allowed: Any = None) -> None:
        """``allowed``: the user's consent to load an import-path or local-plugin model (:class:`lightplug.trust.Consent`)."""
        from ..checkpoint import model_from_checkpoint, read_checkpoint

        ckpt = read_checkpoint(path)
        self.meta = dict(ckpt["lightplug"])
        self.net, self.plugin = model_from_checkpoint(ckpt, where=f"checkpoint {path}", allowed=allowed)

    def image_fn(self) -> Any:
        from ..data.images import eval_transform

        pre = self.meta.get("preprocessing") or {}
        if not pre.get("image_size") or not pre.get("mean"):
            return None
        transform = eval_transform({**pre, "in_channels": int(pre.get("in_channels") or 1)})
        channels = int(pre.get("in_channels") or 1)
        return lambda image: transform(image.convert("L" if channels == 1 else "RGB")).numpy()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        from ..module import split_outputs

        overrides = getattr(type(self.plugin), "overrides", None)
        with torch.inference_mode():
            preds, _, _ = split_outputs(self.net(torch.from_numpy(batch)))
            if overrides is not None and overrides("postprocess"):
                preds = self.plugin.postprocess(preds, None)
        if not torch.is_tensor(preds):
            raise DataError(f"the model returned {type(preds).__name__}, not a tensor: predict takes classification, regression "
                            "and segmentation models")
        return preds.float().numpy()

    def detect(self, batch: np.ndarray, settings: Any) -> list[dict[str, np.ndarray]]:
        import torch

        with torch.inference_mode():
            dets = self.plugin.postprocess(self.net(torch.from_numpy(batch)), None, settings)
        return [{k: d[k].detach().cpu().numpy().astype(np.int64 if k == "labels" else np.float32) for k in ("boxes", "scores", "labels")}
                for d in dets]


class RawOutputPredictor(Predictor):
    """An exported file: detection outputs are decoded in numpy from the layout its plugin declared."""

    def detect(self, batch: np.ndarray, settings: Any) -> list[dict[str, np.ndarray]]:
        from .boxes import decode_raw

        fmt = self.meta.get("raw_output_format")
        if not fmt:
            raise DataError("this exported file holds raw detector outputs in a layout lightplug does not know (its plugin declares no "
                            "raw_output_format)", hint="predict with the checkpoint instead: lightplug predict ckpt=... input=...")
        return decode_raw(self(batch), str(fmt), settings.conf, settings.iou, settings.max_det)


def checked_meta(text: str, path: str | Path, key: str) -> dict[str, Any]:
    """An exported file's ``lightplug.meta`` JSON as a dict, checked as untrusted data (:func:`.file_meta.meta_problem`).

    Raises:
        CheckpointError: not JSON (or nested beyond reason), not an object, or holding what predict cannot use.
    """
    from .file_meta import meta_problem

    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise CheckpointError(f"model={path}: the {key!r} metadata is not JSON ({reason})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"model={path}: the {key!r} metadata is not a JSON object")
    problem = meta_problem(meta)
    if problem:
        raise CheckpointError(f"model={path}: the {key!r} metadata cannot be used: {problem}", hint="export the checkpoint again")
    return meta


class OnnxPredictor(RawOutputPredictor):
    """An ONNX file exported by lightplug (fp32, int8 or fp16), run with onnxruntime (no torch, no lightning)."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"model={path}: no such ONNX file")
        try:
            self.session = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors for any bad file
            raise CheckpointError(f"model={path}: onnxruntime cannot load it: {str(exc).strip().splitlines()[0][:200]}") from exc
        props = self.session.get_modelmeta().custom_metadata_map
        if ONNX_META_KEY not in props:
            raise CheckpointError(f"model={path}: no {ONNX_META_KEY!r} metadata, so its preprocessing and labels are unknown",
                                  hint="export it with `lightplug export`")
        self.meta = checked_meta(props[ONNX_META_KEY], path, ONNX_META_KEY)
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.declared = list(first.shape)
        self.fixed_batch = first.shape[0] if isinstance(first.shape[0], int) and first.shape[0] > 0 else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.fixed_batch is None or len(batch) == self.fixed_batch:
            return np.asarray(self.session.run(None, {self.input_name: batch})[0])
        outs = []
        for start in range(0, len(batch), self.fixed_batch):  # a file exported with a fixed batch size
            chunk = batch[start : start + self.fixed_batch]
            pad = np.zeros((self.fixed_batch - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
            outs.append(np.asarray(self.session.run(None, {self.input_name: np.concatenate([chunk, pad])})[0])[: len(chunk)])
        return np.concatenate(outs)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _columns(task: str, meta: dict[str, Any], topk: int, outputs: int) -> list[str]:
    names = [str(n) for n in meta.get("label_names") or []]
    if task == "classification":  # topk above the number of classes: every class, as the rows have them
        return ["file", "row"] + [c for i in range(1, min(topk, outputs) + 1) for c in (f"label_{i}", f"confidence_{i}")]
    if task == "regression":
        return ["file", "row"] + (["value"] if outputs == 1 else [f"value_{n}" for n in (names if len(names) == outputs else map(str, range(outputs)))])
    return ["file", "row", "mask"] + [f"fraction_{n}" for n in (names if len(names) == outputs else map(str, range(outputs)))]


def rows_for(task: str, meta: dict[str, Any], samples: list[Sample], outputs: np.ndarray, topk: int, mask_dir: Path | None) -> list[list[Any]]:
    """CSV rows for a batch of samples and the model's raw outputs."""
    names = [str(n) for n in meta.get("label_names") or []]
    rows: list[list[Any]] = []
    if task == "classification":
        probs = _softmax(outputs.reshape(len(samples), -1).astype(np.float64))
        k = min(topk, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        for sample, p, idx in zip(samples, probs, order):
            cells = [c for j in idx for c in (names[j] if j < len(names) else str(j), f"{p[j]:.6f}")]
            rows.append([sample.file, sample.row, *cells])
    elif task == "regression":
        pre = meta.get("preprocessing") or {}
        values = outputs.reshape(len(samples), -1).astype(np.float64)
        values = values * np.asarray(pre.get("target_std") or [1.0]) + np.asarray(pre.get("target_mean") or [0.0])
        rows = [[s.file, s.row, *[f"{v:.6g}" for v in vals]] for s, vals in zip(samples, values)]
    elif task == "segmentation":
        from PIL import Image

        masks = outputs.argmax(axis=1).astype(np.uint8)
        n = outputs.shape[1]
        assert mask_dir is not None
        mask_dir.mkdir(parents=True, exist_ok=True)
        for sample, mask in zip(samples, masks):
            name = f"{Path(sample.file).stem}{f'_{sample.row}' if sample.row else ''}.png"
            Image.fromarray(mask, mode="L").save(mask_dir / name)
            shares = np.bincount(mask.ravel(), minlength=n) / mask.size
            rows.append([sample.file, sample.row, str(mask_dir / name), *[f"{f:.4f}" for f in shares]])
    else:
        raise DataError(f"predict does not handle {task} models yet (it takes classification, regression and segmentation)")
    return rows


def _batches(reader: InputReader, files: list[Path], batch_size: int, advance: Any) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    for file in files:
        for sample in reader.read(file):
            batch.append(sample)
            if len(batch) == batch_size:
                yield batch
                batch = []
        advance()
    if batch:
        yield batch


def _detection_rows(samples: list[Sample], dets: list[dict[str, np.ndarray]], image_size: int, names: list[str],
                    draw_dir: Path | None) -> list[list[Any]]:
    """One row per box, in pixels of each original image; with ``draw_dir`` a copy of each image with its boxes."""
    rows: list[list[Any]] = []
    for sample, det in zip(samples, dets):
        width, height = sample.size or (image_size, image_size)
        scale = np.asarray([width / image_size, height / image_size] * 2, dtype=np.float64)
        boxes = np.clip(np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4) * scale, 0, [width, height, width, height])
        for box, label, score in zip(boxes, det["labels"], det["scores"]):
            name = names[int(label)] if 0 <= int(label) < len(names) else str(int(label))
            rows.append([sample.file, name, f"{float(score):.4f}", *[f"{v:.1f}" for v in box]])
        if draw_dir is not None:
            from PIL import Image

            from .detection_view import draw_boxes

            draw_dir.mkdir(parents=True, exist_ok=True)
            with Image.open(sample.file) as img:
                draw_boxes(img, boxes, det["labels"], det["scores"], names).save(draw_dir / f"{Path(sample.file).stem}.png")
    return rows


def predict_files(predictor: Predictor, source: str | Path | list[Path], output: str | Path, topk: int = 3, batch_size: int = 64,
                  progress: bool = True, settings: Any = None, draw: bool = False) -> tuple[int, list[str], list[list[Any]]]:
    """Predict every sample of ``source`` (a file or a folder) and write the rows to ``output`` (CSV).

    Args:
        source: a file or a folder, or the files :func:`~lightplug.evaluation.inputs.collect_files` found there.
        settings: detection only: a :class:`~lightplug.DetectionSettings` (``conf``, ``iou``, ``max_det``).
        draw: detection only: also write each image with its boxes into ``<output stem>_boxes/``.

    Returns:
        (number of predictions (detection: images), one line per input that could not be read, the first rows written).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    files = source if isinstance(source, list) else collect_files(source)
    meta = predictor.meta
    task = str(meta.get("task") or "classification")
    shape = input_shape(meta, predictor.declared)
    reader = InputReader(dict(meta.get("preprocessing") or {}), shape, predictor.image_fn())
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    mask_dir = out.with_name(f"{out.stem}_masks") if task == "segmentation" else None
    count, columns = 0, None
    head: list[list[Any]] = []
    bar = Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TextColumn("files"), TimeElapsedColumn(),
                   console=Console(stderr=True), disable=not progress, transient=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # the earlier file stays until this one is complete
    try:
        with tmp.open("w", newline="") as f, bar:
            writer = csv.writer(f)
            job = bar.add_task("files", total=len(files))
            for samples in _batches(reader, files, batch_size, lambda: bar.advance(job)):
                if task == "detection":
                    if columns is None:
                        columns = ["file", "label", "score", "x1", "y1", "x2", "y2"]
                        writer.writerow(columns)
                    not_images = [s for s in samples if s.size is None]
                    reader.problems += [f"{s.file}: not an image (detection models take image files)" for s in not_images]
                    samples = [s for s in samples if s.size is not None]
                    if not samples:
                        continue
                    dets = predictor.detect(np.stack([s.values for s in samples]).astype(np.float32), settings)
                    rows = _detection_rows(samples, dets, int(shape[-1]), [str(n) for n in meta.get("label_names") or []],
                                           out.with_name(f"{out.stem}_boxes") if draw else None)
                    writer.writerows(rows)
                    head += rows[: max(0, 20 - len(head))]
                    count += len(samples)
                    continue
                outputs = predictor(np.stack([s.values for s in samples]).astype(np.float32))
                if columns is None:
                    columns = _columns(task, meta, topk, int(outputs.shape[1]) if outputs.ndim > 1 else 1)
                    writer.writerow(columns)
                rows = rows_for(task, meta, samples, outputs, topk, mask_dir)
                writer.writerows(rows)
                head += rows[: max(0, 20 - len(head))]
                count += len(rows)
        if count:
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # a failure (or nothing predicted) leaves the earlier file as it was
    return count, reader.problems, [columns or [], *head]
