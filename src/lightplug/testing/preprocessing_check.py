"""The ``preprocessing`` check of data plugins: ``lightplug predict`` can prepare a raw sample as training did.

A run stores the data module's ``preprocessing`` dict in the checkpoint (and in exported files); ``predict`` reads
it to turn a file into the model's input. The check writes the first validation sample back as the raw ``.npy``
file it would have come from (undoing ``mean``/``std`` and ``source_range``), reads it with predict's own reader,
and compares: the same shape, the same values.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from .check import Fail, Skip

__all__ = ["preprocessing_check"]

_HOW = "docs/writing-plugins.md, \"Preprocessing: what predict needs\""


def _raw(values: Any, pre: dict[str, Any], shape: tuple[int, ...]) -> Any:
    """The file values that predict's reader turns into ``values`` (the inverse of its scaling and normalisation)."""
    import numpy as np

    from ..evaluation.inputs import normalise

    zero = normalise(np.zeros((1, *shape), dtype=np.float32), pre, shape)[0]
    one = normalise(np.ones((1, *shape), dtype=np.float32), pre, shape)[0]
    scaled = (values - zero) / (one - zero)  # normalise is affine per element: x -> (x - mean) / std
    src = pre.get("source_range")
    if src:
        scaled = scaled * (float(src[1]) - float(src[0])) + float(src[0])
    return scaled.astype(np.float32)


def preprocessing_check(datamodule: Any, facts: dict[str, Any], task: str, batch: dict[str, Any] | None) -> str:
    """Check the data module's ``preprocessing`` against its first validation ``batch``; the reason shown on PASS.

    Raises:
        Fail: no ``preprocessing`` dict, one that is not plain data, an input shape other than the batches', or
            values that predict would prepare differently.
        Skip: no batch to compare with, or detection data (predict reads images there).
    """
    import numpy as np
    import torch

    from ..errors import DataError
    from ..evaluation.inputs import InputReader, input_shape

    if batch is None:
        raise Skip("needs a passing batch check")
    pre = getattr(datamodule, "preprocessing", None)
    if not isinstance(pre, dict) or not pre:
        raise Fail("the data module has no preprocessing dict, so `lightplug predict` cannot prepare an input file: set "
                   "self.preprocessing, e.g. {'layout': 'flat', 'in_features': N, 'mean': [...], 'std': [...]} (" + _HOW + ")")
    try:
        json.dumps(pre)
    except (TypeError, ValueError) as exc:
        raise Fail(f"preprocessing must hold plain data (numbers, strings, lists; it goes into checkpoints): {exc}") from None
    if task == "detection":
        raise Skip("detection data: predict reads image files for it, which this check does not write")
    x = batch["input"]
    if not torch.is_tensor(x) or x.ndim < 2:
        raise Skip("the input is not a batch of tensors")
    want = tuple(int(d) for d in x.shape[1:])
    try:
        shape = input_shape({"preprocessing": pre, "facts": facts})
    except DataError as exc:
        raise Fail(f"{exc} ({_HOW})") from None
    if shape != want:
        raise Fail(f"preprocessing gives predict the input shape {shape}, but the batches hold {want}: set 'layout' "
                   f"('flat' or 'image') and 'in_features' or 'in_channels' and 'image_size' ({_HOW})")
    sample = x[0].detach().cpu().float().numpy()
    with tempfile.TemporaryDirectory(prefix="lightplug-check-") as tmp:
        file = Path(tmp) / "sample.npy"
        np.save(file, _raw(sample, pre, shape))
        reader = InputReader(dict(pre), shape)
        prepared = list(reader.read(file))
    if reader.problems or len(prepared) != 1:
        raise Fail(f"predict could not read a sample of this data: {'; '.join(reader.problems) or 'no sample'}")
    diff = float(np.abs(prepared[0].values - sample).max())
    if not diff <= 1e-3 * max(1.0, float(np.abs(sample).max())):
        raise Fail(f"predict prepares a raw sample {diff:.3g} away from what training sees: 'mean', 'std' or 'source_range' in "
                   f"preprocessing do not describe what build() does to its inputs ({_HOW})")
    keys = ", ".join(sorted(pre))
    return f"predict reads a sample written as .npy into the batches' input {want} (max difference {diff:.2g}); keys: {keys}"
