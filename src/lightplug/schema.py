"""A plugin's settings as data: read from a signature or a dataclass, checked, and turned into
JSON Schema or a structured config for Hydra.

A :class:`Schema` is plain data (it round-trips through JSON), so the registry can cache it and the
CLI can validate a command line without importing the plugin, torch or lightning.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from .errors import PluginError
from .field_rules import complete_rules, name_kind
from .plugin import DATA_FACTS, FACT_ALIASES, ImportPath, Param

__all__ = ["FieldSpec", "Schema", "schema_from_dataclass", "check_values", "fixed_field", "Unexpressible"]

_SCALARS: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
_JSON_TYPES = {"int": "integer", "float": "number", "number": "number", "str": "string", "bool": "boolean", "code": "string"}
_MISSING = "???"


@dataclass
class FieldSpec:
    """One setting: its type (``int``, ``float``, ``number`` (int or float, kept as given), ``str``, ``bool``,
    ``list[...]`` of those, or ``code``: an import path to a class or function), default and rules.

    ``bind`` names the data fact (``num_classes``, ...) the field takes from the selected data unless set.
    ``min_items``/``max_items`` bound a list's length; ``finite`` refuses ``inf``; ``inferred`` says that the
    bounds come from the field's name (:mod:`lightplug.field_rules`), not from the plugin.
    ``fixed``: a parameter whose type no config can hold (a callable object, a nested list, any object); it keeps
    the value its code gives it, and ``default`` is that value's text (its import path, else its ``repr``).
    """

    name: str
    type: str
    default: Any = _MISSING
    optional: bool = False
    choices: list[Any] | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    help: str = ""
    group: str = "model"
    advanced: bool = False
    structural: bool = True
    bind: str | None = None
    min_items: int | None = None
    max_items: int | None = None
    finite: bool = True
    inferred: bool = False
    fixed: bool = False

    @property
    def item_type(self) -> str:
        """The scalar type of the field, or of its items for a list."""
        return self.type[5:-1] if self.type.startswith("list[") else self.type

    def help_text(self) -> str:
        """The help line, or for a field without one whose bounds come from its name, that rule."""
        return self.help or (f"named like {name_kind(self.name, self.type)}: {self.rule()}" if self.inferred else "")

    def rule(self) -> str:
        """The field's constraints in words, e.g. ``"int in [8, 512]"``."""
        if self.fixed:
            return "fixed: kept at its default"
        parts = [self.type + (" or null" if self.optional else "")]
        if self.choices is not None:
            parts.append("one of " + ", ".join(map(str, self.choices)))
        low = f"[{_num(self.ge)}" if self.ge is not None else (f"({_num(self.gt)}" if self.gt is not None else None)
        high = f"{_num(self.le)}]" if self.le is not None else (f"{_num(self.lt)})" if self.lt is not None else None)
        if self.min_items is not None or self.max_items is not None:
            parts.append(f"of {_items(self.min_items, self.max_items)}")
        if low or high:
            parts.append(f"in {low or '(-inf'}, {high or 'inf)'}")
        return " ".join(parts)


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


