"""Checks of a command line before Hydra composes it: every bad override is reported at once, with
close matches for misspelt keys, group options and plugin names, before torch is imported."""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

from ..errors import ConfigError
from ..registry import Registry
from ..schema import Schema, check_values
from .core_schemas import core_schemas, run_schema
from .paths import conf_dir
from .values import coerce, data_problems

__all__ = ["parse_overrides", "group_options", "preflight", "checkpoint_problems", "output_problems", "top_level_keys", "unknown_top_keys"]

_PLUGIN_GROUPS = {"model": "model", "data": "data"}


def parse_overrides(args: list[str]) -> list[Any]:
    """Hydra's own parse of ``key=value`` overrides (``hydra.*`` and flags are left out)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    texts = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        return OverridesParser.create().parse_overrides(texts)
    except OverrideParseException as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"cannot parse the command line: {first}", hint="write overrides as key=value") from exc


def group_options(group: str, registry: Registry) -> list[str]:
    """The options of a config group: YAML files in ``conf/<group>`` and plugins of that kind."""
    names = {p.stem for p in (conf_dir() / group).glob("*.yaml")}
    kind = {"model": "model", "data": "data", "callbacks": "callback"}.get(group)
    if kind:
        names |= set(registry.names(kind))
    return sorted(names)


def _values(override: Any) -> list[Any]:
    if override.is_sweep_override():
        try:
            return list(override.sweep_iterator())
        except Exception:  # noqa: BLE001 - ranges and interval sweeps: nothing to check up front
            return []
    return [override.value()]


def preflight(args: list[str], registry: Registry, schemas: dict[str, Schema], owners: dict[str, str]) -> None:
    """Check overrides of known keys against their rules, and group choices against their options.

    Args:
        args: the command-line arguments for Hydra.
        registry: to name plugin options.
        schemas: ``model`` / ``data`` -> schema of the chosen plugin (absent when a sweep picks several).
        owners: ``model`` / ``data`` -> the chosen plugin's name, shown with a field's help.

    Raises:
        ConfigError: one line per problem.
    """
    problems: list[str] = []
    all_schemas = {**core_schemas(), **schemas}
    for ov in parse_overrides(args):
        found = list(dict.fromkeys(_override_problems(ov, registry, all_schemas, owners)))
        if len(found) > 1:  # a sweep (-m model.hidden=abc,def): one line for the override
            found = [f"{found[0]} (and {len(found) - 1} more value{'s' * (len(found) > 2)} of {ov.key_or_group} like it)"]
        problems += found
    problems += output_problems(args) + _resume_last_problems(args)
    if not problems and "data" in schemas:
        problems += _data_rules(args, registry, schemas["data"], owners.get("data", "digits"))
    if problems:
        raise ConfigError("invalid command line", problems=problems)


def _override_problems(ov: Any, registry: Registry, all_schemas: dict[str, Schema], owners: dict[str, str]) -> list[str]:
    """What is wrong with one override, one line per bad value (a sweep has several values)."""
    key = ov.key_or_group
    if key.startswith("hydra") or ov.is_delete():
        return []
    top, _, rest = key.partition(".")
    if not rest and top in run_schema().names():  # seed=-1, threads=0, ...
        return [line for value in _values(ov)
                for line in check_values(run_schema(), {top: value}, prefix="", owner="run", partial=True) or checkpoint_problems({top: value})]
    if top not in top_level_keys():  # +foo=bar, foo.x=1: not a key of the run config
        return [_unknown_top(top)]
    if not rest and ov.package is None:  # a group choice: optimizer=adamm
        if top in _PLUGIN_GROUPS or not (conf_dir() / top).is_dir():
            return []  # plugins are resolved by the registry with close matches
        options = group_options(top, registry)
        found = []
        for value in _values(ov):
            for v in value if isinstance(value, list) else [value]:
                if str(v) not in options:
                    close = difflib.get_close_matches(str(v), options, n=1)
                    did = f"did you mean {close[0]}? " if close else ""
                    found.append(f"{top}={v}: no such option ({did}available: {', '.join(options)})")
        return found
    schema = all_schemas.get(top)
    if schema is None or "." in rest:
        return []
    owner = owners.get(top, top)
    return [line for value in _values(ov) for line in check_values(schema, {rest: value}, prefix=top, owner=owner, partial=True)]


def _data_rules(args: list[str], registry: Registry, schema: Schema, name: str) -> list[str]:
    """The data plugin's rules across fields (its ``check`` hook) for the values the command line gives, over
    the defaults; sweeps and experiments are checked when each job's config is composed."""
    values = schema.defaults()
    for ov in parse_overrides(args):
        key = ov.key_or_group
        if key.startswith("data.") and "." not in key[5:] and not ov.is_delete():
            if ov.is_sweep_override():
                return []
            values[key[5:]] = ov.value()
    if check_values(schema, values, prefix="data", owner=name):
        return []  # missing or bad values: reported by the per-key checks or when the config is composed
    plugin = registry.get("data", name)
    return data_problems(plugin.instantiate(coerce(plugin.schema, values)))


