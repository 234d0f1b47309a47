"""The contract checks of a model plugin: build, forward shape, a training step, state_dict, TorchScript, ONNX.

Each check is a function that returns the reason it passed, or raises :class:`~.check.Fail` /
:class:`~.check.Skip`. They share one :class:`ModelState` so that the network is built once.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..registry import LoadedPlugin
from .check import Fail, Skip, config_values, missing_values, run_check, schema_check
from .report import CheckReport, CheckResult
from .task_rules import detection_rule, shape_rule, targets

__all__ = ["BATCH", "ModelState", "planned_model_checks", "run_model_checks", "example_input", "predictions"]

#: Batch size of the example input (above 1, so batch norm can train on it).
BATCH = 4
_ATOL, _RTOL = 1e-4, 1e-3  # export tolerances, as `lightplug export` uses by default


@dataclass
class ModelState:
    """What the checks of one model share: the plugin, its values, the built network and the example input."""

    loaded: LoadedPlugin
    overrides: dict[str, Any]
    plugin: Any = None
    net: Any = None
    example: Any = None
    preds: Any = None

    @property
    def values(self) -> dict[str, Any]:
        return config_values(self.loaded.schema, self.overrides)


def planned_model_checks(loaded: LoadedPlugin) -> list[str]:
    """The checks of a model after ``load``: one ``build:PRESET`` per preset."""
    return ["schema", "build", *[f"build:{p}" for p in loaded.schema.presets], "forward", "backward", "state_dict", "torchscript", "onnx"]


def run_model_checks(report: CheckReport, loaded: LoadedPlugin, overrides: Mapping[str, Any],
                     on_result: Callable[[CheckReport, CheckResult], None] | None = None) -> None:
    """Run every model check in order, appending one result per check to ``report``."""
    st = ModelState(loaded, dict(overrides))
    run_check(report, "schema", lambda: schema_check(loaded, overrides), on_result)
    run_check(report, "build", lambda: _build(st), on_result)
    for preset in loaded.schema.presets:
        run_check(report, f"build:{preset}", lambda p=preset: _build_preset(st, p), on_result)  # type: ignore[misc]
    for name, fn in (("forward", _forward), ("backward", _backward), ("state_dict", _state_dict), ("torchscript", _torchscript), ("onnx", _onnx)):
        run_check(report, name, lambda f=fn: f(st), on_result)  # type: ignore[misc]


# ---------------------------------------------------------------- helpers
def _make(loaded: LoadedPlugin, values: dict[str, Any]) -> tuple[Any, Any]:
    """Instantiate the plugin with ``values`` and build its network; refuse anything but an ``nn.Module``."""
    from torch import nn

    missing = missing_values(values)
    if missing:
        raise Fail(f"cannot build: no value for {', '.join(missing)}")
    plugin = loaded.instantiate(values)
    net = plugin.build(plugin.cfg)
    if not isinstance(net, nn.Module):
        raise Fail(f"build() returned {type(net).__name__}, not a torch.nn.Module")
    return plugin, net


def _size(net: Any) -> str:
    return f"{sum(p.numel() for p in net.parameters()):,} parameters"


def example_input(plugin: Any, values: Mapping[str, Any], batch: int = BATCH, net: Any = None) -> Any:
    """The plugin's ``example_input(cfg)`` when it has one, else a seeded random batch shaped by its fields:
    ``(batch, in_features)`` when it has ``in_features`` and no ``in_channels``, else
    ``(batch, in_channels or 1, image_size or 8, image_size or 8)`` (images of detection and segmentation
    models: 3 channels, detection: 32 pixels, unless the fields say otherwise). timm's ``in_chans`` and
    ``img_size`` count as ``in_channels`` and ``image_size``.

    With ``net`` (a model whose fields give no channels or size, such as torchvision's): the channels of its first
    convolution, and the smallest of 8, 16, 32, 64, 128, 224 and 299 pixels that a forward in training mode takes.
    """
    import torch

    if type(plugin).overrides("example_input"):
        x = plugin.example_input(plugin.cfg)
        if not torch.is_tensor(x):
            raise Fail(f"example_input() returned {type(x).__name__}, not a tensor")
        return x
    gen = torch.Generator().manual_seed(0)
    if "in_features" in values and "in_channels" not in values:
        return torch.randn(batch, int(values["in_features"]), generator=gen)
    task = getattr(plugin, "task", "")
    given_size = values.get("image_size") or values.get("img_size")
    given_channels = values.get("in_channels") or values.get("in_chans")
    channels = int(given_channels or _first_conv_channels(net) or (3 if task in ("detection", "segmentation") else 1))
    size = int(given_size or (32 if task == "detection" else 8))
    if net is not None and not given_size and task != "detection":
        size = _fitting_size(net, batch, channels) or size
    return torch.randn(batch, channels, size, size, generator=gen)


def _first_conv_channels(net: Any) -> int | None:
    from torch import nn

    if net is None:
        return None
    conv = next((m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Conv1d))), None)
    return int(conv.in_channels) if conv is not None else None


def _fitting_size(net: Any, batch: int, channels: int) -> int | None:
    """The smallest of a few square sizes that ``net`` takes in training mode (aux heads need more than eval)."""
    import torch

    was_training = net.training
    net.train()
    try:
        for size in (8, 16, 32, 64, 128, 224, 299):
            try:
                with torch.no_grad():
                    net(torch.zeros(batch, channels, size, size))
                return size
            except Exception:  # noqa: BLE001 - too small for this architecture: try the next size
                continue
        return None
    finally:
        net.train(was_training)


def predictions(outputs: Any) -> Any:
    """The predictions in what a model returned (without an auxiliary loss)."""
    from ..module import split_outputs

    return split_outputs(outputs)[0]


def _tensors(obj: Any) -> list[Any]:
    import torch

    if torch.is_tensor(obj):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    return []


def _max_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two outputs (of the same structure); inf when they do not line up."""
    ta, tb = _tensors(a), _tensors(b)
    if len(ta) != len(tb) or not ta or any(x.shape != y.shape for x, y in zip(ta, tb, strict=True)):
        return float("inf")
    return max(float((x.detach().float() - y.detach().float()).abs().max()) if x.numel() else 0.0 for x, y in zip(ta, tb, strict=True))


def _needs(st: ModelState, what: str) -> None:
    if what == "net" and st.net is None:
        raise Skip("needs a passing build check")
    if what == "preds" and st.preds is None:
        raise Skip("needs a forward pass that returns predictions")


# ---------------------------------------------------------------- checks
def _build(st: ModelState) -> str:
    st.plugin, st.net = _make(st.loaded, st.values)
    return f"defaults -> {type(st.net).__name__}, {_size(st.net)}"


def _build_preset(st: ModelState, preset: str) -> str:
    values = config_values(st.loaded.schema, st.overrides, preset)
    _, net = _make(st.loaded, values)
    changed = " ".join(f"{k}={v}" for k, v in st.loaded.schema.presets[preset].items())
    base = f" (defaults: {_size(st.net)})" if st.net is not None else ""
    return f"{changed} -> {type(net).__name__}, {_size(net)}{base}"


def _forward(st: ModelState) -> str:
    import torch

    _needs(st, "net")
    x = example_input(st.plugin, st.values, net=st.net)
    st.net.eval()
    with torch.no_grad():
        preds = predictions(st.net(x))
    if preds is None:
        raise Fail("forward(input) in eval mode returned only losses; it must return predictions")
    st.example, st.preds = x, preds  # the later checks can run even when the shape is wrong
    task = st.loaded.task or "classification"
    rule = detection_rule(st.plugin, x, preds) if task == "detection" else shape_rule(task, st.values, x, preds)
    bad = [t for t in _tensors(preds) if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise Fail("the outputs hold nan or inf")
    out = tuple(preds.shape) if torch.is_tensor(preds) else type(preds).__name__
    return f"input {tuple(x.shape)} -> output {out} = {rule}"


def _all_optimizers(obj: Any) -> list[Any]:
    """Every optimizer in anything ``configure_optimizers`` may return (one, a list, dicts, ``(optimizers, schedulers)``)."""
    import torch

    if isinstance(obj, torch.optim.Optimizer):
        return [obj]
    if isinstance(obj, dict):
        return _all_optimizers(obj.get("optimizer"))
    if isinstance(obj, (list, tuple)):
        if len(obj) == 2 and isinstance(obj[0], (list, tuple)):  # ([optimizers], [schedulers])
            return _all_optimizers(obj[0])
        return [opt for item in obj for opt in _all_optimizers(item)]
    return []


def _optimizers(plugin: Any, net: Any) -> list[Any]:
    """The optimizers training would use: the plugin's ``configure_optimizers`` or ``param_groups``, else Adam."""
    from ..optim import build_optimizer

    cfg = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}
    if type(plugin).overrides("configure_optimizers"):
        found = _all_optimizers(plugin.configure_optimizers(net, cfg))
        if not found:
            raise Fail("configure_optimizers() returned no torch.optim.Optimizer (alone, in a list or under 'optimizer')")
        return found
    params = plugin.param_groups(net, cfg) if type(plugin).overrides("param_groups") else net.parameters()
    return [build_optimizer(params, cfg)]


def _backward(st: ModelState) -> str:
    import torch

    from ..module import PluginModule

    _needs(st, "preds")
    task = st.loaded.task or "classification"
    net, plugin = st.net, st.plugin
    before = {n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad}
    if not before:
        raise Fail("the model has no trainable parameters")
    preds, x = st.preds, st.example
    facts = {"num_classes": int(preds.shape[1]) if torch.is_tensor(preds) and preds.ndim >= 2 else 2,
             "num_outputs": int(preds.shape[1]) if torch.is_tensor(preds) and preds.ndim == 2 else 1}
    module = PluginModule(net, plugin, {"facts": facts, "loss": {}}, {"task": task})
    module.train()
    batch = {"input": x, "target": targets(task, preds, x), "index": torch.arange(len(x))}
    optimizers = _optimizers(plugin, net)
    names = " + ".join(type(o).__name__ for o in optimizers)
    for opt in optimizers:
        opt.zero_grad()
    _, loss, _ = module.compute(batch)
    if not torch.is_tensor(loss) or loss.ndim != 0:
        raise Fail(f"the loss is {type(loss).__name__} of shape {tuple(getattr(loss, 'shape', ()))}, not a scalar tensor")
    value = float(loss.detach())
    if not torch.isfinite(loss.detach()):
        raise Fail(f"the loss is {value}")
    if not loss.requires_grad:
        raise Fail("the loss does not depend on any trainable parameter (no gradient)")
    loss.backward()
    for opt in optimizers:
        opt.step()
    net.eval()
    stepped = {id(p) for opt in optimizers for group in opt.param_groups for p in group["params"]}
    changed = [n for n, p in net.named_parameters() if n in before and not torch.equal(before[n], p.detach())]
    if not changed:
        raise Fail(f"one step of {names} changed no weight (loss {value:.4g})")
    reason = f"loss {value:.4g}; one step of {names} changed {len(changed)}/{len(before)} weight tensors"
    unchanged = [(n, p) for n, p in net.named_parameters() if n in before and n not in changed]
    why = {"no gradient reached": [n for n, p in unchanged if p.grad is None],
           "not in any optimizer": [n for n, p in unchanged if p.grad is not None and id(p) not in stepped],
           "zero gradient on this batch (e.g. zero-initialised branches)": [n for n, p in unchanged if p.grad is not None and id(p) in stepped]}
    for text, which in why.items():
        if which:
            reason += f"; {len(which)} unchanged, {text}: {', '.join(which[:2])}{' ...' if len(which) > 2 else ''}"
    if type(plugin).overrides("training_step"):
        reason += " (its own training_step runs only in a real fit: train_plugin_once)"
    return reason


def _state_dict(st: ModelState) -> str:
    import torch

    _needs(st, "preds")
    buf = io.BytesIO()
    torch.save(st.net.state_dict(), buf)
    buf.seek(0)
    try:
        state = torch.load(buf, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the unpickler says is the reason
        raise Fail(f"the state_dict holds objects torch.load(weights_only=True) refuses: {str(exc).splitlines()[0][:200]}") from exc
    _, fresh = _make(st.loaded, st.values)
    try:
        fresh.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise Fail(f"a fresh build does not take the saved weights: {' '.join(str(exc).split())[:300]}") from exc
    st.net.eval()
    fresh.eval()
    with torch.no_grad():
        diff = _max_diff(predictions(st.net(st.example)), predictions(fresh(st.example)))
    if diff > 1e-6:
        raise Fail(f"a fresh build with the saved weights gives other outputs (max difference {diff:.3g})")
    return f"{len(state)} tensors saved, loaded with weights_only=True into a fresh build; outputs identical"


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


def _torchscript(st: ModelState) -> str:
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
            raise Fail(str(exc).removeprefix("torchscript: ")) from None
        reloaded = torch.jit.load(str(path))
        with torch.no_grad():
            diff = max(_max_diff(predictions(net(t)), predictions(reloaded(t))) for t in (x, *others))
    if not diff <= _ATOL:
        raise Fail(f"the saved TorchScript module's outputs differ from eager by {diff:.3g} (atol {_ATOL:g})")
    batches = " and ".join(str(len(t)) for t in (x, *others))
    return f"torch.jit.trace, checked at batch {batches}, saved and reloaded; outputs match eager (max difference {diff:.2g})"


def _onnx(st: ModelState) -> str:
    import numpy as np
    import torch

    _needs(st, "preds")
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise Skip(f"{' and '.join(missing)} not installed (pip install 'lightplug[export]')")
    import onnx
    import onnxruntime as ort

    net, x = _exported(st), st.example
    with torch.no_grad():
        outs = _tensors(net(x))
    names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]
    axes = {"input": {0: "batch"}, **{n: {0: "batch"} for n, t in zip(names, outs, strict=True) if t.ndim}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its own deprecation
        try:
            torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=17, input_names=["input"], output_names=names,  # type: ignore[arg-type]
                              dynamic_axes=axes)
        except Exception as exc:  # noqa: BLE001
            raise Fail(f"torch.onnx.export(dynamo=False, opset 17) failed: {_first_line(exc)}") from None
    onnx.checker.check_model(onnx.load_from_string(buf.getvalue()))
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    checked = []
    for inp in (x, torch.cat([x, x[:1]])):
        with torch.no_grad():
            want = _tensors(predictions(net(inp)))[0].float().numpy()
        try:
            got = session.run(None, {session.get_inputs()[0].name: inp.numpy()})[0]
        except Exception as exc:  # noqa: BLE001
            raise Fail(f"onnxruntime failed at batch {len(inp)}: {_first_line(exc)}") from None
        if got.shape != want.shape or not np.allclose(got, want, atol=_ATOL, rtol=_RTOL):
            diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
            raise Fail(f"onnxruntime output at batch {len(inp)} differs from eager (max difference {diff:.3g}, atol {_ATOL:g}, rtol {_RTOL:g})")
        checked.append(str(len(inp)))
    return f"opset 17, onnx checker passed; onnxruntime matches eager at batch {' and '.join(checked)} (atol {_ATOL:g}, rtol {_RTOL:g})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