@dataclass
class Schema:
    """All settings of one plugin, in declaration order, plus its presets."""

    fields: list[FieldSpec]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in self.fields}

    def to_dict(self) -> dict[str, Any]:
        return {"fields": [dataclasses.asdict(f) for f in self.fields], "presets": self.presets}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        return cls([FieldSpec(**f) for f in data["fields"]], dict(data.get("presets", {})))

    def json_schema(self, title: str, description: str = "", extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JSON Schema (draft 2020-12) of the settings, with ``x-`` keys for group, help and presets."""
        props: dict[str, Any] = {}
        for f in self.fields:
            item: dict[str, Any] = {"type": _JSON_TYPES[f.item_type]}
            if f.choices is not None:
                item["enum"] = list(f.choices)
            for key, js in (("ge", "minimum"), ("gt", "exclusiveMinimum"), ("le", "maximum"), ("lt", "exclusiveMaximum")):
                if getattr(f, key) is not None:
                    item[js] = getattr(f, key)
            prop: dict[str, Any] = {"type": "array", "items": item} if f.type.startswith("list[") else dict(item)
            prop.update({js: n for js, n in (("minItems", f.min_items), ("maxItems", f.max_items)) if n is not None})
            prop.update({"x-finite": False} if not f.finite else {}, **({"x-inferred-bounds": True} if f.inferred else {}))
            if f.optional:
                prop["type"] = [prop["type"], "null"]
            if f.default != _MISSING:
                prop["default"] = f.default
            prop.update({"title": f.name, "description": f.help_text(), "x-group": f.group, "x-advanced": f.advanced})
            if f.bind:
                prop["x-bound-to"] = f"data.{f.bind}"
            if f.type == "code":
                prop["x-import-path"] = True  # pkg.mod:Name or pkg.mod.Name
            if f.fixed:
                prop.update({"readOnly": True, "x-fixed": True})  # default: the value's import path or repr
            props[f.name] = prop
        out = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": title,
            "description": description,
            "type": "object",
            "properties": props,
            "additionalProperties": False,
            "x-presets": self.presets,
        }
        out.update(extra or {})
        return out

    def validate_presets(self, owner: str) -> None:
        """Refuse presets that name unknown fields or break a rule."""
        for preset, values in self.presets.items():
            if not isinstance(values, dict):
                raise PluginError(f"{owner}: preset {preset!r} must be a dict of field values")
            problems = check_values(self, values, prefix=f"presets.{preset}", owner=owner, partial=True)
            if problems:
                raise PluginError(f"{owner}: invalid preset {preset!r}: {problems[0]}")


# ---------------------------------------------------------------- reading types
def _parse_type(tp: Any, where: str) -> tuple[str, bool, list[Any] | None, Param | None]:
    """Map a Python annotation to (type name, optional, choices, Param)."""
    param: Param | None = None
    if get_origin(tp) is typing.Annotated:
        tp, *meta = get_args(tp)
        param = next((m for m in meta if isinstance(m, Param)), None)
    optional = False
    if get_origin(tp) in (Union, getattr(__import__("types"), "UnionType", Union)):
        args = [a for a in get_args(tp) if a is not type(None)]
        if set(args) == {int, float}:  # a count or a fraction (e.g. limit_val_batches): kept as written
            return "number", len(args) != len(get_args(tp)), None, param
        scalar = _scalar_or_sequence(args)
        if scalar is not None:  # int | tuple[int, int] (timm's img_size, kernel sizes): the scalar form
            return scalar.__name__, len(args) != len(get_args(tp)), None, param
        if len(args) != 1 or len(args) == len(get_args(tp)):
            raise Unexpressible(f"{where}: unsupported union type {tp!r}; use one type or Optional[type]")
        tp, optional = args[0], True
    if tp is ImportPath:
        return "code", optional, None, param
    choices: list[Any] | None = None
    if get_origin(tp) is Literal:
        choices = list(get_args(tp))
        kinds = {type(c) for c in choices}
        if len(kinds) != 1 or next(iter(kinds)) not in (int, float, str, bool):
            raise PluginError(f"{where}: Literal choices must all be int, float, str or bool, got {choices!r}")
        return next(iter(kinds)).__name__, optional, choices, param
    if tp in (int, float, str, bool):
        return tp.__name__, optional, choices, param
    if get_origin(tp) in (list, tuple, typing.List, typing.Sequence) or tp in (list, tuple):  # noqa: UP006
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner, _, inner_choices, _ = _parse_type(args[0], where) if args else ("", False, None, None)
        if inner not in _SCALARS:
            raise Unexpressible(f"{where}: list items must be int, float, str or bool, got {tp!r}")
        return f"list[{inner}]", optional, inner_choices, param
    raise Unexpressible(f"{where}: unsupported type {tp!r}; use int, float, str, bool, Literal[...] or a list of those")


class Unexpressible(PluginError):
    """A type no config value can have (a class, a callable, a nested list, any object)."""


def _scalar_or_sequence(args: list[Any]) -> type | None:
    """``T`` for ``T | Sequence[T]`` (``int | tuple[int, int]``, ``int | tuple[int, ...]``), else None."""
    scalars = [a for a in args if a in (int, float, str, bool)]
    if len(scalars) != 1 or len(args) < 2:
        return None
    rest = [a for a in args if a not in scalars]
    seq = (list, tuple, typing.List, typing.Tuple, typing.Sequence)  # noqa: UP006
    ok = all((get_origin(a) in seq or a in (list, tuple)) and all(x in (scalars[0], Ellipsis) for x in get_args(a)) for a in rest)
    return scalars[0] if ok else None


def _make_field(name: str, tp: Any, default: Any, where: str, group: str) -> FieldSpec:
    type_name, optional, choices, param = _parse_type(tp, f"{where}: field {name!r}")
    p = param or Param()
    if p.choices is not None:
        choices = list(p.choices)
    if isinstance(default, tuple):
        default = list(default)
    bind = name if name in DATA_FACTS else FACT_ALIASES.get(name)
    structural = p.structural if p.structural is not None else (type_name in ("int", "str", "list[int]") or choices is not None)
    spec = FieldSpec(
        name=name,
        type=type_name,
        default=default,
        optional=optional,
        choices=choices,
        ge=p.ge,
        gt=p.gt,
        le=p.le,
        lt=p.lt,
        help=p.help,
        group=p.group or group,
        advanced=p.advanced,
        structural=structural,
        bind=bind,
    )
    complete_rules(spec, param)  # list lengths, infinities, and default bounds from the name (field_rules.py)
    if default != _MISSING:
        problems = check_values(Schema([spec]), {name: default}, prefix="default", owner=where)
        if problems:
            raise PluginError(f"{where}: the default breaks its own rule: {problems[0]}")
    return spec


def schema_from_dataclass(cls: type, where: str, group: str = "model") -> Schema:
    """Read a ``Config`` dataclass (fields may be ``Annotated[..., Param(...)]``) into a :class:`Schema`.

    Args:
        cls: the dataclass.
        where: names the plugin in error messages.
        group: the default group of the fields.
    """
    if not dataclasses.is_dataclass(cls):
        raise PluginError(f"{where}: Config must be a dataclass, got {cls!r}")
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:  # a bad annotation is the plugin's error, not ours
        raise PluginError(f"{where}: cannot read the Config annotations: {exc}") from exc
    specs = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = _MISSING
        specs.append(_make_field(f.name, hints[f.name], default, where, group))
    return Schema(specs)


def fixed_field(name: str, shown: str, why: str, group: str = "model") -> FieldSpec:
    """A field kept at the value its code gives it (see :attr:`FieldSpec.fixed`).

    Args:
        name: the parameter.
        shown: the value as text: its import path, else its ``repr``.
        why: what the value is, for the help text (e.g. ``"a Callable"``).
        group: the field's group.
    """
    return FieldSpec(name=name, type="str", default=shown, help=why, group=group, advanced=True, fixed=True)


# ---------------------------------------------------------------- checking values
def _type_ok(value: Any, type_name: str) -> bool:
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name in ("float", "number"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_name == "str":  # the command line parses 3 as a number; a string field takes it as "3"
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    if type_name == "code":
        return isinstance(value, str)
    return False


def _check_one(spec: FieldSpec, value: Any) -> str | None:
    if spec.fixed:
        return None if value == spec.default else f"fixed at {spec.default}: a config cannot set it, leave it out"
    if spec.type == "code" and isinstance(value, str) and value and not _import_path_like(value):
        return "expected an import path such as torch.nn:ReLU or torch.nn.ReLU"
    if value is None:
        return None if spec.optional else "must not be null"
    if not _type_ok(value, spec.item_type):
        return f"expected {spec.item_type}"
    if spec.choices is not None and value not in spec.choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in spec.choices], n=1)
        return "not one of " + ", ".join(map(str, spec.choices)) + (f" (did you mean {close[0]}?)" if close else "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            return "must be a number, got nan"
        if isinstance(value, float) and math.isinf(value) and spec.finite:
            return f"must be a finite number, got {value}"
        if spec.ge is not None and value < spec.ge:
            return f"below the minimum {_num(spec.ge)}"
        if spec.gt is not None and value <= spec.gt:
            return f"must be greater than {_num(spec.gt)}"
        if spec.le is not None and value > spec.le:
            return f"above the maximum {_num(spec.le)}"
        if spec.lt is not None and value >= spec.lt:
            return f"must be less than {_num(spec.lt)}"
    return None


def check_values(schema: Schema, values: dict[str, Any], prefix: str, owner: str, partial: bool = False) -> list[str]:
    """Check values against the schema; return one line per problem (empty when all is well).

    Each line names the key, the bad value, the rule and the field's help, e.g.
    ``model.width=4: below the minimum 8 (simple_cnn: channels of the first stage)``.

    Args:
        schema: the rules.
        values: field name -> value (keys starting with ``_`` are ignored).
        prefix: put before each key (``model``, ``data``).
        owner: the plugin's name, shown with the help.
        partial: when True, fields absent from ``values`` are fine (presets, overrides).
    """
    problems = []
    prefix = f"{prefix}." if prefix else ""
    known = set(schema.names())
    for key in values:
        if key.startswith("_") or key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f"did you mean {prefix}{close[0]}?" if close else f"{owner} has: {', '.join(sorted(known)) or 'no settings'}"
        problems.append(f"{prefix}{key}: unknown key ({hint})")
    for spec in schema.fields:
        if spec.name not in values:
            if not partial and spec.default == _MISSING:
                problems.append(f"{prefix}{spec.name}: missing value ({spec.rule()})")
            continue
        value = values[spec.name]
        if value == _MISSING:
            problems.append(f"{prefix}{spec.name}: missing value, set {prefix}{spec.name}=...{_help(owner, spec)}")
            continue
        items = value if spec.type.startswith("list[") and isinstance(value, (list, tuple)) else [value]
        if spec.type.startswith("list[") and not isinstance(value, (list, tuple)) and value is not None:
            problems.append(f"{prefix}{spec.name}={value!r}: expected {spec.type}{_help(owner, spec)}")
            continue
        if isinstance(value, (list, tuple)) and not (spec.min_items or 0) <= len(value) <= (spec.max_items if spec.max_items is not None else len(value)):
            problems.append(f"{prefix}{spec.name}={_show(value)}: expected {_items(spec.min_items, spec.max_items)}, got {len(value)}{_help(owner, spec)}")
            continue
        for item in items:
            why = _check_one(spec, item)
            if why:
                problems.append(f"{prefix}{spec.name}={_show(value)}: {why}{_help(owner, spec)}")
                break
    return problems


def _items(low: int | None, high: int | None) -> str:
    """``2 items``, ``1 to 3 items``, ``at least 1 item``, ``at most 4 items``."""
    if low is not None and low == high:
        return f"{low} item{'s' * (low != 1)}"
    if low is not None and high is not None:
        return f"{low} to {high} items"
    return f"at least {low} item{'s' * (low != 1)}" if low is not None else f"at most {high} item{'s' * (high != 1)}"


def _import_path_like(value: str) -> bool:
    """``pkg.mod:Name``, ``pkg.mod.Name``, or a bare name (a library's own name for a layer, e.g. timm's ``gelu``)."""
    module, _, attr = value.partition(":")
    return all(p.isidentifier() for p in module.split(".")) and all(p.isidentifier() for p in attr.split(".") if attr)


def _show(value: Any) -> str:
    return "null" if value is None else str(value)


def _help(owner: str, spec: FieldSpec) -> str:
    text = spec.help_text()
    return f" ({owner}: {text})" if text else ""
