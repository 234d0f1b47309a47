"""Schemas read from signatures and dataclasses, their rules, messages and JSON Schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, Optional, Union

import pytest

from lightplug import Param, PluginError
from lightplug.schema import Schema, check_values, schema_from_dataclass
from lightplug.signatures import schema_from_signature


class Net:
    def __init__(self, in_features: int = 64, hidden: int = 128, act: Literal["relu", "gelu"] = "relu",
                 dropout: float = 0.0, widths: list[int] = [8, 16], bias: bool = True, num_classes: int = 10) -> None:  # noqa: B006
        pass


@dataclass
class Cfg:
    width: Annotated[int, Param(ge=8, le=512, help="channels of the first stage")] = 64
    depth: Literal[10, 18, 34] = 18
    dropout: Annotated[float, Param(ge=0.0, lt=1.0, advanced=True, group="regularisation")] = 0.1
    name: Optional[str] = None
    scales: Annotated[list[float], Param(gt=0)] = field(default_factory=lambda: [1.0, 2.0])


def test_signature_gives_types_defaults_choices_and_data_bindings() -> None:
    s = schema_from_signature(Net.__init__, "net")
    assert [f.name for f in s.fields] == ["in_features", "hidden", "act", "dropout", "widths", "bias", "num_classes"]
    assert s["act"].type == "str" and s["act"].choices == ["relu", "gelu"]
    assert s["widths"].type == "list[int]" and s["widths"].default == [8, 16]
    assert s["in_features"].bind == "in_features" and s["num_classes"].bind == "num_classes" and s["hidden"].bind is None


def test_dataclass_reads_param_metadata() -> None:
    s = schema_from_dataclass(Cfg, "resnet")
    assert (s["width"].ge, s["width"].le, s["width"].help) == (8, 512, "channels of the first stage")
    assert s["depth"].type == "int" and s["depth"].choices == [10, 18, 34]
    assert s["dropout"].advanced and s["dropout"].group == "regularisation"
    assert s["name"].optional


def test_out_of_range_message_names_key_value_rule_and_help() -> None:
    s = schema_from_dataclass(Cfg, "simple_cnn")
    assert check_values(s, {"width": 4}, "model", "simple_cnn", partial=True) == [
        "model.width=4: below the minimum 8 (simple_cnn: channels of the first stage)"
    ]


def test_every_problem_is_reported_at_once() -> None:
    s = schema_from_dataclass(Cfg, "m")
    problems = check_values(s, {"width": 4, "depth": 11, "dropout": 1.0, "widht": 3}, "model", "m", partial=True)
    assert len(problems) == 4
    assert any("did you mean model.width?" in p for p in problems)
    assert any(p.startswith("model.depth=11: not one of 10, 18, 34") for p in problems)


def test_wrong_types_are_refused_and_ints_accepted_for_floats() -> None:
    s = schema_from_dataclass(Cfg, "m")
    assert check_values(s, {"width": "wide"}, "model", "m", partial=True)[0].startswith("model.width=wide: expected int")
    assert check_values(s, {"dropout": 0}, "model", "m", partial=True) == []
    assert check_values(s, {"width": True}, "model", "m", partial=True)  # a bool is not an int
    assert check_values(s, {"scales": [1.0, -1.0]}, "model", "m", partial=True)


def test_unsupported_type_is_fixed_at_its_default_or_a_plugin_error_without_one() -> None:
    class Kept:
        def __init__(self, x: dict = {}, width: int = 3) -> None:  # noqa: B006
            pass

    s = schema_from_signature(Kept.__init__, "kept")
    assert s["x"].fixed and s["x"].default == "{}" and not s["width"].fixed
    assert check_values(s, {"x": "{}"}, "model", "kept") == []
    assert "fixed at {}" in check_values(s, {"x": "{'a': 1}"}, "model", "kept", partial=True)[0]

    class Bad:
        def __init__(self, x: dict) -> None:
            pass

    with pytest.raises(PluginError, match="unsupported type"):
        schema_from_signature(Bad.__init__, "bad")

    @dataclass
    class BadDefault:
        width: Annotated[int, Param(ge=8)] = 4

    with pytest.raises(PluginError, match="breaks its own rule"):
        schema_from_dataclass(BadDefault, "bad")


def test_json_schema_has_ranges_enums_groups_and_round_trips() -> None:
    s = schema_from_dataclass(Cfg, "m")
    s.presets = {"easy": {"width": 32}}
    js = s.json_schema("m")
    width = js["properties"]["width"]
    assert (width["type"], width["minimum"], width["maximum"], width["default"]) == ("integer", 8, 512, 64)
    assert js["properties"]["depth"]["enum"] == [10, 18, 34]
    assert js["properties"]["dropout"]["exclusiveMaximum"] == 1.0 and js["properties"]["dropout"]["x-advanced"] is True
    assert js["properties"]["scales"]["items"]["exclusiveMinimum"] == 0
    assert js["x-presets"] == {"easy": {"width": 32}}
    assert Schema.from_dict(s.to_dict()).to_dict() == s.to_dict()


def test_int_or_float_fields_keep_what_was_written() -> None:
    from lightplug.config.finalize import coerce

    @dataclass
    class Limits:
        limit: Annotated[Optional[Union[int, float]], Param(ge=0)] = None

    s = schema_from_dataclass(Limits, "trainer")
    assert s["limit"].type == "number" and s["limit"].optional
    assert check_values(s, {"limit": 3}, "trainer", "trainer") == [] and check_values(s, {"limit": 0.25}, "trainer", "trainer") == []
    assert check_values(s, {"limit": "all"}, "trainer", "trainer")
    assert coerce(s, {"limit": 1}) == {"limit": 1} and isinstance(coerce(s, {"limit": 1})["limit"], int)
