"""lightplug: train, validate, export and compare PyTorch models that ship as pip packages.

The public API. Importing it is cheap: torch and lightning load only when a function needs them.

Example:
    >>> import lightplug
    >>> [m["name"] for m in lightplug.list_models()]  # doctest: +SKIP
    ['mlp', 'simple_cnn', 'tiny_resnet']
    >>> net = lightplug.build_model("simple_cnn", width=48)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .data.plugins import LoaderConfig, LoaderData
from .errors import CheckpointError, ConfigError, DataError, LightplugError, PluginError
from .plugin import CallbackPlugin, DataPlugin, DetectionSettings, ModelPlugin, Param

__version__ = "0.1.0"
#: Version of the plugin contract (ModelPlugin, DataPlugin, CallbackPlugin, Param, batch layout).
PLUGIN_API_VERSION = 1

__all__ = [
    "__version__",
    "PLUGIN_API_VERSION",
    "ModelPlugin",
    "DataPlugin",
    "CallbackPlugin",
    "LoaderConfig",
    "LoaderData",
    "LightplugDataModule",
    "TensorDataModule",
    "Param",
    "DetectionSettings",
    "LightplugError",
    "ConfigError",
    "PluginError",
    "CheckpointError",
    "DataError",
    "list_models",
    "build_model",
    "load_model",
    "train",
    "BestEpochArtifacts",
    "export_checkpoint",
    "benchmark_checkpoint",
]

if TYPE_CHECKING:  # pragma: no cover
    from .api import build_model, list_models, load_model, train
    from .data.datamodule import LightplugDataModule, TensorDataModule
    from .evaluation.artifacts import BestEpochArtifacts
    from .export import export_checkpoint
    from .export.benchmark import benchmark_checkpoint

_LAZY = {"list_models": "api", "build_model": "api", "load_model": "api", "train": "api", "BestEpochArtifacts": "evaluation.artifacts",
         "export_checkpoint": "export", "benchmark_checkpoint": "export.benchmark",
         "LightplugDataModule": "data.datamodule", "TensorDataModule": "data.datamodule"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lightplug' has no attribute {name!r}")
