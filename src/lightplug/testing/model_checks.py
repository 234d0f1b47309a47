"""The contract checks of a model plugin: build, forward shape, a training step, state_dict, TorchScript, ONNX.

Each check is a function that returns the reason it passed, or raises :class:`~.check.Fail` /
:class:`~.check.Skip`. They share one :class:`ModelState` so that the network is built once.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..registry import LoadedPlugin
from .check import Fail, Skip, config_values, describe_exception, missing_values, preset_values, run_check, schema_check
from .report import CheckReport, CheckResult
from .task_rules import detection_rule, shape_rule, targets

__all__ = ["BATCH", "ModelState", "planned_model_checks", "run_model_checks", "example_input", "predictions"]

#: Batch size of the example input (above 1, so batch norm can train on it).
BATCH = 4


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
                     on_result: Callable[[CheckReport, CheckResult], None] | None = None, checks: Collection[str] | None = None) -> None:
    """Run every model check in order (or only those named in ``checks``), appending one result per check to ``report``."""
    from .export_checks import onnx_check, torchscript_check

    st = ModelState(loaded, dict(overrides))

    def run(name: str, fn: Callable[[], str]) -> None:
        run_check(report, name, fn if checks is None or name in checks else _not_selected, on_result)

    run("schema", lambda: schema_check(loaded, overrides))
    run("build", lambda: _build(st))
    for preset in loaded.schema.presets:
        run(f"build:{preset}", lambda p=preset: _build_preset(st, p))  # type: ignore[misc]
    for name, fn in (("forward", _forward), ("backward", _backward), ("state_dict", _state_dict), ("torchscript", torchscript_check), ("onnx", onnx_check)):
        run(name, lambda f=_attributed(fn): f(st))  # type: ignore[misc]


def _not_selected() -> str:
    raise Skip("not selected")


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
    """Build with the preset as ``lightplug train +preset=NAME`` would: the given values win, and a preset value the
    plugin's check refuses for them is left out; a preset that changes nothing is not built twice."""
    values, dropped = preset_values(st.loaded, st.overrides, preset)
    kept = {k: v for k, v in st.loaded.schema.presets[preset].items() if k not in st.overrides and values.get(k) == v}
    left = "".join(f"; {note}" for note in dropped)
    changed = " ".join(f"{k}={v}" for k, v in kept.items())
    if values == st.values:
        given = " ".join(f"{k}={st.overrides[k]}" for k in st.loaded.schema.presets[preset] if k in st.overrides)
        why = "; ".join(([f"given: {given}"] if given else []) + dropped)
        return f"{changed + ': ' if changed else ''}the same config as build, not built again{f' ({why})' if why else ''}"
    _, net = _make(st.loaded, values)
    base = f" (defaults: {_size(st.net)})" if st.net is not None else ""
    return f"{changed} -> {type(net).__name__}, {_size(net)}{base}{left}"


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


def _attributed(check: Callable[[ModelState], str]) -> Callable[[ModelState], str]:
    """``check``, with an exception from the model's code reported as the model's (see :func:`.export_checks.origin`)."""
    from .export_checks import origin

    def run(st: ModelState) -> str:
        try:
            return check(st)
        except (Fail, Skip):
            raise
        except Exception as exc:  # noqa: BLE001 - plugin code may raise anything
            raise Fail(f"raised {describe_exception(exc)}{origin(exc, st)}") from exc

    return run
