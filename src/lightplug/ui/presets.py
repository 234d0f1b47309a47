"""What ``+preset=NAME`` means for the form: the training part of each preset (``conf/preset/NAME.yaml``) as Hydra
composes it for a model, so that the form shows the values the command line would run with.

The model's part of a preset is the plugin's own (``x-presets`` of its JSON Schema); the run applies it on top
of the model's defaults (:func:`~lightplug.config.finalize.apply_preset`).

Example:
    >>> training_presets("mlp", registry)["easy"]   # doctest: +SKIP
    {'override': '+preset=easy', 'choices': {}, 'values': {'trainer.max_epochs': 10, 'optimizer.lr': 0.003}}
"""

from __future__ import annotations

from typing import Any

from ..config.preflight import group_options
from ..registry import Registry
from .core import FORM_GROUPS

__all__ = ["training_presets"]


def _flat(cfg: Any, groups: tuple[str, ...]) -> dict[str, Any]:
    """``group.key -> value`` of the form's groups (values that need a run's facts are left out)."""
    from omegaconf import OmegaConf

    out: dict[str, Any] = {}
    for group in groups:
        node = cfg.get(group)
        if node is None:
            continue
        for key in node:
            try:
                value = OmegaConf.select(node, str(key), throw_on_missing=True)
            except Exception:  # noqa: BLE001 - an interpolation that needs the run (facts): not a preset value
                continue
            if not OmegaConf.is_config(value):
                out[f"{group}.{key}"] = value
    return out


def training_presets(model: str, registry: Registry) -> dict[str, dict[str, Any]]:
    """For each preset of ``lightplug train model=MODEL +preset=NAME``: the group options it chooses and the values
    it sets (those its file names, and those that differ from the same options without it), as Hydra composes them.

    Returns:
        ``{NAME: {"override": "+preset=NAME", "choices": {"optimizer": "adamw", ...}, "values": {"optimizer.lr": 0.001, ...}}}``
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ..cli.train import register_configs
    from ..config.paths import conf_dir

    register_configs(registry, {"model": [model]}, only_chosen=True)
    found: dict[str, dict[str, Any]] = {}
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        defaults = compose("train", overrides=[f"model={model}"], return_hydra_config=True).hydra.runtime.choices
        for name in group_options("preset", registry):
            cfg = compose("train", overrides=[f"model={model}", f"+preset={name}"], return_hydra_config=True)
            picked = cfg.hydra.runtime.choices
            choices = {g: str(picked[g]) for g in FORM_GROUPS if picked.get(g) != defaults.get(g)}
            same = compose("train", overrides=[f"model={model}", *(f"{g}={o}" for g, o in choices.items())])
            before, after = _flat(same, FORM_GROUPS), _flat(cfg, FORM_GROUPS)
            named = _flat(OmegaConf.load(conf_dir() / "preset" / f"{name}.yaml"), FORM_GROUPS)  # set even where equal to a default
            values = {k: v for k, v in after.items() if before.get(k) != v or k in named}
            found[name] = {"override": f"+preset={name}", "choices": choices, "values": values}
    return found
