"""int8 and fp16 ONNX, converted from the verified fp32 ONNX file with onnxruntime's own tools.

- ``onnx_int8``: static quantization (``onnxruntime.quantization.quantize_static``, QDQ format, int8 weights
  per channel, uint8 activations) calibrated on the first ``calibration_samples`` training samples of the
  run with ``calibration_method`` (``minmax``, ``entropy``, ``percentile``); the graph is first prepared with
  ``quant_pre_process`` (shape inference and fusions). Dynamic quantization (``quantize_dynamic``: weights
  int8 ahead of time, activations per call) is used when asked (``quantization=dynamic``) and where static
  quantization does not apply: the run's data cannot be loaded (no calibration samples), or the input is
  not floating point.
- ``onnx_fp16``: ``onnxruntime.transformers.float16.convert_float_to_float16`` with ``keep_io_types=True``
  (float32 in and out, so ``predict`` and callers need no change; fp16 inside).

Both keep the ``lightplug.*`` metadata of the source file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._util import first_line
from .report import ExportError

__all__ = ["CALIBRATION_METHODS", "write_onnx_int8", "write_onnx_fp16"]

#: ``calibration_method=`` -> onnxruntime's ``CalibrationMethod`` member.
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def _copy_metadata(source: Path, target: Path) -> None:
    import onnx

    props = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    model = onnx.load(str(target))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(target))


def write_onnx_int8(source: Path, path: Path, calibration: Sequence[Any] | None, method: str, why_dynamic: str | None) -> list[str]:
    """Quantize ``source`` into ``path``: static with ``calibration`` (input batches), else dynamic.

    Args:
        calibration: float32 input batches from the training split; ``None`` or empty: dynamic quantization.
        method: a key of :data:`CALIBRATION_METHODS`.
        why_dynamic: why static quantization does not apply (a note in the report), when it does not.

    Returns:
        Notes for the report: which quantization ran, on how many samples.

    Raises:
        ExportError: ``onnx_int8: <cause>``.
    """
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = list(calibration or [])
    try:
        with tempfile.TemporaryDirectory(prefix="lightplug-int8-") as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            try:
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantize the plain graph without it
                prepared = source
            if batches:
                class Reader(CalibrationDataReader):  # type: ignore[misc]
                    def __init__(self) -> None:
                        self.items = iter(batches)

                    def get_next(self) -> dict[str, Any] | None:
                        item = next(self.items, None)
                        return None if item is None else {"input": item}

                quantize_static(str(prepared), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[method]))
                notes = [f"static int8 quantization (QDQ, per-channel int8 weights, uint8 activations), calibrated with {method} on "
                         f"{sum(len(b) for b in batches)} training samples"]
            else:
                quantize_dynamic(str(prepared), str(path), weight_type=QuantType.QUInt8)
                notes = [f"dynamic int8 quantization (uint8 weights, activations quantized per call): {why_dynamic or 'asked for'}"]
        _copy_metadata(source, path)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - the quantizer raises many types; each becomes one line
        raise ExportError(f"onnx_int8: {first_line(exc)}") from exc
    return notes


def _sort_nodes(graph: Any) -> None:
    """Put the nodes of ``graph`` in topological order (the fp16 converter appends the casts of
    ``keep_io_types`` at the end, which ``onnx.checker`` rejects)."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:  # a cycle or a name from an outer scope: keep the rest as it was
            ordered += pending
            break
        for n in ready:
            known.update(n.output)
        ordered += ready
        pending = [n for n in pending if all(n is not r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)


def write_onnx_fp16(source: Path, path: Path) -> list[str]:
    """Convert ``source`` to float16 weights and arithmetic with float32 inputs and outputs.

    Raises:
        ExportError: ``onnx_fp16: <cause>``.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        _sort_nodes(model.graph)
        onnx.save(model, str(path))
        _copy_metadata(source, path)
    except Exception as exc:  # noqa: BLE001 - the converter raises many types; each becomes one line
        raise ExportError(f"onnx_fp16: {first_line(exc)}") from exc
    return ["float16 weights and arithmetic (onnxruntime.transformers.float16, keep_io_types=True: float32 input and output)"]
