"""Local weight files: read safely, fitted to a built model, never downloaded.

- :func:`read_state_dict`: the tensors of a ``.safetensors`` file or a ``torch.save``-d state dict, read without
  running code from it (``weights_only=True``).
- :func:`load_weights_file`: ``model.weights_file=PATH`` of an import-path model: loaded after the build; a
  tensor whose first dimension differs (a head for another number of classes) stays as built.
- :func:`weights_problem`: a torchvision weights enum member is usable only when its file is already in the torch
  hub cache; lightplug never downloads.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import argparse
import enum
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["read_state_dict", "load_weights_file", "is_weights_enum", "weights_problem"]

log = logging.getLogger(__name__)


def _why(exc: Exception) -> str:
    """Why a weights file could not be read, in a few words."""
    text = str(exc)
    if "GLOBAL" in text:
        return "it holds pickled objects that would run code when loaded"
    if "Weights only load failed" in text or type(exc).__name__ == "UnpicklingError":
        return "not a weights file, or damaged"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:160]


def read_state_dict(path: str, key: str = "model.weights_file") -> dict[str, torch.Tensor]:
    """The tensors of a weights file, read without running code from it: a ``.safetensors`` file, or a
    ``torch.save``-d state dict (also under a ``state_dict`` or ``model`` key, as lightplug/Lightning and
    timm's training script write them), loaded with ``weights_only=True``.

    The prefixes ``module.`` (``DataParallel``) and ``net.`` (lightplug checkpoints) are removed.

    Args:
        path: the file.
        key: how messages name the setting (``model.weights_file``, ``model.pretrained_file``).

    Raises:
        CheckpointError: the file is missing, unreadable, unsafe, or holds no tensors.
    """
    import torch

    file = Path(path).expanduser()
    if not file.is_file():
        raise CheckpointError(f"{key}={path}: no such file")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(file))
        else:
            with torch.serialization.safe_globals([argparse.Namespace]):  # timm's train.py stores its args
                data = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the reader raises, the file is unusable
        raise CheckpointError(f"{key}={path}: cannot read weights from it ({_why(exc)})",
                              hint="give a .safetensors file or a state dict saved with torch.save") from exc
    for inner in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(inner), dict):
            data = data[inner]
            break
    state = {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)} if isinstance(data, dict) else {}
    if not state:
        raise CheckpointError(f"{key}={path}: holds no state dict (tensors by parameter name)")
    for prefix in ("module.", "net."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_weights_file(net: nn.Module, path: str, key: str = "model.weights_file") -> list[str]:
    """Load ``path`` into ``net``. A tensor whose shape differs only in its first dimension (a classifier for
    another number of classes) stays as built; any other difference is refused.

    Returns:
        The names of the tensors left as built.

    Raises:
        CheckpointError: the file cannot be read, or does not fit the model (named: the first tensor that differs).
    """
    state = read_state_dict(path, key)
    own = net.state_dict()
    kept: list[str] = []
    for name, value in list(state.items()):
        if name not in own or own[name].shape == value.shape:
            continue
        if value.ndim == own[name].ndim and value.shape[1:] == own[name].shape[1:]:
            kept.append(name)
            del state[name]
            continue
        raise CheckpointError(f"{key}={path} does not fit the model: {name} has shape {tuple(value.shape)}, the model needs {tuple(own[name].shape)}")
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in kept]
    if missing or result.unexpected_keys:
        example = (missing or result.unexpected_keys)[0]
        raise CheckpointError(f"{key}={path} does not fit the model: {len(missing)} tensors missing, {len(result.unexpected_keys)} unexpected "
                              f"(e.g. {example})", hint="was it saved from another architecture?")
    if kept:
        log.info("%s=%s: %s left as built (another number of classes)", key, path, ", ".join(kept))
    return kept


def is_weights_enum(cls: type) -> bool:
    """Whether ``cls`` is a weights enum (torchvision's ``WeightsEnum``: members with a download ``url``)."""
    if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
        return False
    if any(c.__name__ == "WeightsEnum" for c in cls.__mro__):
        return True
    members = list(cls)  # type: ignore[var-annotated]
    return bool(members) and all(isinstance(getattr(m.value, "url", None), str) for m in members)


def _hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_problem(key: str, member: Any) -> str | None:
    """Why ``member`` (a weights enum member) cannot be used here, or None: its file must already be in the
    torch hub cache (``torch.hub.get_dir()/checkpoints``); lightplug downloads nothing."""
    url = getattr(getattr(member, "value", None), "url", None) or getattr(member, "url", None)
    if not isinstance(url, str):
        return None
    name = os.path.basename(urlparse(url).path)
    folder = _hub_checkpoints()
    if (folder / name).is_file():
        return None
    return (f"{key}={member.name}: its file {name} is not in the torch hub cache ({folder}); lightplug downloads nothing: put the file "
            f"there, or give model.weights_file=PATH")
