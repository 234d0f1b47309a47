"""``torch.export`` programs (``.pt2``): ``torch.export.export`` (non-strict, the batch axis
``Dim.DYNAMIC`` when dynamic) saved with ``torch.export.save``, the ``lightplug.meta`` JSON as the extra
file ``lightplug.meta``. Reloaded with ``torch.export.load(...).module()``: the graph and weights only, so
the plugin's package is not needed to run it. Loading forces weights-only unpickling
(``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` for the duration of the call): ``torch.export.load`` would otherwise fall
back to the full unpickler for a file the safe one refuses."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._util import first_line
from .report import ExportError
from .verify import output_tensors

__all__ = ["write_pt2", "pt2_runner", "load_pt2"]


def write_pt2(net: Any, example: Any, path: Path, dynamic_batch: bool, meta: dict[str, Any]) -> list[str]:
    """Export ``net`` on ``example`` and save the ExportedProgram.

    Raises:
        ExportError: ``pt2: <cause>`` (data-dependent control flow, an unsupported operator, ...).
    """
    import torch

    from ._util import expected_warnings_ignored

    dynamic = ({0: torch.export.Dim.DYNAMIC},) if dynamic_batch else None
    try:
        with expected_warnings_ignored(), torch.no_grad():
            program = torch.export.export(net, (example,), dynamic_shapes=dynamic, strict=False)
        buffer = io.BytesIO()  # saved through a buffer: a file's name becomes the archive's folder, and this one is temporary
        torch.export.save(program, buffer, extra_files={"lightplug.meta": json.dumps(meta)})
        path.write_bytes(buffer.getvalue())
    except Exception as exc:  # noqa: BLE001 - torch.export raises many types; each becomes one line
        raise ExportError(f"pt2: {first_line(exc)}") from exc
    return ["torch.export.export (non-strict) saved with torch.export.save"]


@contextlib.contextmanager
def _weights_only() -> Iterator[None]:
    """Inside the block every ``torch.load`` is ``weights_only=True``: ``torch.export.load`` otherwise falls back
    to a full unpickler (which can run any code a file holds) when the weights-only one refuses a file's
    constants, and a ``.pt2`` file is as untrusted as any other."""
    saved = {k: os.environ.pop(k, None) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_pt2(path: str) -> tuple[Any, str]:
    """``(the program's module, its lightplug.meta JSON text)``, read with weights-only unpickling."""
    import logging

    import torch

    extra = {"lightplug.meta": ""}
    quiet = logging.getLogger("torch._export.serde.serialize")
    level, quiet.level = quiet.level, logging.ERROR  # its "fallback" warning names a fallback that is not allowed here
    try:
        with _weights_only():
            program = torch.export.load(path, extra_files=extra)
    finally:
        quiet.setLevel(level)
    return program.module(), extra["lightplug.meta"]


def pt2_runner(path: str) -> Any:
    """The program reloaded from disk, run in inference mode; returns numpy outputs."""
    import torch

    module, _ = load_pt2(path)

    def run(x: Any) -> list[Any]:
        with torch.inference_mode():
            return [t.numpy() for t in output_tensors(module(x))]

    return run
