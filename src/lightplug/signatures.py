"""A third-party callable's signature as a plugin schema, and config values back into its arguments.

What a config cannot hold is not an error: an ``Enum`` becomes a choice of its members' names, a class or a
function (``type[...]``, ``Callable``, a union of classes) becomes an import path the user may type
(type ``code``), and anything else with a default (a ``functools.partial``, a nested list, any object) is kept
at that default as a **fixed** field. :mod:`lightplug.builders` reads a builder's ``**kwargs``;
:mod:`lightplug.callables` puts both together.

Nothing here imports torch: a callable's own module does, when the registry imports it.
"""

from __future__ import annotations

import collections.abc
import enum
import importlib
import inspect
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

from .errors import ConfigError, PluginError
from .plugin import ImportPath
from .schema import FieldSpec, Schema, Unexpressible, _make_field, _scalar_or_sequence, fixed_field

__all__ = ["Argument", "read_signature", "schema_from_signature", "import_path_of", "resolve_import_path", "code_value",
           "takes_var_keywords"]

_MISSING = "???"
_NO_DEFAULT = inspect.Parameter.empty


@dataclass
class Argument:
    """How one field's config value becomes the callable's argument.

    ``kind``: ``plain`` (as it is), ``tuple`` (a list given as a tuple), ``enum`` (a member's name -> the member),
    ``code`` (an import path -> the object; a value equal to the default is not passed, so nothing is imported),
    ``fixed`` (never passed: the callable keeps its own default) or ``extra`` (lightplug's own, never passed).
    """

    kind: str = "plain"
    enum: Any = None
    accepts_str: bool = False


# ---------------------------------------------------------------- import paths
def import_path_of(obj: Any) -> str | None:
    """``module:QualName`` of a class or function that can be imported back, else None (lambdas, partials,
    instances, local classes).

    Example:
        >>> import collections; import_path_of(collections.OrderedDict)
        'collections:OrderedDict'
    """
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not (isinstance(obj, type) or inspect.isfunction(obj) or inspect.isbuiltin(obj)) or not module or not qualname:
        return None
    if "<" in qualname:
        return None
    return f"{module}:{qualname}"


def resolve_import_path(text: str, key: str) -> Any:
    """The object ``text`` names: ``pkg.mod:Name`` (or ``pkg.mod:Outer.Inner``) or ``pkg.mod.Name``.

    Raises:
        ConfigError: ``key=text: cannot import it (...)``.
    """
    if ":" in text:
        module_name, _, attr = text.partition(":")
        splits = [(module_name, attr)]
    else:
        parts = text.split(".")
        splits = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]
    why = "not an import path"
    for module_name, attr in splits:
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError as exc:
            why = f"{type(exc).__name__}: {exc}"
            continue
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            why = f"module {module_name!r} has no {attr!r}"
            continue
        return obj
    raise ConfigError(f"{key}={text}: cannot import it ({why})", hint="give pkg.module:Name or pkg.module.Name of a class or function")


def code_value(value: str, key: str, accepts_str: bool) -> Any:
    """A ``code`` field's value as the callable takes it: a bare name (no dot) is passed as text when the
    parameter also takes strings (timm's ``act_layer="gelu"``), anything else is imported."""
    if accepts_str and "." not in value and ":" not in value:
        return value
    return resolve_import_path(value, key)


# ---------------------------------------------------------------- reading types
def _strip(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """``(type, Annotated metadata)``."""
    if get_origin(tp) is Annotated:
        inner, *meta = get_args(tp)
        return inner, tuple(meta)
    return tp, ()


def _union_args(tp: Any) -> tuple[list[Any], bool]:
    """The members of a union without ``None``, and whether ``None`` was one."""
    if get_origin(tp) in (Union, getattr(__import__("types"), "UnionType", Union)):
        args = list(get_args(tp))
        return [a for a in args if a is not type(None)], type(None) in args
    return [tp], False


def _is_code_member(tp: Any) -> bool:
    """A class or function type: ``type``, ``type[X]``, ``Callable[...]`` or a class other than the scalars."""
    origin = get_origin(tp)
    if tp in (type, typing.Type) or origin in (type, typing.Type):  # noqa: UP006
        return True
    if tp in (typing.Callable, collections.abc.Callable) or origin is collections.abc.Callable:
        return True
    return isinstance(tp, type) and tp not in (int, float, str, bool, list, tuple, dict, set) and not issubclass(tp, enum.Enum)


def _code_kind(args: list[Any]) -> tuple[bool, bool]:
    """(whether the parameter takes code, whether it also takes a str). A single plain class is an instance
    parameter (``backbone: nn.Module``), not code; ``type[X]``, ``Callable`` or a union of classes is code."""
    accepts_str = str in args
    rest = [a for a in args if a is not str]
    if not rest or not all(_is_code_member(a) for a in rest):
        return False, False
    plain_classes = [a for a in rest if isinstance(a, type) and get_origin(a) is None and a is not type]
    if len(rest) == 1 and plain_classes:
        return False, False
    return True, accepts_str


def _shown(value: Any) -> str:
    """A fixed value as text: its import path, else its ``repr`` (one line, at most 200 characters)."""
    text = import_path_of(value) or " ".join(repr(value).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _read_param(name: str, hint: Any, default: Any, where: str, group: str) -> tuple[FieldSpec, Argument]:
    """One parameter as a field and the way its value becomes the argument."""
    has_default = default is not _NO_DEFAULT
    if hint is _NO_DEFAULT:
        if not has_default:
            raise PluginError(f"{where}: parameter {name!r} has no type annotation and no default",
                              hint="annotate it (int, float, str, bool, Literal[...], a list) or give it a default")
        inferred = _type_of(default)
        if inferred is None:
            return fixed_field(name, _shown(default), "no type annotation", group), Argument("fixed")
        return _make_field(name, inferred, list(default) if isinstance(default, tuple) else default, where, group), \
            Argument("tuple" if isinstance(default, tuple) else "plain")
    tp, meta = _strip(hint)
    args, optional = _union_args(tp)
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], enum.Enum):
        return _enum_field(name, args[0], default, optional, meta, where, group)
    takes_code, accepts_str = _code_kind(args)
    if takes_code:
        if not has_default or default is None or (accepts_str and isinstance(default, str)):
            shown_default = _MISSING if not has_default else default
        elif import_path_of(default) is not None:
            shown_default = import_path_of(default)
        else:
            return fixed_field(name, _shown(default), "a callable object without an import path", group), Argument("fixed")
        code_tp: Any = Optional[ImportPath] if optional or default is None else ImportPath
        return _make_field(name, _annotated(code_tp, meta), shown_default, where, group), Argument("code", accepts_str=accepts_str)
    if isinstance(default, (list, tuple)) and _scalar_or_sequence(args) is not None:
        hint = _annotated(list[_scalar_or_sequence(args)], meta)  # type: ignore[misc]  # int | tuple[int, ...] = (1, 2): the list form
    try:
        spec = _make_field(name, hint, _MISSING if not has_default else default, where, group)
    except Unexpressible as exc:
        if not has_default:
            raise PluginError(f"{exc}; it has no default, so the config cannot leave it out",
                              hint="use a builder function that sets it, or a plugin") from exc
        return fixed_field(name, _shown(default), f"{_type_text(hint)} is beyond a config", group), Argument("fixed")
    except PluginError:
        if not has_default or meta:  # a Param's rule that the default breaks is the plugin's own mistake
            raise
        return fixed_field(name, _shown(default), "its default does not fit its annotation", group), Argument("fixed")
    as_tuple = any(get_origin(a) in (tuple, typing.Tuple) or a is tuple for a in args)  # noqa: UP006
    return spec, Argument("tuple" if as_tuple else "plain")


