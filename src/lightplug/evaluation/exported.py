"""Predictors for the files ``lightplug export`` writes besides ONNX: an OpenVINO IR (``.xml`` + ``.bin``), a
``torch.export`` program (``.pt2``) and a TorchScript module (``.pt``). Each reads the ``lightplug.meta`` JSON
the export stored in it (preprocessing, labels, task, raw output layout) as data; the plugin's code is not
needed or loaded. A file without that metadata, or with metadata that is not a JSON object, is refused in one line.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError
from .inference import META_KEY_NAME, RawOutputPredictor, checked_meta

__all__ = ["OpenVinoPredictor", "ProgramPredictor", "is_torchscript_export", "parse_meta"]


def parse_meta(text: str | None, path: str | Path) -> dict[str, Any]:
    """The ``lightplug.meta`` JSON of an exported file as a dict.

    Raises:
        CheckpointError: none there, not JSON, or not an object.
    """
    if not text:
        raise CheckpointError(f"model={path}: no {META_KEY_NAME!r} metadata, so its preprocessing and labels are unknown",
                              hint="export it with `lightplug export`")
    return checked_meta(text, path, META_KEY_NAME)


def is_torchscript_export(path: str | Path) -> bool:
    """Whether ``path`` is a zip archive holding the ``extra/lightplug.meta`` that ``lightplug export`` writes
    into TorchScript files (a checkpoint has none)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith(f"/extra/{META_KEY_NAME}") for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _declared(meta: dict[str, Any]) -> list[Any] | None:
    shape = (meta.get("input") or {}).get("shape")
    return list(shape) if isinstance(shape, list) else None


class OpenVinoPredictor(RawOutputPredictor):
    """An OpenVINO IR written by ``lightplug export format=openvino``, compiled for the CPU (f32)."""

    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"model={path}: no such OpenVINO IR file")
        with p.open("rb") as f:
            head = f.read(4096)
        if b"<net" not in head:  # otherwise OpenVINO tries every frontend on it, and they log to stderr
            raise CheckpointError(f"model={path}: not an OpenVINO IR (no <net> element at its start)")
        try:
            import openvino as ov
        except ImportError as exc:
            raise CheckpointError(f"model={path}: an OpenVINO IR needs the package openvino (pip install 'lightplug[export]')") from exc
        try:
            core = ov.Core()
            model = core.read_model(str(p))
            text = str(model.get_rt_info(["lightplug", "meta"]).astype(str)) if model.has_rt_info(["lightplug", "meta"]) else None
            self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own errors for any bad file
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith(("Exception from", "Check "))]
            raise CheckpointError(f"model={path}: OpenVINO cannot load it: {(lines[-1] if lines else type(exc).__name__)[:200]}") from exc
        self.meta = parse_meta(text, path)
        self.declared = _declared(self.meta)
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: batch})
        return np.asarray(result[self.compiled.outputs[0]]).copy()


class ProgramPredictor(RawOutputPredictor):
    """A ``torch.export`` program (``.pt2``) or a TorchScript module (``.pt``) written by ``lightplug export``."""

    def __init__(self, path: str | Path, kind: str) -> None:
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"model={path}: no such file")
        if not zipfile.is_zipfile(p):
            raise CheckpointError(f"model={path}: not a {'torch.export' if kind == 'pt2' else 'TorchScript'} file (not a zip archive)")
        try:
            if kind == "pt2":
                from ..export.pt2 import load_pt2

                self.module, text = load_pt2(str(p))
            else:
                import torch

                from ..export._util import expected_warnings_ignored

                extra = {META_KEY_NAME: ""}
                with expected_warnings_ignored():
                    self.module = torch.jit.load(str(p), map_location="cpu", _extra_files=extra).eval()
                text = extra[META_KEY_NAME]
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
            what = "torch.export.load" if kind == "pt2" else "torch.jit.load"
            raise CheckpointError(f"model={path}: {what} cannot load it: {str(exc).strip().splitlines()[0][:200]}") from exc
        self.meta = parse_meta(text, path)
        self.declared = _declared(self.meta)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        from ..export.verify import output_tensors

        with torch.inference_mode():
            return output_tensors(self.module(torch.from_numpy(batch)))[0].float().numpy()
