"""OpenVINO IR (``.xml`` graph + ``.bin`` weights beside it), converted from the verified fp32 ONNX file with
``openvino.convert_model`` and saved with fp32 weights (``compress_to_fp16=False``), run on the CPU with
``INFERENCE_PRECISION_HINT=f32`` (otherwise a CPU with bf16 support computes in bf16) and as many threads as
torch uses. The ``lightplug.meta`` JSON is stored in the IR's runtime info, ``rt_info/lightplug/meta``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._util import first_line
from .report import ExportError

__all__ = ["write_openvino", "openvino_runner", "read_openvino_meta", "companions"]


def companions(xml: Path) -> list[Path]:
    """The files of one IR: the ``.xml`` and its ``.bin``."""
    return [xml, xml.with_suffix(".bin")]


def write_openvino(source: Path, path: Path, meta: dict[str, Any]) -> list[str]:
    """Convert the ONNX file ``source`` to IR at ``path`` (``.xml``; ``.bin`` beside it).

    Raises:
        ExportError: ``openvino: <cause>`` (the package is missing, or the converter refuses the graph).
    """
    try:
        import openvino as ov
    except ImportError as exc:
        raise ExportError("openvino: needs the package openvino (pip install 'lightplug[export]')") from exc
    try:
        model = ov.convert_model(str(source))
        model.set_rt_info(json.dumps(meta), ["lightplug", "meta"])
        ov.save_model(model, str(path), compress_to_fp16=False)
    except Exception as exc:  # noqa: BLE001 - the converter raises many types; each becomes one line
        raise ExportError(f"openvino: {first_line(exc)}") from exc
    return [f"openvino {ov.get_version().split('-')[0]} IR with fp32 weights"]


def _compiled(path: str, threads: int | None) -> Any:
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return core, core.compile_model(core.read_model(path), "CPU", config)


def openvino_runner(path: str, threads: int | None) -> Any:
    """The IR compiled for the CPU; takes a torch tensor, returns the outputs as numpy arrays."""
    _, compiled = _compiled(path, threads)
    request = compiled.create_infer_request()
    outputs = list(compiled.outputs)

    def run(x: Any) -> list[Any]:
        result = request.infer({0: x.numpy() if hasattr(x, "numpy") else x})
        return [result[o].copy() for o in outputs]

    return run


def read_openvino_meta(path: str) -> str | None:
    """The ``lightplug.meta`` JSON text stored in an IR file (``None`` when it has none)."""
    import openvino as ov

    model = ov.Core().read_model(path)
    if not model.has_rt_info(["lightplug", "meta"]):
        return None
    return str(model.get_rt_info(["lightplug", "meta"]).astype(str))
