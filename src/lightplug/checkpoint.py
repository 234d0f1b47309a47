"""Self-describing checkpoints: read safely (``weights_only=True``), checked, and turned back into the
trained ``nn.Module`` with no config at hand."""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Any

from .errors import CheckpointError, LightplugError

__all__ = ["CHECKPOINT_FORMAT", "read_checkpoint", "load_model", "model_from_checkpoint", "describe"]

log = logging.getLogger(__name__)

#: Version of the ``lightplug`` section of a checkpoint.
CHECKPOINT_FORMAT = 1


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint file without running any code stored in it.

    Raises:
        CheckpointError: missing, empty, truncated, unsafe (needs pickled code) or not a lightplug checkpoint.
    """
    import pickle

    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p}: no such file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p}: the file is empty")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported" in str(exc) or "global" in str(exc).lower():
            raise CheckpointError(f"checkpoint {p} was refused: it holds pickled objects that would run code on load ({first[:160]})",
                                  hint="only load checkpoints you trust; lightplug checkpoints never need this") from exc
        raise CheckpointError(f"checkpoint {p} is damaged: {first[:160]}") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {p} is damaged or truncated: {first[:160]}") from exc
    if not isinstance(ckpt, dict) or "lightplug" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {p} is not a lightplug checkpoint (no 'lightplug' section)",
                              hint="pass a best.ckpt or last.ckpt written by `lightplug train`")
    meta = ckpt["lightplug"]
    if int(meta.get("format", 0)) > CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {p} has format {meta.get('format')}, newer than this lightplug reads ({CHECKPOINT_FORMAT})",
                              hint="upgrade lightplug")
    return ckpt


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``lightplug`` section of a checkpoint: plugin, config, labels, preprocessing."""
    return dict(read_checkpoint(path)["lightplug"])


def model_from_checkpoint(ckpt: dict[str, Any], where: str = "checkpoint") -> tuple[Any, Any]:
    """Rebuild the plugin's module from a loaded checkpoint and load its weights.

    A field added to the plugin after the checkpoint was written takes its default; a field that no
    longer exists is dropped with a warning.

    Returns:
        (the ``nn.Module`` in eval mode, the plugin object).
    """
    from .registry import get_registry
    from .schema import check_values

    meta = ckpt["lightplug"]
    info = meta["plugin"]
    registry = get_registry()
    name = info["name"]
    try:
        try:
            loaded = registry.get("model", name)
        except LightplugError:
            if info.get("source") not in ("local", "path") or (info.get("source") == "local" and not Path(info.get("target", "")).is_file()):
                raise
            from .registry import PluginRef  # a prototype from a plugin folder or a class path: load it where it was

            loaded = registry.load(PluginRef("model", name, info["target"], info["source"]))
    except LightplugError as exc:
        raise CheckpointError(f"{where} was trained with model {name!r} ({info.get('dist') or info.get('source')}), which cannot be loaded here: {exc}",
                              hint=f"install {info.get('dist') or 'that plugin'}") from exc
    values = dict(meta["model_config"])
    known = set(loaded.schema.names())
    for key in [k for k in values if k not in known]:
        log.warning("%s: setting model.%s is no longer known to %s; ignored", where, key, name)
        values.pop(key)
    for spec in loaded.schema.fields:
        values.setdefault(spec.name, spec.default)
    problems = check_values(loaded.schema, values, prefix="model", owner=name)
    if problems:
        raise CheckpointError(f"{where} does not fit {name} {loaded.ref.version or ''}: {problems[0]}")
    plugin = loaded.instantiate(values)
    net = plugin.build(plugin.cfg)
    state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise CheckpointError(f"{where} does not fit model {name!r}: {detail[:200]}") from exc
    net.eval()
    return net, plugin


def load_model(path: str | os.PathLike[str]) -> Any:
    """The trained ``nn.Module`` of a checkpoint, in eval mode, with no config needed.

    The checkpoint's self-description is attached as ``model.lightplug_meta`` (plugin, task, label names,
    preprocessing, the full resolved config).

    Example:
        >>> net = lightplug.load_model("outputs/2026-11-25/12-00-00/checkpoints/best.ckpt")  # doctest: +SKIP
        >>> net(torch.zeros(1, 1, 8, 8)).argmax(-1)  # doctest: +SKIP
    """
    ckpt = read_checkpoint(path)
    net, _ = model_from_checkpoint(ckpt, where=f"checkpoint {path}")
    net.lightplug_meta = ckpt["lightplug"]
    return net
