"""Configuration: plugin schemas in Hydra's ConfigStore, command-line checks, presets, data facts and
validation of the composed config."""

from .finalize import RunConfig, finalize
from .paths import conf_dir

__all__ = ["RunConfig", "finalize", "conf_dir"]
