"""The Python API behind ``lightplug.list_models``, ``build_model``, ``load_model`` and ``train``."""

from __future__ import annotations

from typing import Any

from .checkpoint import load_model
from .errors import ConfigError
from .registry import get_registry
from .schema import check_values

__all__ = ["list_models", "build_model", "load_model", "train"]


def list_models(task: str | None = None, check: bool = False) -> list[dict[str, Any]]:
    """Installed model plugins as dicts (name, version, package, task, description, status).

    Args:
        task: only plugins of this task (``classification``, ``regression``, ...).
        check: load every plugin so that task and status are current (imports them).

    Example:
        >>> [m["name"] for m in lightplug.list_models(task="classification", check=True)]  # doctest: +SKIP
        ['mlp', 'simple_cnn', 'tiny_resnet']
    """
    from .cli.models import listing_rows

    return listing_rows(get_registry(), "model", check=check or task is not None, task=task)


def build_model(name_or_path: str, **overrides: Any) -> Any:
    """Build a plugin's ``nn.Module`` with its defaults, changed by ``overrides``.

    Args:
        name_or_path: a plugin name, ``dist:name``, or ``package.module:Class``.
        **overrides: field values, checked against the plugin's schema and its ``check`` hook (all problems
            reported at once).

    Example:
        >>> net = lightplug.build_model("mlp", hidden=32)  # doctest: +SKIP
    """
    loaded = get_registry().get("model", name_or_path)
    values = {**loaded.schema.defaults(), **overrides}
    values = {k: v for k, v in values.items() if v != "???"}
    problems = check_values(loaded.schema, values, prefix="model", owner=name_or_path)
    if problems:
        raise ConfigError("invalid model settings", problems=problems)
    plugin = loaded.instantiate(values)
    if hasattr(type(plugin), "check"):  # the plugin's own cross-field rules, as `lightplug train` applies them
        problems = [str(p) for p in plugin.check(plugin.cfg) or []]
        if problems:
            raise ConfigError("invalid model settings", problems=problems)
    net = plugin.build(plugin.cfg)
    if getattr(plugin, "loads_weights_file", False) and values.get("weights_file"):  # import paths: model.weights_file=PATH
        from .weights import load_weights_file

        load_weights_file(getattr(net, "inner_model", net), values["weights_file"])
    return net


def train(*overrides: str) -> float | None:
    """Run ``lightplug train`` in this process with command-line style overrides; return the best metric.

    Example:
        >>> lightplug.train("model=mlp", "trainer.max_epochs=2", "hydra.run.dir=/tmp/run")  # doctest: +SKIP
    """
    from hydra import compose, initialize_config_dir

    from .cli.train import _choices, data_for_models, register_configs
    from .config.finalize import finalize, plain_choices
    from .config.paths import conf_dir
    from .training import run_training

    args = list(overrides)
    run_dir = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")), None)
    args = [a for a in args if not a.startswith("hydra.")]
    args += data_for_models(args, get_registry())  # data of the model's task when none is named, as the CLI does
    register_configs(get_registry(), _choices(args))
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=args, return_hydra_config=True)
    if run_dir is None:
        from datetime import datetime

        run_dir = f"outputs/{datetime.now():%Y-%m-%d/%H-%M-%S}"
    run = finalize(cfg, plain_choices(cfg.hydra.runtime.choices), args)
    return run_training(run, run_dir)
