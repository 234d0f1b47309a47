"""What a builder function's ``**kwargs`` accept: torchvision's ``resnet18(*, weights, progress, **kwargs)`` passes
them to ``ResNet``, timm's ``resnet18(pretrained, **kwargs)`` too.

The rule (docs/import-paths.md):

1. The builder's return annotation names the class it builds (``-> ResNet``). Its ``__init__`` parameters are the
   keys the builder may forward; the builder's own parameters come first and win on a shared name.
2. A *dry call* tells which of them the builder sets itself: the builder is called once with lightplug's defaults
   while the class's ``__init__`` is replaced by one that records its arguments and stops (nothing is built
   after that point; what the builder builds before, e.g. a detector's backbone, is built and dropped).
   A class parameter the builder sets (``block``, ``layers`` of ``ResNet``) is then tried as a keyword: when the
   builder refuses it ("got multiple values"), it is **fixed** at the builder's value; when the builder takes
   it, it is a field whose default is the builder's value (``min_size=320`` of
   ``fasterrcnn_mobilenet_v3_large_320_fpn``, ``stochastic_depth_prob=0.1`` of ``convnext_tiny``).
3. No return annotation naming an ``nn.Module`` class, or a dry call that does not reach the class: only the
   builder's own parameters are fields (and the class's defaulted parameters, when the annotation names one).

A key that is not a field is refused like any unknown key: one line with close matches.
"""

from __future__ import annotations

import inspect
import logging
import re
import typing
import warnings
from dataclasses import dataclass
from typing import Any

from .schema import FieldSpec, Schema, fixed_field
from .signatures import _NO_DEFAULT, Argument, _hints, _parameters, _read_param, _shown

__all__ = ["return_class", "forwarded_fields", "dry_call"]

log = logging.getLogger(__name__)

_DUPLICATE = re.compile(r"multiple values for (?:keyword )?argument '(\w+)'")


def _is_module_class(obj: Any) -> bool:
    return isinstance(obj, type) and any(c.__name__ == "Module" and c.__module__.startswith("torch.nn") for c in obj.__mro__[1:])


def return_class(fn: Any) -> type | None:
    """The ``nn.Module`` subclass ``fn``'s return annotation names (``nn.Module`` itself and unions: None)."""
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:  # noqa: BLE001 - an annotation that does not evaluate names nothing
        return None
    return hint if _is_module_class(hint) else None


@dataclass
class _Positional:
    """A value the builder passes positionally: naming it again is always a duplicate."""

    value: Any


class _Reached(BaseException):
    """Stops a dry call at the class's ``__init__`` (a BaseException, so ``except Exception`` in a builder lets it by)."""


def dry_call(fn: Any, cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Call ``fn(**kwargs)`` until it constructs ``cls``; return the arguments it passes, by parameter name.

    Raises:
        TypeError: the builder refuses ``kwargs`` (e.g. "got multiple values for argument 'block'").
        LookupError: the builder returned, or failed, without constructing ``cls``.
    """
    original = cls.__dict__.get("__init__")
    signature = inspect.signature(cls.__init__)  # type: ignore[misc]
    seen: dict[str, Any] = {}

    def record(self: Any, *args: Any, **kw: Any) -> None:
        bound = signature.bind(self, *args, **kw)  # TypeError for a duplicate, as the real call would raise
        for i, (name, value) in enumerate(list(bound.arguments.items())[1:]):
            kind = signature.parameters[name].kind
            if kind == inspect.Parameter.VAR_KEYWORD:
                seen.update(value)
            elif kind != inspect.Parameter.VAR_POSITIONAL:
                seen[name] = _Positional(value) if i < len(args) else value
        raise _Reached

    cls.__init__ = record  # type: ignore[misc]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what a builder says about the keys it is given is not the user's concern here
            fn(**kwargs)
    except _Reached:
        return seen
    except TypeError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever stops the builder before the class
        raise LookupError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if original is None:
            del cls.__init__  # type: ignore[misc]
        else:
            cls.__init__ = original  # type: ignore[misc]
    raise LookupError(f"it returned without constructing {cls.__name__}")


def _base_kwargs(schema: Schema, arguments: dict[str, Argument]) -> dict[str, Any]:
    """What lightplug passes to the builder by default where it differs from the builder's own default: no weights."""
    return {s.name: None for s in schema.fields if arguments[s.name].kind == "enum" and s.default is None}


def _forwardable(fn: Any, cls: type, base: dict[str, Any], candidates: dict[str, Any]) -> set[str]:
    """The candidates the builder takes as keywords (tried all at once; a refused one is dropped and the rest retried)."""
    left = dict(candidates)
    while left:
        try:
            dry_call(fn, cls, {**base, **left})
            return set(left)
        except TypeError as exc:
            found = _DUPLICATE.search(str(exc))
            if not found or found.group(1) not in left:
                return set()
            left.pop(found.group(1))
        except LookupError:
            return set()
    return set()


def forwarded_fields(fn: Any, schema: Schema, arguments: dict[str, Argument], where: str,
                     group: str = "model") -> tuple[type | None, list[tuple[FieldSpec, Argument]]]:
    """The fields a builder's ``**kwargs`` add (see the module docstring for the rule).

    Returns:
        (the class the builder returns, or None; the new fields with their arguments).
    """
    cls = return_class(fn)
    if cls is None:
        return None, []
    base = _base_kwargs(schema, arguments)
    try:
        passed: dict[str, Any] | None = dry_call(fn, cls, base)
    except (TypeError, LookupError) as exc:
        log.debug("%s: the dry call of the builder did not reach %s (%s)", where, cls.__name__, exc)
        passed = None
    own = set(schema.names())
    params = _parameters(cls.__init__, where)  # type: ignore[misc]
    hints = _hints(cls.__init__, where)  # type: ignore[misc]
    set_by_builder = {n: v for n, v in (passed or {}).items() if n not in own and any(p.name == n for p in params)}
    positional = {n for n, v in set_by_builder.items() if isinstance(v, _Positional)}
    set_by_builder = {n: v.value if isinstance(v, _Positional) else v for n, v in set_by_builder.items()}
    settable = {n: v for n, v in set_by_builder.items()  # only what would be a field of its own is worth a dry call
                if n not in positional and _read_param(n, hints.get(n, _NO_DEFAULT), v, where, group)[1].kind != "fixed"}
    forwardable = _forwardable(fn, cls, base, settable) if settable else set()
    out: list[tuple[FieldSpec, Argument]] = []
    for p in params:
        if p.name in own:
            continue
        hint = hints.get(p.name, _NO_DEFAULT)
        if p.name in set_by_builder and p.name not in forwardable:
            out.append((fixed_field(p.name, _shown(set_by_builder[p.name]), f"set by {getattr(fn, '__name__', 'the builder')}", group),
                        Argument("fixed")))
        elif p.name in set_by_builder or p.default is not p.empty:
            default = set_by_builder.get(p.name, p.default)
            out.append(_read_param(p.name, hint, default, where, group))
    return cls, out