def unknown_top_keys(cfg: dict[str, Any]) -> list[str]:
    """One line per root key of a composed config that is not a key of the run config (an experiment's typo)."""
    return [_unknown_top(str(k)) for k in cfg if str(k) not in top_level_keys()]


@lru_cache(maxsize=1)
def top_level_keys() -> frozenset[str]:
    """The keys a run config may have at its root: those of ``conf/train.yaml`` and the config groups."""
    import yaml

    root = yaml.safe_load((conf_dir() / "train.yaml").read_text())
    groups = {p.name for p in conf_dir().iterdir() if p.is_dir()}
    return frozenset(set(root) - {"defaults"} | groups | set(_PLUGIN_GROUPS))


def _unknown_top(key: str) -> str:
    known = sorted(top_level_keys() - {"hydra", "facts"})
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]}?" if close else f"the run config has: {', '.join(known)}"
    return f"{key}: unknown top-level key ({hint})"


def checkpoint_problems(values: dict[str, Any]) -> list[str]:
    """``resume=`` / ``init_from=`` files that cannot be checkpoints (missing, empty, truncated, not a
    zip archive), found without torch. What is inside is checked when the run loads it."""
    from ..checkpoint import checkpoint_file_problem

    problems = []
    for key in ("resume", "init_from"):
        value = values.get(key)
        if isinstance(value, str) and value and not (key == "resume" and value == "last"):
            problem = checkpoint_file_problem(value)
            if problem:
                problems.append(f"{key}={value}: {problem}")
    return problems


def _resume_last_problems(args: list[str]) -> list[str]:
    """``resume=last`` with no last.ckpt in the run folder nor under ./outputs (as the run would look)."""
    from pathlib import Path

    if "resume=last" not in args or any(a in _NO_RUN for a in args):
        return []
    given = [a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")]
    if given and "${" not in given[-1] and (Path(given[-1]).expanduser() / "checkpoints" / "last.ckpt").is_file():
        return []
    if any(Path("outputs").glob("*/*/checkpoints/last.ckpt")):
        return []
    return ["resume=last: no last.ckpt in this run folder or under outputs/ (give resume=PATH)"]


_NO_RUN = ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc")


def output_problems(args: list[str]) -> list[str]:
    """The run folder (``hydra.run.dir``, ``hydra.sweep.dir`` with ``-m``, else ./outputs) when it cannot be
    created and written, found before Hydra creates it or anything is trained."""
    import tempfile
    from pathlib import Path

    if any(a in _NO_RUN or a.startswith("--info") for a in args):
        return []
    key = "hydra.sweep.dir" if "-m" in args or "--multirun" in args else "hydra.run.dir"
    given = [a.split("=", 1)[1] for a in args if "=" in a and a.split("=", 1)[0].lstrip("+") == key]
    text = given[-1] if given else ("multirun" if key == "hydra.sweep.dir" else "outputs")
    if given and not text.strip():
        return [f"{key}=: empty, so the run would write into the working folder (give a folder, e.g. {key}=outputs/my_run)"]
    folder = Path(text.split("${", 1)[0] or ".").expanduser()  # up to the first interpolation (${now:...})
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    shown = f"{key}={text}" if given else f"the run folder ({text}/ under {Path.cwd()})"
    if probe.exists() and not probe.is_dir():
        return [f"{shown}: {probe} is a file, not a folder"]
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        return [f"{shown}: cannot write in {probe.resolve()} ({exc.strerror or exc}); choose a writable folder with {key}=DIR"]
    return []

