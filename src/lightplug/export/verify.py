"""Inputs for export, runners for each backend, and the check that an exported file computes what eager
PyTorch computes.

An input is compared element by element the way ``numpy.isclose`` does: it passes when
``|exported - eager| <= atol + rtol * |eager|`` everywhere (NaN only where eager has NaN). Reported per
input and overall: ``max_abs`` = max ``|exported - eager|`` and ``max_rel`` = max ``|exported - eager| / |eager|``
over the elements with ``|eager| > atol`` (tinier values are judged by ``atol`` alone).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ._util import expected_warnings_ignored, first_line
from .report import ExportError

__all__ = ["example_input", "random_inputs", "output_tensors", "eager_runner", "onnx_runner", "torchscript_runner",
           "compare", "verify", "check_onnx_file"]

#: A backend: takes a torch tensor, returns the outputs as numpy arrays.
Runner = Callable[[Any], list[Any]]


def example_input(meta: dict[str, Any], plugin: Any, batch: int) -> tuple[Any, str]:
    """The tensor to export with: the plugin's ``example_input(cfg)`` hook when it overrides it, else a
    seeded normal batch shaped from the checkpoint's preprocessing and facts.

    Shapes: layout ``image`` gives ``[batch, in_channels, image_size, image_size]``, layout ``flat``
    gives ``[batch, in_features]``. Without a layout, a model that takes ``in_features`` is flat and
    one that takes ``in_channels``/``image_size`` is an image model.

    Returns:
        (the tensor, where its shape came from).

    Raises:
        ExportError: the hook fails or returns no tensor, or the checkpoint does not tell the input shape.
    """
    import torch

    name = meta["plugin"]["name"]
    if plugin is not None and type(plugin).overrides("example_input"):
        try:
            x = plugin.example_input(plugin.cfg)
        except Exception as exc:  # noqa: BLE001 - plugin code may raise anything
            raise ExportError(f"the example_input hook of model {name!r} failed: {first_line(exc)}") from exc
        if not torch.is_tensor(x) or x.ndim == 0:
            raise ExportError(f"the example_input hook of model {name!r} returned {type(x).__name__}, not a batch tensor")
        return x.detach().cpu(), f"the example_input hook of {name}"
    pre, facts, cfg = meta.get("preprocessing") or {}, meta.get("facts") or {}, meta.get("model_config") or {}

    def fact(key: str) -> Any:
        return pre.get(key, cfg.get(key, facts.get(key)))

    gen = torch.Generator().manual_seed(12345)
    layout = pre.get("layout")
    if layout is None:
        layout = "flat" if "in_features" in cfg else "image" if ("in_channels" in cfg or "image_size" in cfg) else None
    if layout == "flat" and fact("in_features"):
        return torch.randn(batch, int(fact("in_features")), generator=gen), "the checkpoint's preprocessing (flat features)"
    if layout == "image" and fact("in_channels") and fact("image_size"):
        c, s = int(fact("in_channels")), int(fact("image_size"))
        return torch.randn(batch, c, s, s, generator=gen), "the checkpoint's preprocessing (images)"
    raise ExportError(f"cannot tell the input shape of model {name!r} from its checkpoint (layout {layout!r}, facts {sorted(facts)})",
                      hint="give the plugin an example_input(cfg) hook")


def random_inputs(example: Any, batch_sizes: Sequence[int], per_batch: int = 2, seed: int = 0) -> list[tuple[dict[str, Any], Any]]:
    """Seeded random batches shaped like ``example`` (normal noise; integers within the example's range).

    Returns:
        ``(description, tensor)`` pairs; the description holds batch, shape, dtype, seed and distribution.
    """
    import torch

    out = []
    for i, b in enumerate(batch for batch in batch_sizes for _ in range(per_batch)):
        s = seed + i
        gen = torch.Generator().manual_seed(s)
        shape = (b, *example.shape[1:])
        if example.dtype.is_floating_point:
            x, dist = torch.randn(shape, generator=gen).to(example.dtype), "normal(0, 1)"
        else:
            lo, hi = int(example.min()), max(int(example.max()) + 1, int(example.min()) + 2)
            x, dist = torch.randint(lo, hi, shape, generator=gen).to(example.dtype), f"integers in [{lo}, {hi})"
        out.append(({"batch": b, "shape": list(shape), "dtype": str(example.dtype).removeprefix("torch."), "seed": s, "values": dist}, x))
    return out


def output_tensors(outputs: Any) -> list[Any]:
    """A model's outputs as a flat list of tensors; ``(predictions, aux_loss)``, ``{"out": ...}`` and ``.logits``
    give the predictions only.

    Raises:
        ExportError: the outputs hold something other than tensors (dicts, None, Python numbers).
    """
    import torch

    from ..outputs import main_output

    outputs = main_output(outputs)
    items = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
    if not items or not all(torch.is_tensor(t) for t in items):
        raise ExportError(f"the model returns {type(outputs).__name__}; export needs a tensor or a tuple of tensors")
    return items


def eager_runner(net: Any) -> Runner:
    """Eager PyTorch in inference mode (the reference)."""
    import torch

    def run(x: Any) -> list[Any]:
        with torch.inference_mode():
            return [t.numpy() for t in output_tensors(net(x))]

    return run


def onnx_runner(path: str, threads: int) -> Runner:
    """onnxruntime on the CPU (``CPUExecutionProvider``) with as many intra-op threads as torch uses."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: Any) -> list[Any]:
        return list(session.run(None, {name: x.numpy()}))

    return run


def torchscript_runner(path: str) -> Runner:
    """The TorchScript file reloaded from disk with ``torch.jit.load``, in inference mode."""
    import torch

    with expected_warnings_ignored():
        module = torch.jit.load(path, map_location="cpu")
    module.eval()

    def run(x: Any) -> list[Any]:
        with torch.inference_mode():
            return [t.numpy() for t in output_tensors(module(x))]

    return run


def compare(reference: Any, candidate: Any, atol: float, rtol: float) -> tuple[float, float, bool]:
    """``(max_abs, max_rel, within tolerance)`` of two arrays (see the module docstring for the rule)."""
    import numpy as np

    ref, got = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    diff = np.abs(got - ref)
    both_nan = np.isnan(ref) & np.isnan(got)
    diff = np.where(both_nan, 0.0, np.nan_to_num(diff, nan=np.inf))
    ok = bool(np.all(diff <= atol + rtol * np.abs(np.nan_to_num(ref))))
    big = np.abs(ref) > atol
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff[big] / np.abs(ref[big])).max()) if big.any() else 0.0
    return max_abs, max_rel, ok


