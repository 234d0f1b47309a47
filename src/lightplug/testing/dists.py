"""Throw-away plugin distributions for tests: a real dist-info with entry points, written as pip would."""

from __future__ import annotations

import textwrap
from pathlib import Path

__all__ = ["make_dist"]


def make_dist(site: Path, name: str, version: str = "1.0.0", entry_points: dict[str, dict[str, str]] | None = None,
              modules: dict[str, str] | None = None, requires: list[str] | None = None, summary: str = "a test plugin") -> Path:
    """Write an installed distribution into ``site``: its modules plus a dist-info with METADATA,
    entry_points.txt and RECORD. Put ``site`` on PYTHONPATH (or sys.path) to make it visible.

    Example:
        >>> make_dist(tmp / "site", "lp-twin", entry_points={"lightplug.models": {"twin": "lp_twin:Net"}},
        ...           modules={"lp_twin.py": "..."})  # doctest: +SKIP
    """
    site.mkdir(parents=True, exist_ok=True)
    for rel, code in (modules or {}).items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code))
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    meta += [f"Requires-Dist: {r}" for r in requires or []]
    (info / "METADATA").write_text("\n".join(meta) + "\n")
    lines: list[str] = []
    for group, eps in (entry_points or {}).items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (info / "RECORD").write_text("")
    return site
