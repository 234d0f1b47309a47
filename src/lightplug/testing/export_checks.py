"""The export checks of a model plugin: TorchScript and ONNX through ``lightplug export``'s own code path (write,
verify against eager PyTorch, reload), and who is to blame when a model's code cannot be exported.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

from .check import Fail, Skip
from .model_checks import ModelState, _max_diff, _needs, predictions

__all__ = ["torchscript_check", "onnx_check", "origin"]

_ATOL, _RTOL = 1e-4, 1e-3  # export tolerances, as `lightplug export` uses by default
_OPSET = 17  # as `lightplug export` uses by default


def _exported(st: ModelState) -> Any:
    """The module export traces: the plugin's ``export_module(net)``; a detector without one is not exported."""
    if type(st.plugin).overrides("export_module"):
        from ..export import ExportError

        try:
            return st.plugin.export_module(st.net).eval()
        except ExportError as exc:  # a model lightplug cannot export, by design (e.g. a two-stage detector): the reason
            raise Skip(str(exc)) from None
    if (st.loaded.task or "") == "detection":
        raise Skip("no export_module hook: a detector exports its raw head outputs through export_module(net)")
    return st.net


def torchscript_check(st: ModelState) -> str:
    """What ``lightplug export format=torchscript`` does: trace, check the trace on other batch sizes, save with
    the metadata, reload; so a plugin that passes here exports there."""
    import tempfile
    from pathlib import Path

    import torch

    from ..export import DYNAMIC_BATCHES, ExportError, exporters
    from ..export.verify import random_inputs

    _needs(st, "preds")
    if not hasattr(torch, "jit") or not hasattr(torch.jit, "trace"):
        raise Skip("this torch has no torch.jit")
    x = st.example
    net = exporters.prepare(_exported(st), x)
    others = [t for _, t in random_inputs(x, DYNAMIC_BATCHES, per_batch=1)]
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer warnings, for this block only
        path = Path(folder) / "model.pt"
        try:
            exporters.write_torchscript(net, x, path, others, {})
        except ExportError as exc:
            raise Fail(f"{str(exc).removeprefix('torchscript: ')}{origin(exc, st, export=True)}") from exc
        reloaded = torch.jit.load(str(path))
        with torch.no_grad():
            diff = max(_max_diff(predictions(net(t)), predictions(reloaded(t))) for t in (x, *others))
    if not diff <= _ATOL:
        raise Fail(f"the saved TorchScript module's outputs differ from eager by {diff:.3g} (atol {_ATOL:g})")
    batches = " and ".join(str(len(t)) for t in (x, *others))
    return f"torch.jit.trace, checked at batch {batches}, saved and reloaded; outputs match eager (max difference {diff:.2g})"


def onnx_check(st: ModelState) -> str:
    """What ``lightplug export format=onnx`` does: export with a dynamic batch axis, run the onnx checker, and compare
    onnxruntime with eager PyTorch on seeded inputs of batch 1 and 7; so a plugin that passes here exports there."""
    import tempfile
    from pathlib import Path

    import torch

    from ..export import DYNAMIC_BATCHES, ExportError, exporters, verify

    _needs(st, "preds")
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise Skip(f"{' and '.join(missing)} not installed (pip install 'lightplug[export]')")
    x = st.example
    net = exporters.prepare(_exported(st), x)
    inputs = verify.random_inputs(x, DYNAMIC_BATCHES, per_batch=1)
    eager = verify.eager_runner(net)
    reference = [eager(t) for _, t in inputs]
    inp, outs = exporters.describe_io(net, x, True)
    ref = st.loaded.ref
    meta = exporters.export_meta({"plugin": {"name": ref.name, "version": ref.version, "dist": ref.dist}, "task": st.loaded.task},
                                 inp, outs, _OPSET, True, "check-plugin")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        try:
            exporters.write_onnx(net, x, path, _OPSET, True, meta)
            verify.check_onnx_file(str(path), True)
            result = verify.verify("onnx", reference, verify.onnx_runner(str(path), torch.get_num_threads()), inputs, _ATOL, _RTOL)
        except ExportError as exc:
            raise Fail(f"{str(exc).removeprefix('onnx: ')}{origin(exc, st, export=True)}") from exc
    batches = " and ".join(str(d["batch"]) for d, _ in inputs)
    return (f"opset {_OPSET}, dynamic batch, onnx checker passed; onnxruntime matches eager at batch {batches} "
            f"(max difference {result['max_abs']:.2g}; atol {_ATOL:g}, rtol {_RTOL:g})")


def _frames(exc: BaseException) -> list[Any]:
    """The traceback frames of ``exc`` and of the exceptions it was raised from, innermost last."""
    import traceback

    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return [f for e in reversed(chain) for f in traceback.extract_tb(e.__traceback__)]


def origin(exc: BaseException, st: ModelState, export: bool = False) -> str:
    """Where a failure of the model's code comes from, e.g. ``; raised in timm 1.0.31 (timm/layers/pos_embed.py:46):
    a limit of the model's code, not of lightplug``. The model's code is the package (or single-file module) of its
    class: ``timm`` for a timm model, the plugin's own for a model it defines. The failure is the model's when a
    frame of that code raised it or, for export, when torch's exporter raised on what that code does (a mismatch
    found by the verification says so itself)."""
    import sys
    from importlib import metadata
    from pathlib import Path

    package = type(st.net).__module__.split(".")[0] if st.net is not None else ""
    file = Path(getattr(sys.modules.get(package), "__file__", "") or ".")
    home, root = (file.parent, file.parent.parent) if file.name == "__init__.py" else (file, file.parent)
    try:
        dist = metadata.packages_distributions().get(package, [package])[0]
        owner = f"{dist} {metadata.version(dist)}"
    except (metadata.PackageNotFoundError, IndexError):
        owner = package
    own = [f for f in _frames(exc) if package and Path(f.filename).is_relative_to(home)]
    raised_by_torch = export and exc.__cause__ is not None
    if not package or package == "lightplug" or not (own or raised_by_torch):
        return ""
    where = f"raised in {owner} ({Path(own[-1].filename).relative_to(root)}:{own[-1].lineno})" if own else \
        f"torch's exporter refused what {owner}'s {type(st.net).__name__} does"
    return f"; {where}: a limit of the model's code, not of lightplug"
