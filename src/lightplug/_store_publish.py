"""Publishing into the model store (:func:`lightplug.store.add`): the weights as safetensors and a YAML
card, written into a temporary folder and renamed into ``<plugin>/<name>/vN`` in one step."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import CheckpointError, LightplugError
from .store import _NAME, _VERSION, CARD, STORE_FORMAT, WEIGHTS, StoreEntry, _version_number, _versions

if TYPE_CHECKING:  # pragma: no cover
    from .trust import Consent

__all__ = ["publish"]

log = logging.getLogger(__name__)


def _next_version(model_dir: Path) -> str:
    """``v1``, or one past the highest published version."""
    versions = _versions(model_dir)
    return f"v{(_version_number(versions[-1]) or 0) + 1 if versions else 1}"


def _exists(model_dir: Path, version: str) -> LightplugError:
    return LightplugError(f"{model_dir / version}: {version} of {model_dir.parent.name}/{model_dir.name} exists; versions are never overwritten",
                          hint=f"omit --version to publish {_next_version(model_dir)}")


def _plugin_dir(info: dict[str, Any]) -> str:
    """The folder of a plugin: its entry-point name (``dist:name`` drops the dist), made file-safe."""
    name = str(info.get("name") or "unknown")
    if info.get("source") == "entry-point":
        name = name.rpartition(":")[2]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "unknown"


def _source_checkpoint(source: Path) -> Path:
    """A run folder's ``checkpoints/best.ckpt`` (else ``last.ckpt``), or the checkpoint file itself."""
    if source.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (source / "checkpoints" / name).is_file():
                return source / "checkpoints" / name
        raise LightplugError(f"{source}: no checkpoints/best.ckpt or checkpoints/last.ckpt in this folder",
                             hint="give a run folder written by `lightplug train`, or a .ckpt file")
    return source


def _run_summary(ckpt: Path) -> dict[str, Any]:
    """The run's summary.json (``<run>/checkpoints/x.ckpt`` -> ``<run>/summary.json``), or {}."""
    path = ckpt.resolve().parent.parent / "summary.json"
    try:
        summary = json.loads(path.read_text())
        return summary if isinstance(summary, dict) else {}
    except (OSError, ValueError):
        return {}


def _structural(meta: dict[str, Any], where: str, allowed: Consent) -> dict[str, Any]:
    """The structural settings of the checkpoint's model config, by the plugin's schema (or, when the
    plugin is not installed here, by type: ints, strings and lists of ints). The plugin is found by the
    trust rule: an import path or a local plugin the user did not name is refused, never imported."""
    from .trust import UntrustedCode, resolve_model

    config = meta["model_config"]
    try:
        schema = resolve_model(meta["plugin"], where, allowed).schema
        names = {f.name for f in schema.fields if f.structural}
    except UntrustedCode:
        raise
    except LightplugError as exc:
        log.warning("structural settings guessed from their types: %s", exc)
        names = {k for k, v in config.items() if (isinstance(v, (int, str)) and not isinstance(v, bool))
                 or (isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v))}
    return {k: v for k, v in config.items() if k in names}


def _plain(value: Any) -> Any:
    """Plain YAML-safe data (tuples become lists, anything odd a string)."""
    return json.loads(json.dumps(value, default=str))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def _card(meta: dict[str, Any], ckpt: Path, name: str, notes: str, weights: dict[str, Any], structural: dict[str, Any]) -> dict[str, Any]:
    """The card of a new version (its ``version`` is set when the folder is named)."""
    from datetime import datetime, timezone

    from . import __version__

    summary = _run_summary(ckpt)
    monitor = meta.get("monitor") or summary.get("monitor")
    metrics = summary.get("metrics") or {}
    is_best = ckpt.name == "best.ckpt" or str(summary.get("best_checkpoint") or "") == str(ckpt.resolve())
    score = summary.get("best") if is_best else metrics.get(monitor)
    info = meta["plugin"]
    return _plain({
        "format": STORE_FORMAT, "name": name, "version": None,
        "plugin": {k: info.get(k) for k in ("name", "dist", "version", "target", "source")},
        "task": meta.get("task"),
        "monitor": monitor, "monitor_mode": (meta.get("config") or {}).get("monitor_mode"), "score": score, "metrics": metrics,
        "structural": structural, "model_config": meta["model_config"],
        "label_names": list(meta.get("label_names") or []), "preprocessing": meta.get("preprocessing") or {},
        "facts": meta.get("facts") or {}, "data": meta.get("data") or {}, "preset": meta.get("preset"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "source": str(ckpt.resolve()),
        "weights": weights, "lightplug_version": __version__, "trained_with_lightplug": meta.get("lightplug_version"),
        "notes": notes, "training_config": meta.get("config") or {},
    })


def publish(source: Path, name: str, version: str | None, notes: str, root: Path, allowed: Consent | None = None) -> StoreEntry:
    """Publish ``source`` as ``name`` into ``root``; see :func:`lightplug.store.add`."""
    if not _NAME.match(name) or _VERSION.match(name):
        raise LightplugError(f"--name {name!r}: not a safe model name", hint="use lowercase letters, digits, _ and - (e.g. digits_mlp), not vN")
    if version is not None and not _VERSION.match(version):
        raise LightplugError(f"--version {version!r}: not a version", hint="write vN, e.g. v3")
    ckpt_path = _source_checkpoint(Path(source))

    import torch
    from safetensors.torch import save_file

    from .checkpoint import read_checkpoint
    from .trust import consent

    ckpt = read_checkpoint(ckpt_path)
    meta = ckpt["lightplug"]
    if not isinstance(meta.get("model_config"), dict):
        raise CheckpointError(f"checkpoint {ckpt_path}: its 'lightplug' section has no model_config")
    structural = _structural(meta, f"checkpoint {ckpt_path}", allowed or consent())  # before anything is written
    state = {k[4:]: v.detach().clone().contiguous() for k, v in ckpt["state_dict"].items()
             if k.startswith("net.") and isinstance(v, torch.Tensor)}  # clones: tied weights must not share memory
    if not state:
        raise CheckpointError(f"checkpoint {ckpt_path}: holds no model weights (no 'net.' tensors)")
    model_dir = root / _plugin_dir(meta["plugin"]) / name
    if version is not None and (model_dir / version).exists():
        raise _exists(model_dir, version)
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt", "lightplug_store": str(STORE_FORMAT)})
        _fsync(tmp / WEIGHTS)
        weights = {"file": WEIGHTS, "sha256": _sha256(tmp / WEIGHTS), "bytes": (tmp / WEIGHTS).stat().st_size,
                   "tensors": len(state), "parameters": sum(int(v.numel()) for v in state.values())}
        card = _card(meta, ckpt_path, name, notes, weights, structural)
        for _ in range(100):  # another process may take the same number between our look and the rename
            chosen = version or _next_version(model_dir)
            card["version"] = chosen
            (tmp / CARD).write_text(yaml.safe_dump(card, sort_keys=False, allow_unicode=True), encoding="utf-8")
            _fsync(tmp / CARD)
            if not (model_dir / chosen).exists():
                try:
                    os.rename(tmp, model_dir / chosen)
                    return StoreEntry(model_dir.parent.name, name, chosen, model_dir / chosen)
                except OSError:
                    pass
            if version is not None:
                raise _exists(model_dir, version)
        raise LightplugError(f"{model_dir}: could not claim a new version number")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
