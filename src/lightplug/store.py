"""A versioned model store: trained weights published by name and version, loaded with no config at hand.

Layout, under ``$LIGHTPLUG_STORE`` (default ``~/.lightplug/store``)::

    <plugin>/<name>/v1/weights.safetensors   the ``net.`` state_dict of the checkpoint
    <plugin>/<name>/v1/card.yaml             plugin, settings, labels, preprocessing, metrics, sha256, ...

A reference is ``store:NAME``, ``store:NAME/vN``, ``store:PLUGIN/NAME`` or ``store:PLUGIN/NAME/vN``
(the latest version when none is given). Versions are written once, atomically (a temporary folder
renamed into place), and never overwritten. Reading an entry never unpickles anything: the card is
read with ``yaml.safe_load``, the weights with safetensors, and the weights' sha256 is checked.

Example:
    >>> entry = lightplug.store.add("outputs/2026-01-01/12-00-00", name="digits_mlp")  # doctest: +SKIP
    >>> net = lightplug.load_model("store:digits_mlp")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import CheckpointError, LightplugError

__all__ = ["ENV_STORE", "PREFIX", "STORE_FORMAT", "StoreEntry", "store_root", "is_ref", "parse_ref", "resolve", "read_card",
           "list_entries", "add", "entry_problem", "as_checkpoint", "load", "check_structural"]

log = logging.getLogger(__name__)

ENV_STORE = "LIGHTPLUG_STORE"
PREFIX = "store:"
#: Version of the card layout; a newer card is refused with "upgrade lightplug".
STORE_FORMAT = 1
WEIGHTS, CARD = "weights.safetensors", "card.yaml"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_VERSION = re.compile(r"^v([1-9][0-9]{0,8})$")
_REQUIRED = ("format", "name", "version", "plugin", "task", "model_config", "weights")


@dataclass(frozen=True)
class StoreEntry:
    """One published version: ``<root>/<plugin>/<name>/<version>/``."""

    plugin: str
    name: str
    version: str
    path: Path

    @property
    def ref(self) -> str:
        """The full reference, e.g. ``store:mlp/digits_mlp/v2``."""
        return f"{PREFIX}{self.plugin}/{self.name}/{self.version}"

    @property
    def card_path(self) -> Path:
        return self.path / CARD

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS


def store_root() -> Path:
    """The store folder: ``$LIGHTPLUG_STORE``, else ``~/.lightplug/store`` (it may not exist yet).

    Raises:
        LightplugError: that path, or a folder above it, is a file.
    """
    given = os.environ.get(ENV_STORE, "").strip()
    root = Path(given).expanduser().resolve() if given else Path.home() / ".lightplug" / "store"
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = f"{ENV_STORE}={given}" if given else f"the store folder {root}"
        raise LightplugError(f"{where}: {probe} is a file, not a folder", hint=f"point {ENV_STORE} at a folder")
    return root


def _version_number(text: str) -> int | None:
    found = _VERSION.match(text)
    return int(found.group(1)) if found else None


def _versions(model_dir: Path) -> list[str]:
    """The published versions of one model folder, oldest first (temporary folders are skipped)."""
    if not model_dir.is_dir():
        return []
    found = [(n, p.name) for p in model_dir.iterdir() if p.is_dir() and (n := _version_number(p.name)) is not None]
    return [name for _, name in sorted(found)]


def _models(root: Path, plugin: str | None = None) -> list[tuple[str, str]]:
    """(plugin folder, name) of every model with a published version, sorted."""
    if not root.is_dir():
        return []
    out = []
    for pdir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if plugin is None or pdir.name == plugin:
            out += [(pdir.name, m.name) for m in sorted(pdir.iterdir()) if m.is_dir() and _NAME.match(m.name) and _versions(m)]
    return out


def is_ref(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` names a stored model (``store:...``) rather than a checkpoint file."""
    return str(text).startswith(PREFIX)