def _type_of(default: Any) -> Any:
    """The type of an unannotated parameter, read from its default: a scalar, or a list of one scalar type."""
    scalars = (bool, int, float, str)
    if type(default) in scalars:
        return type(default)
    if isinstance(default, (list, tuple)) and default and len({type(v) for v in default}) == 1 and type(default[0]) in scalars:
        return list[type(default[0])]  # type: ignore[misc]
    return None


def _annotated(tp: Any, meta: tuple[Any, ...]) -> Any:
    return Annotated[(tp, *meta)] if meta else tp  # type: ignore[valid-type]


def _type_text(tp: Any) -> str:
    text = getattr(tp, "__name__", None) if isinstance(tp, type) else None
    return f"its type {text or str(tp).replace('typing.', '')}"


def _enum_field(name: str, cls: type[enum.Enum], default: Any, optional: bool, meta: tuple[Any, ...], where: str,
                group: str) -> tuple[FieldSpec, Argument]:
    """Choices of the members' names (``None`` too when the default is None). A weights enum (a member has a
    ``url``: torchvision's) defaults to None: lightplug never downloads."""
    from .weights import is_weights_enum

    names = tuple(m.name for m in cls)  # type: ignore[var-annotated]
    weights = is_weights_enum(cls)
    if default is _NO_DEFAULT:
        value: Any = _MISSING
    elif default is None or weights:
        value, optional = None, True
    else:
        value = default.name if isinstance(default, cls) else default
    tp: Any = Literal[names]  # type: ignore[valid-type]
    spec = _make_field(name, _annotated(Optional[tp] if optional else tp, meta), value, where, group)
    if weights and not spec.help:
        theirs = f" (its own default {default.name} is not downloaded)" if isinstance(default, cls) else ""
        spec.help = f"pretrained weights, used only when their file is in the torch hub cache{theirs}"
    return spec, Argument("enum", enum=cls)


# ---------------------------------------------------------------- signatures
def _hints(fn: Any, where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # noqa: BLE001 - an annotation that does not evaluate: read them one by one
        raw = dict(getattr(fn, "__annotations__", {}) or {})
        out = {}
        for key, value in raw.items():
            if isinstance(value, str):
                try:
                    value = eval(value, getattr(fn, "__globals__", {}))  # noqa: S307 - the module's own annotation text
                except Exception:  # noqa: BLE001
                    continue
            out[key] = value
        return out


def _parameters(fn: Any, where: str) -> list[inspect.Parameter]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{where}: cannot read the signature: {exc}") from exc
    return [p for p in sig.parameters.values() if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def takes_var_keywords(fn: Any) -> bool:
    """Whether ``fn`` has a ``**kwargs`` parameter."""
    try:
        return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False


def schema_from_signature(fn: Any, where: str, group: str = "model") -> Schema:
    """Read the parameters of ``fn`` (usually a class's ``__init__``) into a :class:`Schema` (enums as choices,
    classes and functions as import paths, other types kept fixed at their defaults)."""
    return read_signature(fn, where, group)[0]


def read_signature(fn: Any, where: str, group: str = "model") -> tuple[Schema, dict[str, Argument]]:
    """The fields of ``fn``'s own parameters and how each becomes an argument (``**kwargs`` left aside)."""
    hints = _hints(fn, where)
    specs, arguments = [], {}
    for p in _parameters(fn, where):
        spec, arg = _read_param(p.name, hints.get(p.name, _NO_DEFAULT), p.default, where, group)
        specs.append(spec)
        arguments[p.name] = arg
    return Schema(specs), arguments
