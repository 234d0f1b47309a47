"""Rules a field's type cannot say: what ``Param`` adds beyond bounds (list lengths, infinities), and the
default bounds inferred from a field's name when the plugin gave none.

The inferred rules (docs/writing-plugins.md, "Rules from names"):

- an ``int`` named like a width (``hidden``, ``width``, ``channels``, ``features``, ``dim``, ``heads``,
  ``units``, ``filters``, ``*_size``, ``*_channels``, ``*_features``, ``*_dim``, ``num_classes``, ...) is at
  least 1: a layer of zero units builds but computes nothing;
- an ``int`` named like a count (``depth``, ``layers``, ``blocks``, ``stages``, ``repeats``, ``num_*``,
  ``n_*``, ``*_layers``, ``*_blocks``, ``*_depth``, padding-like ``*_size``) is at least 0: zero means none
  (``mlp depth=0`` is a linear model);
- a ``float`` named like a probability (``p``, ``prob``, ``dropout``, ``*_dropout``, ``dropout_*``,
  ``*_prob``, ``*_probability``, ``*_p``, ``*_rate`` but not a learning rate) lies in [0, 1];
- a ``float`` is finite (``inf`` is refused; NaN always is) unless ``Param(finite=False)`` or an infinite
  default says otherwise.

A ``Param`` with any bound (``ge``, ``gt``, ``le``, ``lt``) or ``choices``, and ``Literal`` choices, turn the
name rules off for that field; so does a default that breaks them: a plugin that worked keeps working.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .plugin import Param
    from .schema import FieldSpec

__all__ = ["complete_rules", "name_rule", "name_kind"]

_WIDTH = re.compile(r"^(hidden|width|channels|features|dim|heads|units|filters|neurons|embed|num_classes|num_outputs)$"
                    r"|_(size|channels|features|dim|dims|width|heads|units|filters|hidden)$|^(hidden|embed)_")
_COUNT = re.compile(r"^(depth|layers|blocks|stages|repeats)$|_(layers|blocks|stages|depth|repeats)$|^(num|n)_")
_NOT_WIDTH = re.compile(r"pad|buffer|cache|queue|margin|overlap|warmup|step")  # sizes where 0 means none
_PROBABILITY = re.compile(r"^(p|prob|probability|dropout)$|_(dropout|prob|probability|p|rate)$|^dropout_")
_NOT_PROBABILITY = re.compile(r"learning|(^|_)lr(_|$)|sample|frame|bit|growth")


def name_kind(name: str, type_name: str) -> str | None:
    """What a field's name says it is: ``"a width"``, ``"a count"``, ``"a probability"``, or None."""
    rule = name_rule(name, type_name)
    if rule is None:
        return None
    return "a probability" if "le" in rule else "a width" if rule["ge"] == 1 else "a count"


def name_rule(name: str, type_name: str) -> dict[str, float] | None:
    """The bounds a field's name implies for its type, or None.

    Example:
        >>> name_rule("hidden", "int"), name_rule("depth", "int"), name_rule("dropout", "float"), name_rule("lr", "float")
        ({'ge': 1}, {'ge': 0}, {'ge': 0.0, 'le': 1.0}, None)
    """
    lower = name.lower()
    if type_name in ("int", "list[int]"):
        if _WIDTH.search(lower) and not _NOT_WIDTH.search(lower):
            return {"ge": 1}
        if _WIDTH.search(lower) or _COUNT.search(lower):
            return {"ge": 0}
    if type_name == "float" and _PROBABILITY.search(lower) and not _NOT_PROBABILITY.search(lower):
        return {"ge": 0.0, "le": 1.0}
    return None


def _numbers(value: Any) -> list[float]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


def complete_rules(spec: FieldSpec, param: Param | None) -> FieldSpec:
    """Add to ``spec`` what ``param`` says beyond bounds (``min_items``, ``max_items``, ``finite``) and the bounds
    its name implies (:func:`name_rule`) when neither ``param`` nor ``Literal`` choices set any rule and the
    default keeps them. Returns ``spec``, changed in place."""
    numbers = _numbers(spec.default)
    if param is not None:
        spec.min_items, spec.max_items = param.min_items, param.max_items
    explicit_finite = None if param is None else param.finite
    spec.finite = explicit_finite if explicit_finite is not None else not any(math.isinf(v) for v in numbers)
    has_rule = param is not None and (any(getattr(param, k) is not None for k in ("ge", "gt", "le", "lt")) or param.choices is not None)
    if has_rule or spec.choices is not None:
        return spec
    rule = name_rule(spec.name, spec.type)
    if rule is None or any((v < rule["ge"]) or ("le" in rule and v > rule["le"]) for v in numbers if not math.isnan(v)):
        return spec
    spec.ge, spec.le = rule["ge"], rule.get("le")
    spec.inferred = True
    return spec
