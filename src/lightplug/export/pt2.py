"""``torch.export`` programs (``.pt2``): ``torch.export.export`` (non-strict, the batch axis
``Dim.DYNAMIC`` when dynamic) saved with ``torch.export.save``, the ``lightplug.meta`` JSON as the extra
file ``lightplug.meta``. Reloaded with ``torch.export.load(...).module()``: the graph and weights only, so
the plugin's package is not needed to run it."""

from __future__ import annotations

import json
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
        torch.export.save(program, str(path), extra_files={"lightplug.meta": json.dumps(meta)})
    except Exception as exc:  # noqa: BLE001 - torch.export raises many types; each becomes one line
        raise ExportError(f"pt2: {first_line(exc)}") from exc
    return ["torch.export.export (non-strict) saved with torch.export.save"]


def load_pt2(path: str) -> tuple[Any, str]:
    """``(the program's module, its lightplug.meta JSON text)``."""
    import torch

    extra = {"lightplug.meta": ""}
    program = torch.export.load(path, extra_files=extra)
    return program.module(), extra["lightplug.meta"]


def pt2_runner(path: str) -> Any:
    """The program reloaded from disk, run in inference mode; returns numpy outputs."""
    import torch

    module, _ = load_pt2(path)

    def run(x: Any) -> list[Any]:
        with torch.inference_mode():
            return [t.numpy() for t in output_tensors(module(x))]

    return run
