"""Any class or builder function of the ecosystem as a model plugin: ``model=torchvision.models:resnet18``.

:func:`read_callable` reads the callable's signature (:mod:`lightplug.signatures`) and a builder's ``**kwargs``
(:mod:`lightplug.builders`) into a schema; :func:`model_plugin_class` wraps it in a :class:`~lightplug.ModelPlugin`
subclass, with the task read from what it builds (torchvision's segmentation and detection models) and the
torchvision detection adapter (:mod:`lightplug.tv_detection`) for detectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .plugin import ModelPlugin
from .schema import Schema, _make_field
from .signatures import Argument, code_value, read_signature, takes_var_keywords

__all__ = ["CallableSpec", "read_callable", "model_plugin_class", "WEIGHTS_FILE", "torchvision_task"]

#: The field an import-path model gets for a local state_dict (``model.weights_file=PATH``).
WEIGHTS_FILE = "weights_file"


@dataclass
class CallableSpec:
    """A callable read as a plugin: its schema, how each value becomes an argument, and what it returns."""

    target: Any
    schema: Schema
    arguments: dict[str, Argument] = field(default_factory=dict)
    #: The class a builder function returns (its return annotation), or the class itself.
    returns: type | None = None

    def kwargs(self, values: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments for ``target``: fixed fields left out, enums and import paths resolved."""
        out: dict[str, Any] = {}
        for spec in self.schema.fields:
            if spec.name not in values:
                continue
            arg, value = self.arguments.get(spec.name, Argument()), values[spec.name]
            if arg.kind in ("fixed", "extra"):
                continue
            if arg.kind == "code":
                if value == spec.default:  # the callable's own default: nothing to import
                    continue
                value = code_value(value, f"model.{spec.name}", arg.accepts_str)
            elif arg.kind == "enum" and value is not None:
                value = arg.enum[value]
            elif arg.kind == "tuple" and isinstance(value, list):
                value = tuple(value)
            out[spec.name] = value
        return out

    def call(self, values: dict[str, Any]) -> Any:
        """``target(**kwargs(values))``."""
        return self.target(**self.kwargs(values))

    def problems(self, values: dict[str, Any]) -> list[str]:
        """What cannot be built from ``values``, found without building: weights whose file is not in the local
        cache, import paths that do not import (imported now: the user typed them)."""
        from .errors import ConfigError
        from .weights import weights_problem

        found = []
        for spec in self.schema.fields:
            arg, value = self.arguments.get(spec.name), values.get(spec.name)
            if arg is None or value is None:
                continue
            if arg.kind == "enum" and value in arg.enum.__members__:
                why = weights_problem(f"model.{spec.name}", arg.enum[value])
                found += [why] if why else []
            elif arg.kind == "code" and value != spec.default:
                try:
                    code_value(value, f"model.{spec.name}", arg.accepts_str)
                except ConfigError as exc:
                    found.append(str(exc))
        return found

    def checks_anything(self) -> bool:
        """Whether :meth:`problems` has anything to look at (enums or import paths)."""
        return any(a.kind in ("enum", "code") for a in self.arguments.values())


def read_callable(obj: Any, where: str, group: str = "model", extras: bool = False) -> CallableSpec:
    """Read a class (its ``__init__``) or a builder function; a builder's ``**kwargs`` are read from the class it
    returns (:func:`lightplug.builders.forwarded_fields`).

    Args:
        obj: the class or function.
        where: names it in messages.
        group: the fields' group.
        extras: add lightplug's own ``weights_file`` field (a local state_dict, loaded after the build).

    Example:
        >>> import torchvision  # doctest: +SKIP
        >>> read_callable(torchvision.models.resnet18, "resnet18").schema["num_classes"].default  # doctest: +SKIP
        1000
    """
    from .builders import forwarded_fields, return_class

    fn = obj.__init__ if isinstance(obj, type) else obj  # type: ignore[misc]
    schema, arguments = read_signature(fn, where, group)
    returns: type | None = obj if isinstance(obj, type) else return_class(obj)
    if not isinstance(obj, type) and takes_var_keywords(fn):
        returns, forwarded = forwarded_fields(obj, schema, arguments, where, group)
        for spec, arg in forwarded:
            schema.fields.append(spec)
            arguments[spec.name] = arg
    if extras and WEIGHTS_FILE not in schema.names():
        spec = _make_field(WEIGHTS_FILE, Optional[str], None, where, group)
        spec.help = "a local state_dict (.pt, .pth, .safetensors) loaded after the build; tensors of another number of classes stay as built"
        schema.fields.append(spec)
        arguments[WEIGHTS_FILE] = Argument("extra")
    return CallableSpec(obj, schema, arguments, returns)


def torchvision_task(cls: type | None) -> str | None:
    """``segmentation`` or ``detection`` for torchvision's models of those kinds, else None."""
    module = getattr(cls, "__module__", "") or ""
    if module.startswith("torchvision.models.segmentation"):
        return "segmentation"
    if module.startswith("torchvision.models.detection"):
        return "detection"
    return None


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0].strip()


def model_plugin_class(obj: Any, where: str, extras: bool = False) -> tuple[type, Schema]:
    """A :class:`~lightplug.ModelPlugin` subclass that builds ``obj`` (an ``nn.Module`` class or a function
    returning one) from config values, and its schema.

    Args:
        obj: the class or function.
        where: names it in messages.
        extras: add the ``weights_file`` field (import paths: a local state_dict loaded after the build).
    """
    spec = read_callable(obj, where, "model", extras=extras)
    task = getattr(obj, "task", None) or torchvision_task(spec.returns) or "classification"
    attrs: dict[str, Any] = {
        "task": task,
        "presets": dict(getattr(obj, "presets", {}) or {}),
        "description": _first_line(obj.__doc__),
        "callable_spec": spec,
        "loads_weights_file": WEIGHTS_FILE in spec.arguments and spec.arguments[WEIGHTS_FILE].kind == "extra",
        "build": lambda self, cfg: spec.call(cfg),
        "__module__": getattr(obj, "__module__", __name__),
        "__doc__": obj.__doc__,
    }
    if spec.checks_anything():
        attrs["check"] = lambda self, cfg: spec.problems(cfg)
    bases: tuple[type, ...] = (ModelPlugin,)
    if task == "detection" and torchvision_task(spec.returns) == "detection":
        from .tv_detection import TorchvisionDetector, adapt_schema

        attrs.update(adapt_schema(spec, where))
        bases = (TorchvisionDetector,)
        attrs.pop("build")
    return type(getattr(obj, "__name__", "Plugin"), bases, attrs), spec.schema
