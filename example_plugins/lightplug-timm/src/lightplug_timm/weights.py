"""Local weight files for timm models: read safely, fitted to the built model, never downloaded."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from lightplug import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["read_state_dict", "load_local_weights"]

log = logging.getLogger(__name__)


def _names(cfg: dict[str, Any], key: str) -> tuple[str, ...]:
    value = cfg.get(key) or ()
    return (value,) if isinstance(value, str) else tuple(value)


def _under(key: str, modules: tuple[str, ...]) -> bool:
    return any(key == m or key.startswith(m + ".") for m in modules)


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The tensors of ``model.pretrained_file``, read without running code from it (lightplug's own reader:
    ``.safetensors`` or a ``torch.save``-d state dict, ``weights_only=True``).

    Raises:
        CheckpointError: the file is missing, unreadable, unsafe, or holds no tensors.
    """
    from lightplug.weights import read_state_dict as read

    return read(path, key="model.pretrained_file")


def load_local_weights(net: nn.Module, path: str) -> list[str]:
    """Load the weights of ``path`` into the timm model ``net``, as timm does for its pretrained weights:
    the first convolution is adapted to another number of input channels, and a classifier of another
    shape (another number of classes) is left as initialised.

    Args:
        net: a model from ``timm.create_model`` (its ``pretrained_cfg`` names the classifier and first conv).
        path: the weights file.

    Returns:
        The names of the tensors that were skipped (the classifier's, when its shape differs).

    Raises:
        CheckpointError: the file cannot be read, or its weights do not fit the architecture.
    """
    from timm.models import adapt_input_conv

    state = read_state_dict(path)
    own = net.state_dict()
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    arch = cfg.get("architecture", type(net).__name__)
    skipped: list[str] = []
    for key, value in list(state.items()):
        if key not in own or own[key].shape == value.shape:
            continue
        if _under(key, _names(cfg, "first_conv")) and value.ndim == 4 and value.shape[0] == own[key].shape[0]:
            try:
                state[key] = adapt_input_conv(own[key].shape[1], value)
            except (NotImplementedError, AssertionError, ValueError) as exc:
                raise CheckpointError(f"model.pretrained_file={path}: cannot adapt {key} {tuple(value.shape)} to {own[key].shape[1]} input channels") from exc
        elif _under(key, _names(cfg, "classifier")):
            skipped.append(key)
            del state[key]
        else:
            raise CheckpointError(f"model.pretrained_file={path} does not fit model.arch={arch}: {key} has shape {tuple(value.shape)}, "
                                  f"the model needs {tuple(own[key].shape)}")
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in skipped]
    if missing or result.unexpected_keys:
        example = (missing or result.unexpected_keys)[0]
        raise CheckpointError(f"model.pretrained_file={path} does not fit model.arch={arch}: {len(missing)} tensors missing, "
                              f"{len(result.unexpected_keys)} unexpected (e.g. {example})", hint="was it saved from another architecture?")
    if skipped:
        log.info("model.pretrained_file=%s: %s left as initialised (another number of classes)", path, ", ".join(skipped))
    return skipped