def verify(fmt: str, reference: Sequence[list[Any]], candidate: Runner, inputs: Sequence[tuple[dict[str, Any], Any]],
           atol: float, rtol: float) -> dict[str, Any]:
    """Run ``candidate`` on every input and compare with the eager ``reference`` outputs.

    Returns:
        ``max_abs``, ``max_rel``, ``atol``, ``rtol`` and ``inputs`` (each with its own differences).

    Raises:
        ExportError: a run fails, an output has the wrong shape (e.g. the batch axis is not dynamic) or
            the differences exceed the tolerance; the message names the format, the input and the numbers.
    """
    compared, worst_abs, worst_rel = [], 0.0, 0.0
    for (desc, x), ref in zip(inputs, reference, strict=True):
        where = f"input of batch {desc['batch']} (seed {desc['seed']})"
        try:
            got = candidate(x)
        except Exception as exc:  # noqa: BLE001 - a runtime may raise anything
            raise ExportError(f"{fmt}: the exported model failed on an {where}: {first_line(exc)}") from exc
        if len(got) != len(ref):
            raise ExportError(f"{fmt}: {len(got)} outputs instead of {len(ref)} on an {where}")
        row_abs, row_rel, row_ok = 0.0, 0.0, True
        for r, g in zip(ref, got, strict=True):
            if tuple(r.shape) != tuple(g.shape):
                why = " (the batch axis is not dynamic)" if r.shape[1:] == g.shape[1:] else ""
                raise ExportError(f"{fmt}: output shape {list(g.shape)} instead of {list(r.shape)} on an {where}{why}")
            a, rel, ok = compare(r, g, atol, rtol)
            row_abs, row_rel, row_ok = max(row_abs, a), max(row_rel, rel), row_ok and ok
        compared.append({**desc, "max_abs": row_abs, "max_rel": row_rel, "ok": row_ok})
        worst_abs, worst_rel = max(worst_abs, row_abs), max(worst_rel, row_rel)
        if not row_ok:
            raise ExportError(f"{fmt}: outputs differ from eager PyTorch on an {where}: max abs diff {_g(row_abs)}, "
                              f"max rel diff {_g(row_rel)} (tolerance atol={atol:g}, rtol={rtol:g})")
    return {"max_abs": worst_abs, "max_rel": worst_rel, "atol": atol, "rtol": rtol, "inputs": compared}


def check_onnx_file(path: str, dynamic_batch: bool, fmt: str = "onnx") -> list[str]:
    """``onnx.checker.check_model`` on the file, and that the batch axis is dynamic when asked for.

    Returns:
        What was checked, one line each (for the report).

    Raises:
        ExportError: the checker rejects the model, or the batch axis is fixed although dynamic was asked for.
    """
    import onnx

    try:
        onnx.checker.check_model(path)
    except Exception as exc:  # noqa: BLE001 - onnx raises ValidationError and C++ errors
        raise ExportError(f"{fmt}: onnx.checker rejected the file: {first_line(exc)}") from exc
    checks = ["onnx.checker.check_model passed"]
    if dynamic_batch:
        graph = onnx.load(path, load_external_data=False).graph
        for value in list(graph.input) + list(graph.output):
            dim = value.type.tensor_type.shape.dim[0]
            if not dim.dim_param:
                raise ExportError(f"{fmt}: the batch axis of {value.name!r} is fixed to {dim.dim_value} although dynamic_batch=true")
        checks.append("batch axis is dynamic in every input and output")
    return checks


def _g(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.3g}"
