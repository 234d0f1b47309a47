"""Writing the files: ONNX with the legacy exporter (one self-contained file, dynamic batch axis) and
TorchScript by tracing, both carrying the checkpoint's self-description.

ONNX ``model.metadata_props`` (read by ``lightplug predict model=FILE.onnx``):

- ``lightplug.plugin``: the plugin's name, e.g. ``mlp``;
- ``lightplug.version``: the plugin's version (``""`` for a local plugin file);
- ``lightplug.meta``: JSON with ``format`` (1), ``lightplug_version``, ``plugin`` (``name``, ``version``,
  ``dist``, ``target``, ``source``), ``task``, ``label_names``, ``input`` (``name``, ``shape`` with
  ``"batch"`` for a dynamic batch axis, ``dtype``), ``outputs`` (``name``, ``shape``, ``dtype``),
  ``preprocessing`` (``layout``, ``in_channels``, ``image_size``, ``in_features``, ``mean``, ``std``, ... as
  stored in the checkpoint: the normalisation to apply to raw inputs), ``facts``, ``model_config``,
  ``data`` (the data plugin's name), ``opset``, ``dynamic_batch`` and ``checkpoint`` (file name).

The TorchScript file holds the same JSON as the extra file ``lightplug.meta``
(``torch.jit.load(path, _extra_files={"lightplug.meta": ""})``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._util import EXPECTED_WARNINGS, expected_warnings_ignored, first_line
from .report import ExportError
from .verify import output_tensors

__all__ = ["META_KEY", "PLUGIN_KEY", "VERSION_KEY", "prepare", "describe_io", "export_meta", "write_onnx", "write_torchscript",
           "warning_notes", "tracer_hint"]

#: ONNX metadata key (and TorchScript extra file) holding the JSON self-description.
META_KEY = "lightplug.meta"
#: ONNX metadata key holding the plugin's name.
PLUGIN_KEY = "lightplug.plugin"
#: ONNX metadata key holding the plugin's version.
VERSION_KEY = "lightplug.version"


@contextlib.contextmanager
def _captured() -> Iterator[list[warnings.WarningMessage]]:
    """Record warnings, and keep what native code prints to stdout off the console (on failure the legacy
    exporter dumps its whole graph there)."""
    import sys

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sys.stdout.flush()
            saved = os.dup(1)
        except (OSError, ValueError):  # no usable stdout: nothing to keep quiet
            saved = -1
        if saved < 0:
            yield caught
            return
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            try:
                yield caught
            finally:
                with contextlib.suppress(OSError, ValueError):
                    sys.stdout.flush()
                os.dup2(saved, 1)
                os.close(saved)


def warning_notes(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """Warnings raised while exporting, as ``Category: file:line: first sentence`` (the expected deprecation
    notices left out); they go into the report, and a ``TracerWarning`` explains a trace that went wrong."""
    notes = []
    for w in caught:
        if EXPECTED_WARNINGS.search(str(w.message)):
            continue
        text = str(w.message).strip().splitlines()[0].split(". ")[0] if str(w.message).strip() else ""
        note = f"{w.category.__name__}: {Path(w.filename).name}:{w.lineno}: {text}"
        if note not in notes:
            notes.append(note)
    return notes


def tracer_hint(notes: Sequence[str]) -> str | None:
    """The first tracer warning among ``notes`` (``file:line: text``), the likely cause of a wrong trace."""
    return next((n.split(": ", 1)[1] for n in notes if n.startswith("TracerWarning: ")), None)


def _predictions_only(net: Any) -> Any:
    """An ``nn.Module`` returning only the predictions of a model that returns more: ``(predictions, aux_loss)``, a
    dict with ``out`` (torchvision's segmentation models), or an object with ``.logits``."""
    from torch import nn

    from ..outputs import main_output

    class Predictions(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.net = inner

        def forward(self, x: Any) -> Any:
            return main_output(self.net(x))

    return Predictions(net).eval()


def prepare(net: Any, example: Any) -> Any:
    """The module to export: ``net`` itself, or a wrapper that returns its main output only (no auxiliary loss,
    no ``aux`` head)."""
    import torch

    from ..outputs import main_output

    with torch.inference_mode():
        out = net(example)
    if main_output(out) is not out:
        return _predictions_only(net)
    output_tensors(out)  # raises for outputs that cannot be exported
    return net


def describe_io(net: Any, example: Any, dynamic_batch: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Names and shapes of the exported input and outputs (``"batch"`` marks a dynamic batch axis)."""
    import torch

    with torch.inference_mode():
        outs = output_tensors(net(example))
    names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]

    def shape(t: Any) -> list[Any]:
        return ["batch" if dynamic_batch else int(t.shape[0]), *[int(d) for d in t.shape[1:]]] if t.ndim else []

    inp = {"name": "input", "shape": shape(example), "dtype": str(example.dtype).removeprefix("torch.")}
    return inp, [{"name": n, "shape": shape(t), "dtype": str(t.dtype).removeprefix("torch.")} for n, t in zip(names, outs, strict=True)]


def export_meta(meta: dict[str, Any], inp: dict[str, Any], outputs: list[dict[str, Any]], opset: int | None,
                dynamic_batch: bool, checkpoint: str) -> dict[str, Any]:
    """The self-description stored in exported files (see the module docstring)."""
    plugin = meta.get("plugin") or {}
    return {
        "format": 1,
        "lightplug_version": meta.get("lightplug_version"),
        "plugin": {k: plugin.get(k) for k in ("name", "version", "dist", "target", "source")},
        "task": meta.get("task"),
        "label_names": list(meta.get("label_names") or []),
        "input": inp,
        "outputs": outputs,
        "preprocessing": dict(meta.get("preprocessing") or {}),
        "facts": dict(meta.get("facts") or {}),
        "model_config": dict(meta.get("model_config") or {}),
        "data": {"name": (meta.get("data") or {}).get("name")},
        "opset": opset,
        "dynamic_batch": dynamic_batch,
        "checkpoint": str(checkpoint) if str(checkpoint).startswith("store:") else Path(checkpoint).name,
    }


def write_onnx(net: Any, example: Any, path: Path, opset: int, dynamic_batch: bool, meta: dict[str, Any]) -> list[str]:
    """Export with ``torch.onnx.export(..., dynamo=False)`` into one file and add the metadata.

    Returns:
        The warnings raised meanwhile (see :func:`warning_notes`).

    Raises:
        ExportError: ``onnx: <cause>`` (an operator the exporter does not support, an output it cannot handle, ...).
    """
    import onnx
    import torch

    names = [o["name"] for o in meta["outputs"]]
    axes = {n: {0: "batch"} for n in ["input", *names]} if dynamic_batch else None
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _captured() as caught, torch.no_grad():
            torch.onnx.export(net, (example,), str(tmp), dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=names, dynamic_axes=axes, do_constant_folding=True)
        model = onnx.load(str(tmp))
        plugin = meta["plugin"]
        props = {PLUGIN_KEY: str(plugin.get("name") or ""), VERSION_KEY: str(plugin.get("version") or ""), META_KEY: json.dumps(meta)}
        onnx.helper.set_model_props(model, props)
        onnx.save(model, str(path))
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; each becomes one line
        raise ExportError(f"onnx: {first_line(exc)}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return warning_notes(caught)


def write_torchscript(net: Any, example: Any, path: Path, check_inputs: Sequence[Any], meta: dict[str, Any]) -> list[str]:
    """Trace ``net`` with ``torch.jit.trace`` (checking the trace on ``check_inputs``) and save it with the metadata.

    Returns:
        The warnings raised meanwhile (see :func:`warning_notes`).

    Raises:
        ExportError: ``torchscript: <cause>``; a trace that differs between inputs names the Python
            control flow on tensor values that caused it.
    """
    import torch

    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _captured() as caught, torch.no_grad():
            try:
                traced = torch.jit.trace(net, example, check_trace=True, check_inputs=[(x,) for x in check_inputs])
            except torch.jit.TracingCheckError as exc:
                hint = tracer_hint(warning_notes(caught))
                why = f" ({hint})" if hint else ""
                raise ExportError("torchscript: the trace differs between inputs, so forward runs Python control flow on tensor "
                                  f"values, which tracing cannot record{why}", hint="use tensor ops (torch.where) instead of if/for on values") from exc
        with expected_warnings_ignored():
            torch.jit.save(traced, str(tmp), _extra_files={META_KEY: json.dumps(meta)})
        tmp.replace(path)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - tracing raises many types; each becomes one line
        raise ExportError(f"torchscript: {first_line(exc)}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return warning_notes(caught)
