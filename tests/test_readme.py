"""CI runs exactly what the README tells a user: its install and test commands appear in .ci/run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    block = re.search(r"Run the tests.*?```bash\n(.*?)```", readme, re.S)
    assert block, "README has no test block"
    commands = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ['pip install ".[dev]" ./example_plugins/*/', "python -m pytest -n 2 --dist loadfile"]
    for command in commands:
        assert command in ci
