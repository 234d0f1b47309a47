"""A plugin's task and description read from its source with :mod:`ast`, without importing it.

``lightplug models`` right after ``pip install`` must show each plugin's task and description, yet listing imports no
plugin (an import may pull in torch or fail). The entry point names ``module:Class``; the module's file is found
from the top-level package's spec (nothing is executed), parsed, and the class read as Python would:

- ``task = "detection"`` (or ``task: ClassVar[str] = ...``) in the class or a base class defined or imported in the
  package; else ``classification``, the default of tier-0 modules and of ``ModelPlugin``;
- ``description = "..."`` in the class, else the first line of its docstring.

Only string constants count (a computed value is left to loading). A class re-exported with
``from .plugins import SimpleCNN`` is followed. Anything this cannot read gives None: the listing then shows what
the cache or the distribution's metadata know. Stdlib only.
"""

from __future__ import annotations

import ast  # already loaded by dataclasses (lightplug.plugin): free here
import importlib.util
import sys
from pathlib import Path
from typing import Any

__all__ = ["source_info"]

_MAX_HOPS = 4  # re-exports and base classes followed, at most


def _module_file(module: str) -> Path | None:
    """The source file of ``module`` (``pkg.sub.mod``) without importing any of it."""
    parts = module.split(".")
    top = sys.modules.get(parts[0])
    try:
        spec = top.__spec__ if top is not None else importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if len(parts) == 1:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    folders = [Path(p) for p in (spec.submodule_search_locations or [])]
    for part in parts[1:-1]:
        folders = [f / part for f in folders if (f / part).is_dir()]
    for folder in folders:
        for candidate in (folder / f"{parts[-1]}.py", folder / parts[-1] / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None


def _string_attr(node: ast.ClassDef, name: str) -> str | None:
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
            value: ast.expr | None = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
            value = stmt.value
        else:
            continue
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
    return None


def _resolve(module: str, is_package: bool, imported: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` in ``module`` names."""
    if not imported.level:
        return imported.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (imported.level - 1)]
    return ".".join(base + ([imported.module] if imported.module else []))


def _find(module: str, name: str, hops: int) -> tuple[str, ast.Module, Path, ast.ClassDef | ast.FunctionDef] | None:
    """The definition of ``name`` in ``module``, following re-exports."""
    path = _module_file(module)
    tree = _parse(path) if path else None
    if path is None or tree is None:
        return None
    for stmt in tree.body:
        if isinstance(stmt, (ast.ClassDef, ast.FunctionDef)) and stmt.name == name:
            return module, tree, path, stmt
    if hops <= 0:
        return None
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if (alias.asname or alias.name) == name:
                    return _find(_resolve(module, path.name == "__init__.py", stmt), alias.name, hops - 1)
        elif isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Name):  # Alias = Original
            if any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
                return _find(module, stmt.value.id, hops - 1)
    return None


def _task(module: str, node: ast.ClassDef | ast.FunctionDef, hops: int) -> str | None:
    """``task`` of a class or, failing that, of its bases (those this package defines), else None."""
    if not isinstance(node, ast.ClassDef):
        return None
    own = _string_attr(node, "task")
    if own is not None or hops <= 0:
        return own
    for base in node.bases:
        if isinstance(base, ast.Name):
            found = _find(module, base.id, hops - 1)
            if found is not None:
                task = _task(found[0], found[3], hops - 1)
                if task is not None:
                    return task
    return None


def source_info(target: str) -> dict[str, Any] | None:
    """``{"task": ..., "description": ...}`` of the plugin an entry point names (``pkg.module:Class``), read from its
    source; None when the source cannot be found or read.

    Example:
        >>> source_info("lightplug.data.plugins:Diabetes")["task"]
        'regression'
    """
    module, _, attr = target.partition(":")
    if not module or not attr or "." in attr:
        return None
    found = _find(module, attr, _MAX_HOPS)
    if found is None:
        return None
    module, _, _, node = found
    description = (_string_attr(node, "description") if isinstance(node, ast.ClassDef) else None) or ""
    if not description:
        description = (ast.get_docstring(node) or "").strip().split("\n")[0].strip()
    return {"task": _task(module, node, _MAX_HOPS) or "classification", "description": description}
