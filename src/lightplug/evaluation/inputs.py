"""Raw inputs for ``lightplug predict``: image files, ``.npy`` arrays and CSV rows, read and prepared the way
the model's training data was (from the ``preprocessing`` facts stored with it). numpy and Pillow only:
the ONNX path of ``predict`` runs without torch.

Rules, from the checkpoint's ``preprocessing``:

- images are converted to ``in_channels`` (1: greyscale, 3: RGB), resized to ``image_size``, scaled from
  0-255 to [0, 1] and normalised with ``mean``/``std``; ``layout: flat`` then flattens them;
- arrays and CSV rows are taken as the model's input values: mapped from ``source_range`` to [0, 1] when the
  data has one (digits: 0-16), scaled from 0-255 when they are ``uint8``, then normalised with ``mean``/``std``.
  A ``.npy`` file holds one sample or a stack of them; a CSV file one sample per row (a header row is
  skipped, and when it names the data's ``feature_names`` those columns are used).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.plugins import IMAGE_SUFFIXES
from ..errors import DataError

__all__ = ["Sample", "InputReader", "collect_files", "input_shape", "image_to_array", "normalise", "INPUT_SUFFIXES"]

INPUT_SUFFIXES = (*IMAGE_SUFFIXES, ".npy", ".csv")


@dataclass
class Sample:
    """One prepared input: where it came from and the model-ready values (no batch axis)."""

    file: str
    row: int
    values: np.ndarray
    #: ``(width, height)`` of the source image (images only): detection maps boxes back to it.
    size: tuple[int, int] | None = None


def collect_files(path: str | Path) -> list[Path]:
    """The input files of ``input=``: the file itself, or every image, ``.npy`` and ``.csv`` file under a folder.

    Raises:
        DataError: nothing there, or a folder without any input file.
    """
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DataError(f"input={path}: no such file or folder")
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in INPUT_SUFFIXES and not f.name.startswith("."))
    if not files:
        raise DataError(f"input={path}: no input file in the folder (looked for {', '.join(INPUT_SUFFIXES)})")
    return files


def input_shape(meta: dict[str, Any], declared: list[Any] | None = None) -> tuple[int, ...]:
    """The model's input shape without the batch axis: ``(C, H, W)`` for images, ``(features,)`` for flat data.

    Args:
        meta: the checkpoint's (or ONNX file's) self-description: ``preprocessing`` and ``facts``.
        declared: the input shape the model file declares, batch axis first (ONNX); it wins when it is static.
    """
    pre, facts = meta.get("preprocessing") or {}, meta.get("facts") or {}
    c = int(pre.get("in_channels") or facts.get("in_channels") or 1)
    s = int(pre.get("image_size") or facts.get("image_size") or 0)
    if pre.get("layout", "image") == "flat":
        shape: tuple[int, ...] = (int(pre.get("in_features") or facts.get("in_features") or c * s * s),)
    else:
        shape = (c, s, s)
    declared = declared or meta.get("input_shape") or (meta.get("input") or {}).get("shape")
    if declared:
        dims = list(declared)[1:] if len(declared) == len(shape) + 1 or not all(shape) else list(declared)
        if dims and all(isinstance(d, int) and d > 0 for d in dims):
            return tuple(dims)
    if not all(shape):
        raise DataError("the model's input shape is unknown (no image_size or in_features in its preprocessing)")
    return shape


def normalise(values: np.ndarray, pre: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
    """``(values - mean) / std`` with the per-channel statistics of the data (``values``: ``N x *shape``)."""
    mean, std = pre.get("mean"), pre.get("std")
    if not mean or not std:
        return values
    m, s = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    if len(shape) == 3:
        c = shape[0]
        m, s = np.resize(m, c).reshape(c, 1, 1), np.resize(s, c).reshape(c, 1, 1)
    elif len(m) > 1 and shape[0] % len(m) == 0:  # flat images: each channel's pixels are contiguous
        m, s = np.repeat(m, shape[0] // len(m)), np.repeat(s, shape[0] // len(s))
    return ((values - m) / s).astype(np.float32)


def image_to_array(image: Any, pre: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
    """A PIL image as the model's input (numpy twin of :func:`lightplug.data.images.eval_transform`)."""
    from PIL import Image

    c = int(pre.get("in_channels") or (shape[0] if len(shape) == 3 else 1))
    size = int(pre.get("image_size") or (shape[-1] if len(shape) == 3 else 0))
    img = image.convert("L" if c == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    chw = (np.asarray(img, dtype=np.float32) / 255.0).reshape(size, size, c).transpose(2, 0, 1)
    return normalise(chw[None], pre, (c, size, size))[0]


def _scale(values: np.ndarray, pre: dict[str, Any]) -> np.ndarray:
    src = pre.get("source_range")
    if src:
        lo, hi = float(src[0]), float(src[1])
        return ((values.astype(np.float32) - lo) / (hi - lo)).astype(np.float32)
    if values.dtype == np.uint8:
        return values.astype(np.float32) / 255.0
    return values.astype(np.float32)


@dataclass
class InputReader:
    """Reads input files into prepared :class:`Sample` s; what cannot be read is listed in ``problems``.

    Args:
        pre: the ``preprocessing`` facts of the model.
        shape: the model's input shape (:func:`input_shape`).
        image_fn: turns a PIL image into the model's input (default :func:`image_to_array`; the PyTorch path
            passes the training code's ``eval_transform``).
    """

    pre: dict[str, Any]
    shape: tuple[int, ...]
    image_fn: Callable[[Any], np.ndarray] | None = None
    problems: list[str] = field(default_factory=list)

    def _arrays(self, values: np.ndarray, file: Path, rows: list[int]) -> Iterator[Sample]:
        n = int(np.prod(self.shape))
        if values.size % n or not values.size:
            self.problems.append(f"{file}: {values.size} values per file, but the model takes {n} per sample {tuple(self.shape)}")
            return
        if len(self.shape) == 3 and values.ndim >= 3 and values.shape[-1] == self.shape[0] and values.shape[-3] != self.shape[0]:
            values = np.moveaxis(values, -1, -3)  # channels-last images
        batch = normalise(_scale(values.reshape(-1, *self.shape), self.pre), self.pre, self.shape)
        for i, sample in enumerate(batch):
            if not np.isfinite(sample).all():  # NaN or inf in an array: refused, as in a CSV row
                self.problems.append(f"{file}: sample {i} holds NaN or infinite values")
                continue
            yield Sample(str(file), rows[i] if i < len(rows) else i, sample)

    def _image(self, file: Path) -> Iterator[Sample]:
        from PIL import Image, UnidentifiedImageError

        if self.pre.get("layout") == "flat" and not self.pre.get("image_size"):
            self.problems.append(f"{file}: an image, but the model takes {self.shape[0]} features (give a .npy or .csv file)")
            return
        try:
            with Image.open(file) as img:
                img.load()
                image = img.copy()
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            self.problems.append(f"{file}: not a readable image ({_why(exc)})")
            return
        values = np.asarray((self.image_fn or (lambda im: image_to_array(im, self.pre, self.image_shape())))(image), dtype=np.float32)
        if values.size != int(np.prod(self.shape)):
            self.problems.append(f"{file}: the image gives {values.size} values, but the model takes {tuple(self.shape)}")
            return
        yield Sample(str(file), 0, values.reshape(self.shape), image.size)

    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images the model was trained on (also for a flat layout)."""
        if len(self.shape) == 3:
            return self.shape  # type: ignore[return-value]
        size = int(self.pre["image_size"])
        return (int(self.pre.get("in_channels") or 1), size, size)

    def _npy(self, file: Path) -> Iterator[Sample]:
        try:
            values = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            self.problems.append(f"{file}: not a readable .npy array ({_why(exc)})")
            return
        if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
            self.problems.append(f"{file}: holds {values.dtype} values, not numbers")
            return
        yield from self._arrays(values, file, [])

    def _csv(self, file: Path) -> Iterator[Sample]:
        try:
            with file.open(newline="") as f:
                reader = csv.reader(f)
                lines = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            self.problems.append(f"{file}: not a readable CSV file ({type(exc).__name__})")
            return
        if not lines:
            self.problems.append(f"{file}: no rows")
            return
        columns: list[int] | None = None
        if not all(_is_number(c) for c in lines[0][1]):
            header = [c.strip() for c in lines.pop(0)[1]]
            names = list(self.pre.get("feature_names") or [])
            if names and all(n in header for n in names):
                columns = [header.index(n) for n in names]
        good, rows = [], []
        for r, (number, line) in enumerate(lines):
            cells = [line[i] for i in columns] if columns else line
            bad = next((c for c in cells if not _is_number(c)), None)
            if bad is not None:
                self.problems.append(f"{file}:{number}: non-numeric value {bad.strip()!r}")
                continue
            values = [float(c) for c in cells]
            odd = next((c for c, v in zip(cells, values) if not math.isfinite(v)), None)
            if odd is not None:  # NaN or inf would give NaN confidences: the row is refused, not predicted
                self.problems.append(f"{file}:{number}: {odd.strip()!r} is not a finite number")
                continue
            good.append(values)
            rows.append(r)
        widths = {len(g) for g in good}
        if len(widths) > 1:
            self.problems.append(f"{file}: rows of different lengths ({', '.join(map(str, sorted(widths)))} values)")
            return
        if good:
            yield from self._arrays(np.asarray(good, dtype=np.float32), file, rows)

    def read(self, file: Path) -> Iterator[Sample]:
        """The samples of one file (none when it cannot be read; the reason goes to ``problems``)."""
        suffix = file.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            yield from self._image(file)
        elif suffix == ".npy":
            yield from self._npy(file)
        elif suffix == ".csv":
            yield from self._csv(file)
        else:
            self.problems.append(f"{file}: unsupported file type {suffix or '(none)'} (takes {', '.join(INPUT_SUFFIXES)})")


def _why(exc: BaseException) -> str:
    """The first line of an error, short."""
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else type(exc).__name__


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
