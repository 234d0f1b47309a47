"""What an installed distribution says about a plugin: the fingerprint that tells the plugin cache its files
changed, and the distribution's requirement on lightplug (a plugin built for another version is refused)."""

from __future__ import annotations

import importlib.util
import os
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["CORE_DIST", "fingerprint", "requirement_on_core", "incompatible"]

CORE_DIST = "lightplug"


def fingerprint(dist: metadata.Distribution | None, target: str) -> str:
    """Changes when the installed files change: the dist-info's mtime, plus sources for editable installs."""
    parts: list[str] = []
    path = getattr(dist, "_path", None)
    if path is not None:
        try:
            parts.append(str(Path(path).stat().st_mtime_ns))
            direct = dist.read_text("direct_url.json") or "" if dist is not None else ""
        except OSError:
            direct = ""
        if '"editable": true' in direct.replace(" ", "").replace('"editable":true', '"editable": true'):
            parts.append(_source_mtime(target.split(":")[0].split(".")[0]))
    elif os.path.exists(target):
        st = os.stat(target)
        parts.append(f"{st.st_mtime_ns}-{st.st_size}")
    return "-".join(parts)


def _source_mtime(top_module: str) -> str:
    spec = importlib.util.find_spec(top_module) if top_module not in sys.modules else sys.modules[top_module].__spec__
    if spec is None or spec.origin is None:
        return ""
    root = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
    files = root.rglob("*.py") if root.is_dir() else [root]
    return str(max((f.stat().st_mtime_ns for f in files), default=0))


def requirement_on_core(dist: metadata.Distribution) -> str | None:
    for req in dist.requires or []:
        name = req.split(";")[0].strip()
        if name.lower().startswith(CORE_DIST) and name[len(CORE_DIST) : len(CORE_DIST) + 1] in ("", " ", "<", ">", "=", "!", "~", "["):
            return name
    return None


def incompatible(requirement: str | None) -> str | None:
    if not requirement:
        return None
    from packaging.requirements import InvalidRequirement, Requirement

    from . import __version__

    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        return None
    if req.specifier and not req.specifier.contains(__version__, prereleases=True):
        return f"needs lightplug{req.specifier}, you have {__version__}"
    return None