def parse_ref(ref: str) -> tuple[str | None, str, str | None]:
    """Split ``[store:][PLUGIN/]NAME[/vN]`` into (plugin or None, name, version or None).

    Example:
        >>> parse_ref("store:digits_mlp/v2")
        (None, 'digits_mlp', 'v2')
    """
    text = str(ref)[len(PREFIX):] if str(ref).startswith(PREFIX) else str(ref)
    parts = text.strip("/").split("/")
    version = parts.pop() if len(parts) > 1 and _VERSION.match(parts[-1]) else None
    if len(parts) not in (1, 2) or not all(parts):
        raise LightplugError(f"{PREFIX}{text}: not a store reference", hint="write store:NAME, store:NAME/vN or store:PLUGIN/NAME[/vN]")
    return (parts[0] if len(parts) == 2 else None), parts[-1], version


def _resolve(ref: str, root: Path) -> StoreEntry:
    """The entry ``ref`` names; raises an unprefixed CheckpointError."""
    plugin, name, version = parse_ref(ref)
    hits = [(p, n) for p, n in _models(root, plugin) if n == name]
    if not hits:
        import difflib

        close = difflib.get_close_matches(name, sorted({n for _, n in _models(root)}), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "`lightplug store list` shows the store"
        of = f" of plugin {plugin!r}" if plugin else ""
        raise CheckpointError(f"no model named {name!r}{of} in the store {root}", hint=hint)
    if len(hits) > 1:
        both = ", ".join(f"{PREFIX}{p}/{n}" for p, n in hits)
        raise CheckpointError(f"the name {name!r} is used by models of {len(hits)} plugins", hint=f"write one of {both}")
    model_dir = root / hits[0][0] / name
    versions = _versions(model_dir)
    if not versions:
        raise CheckpointError(f"{model_dir}: no published version in it")
    if version is not None and version not in versions:
        raise CheckpointError(f"{model_dir}: no version {version} (it has {', '.join(versions)})")
    chosen = version or versions[-1]
    return StoreEntry(hits[0][0], name, chosen, model_dir / chosen)


def resolve(ref: str, root: Path | None = None) -> StoreEntry:
    """The published version ``ref`` names (the latest when no ``/vN`` is given).

    Raises:
        CheckpointError: no such model or version, or a bare NAME used by models of two plugins.
    """
    try:
        return _resolve(ref, root or store_root())
    except CheckpointError as exc:
        raise CheckpointError(f"{_show_ref(ref)}: {exc.message}", hint=exc.hint) from None


def _show_ref(ref: str) -> str:
    return ref if str(ref).startswith(PREFIX) else f"{PREFIX}{ref}"


def _read_card(entry: StoreEntry) -> dict[str, Any]:
    """The card of ``entry``, checked for the keys loading needs; raises an unprefixed CheckpointError."""
    path = entry.card_path
    try:
        card = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: the card is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark is not None else ""
        raise CheckpointError(f"{path}: invalid YAML ({at}{getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"{path}: not a model card (a mapping of keys is expected)")
    missing = [k for k in _REQUIRED if k not in card]
    if missing:
        raise CheckpointError(f"{path}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
                              hint="the card was edited by hand; publish the model again with `lightplug store add`")
    shapes = {"plugin": dict, "model_config": dict, "weights": dict}
    bad = [k for k, kind in shapes.items() if not isinstance(card[k], kind)]
    if bad or not isinstance((card["plugin"] or {}).get("name"), str) or not isinstance(card["weights"].get("sha256"), str):
        raise CheckpointError(f"{path}: malformed card ({', '.join(bad) or 'plugin.name or weights.sha256'} is not what lightplug writes)")
    if not isinstance(card["format"], int) or card["format"] > STORE_FORMAT:
        raise CheckpointError(f"{path}: card format {card['format']!r}, this lightplug reads format {STORE_FORMAT}", hint="upgrade lightplug")
    return card


def read_card(ref: str | StoreEntry) -> dict[str, Any]:
    """The card of a published version, read with ``yaml.safe_load`` and checked (torch is not imported)."""
    entry = ref if isinstance(ref, StoreEntry) else resolve(ref)
    try:
        return _read_card(entry)
    except CheckpointError as exc:
        raise CheckpointError(f"{_show_ref(entry.ref)}: {exc.message}", hint=exc.hint) from None


def list_entries(plugin: str | None = None, root: Path | None = None) -> list[dict[str, Any]]:
    """Every model in the store with its versions, from the cards only (no torch).

    Returns:
        One dict per model: ``plugin``, ``name``, ``versions`` (each ``version``, ``path``, ``card``
        or None, and ``problem``: why the card cannot be used, or None).
    """
    root = root or store_root()
    out = []
    for pname, name in _models(root, plugin):
        rows = []
        for version in _versions(root / pname / name):
            entry = StoreEntry(pname, name, version, root / pname / name / version)
            try:
                card, problem = _read_card(entry), None
                if not entry.weights_path.is_file():
                    problem = f"{entry.weights_path}: the weights file is missing"
            except CheckpointError as exc:
                card, problem = None, exc.message
            rows.append({"version": version, "path": str(entry.path), "card": card, "problem": problem})
        if rows:
            out.append({"plugin": pname, "name": name, "versions": rows})
    return out


def entry_problem(ref: str) -> str | None:
    """What makes ``ref`` unusable (unknown name or version, a missing or unreadable card, no weights
    file), found without torch, or None. The weights' content is checked when they are loaded."""
    try:
        entry = _resolve(ref, store_root())
        _read_card(entry)
    except LightplugError as exc:
        return str(exc)
    return None if entry.weights_path.is_file() else f"{entry.weights_path}: the weights file is missing"


def add(source: str | os.PathLike[str], name: str, version: str | None = None, notes: str = "", root: Path | None = None,
        model: str | None = None, trust_code: bool | None = None) -> StoreEntry:
    """Publish the weights and a card of a run folder (its best, else last checkpoint) or a checkpoint.

    The card records the plugin as the checkpoint does (name, package, version, ``source`` and ``target``). A
    model trained from an import path or a local plugin is published only when ``model`` names that code (or
    ``trust_code``), and loading it back needs the same consent (see :mod:`lightplug.trust`).

    Args:
        source: a run folder written by ``lightplug train``, or a ``.ckpt`` file.
        name: the model's name in the store (``[a-z0-9_-]``, starting with a letter or digit, not ``vN``).
        version: ``vN``; default the next one. An existing version is never overwritten.
        notes: free text kept in the card.
        root: the store folder (default :func:`store_root`).
        model, trust_code: consent to load the code of an import-path or local-plugin model (its schema tells
            which settings are structural).

    Returns:
        The new entry, e.g. ``StoreEntry(plugin="mlp", name="digits_mlp", version="v1", ...)``.

    Raises:
        LightplugError: a bad name or version, or that version exists. CheckpointError: an unreadable checkpoint.
    """
    from ._store_publish import publish
    from .trust import consent

    return publish(Path(source), name, version, notes, root or store_root(), consent(model, trust_code, how="api"))


# ---------------------------------------------------------------- loading
def _read_weights(entry: StoreEntry, card: dict[str, Any]) -> dict[str, Any]:
    """The tensors of ``entry``, checked against the card's sha256; raises an unprefixed CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    path = entry.weights_path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: the weights file is missing") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        tensors = load_bytes(data)
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: damaged or truncated safetensors file ({str(exc).strip()[:120]})") from None
    found, wanted = hashlib.sha256(data).hexdigest(), card["weights"]["sha256"]
    if found != wanted:
        raise CheckpointError(f"{path}: sha256 mismatch (the card says {wanted[:12]}..., the file has {found[:12]}...)",
                              hint="the file changed after it was published; publish the model again")
    return tensors


def _meta(card: dict[str, Any], entry: StoreEntry) -> dict[str, Any]:
    """The ``lightplug`` section a checkpoint of this model would have, built from the card."""
    from .checkpoint import CHECKPOINT_FORMAT

    keep = ("score", "monitor", "metrics", "created", "notes", "source")
    return {
        "format": CHECKPOINT_FORMAT, "lightplug_version": card.get("trained_with_lightplug") or card.get("lightplug_version"),
        "plugin": {"kind": "model", **card["plugin"]}, "task": card["task"], "model_config": dict(card["model_config"]),
        "data": dict(card.get("data") or {}), "label_names": list(card.get("label_names") or []),
        "preprocessing": dict(card.get("preprocessing") or {}), "facts": dict(card.get("facts") or {}),
        "preset": card.get("preset"), "monitor": card.get("monitor"), "config": dict(card.get("training_config") or {}),
        "store": {"ref": entry.ref, "name": entry.name, "version": entry.version, "path": str(entry.path),
                  "sha256": card["weights"]["sha256"], "structural": dict(card.get("structural") or {}),
                  **{k: card.get(k) for k in keep}},
    }


def as_checkpoint(ref: str, label: str | None = None) -> dict[str, Any]:
    """A checkpoint-like dict ``{"lightplug": meta, "state_dict": {"net." + key: tensor}}`` of a stored
    model, so that :func:`lightplug.checkpoint.model_from_checkpoint` rebuilds it unchanged.

    Args:
        ref: ``store:NAME[/vN]`` (or ``PLUGIN/NAME``).
        label: how messages name it (``init_from=store:...``); a ``resume=`` label is refused, a stored
            model has no training state.

    Raises:
        CheckpointError: one line naming the file: unknown ref, missing or damaged card or weights, sha256 mismatch.
    """
    who = label or _show_ref(ref)
    if label and label.startswith("resume="):
        raise CheckpointError(f"{label}: a stored model holds weights only, not the training state to resume",
                              hint=f"start a new run from its weights with init_from={_show_ref(ref)}")
    try:
        entry = _resolve(ref, store_root())
        card = _read_card(entry)
        tensors = _read_weights(entry, card)
    except CheckpointError as exc:
        raise CheckpointError(f"{who}: {exc.message}", hint=exc.hint) from None
    return {"lightplug": _meta(card, entry), "state_dict": {f"net.{k}": v for k, v in tensors.items()}}


def load(ref: str, allowed: Any = None) -> Any:
    """The stored model ``ref`` as an ``nn.Module`` in eval mode, with ``lightplug_meta`` attached.

    A model trained from an import path or a local plugin needs the same consent as its checkpoint
    (``allowed``, a :class:`lightplug.trust.Consent`; :func:`lightplug.load_model` takes ``model=``/``trust_code=``).

    Example:
        >>> net = lightplug.store.load("store:digits_mlp/v1")  # doctest: +SKIP
    """
    from .checkpoint import model_from_checkpoint

    ckpt = as_checkpoint(ref)
    where = f"{_show_ref(ref)}: {ckpt['lightplug']['store']['path']}/{WEIGHTS}"
    net, _ = model_from_checkpoint(ckpt, where=where, allowed=allowed)
    net.lightplug_meta = ckpt["lightplug"]
    return net


def check_structural(meta: dict[str, Any], model_name: str, model_cfg: dict[str, Any], label: str) -> None:
    """Refuse to start a run of ``model_name`` with ``model_cfg`` from a stored model of another plugin or
    with other structural settings (runtime ones such as dropout or the learning rate may differ).

    Raises:
        CheckpointError: e.g. ``init_from=store:m/v2: model.hidden differs (stored 32, now 64); structural settings must match``.
    """
    from .trust import same_code

    info = meta.get("plugin") or {}
    stored = str(info.get("name") or "")
    if not same_code(info, model_name):
        raise CheckpointError(f"{label}: it holds model {stored!r} ({info.get('dist') or info.get('source')}), this run trains model={model_name}",
                              hint=f"fine-tune it with model={stored}")
    structural = (meta.get("store") or {}).get("structural") or {}
    diffs = [f"model.{k} differs (stored {_val(v)}, now {_val(model_cfg[k])})" for k, v in structural.items()
             if k in model_cfg and v != model_cfg[k] and str(v) != str(model_cfg[k])]
    if diffs:
        raise CheckpointError(f"{label}: {', '.join(diffs)}; structural settings must match",
                              hint="runtime settings such as dropout or the learning rate may differ")


def _val(value: Any) -> str:
    return "null" if value is None else str(value)
