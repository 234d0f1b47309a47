"""``lightplug train ... --cfg job|all [--resolve] [--package P]`` and ``--info config|all``, answered by the core.

Hydra composes the config; lightplug then applies the model's preset, binds the data facts and fills in what the
run decides (``data.layout``, ``monitor``), see :func:`~lightplug.config.finalize.finalize`. Hydra's own ``--cfg`` and
``--info`` would print the config before that step, so these flags are answered here, through the compose API and the
same ``finalize``: what they print is the config the run uses, and what the run writes into ``.hydra/config.yaml``.
Hydra's search path, defaults tree and defaults list are Hydra's own output; ``--cfg hydra`` is Hydra's.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ..config.finalize import finalize, plain_choices
from ..config.paths import conf_dir
from ..errors import ConfigError

__all__ = ["flag_value", "print_config", "print_info"]


def flag_value(args: list[str], *names: str, default: str | None = None) -> str | None:
    """The value of ``--flag VALUE`` or ``--flag=VALUE`` in ``args`` (``default`` when the flag has none)."""
    for i, arg in enumerate(args):
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
            if arg == name:
                nxt = args[i + 1] if i + 1 < len(args) else ""
                return nxt if nxt and "=" not in nxt and not nxt.startswith("-") else default
    return None


def _overrides(args: list[str]) -> list[str]:
    return [a for a in args if "=" in a and not a.startswith("-")]


def _compose(args: list[str]) -> tuple[Any, Any, Any, Any]:
    """The finalized job config (interpolations kept), the plain resolved one, Hydra's own node and the model's schema."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    overrides = _overrides(args)
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)  # `${hydra:...}` resolves as in Hydra's own --cfg
        hydra_node = OmegaConf.create({"hydra": OmegaConf.to_container(cfg.hydra, resolve=False)})
        run = finalize(cfg, plain_choices(cfg.hydra.runtime.choices), overrides)
    from ..registry import get_registry

    registry = get_registry()
    schema, _ = registry.schema(registry.find("model", run.model_name))
    return cfg, OmegaConf.create(run.cfg), hydra_node, schema


def print_config(args: list[str], which: str, resolve: bool, package: str | None) -> int:
    """``--cfg job`` or ``--cfg all``, like Hydra prints them (``# @package P`` before a package's node)."""
    from omegaconf import Container, OmegaConf

    cfg, resolved, hydra_node, schema = _compose(args)
    shown = resolved if resolve else cfg
    if which == "all":
        shown = OmegaConf.merge(hydra_node, shown)
        if resolve:
            OmegaConf.resolve(shown)
    if package in (None, "", "_global_"):
        sys.stdout.write(_mark_fixed(OmegaConf.to_yaml(shown), schema))
        return 0
    node = OmegaConf.select(shown, package)
    if node is None:
        keys = ", ".join(str(k) for k in shown)
        raise ConfigError(f"--package {package}: no such package in the config (top-level packages: {keys})")
    if not isinstance(node, Container):
        print(node)
        return 0
    print(f"# @package {package}")
    text = OmegaConf.to_yaml(node)
    if package == "model":  # the model's fields, marked as in the whole config
        text = _mark_fixed("model:\n" + "".join(f"  {line}\n" for line in text.splitlines()), schema).split("\n", 1)[1]
        text = "".join(line[2:] + "\n" for line in text.splitlines())
    sys.stdout.write(text)
    return 0


def _mark_fixed(text: str, schema: Any) -> str:
    """The YAML of a job with ``# fixed: WHY`` after each fixed model field (kept at the value its code gives)."""
    fixed = {f.name: f.help for f in schema.fields if f.fixed}
    lines, in_model = [], False
    for line in text.splitlines():
        if line and not line.startswith(" "):
            in_model = line.startswith("model:")
        key = line.strip().split(":", 1)[0]
        if in_model and line.startswith("  ") and not line.startswith("   ") and key in fixed:
            line += f"  # fixed: {fixed[key]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def print_info(args: list[str], which: str) -> int:
    """``--info config`` (and ``all``): Hydra's search path, defaults tree and defaults list, then the config the
    run uses under Hydra's ``Config`` heading."""
    from omegaconf import OmegaConf

    from .train import run_hydra

    cfg, _, _, _ = _compose(args)  # first, so that a bad config fails before anything is printed
    flags = [a for a in args if not a.startswith(("--info", "-i")) and a not in ("config", "all")]
    root = logging.getLogger()
    logging.raiseExceptions = False  # `... --info | head`: a closed pipe ends the output quietly
    for part in (["plugins"] if which == "all" else []) + ["searchpath", "defaults-tree", "defaults"]:
        handlers, level = list(root.handlers), root.level
        try:
            run_hydra([*flags, "--info", part])
        finally:  # each --info adds a stdout handler to the root logger and sets it to DEBUG
            root.handlers[:], root.level = handlers, level
    sys.stdout.flush()
    print("\nConfig\n******")
    sys.stdout.write(OmegaConf.to_yaml(cfg))
    return 0
