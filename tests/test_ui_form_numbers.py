"""The web form's number fields keep what was typed: ``abc`` does not vanish and ``12abc`` does not become 12.
The field shows the CLI's own line beside it, the form's problem list (which disables Start) holds it, and the
override sent to the server is the typed text, which the server refuses with the same line.

form.js runs in Node (tests/ui_form_harness.mjs gives it a minimal DOM); the browser test
(tests/test_ui_browser.py) types the same values into Chromium where it is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lightplug.config.core_schemas import core_schemas
from lightplug.config.preflight import parse_overrides
from lightplug.registry import Registry
from lightplug.schema import Schema, check_values

NODE = shutil.which("node")
HERE = Path(__file__).parent
FORM_JS = HERE.parent / "src" / "lightplug" / "ui" / "static" / "form.js"

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def _cli_line(schema: Schema, group: str, owner: str, override: str) -> str:
    """What ``lightplug train OVERRIDE`` (and the UI's server check) says about the value."""
    name = override.split("=", 1)[0].split(".")[-1]
    value = parse_overrides([override])[0].value()
    lines = check_values(schema, {name: value}, prefix=group, owner=owner, partial=True)
    assert len(lines) == 1, lines
    return lines[0]


def _mlp_schema() -> Schema:
    """mlp's schema as `lightplug models show mlp --json` has it (from the plugin cache: no torch)."""
    registry = Registry()
    return registry.schema(registry.find("model", "mlp"))[0]


def _run(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = subprocess.run([str(NODE), str(HERE / "ui_form_harness.mjs"), str(FORM_JS)], input=json.dumps(cases), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


CASES = [  # (group, field, typed): every one is refused by the CLI
    ("model", "hidden", "abc"), ("model", "hidden", "12abc"), ("model", "hidden", "1.5"), ("model", "hidden", "-3"),
    ("model", "dropout", "abc"), ("model", "dropout", "0.5x"), ("model", "dropout", "1.5"), ("optimizer", "lr", "inf"),
    ("optimizer", "lr", "0x10"), ("optimizer", "betas", "0.9"),
]


def test_number_fields_keep_what_was_typed_and_say_what_the_cli_says() -> None:
    mlp = _mlp_schema()
    schemas = {"model": (mlp, mlp.json_schema(title="mlp"), "mlp"),
               "optimizer": (core_schemas()["optimizer"], core_schemas()["optimizer"].json_schema(title="optimizer"), "optimizer")}
    cases = [{"key": f"{g}.{n}", "prop": schemas[g][1]["properties"][n], "owner": schemas[g][2], "typed": t} for g, n, t in CASES]
    for case, result in zip(CASES, _run(cases)):
        group, name, typed = case
        sent = f"{group}.{name}=" + (f"[{typed}]" if name == "betas" else typed)
        assert result["override"] == sent, result  # the server sees the typed text (a list in brackets), and refuses it too
        expected = _cli_line(schemas[group][0], group, schemas[group][2], sent)
        assert result["inputType"] == "text", result  # a number input would drop "abc" and cut "12abc" to 12
        assert result["shown"] == typed, result
        assert result["message"] == expected, (result, expected)
        assert result["invalid"] and result["problems"] == [expected], result


def test_good_numbers_pass() -> None:
    props = _mlp_schema().json_schema(title="mlp")["properties"]
    cases = [{"key": "model.hidden", "prop": props["hidden"], "owner": "mlp", "typed": t} for t in ("64", "+64", " 64 ")]
    cases += [{"key": "model.dropout", "prop": props["dropout"], "owner": "mlp", "typed": t} for t in ("0.25", ".5", "1e-1", "1")]
    for result in _run(cases):
        assert result["message"] == "" and not result["invalid"] and result["problems"] == [], result
