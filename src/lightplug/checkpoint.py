"""Self-describing checkpoints: read safely (``weights_only=True``), checked, and turned back into the
trained ``nn.Module`` with no config at hand."""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from .trust import Consent

__all__ = ["CHECKPOINT_FORMAT", "checkpoint_file_problem", "read_checkpoint", "load_model", "model_from_checkpoint", "describe"]

log = logging.getLogger(__name__)

#: Version of the ``lightplug`` section of a checkpoint.
CHECKPOINT_FORMAT = 1


def checkpoint_file_problem(path: str | os.PathLike[str]) -> str | None:
    """What makes ``path`` unusable as a checkpoint file, found without torch (missing, a folder, empty,
    not a complete zip archive as ``torch.save`` writes), or None. ``store:NAME[/vN]`` is checked in the model store."""
    if str(path).startswith("store:"):
        from .store import entry_problem

        return entry_problem(str(path))
    p = Path(path)
    if not p.exists():
        return "no such file"
    if not p.is_file():
        return "not a file"
    try:
        if p.stat().st_size == 0:
            return "the file is empty"
        if not zipfile.is_zipfile(p):
            return "not a PyTorch checkpoint, or truncated (no complete zip archive in it)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def read_checkpoint(path: str | os.PathLike[str], label: str | None = None, mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint file without running any code stored in it (``weights_only=True``).

    Args:
        path: the ``.ckpt`` file, or ``store:NAME[/vN]`` (a published model, see :mod:`lightplug.store`).
        label: how messages name it (default ``checkpoint PATH``; ``resume=PATH`` from the CLI).
        mmap: map the tensors instead of reading them (``torch.load(mmap=True)``): the metadata and the
            shapes cost milliseconds whatever the file's size, and a tensor's bytes are read only when used.
            For checks; lightplug writes checkpoints by atomic rename, so a mapped file is never changed.

    Raises:
        CheckpointError: missing, empty, truncated, unsafe (needs pickled code), malformed or not a
            lightplug checkpoint; one line that says which.
    """
    if str(path).startswith("store:"):  # a published model: safetensors + YAML card, see lightplug.store
        from .store import as_checkpoint

        return as_checkpoint(str(path), label=label)
    import pickle
    import re

    import torch

    p = Path(path)
    name = label or f"checkpoint {p}"
    problem = checkpoint_file_problem(p)
    if problem:
        raise CheckpointError(f"{name}: {problem}")
    try:
        try:
            ckpt = torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as exc:
            if not mmap or "mmap" not in str(exc):  # mmap needs the zip format; older files are read whole
                raise
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found or "Weights only load failed" in text:
            what = f"it would import and call {found.group(1)} when loaded" if found else "it holds objects that only a full unpickle can build"
            raise CheckpointError(f"{name}: refused, {what}",
                                  hint="only load checkpoints you trust; lightplug checkpoints hold tensors and plain data only") from exc
        raise CheckpointError(f"{name}: damaged ({_first_line(text)})") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged archive; none may escape
        raise CheckpointError(f"{name}: damaged or truncated ({_first_line(str(exc)) or type(exc).__name__})") from exc
    if not isinstance(ckpt, dict) or "lightplug" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{name}: not a lightplug checkpoint (no 'lightplug' section)",
                              hint="pass a best.ckpt or last.ckpt written by `lightplug train`")
    meta = ckpt["lightplug"]
    if not isinstance(meta, dict) or not isinstance(meta.get("plugin"), dict) or not isinstance(ckpt["state_dict"], dict):
        raise CheckpointError(f"{name}: malformed lightplug checkpoint (its 'lightplug' or 'state_dict' section is not what lightplug writes)")
    if int(meta.get("format", 0)) > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{name} has format {meta.get('format')}, newer than this lightplug reads ({CHECKPOINT_FORMAT})",
                              hint="upgrade lightplug")
    return ckpt


def _first_line(text: str, limit: int = 120) -> str:
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``lightplug`` section of a checkpoint: plugin, config, labels, preprocessing."""
    return dict(read_checkpoint(path)["lightplug"])


def model_from_checkpoint(ckpt: dict[str, Any], where: str = "checkpoint", allowed: Consent | None = None) -> tuple[Any, Any]:
    """Rebuild the plugin's module from a loaded checkpoint and load its weights.

    The plugin is found as :mod:`lightplug.trust` says: an installed plugin by name; an import path or a
    local plugin only when ``allowed`` names it or trusts code. A field added to the plugin after the
    checkpoint was written takes its default; a field that no longer exists is dropped with a warning.

    Returns:
        (the ``nn.Module`` in eval mode, the plugin object).

    Raises:
        UntrustedCode: the checkpoint asks for code the user did not name. CheckpointError: it does not fit.
    """
    from .schema import check_values
    from .trust import check_code_values, resolve_model

    meta = ckpt["lightplug"]
    info = meta["plugin"]
    name = info["name"]
    loaded = resolve_model(info, where, allowed)
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
    check_code_values(loaded.schema, values, where, allowed)
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


def load_model(path: str | os.PathLike[str], model: str | None = None, trust_code: bool | None = None) -> Any:
    """The trained ``nn.Module`` of a checkpoint, in eval mode, with no config needed.

    The checkpoint's self-description is attached as ``model.lightplug_meta`` (plugin, task, label names,
    preprocessing, the full resolved config).

    Args:
        path: a ``.ckpt`` file or ``store:NAME[/vN]``.
        model: the code it was trained with, when that is an import path (``"pkg.mod:Name"``) or a local
            plugin (``"NAME"``): naming it is the consent to run it (see :mod:`lightplug.trust`). An installed
            plugin needs nothing.
        trust_code: run whatever code the file names (default: ``$LIGHTPLUG_TRUST_CODE``).

    Example:
        >>> net = lightplug.load_model("outputs/2026-11-25/12-00-00/checkpoints/best.ckpt")  # doctest: +SKIP
        >>> net(torch.zeros(1, 1, 8, 8)).argmax(-1)  # doctest: +SKIP
        >>> net = lightplug.load_model("store:digits_mlp/v1")  # doctest: +SKIP
        >>> net = lightplug.load_model("run/checkpoints/best.ckpt", model="torchvision.models:resnet18")  # doctest: +SKIP
    """
    from .trust import consent

    allowed = consent(model, trust_code, how="api")
    if str(path).startswith("store:"):  # a published model (lightplug store add)
        from .store import load

        return load(str(path), allowed=allowed)
    ckpt = read_checkpoint(path)
    net, _ = model_from_checkpoint(ckpt, where=f"checkpoint {path}", allowed=allowed)
    net.lightplug_meta = ckpt["lightplug"]
    return net
