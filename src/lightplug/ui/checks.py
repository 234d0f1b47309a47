"""What the UI may launch: ``key=value`` overrides of the known groups only, values checked by the CLI's own
:func:`~lightplug.config.preflight.preflight` (same rules, same lines), and paths inside allowed folders.

Example:
    >>> check_overrides(["model=mlp", "model.hidden=4096"], registry, outputs)   # doctest: +SKIP
    ['model.hidden=4096: above the maximum 1024 (mlp: units per hidden layer)']
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LightplugError
from ..registry import Registry
from ..schema import Schema, check_values

__all__ = ["check_overrides", "command_line", "default_data", "inside", "GROUPS", "RUN_KEYS", "CHECKPOINT_KEYS", "MAX_OVERRIDES"]

#: Config groups whose choice (``optimizer=sgd``) and fields (``optimizer.lr=0.1``) the UI may set.
GROUPS = ("model", "data", "optimizer", "scheduler", "trainer")
#: Top-level run keys the UI may set.
RUN_KEYS = ("seed", "resume", "init_from")
#: Run keys that name a checkpoint: it must be inside the outputs folder.
CHECKPOINT_KEYS = ("resume", "init_from")
#: At most this many overrides, each at most ``_MAX_LEN`` characters.
MAX_OVERRIDES = 200
_MAX_LEN = 2000
#: Field names that hold a file or folder (checked like checkpoint paths, against the allowed folders).
_PATH_NAME = re.compile(r"(^|_)(root|path|dir|file|folder|directory|annotations|images|labels|yaml|json|csv|ckpt|checkpoint|weights)s?$")
_ALLOWED = "model=NAME, data=NAME, optimizer=, scheduler=, trainer= and their fields (model.width=...), +preset=NAME, seed, resume, init_from"


def command_line(overrides: list[str]) -> str:
    """The ``lightplug train`` command a shell would run for ``overrides``.

    Example:
        >>> command_line(["model=mlp", "data.root='my data'"])
        'lightplug train model=mlp "data.root=\\'my data\\'"'
    """
    return " ".join(["lightplug", "train", *(shlex.quote(a) if _needs_quotes(a) else a for a in overrides)])


def _needs_quotes(arg: str) -> bool:
    return not re.fullmatch(r"[A-Za-z0-9_.,:/=+@%\-\[\]]+", arg)


def inside(text: str, roots: list[Path], base: Path) -> bool:
    """Whether path ``text`` (relative ones from ``base``), with every symlink resolved, lies in one of ``roots``."""
    if text.startswith("~"):
        return False  # the run would not expand it: refuse rather than guess
    path = Path(text)
    path = (path if path.is_absolute() else base / path).resolve()
    return any(path == r or path.is_relative_to(r) for r in (root.resolve() for root in roots))


def _is_path(field: str, value: Any, base: Path | None = None) -> bool:
    """A value to check as a path: a path-like field name, a string that looks like a path, or one that names
    an existing file or folder (relative ones from ``base``)."""
    if not isinstance(value, str) or not value:
        return False
    if bool(_PATH_NAME.search(field)) or value.startswith(("/", ".", "~", "\\")) or "/" in value or "\\" in value:
        return True
    try:
        return base is not None and (base / value).exists()
    except (OSError, ValueError):
        return True


def _shape_problems(overrides: Any) -> list[str]:
    if not isinstance(overrides, list) or not all(isinstance(a, str) for a in overrides):
        return ["overrides must be a list of key=value strings"]
    if len(overrides) > MAX_OVERRIDES:
        return [f"too many overrides ({len(overrides)}; at most {MAX_OVERRIDES})"]
    problems = []
    for arg in overrides:
        if len(arg) > _MAX_LEN or any(c in arg for c in "\n\r\0"):
            problems.append(f"{arg[:60]!r}: too long or contains a line break")
        elif arg.startswith("-") or "=" not in arg:
            problems.append(f"{arg}: only key=value overrides can be launched (no flags)")
    return problems


def _plugin(registry: Registry, kind: str, name: Any) -> tuple[Schema | None, str | None]:
    """The schema of a registered plugin, or the reason it cannot be used (an import path never is: nothing is imported)."""
    if not isinstance(name, str) or ":" in name or not name:
        return None, f"{kind}={name}: only installed plugins can be launched (a NAME from `lightplug {'models' if kind == 'model' else 'data'}`)"
    try:
        schema, _ = registry.schema(registry.find(kind, name, import_paths=False))
    except LightplugError as exc:
        return None, str(exc)
    return schema, None


def _key_problem(ov: Any, value: Any, seen: set[str]) -> str | None:
    """Why an override is not one the UI launches (its key, its kind, its value), or None."""
    key = ov.key_or_group
    text = ov.input_line or key
    if key == "preset" and ov.is_add() and ov.package is None and not ov.is_sweep_override():
        if key in seen:
            return f"{key}: given twice"
        seen.add(key)
        return None  # +preset=NAME, as on the command line: its option is checked by preflight
    if ov.is_add() or ov.is_force_add() or ov.is_delete() or ov.package is not None:
        return f"{text}: only plain key=value overrides can be launched (no +, ++, ~ or @package)"
    if ov.is_sweep_override():
        return f"{text}: sweeps are not launched from the UI (use `lightplug train -m`)"
    if key in seen:
        return f"{key}: given twice"
    seen.add(key)
    top, _, rest = key.partition(".")
    known = (top in GROUPS and "." not in rest) or (not rest and top in RUN_KEYS)
    if not known:
        return f"{key}: not a setting the UI launches (allowed: {_ALLOWED})"
    items = value if isinstance(value, list) else [value]
    if any(isinstance(v, (dict, list)) for v in items) or (isinstance(value, list) and not rest):
        return f"{text}: expected a value or a list of values"
    if any(isinstance(v, str) and "${" in v for v in items):
        return f"{text}: interpolations (${{...}}) are not launched from the UI"
    return None


def check_overrides(overrides: Any, registry: Registry, outputs: Path, data_dirs: list[Path] | None = None,
                    base: Path | None = None) -> list[str]:
    """Every reason not to launch ``lightplug train`` with ``overrides``; empty when it may be launched.

    The known keys are checked by :func:`~lightplug.config.preflight.preflight` as the CLI does, so
    each line is the one ``lightplug train`` would print; required fields without a value are reported
    as the CLI reports them.

    Args:
        overrides: ``key=value`` strings, e.g. ``["model=simple_cnn", "model.width=16"]``.
        registry: the installed plugins.
        outputs: the folder run folders go to; checkpoints (``resume``, ``init_from``) must be in it.
        data_dirs: further folders (``--allow-dir``) that path-like fields may point into.
        base: the folder relative paths are taken from (the working folder of the launched runs); path-like
            fields may point into it too.

    Returns:
        One line per problem.
    """
    from ..config.preflight import parse_overrides, preflight

    problems = _shape_problems(overrides)
    if problems:
        return problems
    try:
        parsed = parse_overrides(overrides)
    except ConfigError as exc:
        return [str(exc)]
    base = base or Path.cwd()
    seen: set[str] = set()
    chosen: dict[str, Any] = {}
    for ov in parsed:
        value = None if ov.is_sweep_override() else ov.value()
        why = _key_problem(ov, value, seen)
        if why:
            problems.append(why)
            continue
        key = ov.key_or_group
        if key in ("model", "data"):
            chosen[key] = value
        field = key.rpartition(".")[2]
        if key in CHECKPOINT_KEYS and value is not None and not (isinstance(value, str) and inside(str(value), [outputs], base)):
            problems.append(f"{key}={value}: must be a checkpoint inside the outputs folder {outputs}")
        elif key not in CHECKPOINT_KEYS and any(_is_path(field, v, base) for v in (value if isinstance(value, list) else [value])):
            roots = [base, outputs, *(data_dirs or [])]
            bad = [v for v in (value if isinstance(value, list) else [value]) if _is_path(field, v, base) and not inside(str(v), roots, base)]
            if bad:
                where = ", ".join(str(r) for r in roots)
                problems.append(f"{key}={bad[0]}: paths must be inside {where} (start `lightplug ui --allow-dir DIR` to allow another folder)")
    if problems:
        return problems
    if "model" not in chosen:
        return [f"no model chosen: add model=NAME (available: {', '.join(registry.names('model')) or 'none installed'})"]
    schema, why = _plugin(registry, "model", chosen["model"])
    if schema is None:
        return [why or f"model={chosen['model']}: cannot be used"]
    implied = _implied_data(overrides, registry)
    chosen.setdefault("data", next((a.split("=", 1)[1] for a in implied if a.startswith("data=")), "digits"))
    schemas: dict[str, Schema] = {}
    owners: dict[str, str] = {}
    for kind in ("model", "data"):
        name = chosen[kind]
        schema, why = _plugin(registry, kind, name)
        if schema is None:
            problems.append(why or f"{kind}={name}: cannot be used")
        else:
            schemas[kind], owners[kind] = schema, str(name)
    problems += _code_values(parsed, schemas)
    if problems:
        return problems
    try:
        preflight([*overrides, f"hydra.run.dir={outputs}/run"], registry, schemas, owners)
    except ConfigError as exc:
        problems += exc.problems or [str(exc)]
    given = {ov.key_or_group for ov in parsed}
    for kind, schema in schemas.items():
        for spec in schema.fields:
            if f"{kind}.{spec.name}" not in given and spec.default == "???":
                problems += check_values(schema, {spec.name: "???"}, prefix=kind, owner=owners[kind])
    if not problems:  # the run as `lightplug train` composes it: the model/data task rule, the data, the plugin's own rules
        from ..cli.train import check_job

        try:
            check_job([*overrides, *implied, f"hydra.run.dir={outputs}/run"], registry)
        except ConfigError as exc:
            problems += exc.problems or [str(exc)]
        except LightplugError as exc:
            problems.append(str(exc))
    return problems


def _implied_data(overrides: list[str], registry: Registry) -> list[str]:
    """The data ``lightplug train`` picks for the model's task when the overrides name none (``data=shapes
    data.task=detection`` for a detection model): the CLI's own :func:`~lightplug.cli.train.data_for_models`."""
    from ..cli.train import data_for_models

    try:
        return data_for_models(overrides, registry)
    except LightplugError:
        return []


def default_data(model: str, registry: Registry) -> list[str]:
    """The data overrides ``lightplug train model=MODEL`` uses when no ``data=`` is given.

    Example:
        >>> default_data("yolo", registry)   # doctest: +SKIP
        ['data=shapes', 'data.task=detection']
    """
    return _implied_data([f"model={model}"], registry) or ["data=digits"]


def _code_values(parsed: list[Any], schemas: dict[str, Schema]) -> list[str]:
    """Values of code-typed fields (import paths) other than their defaults: the UI imports nothing it is sent."""
    from ..trust import code_value_problem

    problems = []
    for ov in parsed:
        group, _, name = ov.key_or_group.partition(".")
        spec = next((f for f in schemas[group].fields if f.name == name), None) if group in schemas and name else None
        why = code_value_problem(spec, ov.value(), None) if spec is not None else None
        if why:
            problems.append(why)
    return problems
