"""The trust rule: which code a file may make lightplug run.

Code is chosen by the user, never by a file. A checkpoint, a store card or an ONNX file says which model
built its weights (``plugin``: ``name``, ``dist``, ``source``, ``target``); from that, lightplug

- loads a plugin **by name among installed distributions** (their entry points, read from the installed
  metadata; ``DIST:NAME`` only when ``DIST`` is installed and registers ``NAME``). The recorded ``target``
  is never imported;
- loads a model trained from an **import path** (``source: path``, ``model=pkg.mod:Name``) only when the
  user names the same ``module:attr`` (``model=pkg.mod:Name`` on the command line, ``model="pkg.mod:Name"``
  in the call) or allows any code (``trust_code=true``, ``trust_code=True``, ``LIGHTPLUG_TRUST_CODE=1``).
  Naming a class covers that class only, not other names of its module;
- loads a model trained from a **local plugin file** (``source: local``) only with the same consent
  (``model=NAME``), and then the file ``NAME.py`` of the current plugin folders (``./plugins``,
  ``$LIGHTPLUG_PLUGIN_PATH``) as discovered now: the path recorded in the file is never loaded;
- resolves a value of a code-typed field (``FieldSpec.type == "code"``: an import path given as a setting)
  read from a file only with ``trust_code``, unless it equals the field's default.

The consent lives in the call or the command line only, never in a file.

Example:
    >>> consent(model="torchvision.models:resnet18").model
    'torchvision.models:resnet18'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, LightplugError

if TYPE_CHECKING:  # pragma: no cover
    from .registry import LoadedPlugin, PluginRef, Registry
    from .schema import Schema

__all__ = ["TRUST_ENV", "Consent", "UntrustedCode", "consent", "import_path", "recorded_code", "resolve_model", "installed_ref",
           "check_code_values", "code_value_problem", "same_code"]

#: Environment variable that allows any code a file names (``1``, ``true``, ``yes``, ``on``).
TRUST_ENV = "LIGHTPLUG_TRUST_CODE"
_TRUE = ("1", "true", "yes", "on")


class UntrustedCode(CheckpointError):
    """A file asks for code the user did not name (an import path, a local plugin file, a code-typed value)."""


@dataclass(frozen=True)
class Consent:
    """What the user allowed, in the call or on the command line.

    Attributes:
        model: the code the user named: ``pkg.mod:Name``, a local plugin's ``NAME``, or an installed ``NAME``.
        trust_code: run whatever code the file names.
        how: how messages say to allow it: ``cli`` (``model=`` / ``trust_code=true``), ``api`` (keyword
            arguments), ``store`` (``--model`` / ``--trust-code``) or ``env`` (``LIGHTPLUG_TRUST_CODE=1``).
    """

    model: str | None = None
    trust_code: bool = False
    how: str = "cli"

    def ask(self, code: str) -> str:
        """How to allow ``code``, in the words of this entry point."""
        if self.how == "api":
            return f"pass model={code!r} (or trust_code=True)"
        if self.how == "store":
            return f"add --model {code} (or --trust-code)"
        if self.how == "env":
            return f"set {TRUST_ENV}=1"
        return f"add model={code} (or trust_code=true)"

    def ask_trust(self) -> str:
        return {"api": "pass trust_code=True", "store": "add --trust-code", "env": f"set {TRUST_ENV}=1"}.get(self.how, "add trust_code=true")


def consent(model: str | None = None, trust_code: bool | None = None, how: str = "cli") -> Consent:
    """The user's consent: ``model`` named in the call or command, ``trust_code`` given there, else ``$LIGHTPLUG_TRUST_CODE``."""
    if trust_code is None:
        trust_code = os.environ.get(TRUST_ENV, "").strip().lower() in _TRUE
    return Consent(model=(str(model).strip() or None) if model is not None else None, trust_code=bool(trust_code), how=how)


def import_path(text: Any) -> str | None:
    """``text`` as a normalised ``module:attr`` import path (spaces dropped), or None when it is not one.

    Example:
        >>> import_path(" torchvision.models : resnet18 "), import_path("mlp"), import_path("a b:c")
        ('torchvision.models:resnet18', None, None)
    """
    if not isinstance(text, str) or text.count(":") != 1:
        return None
    module, _, attr = (part.strip() for part in text.partition(":"))
    if not module or not attr or not all(p.isidentifier() for p in module.split(".")) or not all(p.isidentifier() for p in attr.split(".")):
        return None
    return f"{module}:{attr}"


def recorded_code(info: dict[str, Any], where: str) -> tuple[str, str]:
    """What code the ``plugin`` section of a file asks for: ``("installed", NAME or DIST:NAME)``,
    ``("path", "module:attr")`` or ``("local", NAME)``.

    Raises:
        CheckpointError: the section names no model, or an import path that is not one.
    """
    source, name = info.get("source"), info.get("name")
    if source == "path":
        code = import_path(info.get("target") or name)
        if code is None:
            raise CheckpointError(f"{where}: malformed plugin record (source 'path' with target {info.get('target') or name!r})")
        return "path", code
    if not isinstance(name, str) or not name.strip():
        raise CheckpointError(f"{where}: malformed plugin record (no model name)")
    return ("local", name) if source == "local" else ("installed", name)


def same_code(info: dict[str, Any], model: str) -> bool:
    """Whether the code a file's ``plugin`` section names is what ``model`` (typed by the user) names."""
    try:
        kind, code = recorded_code(info, "")
    except CheckpointError:
        return False
    if kind == "path":
        return import_path(model) == code
    if kind == "local":
        return model == code
    dist, _, short = code.rpartition(":")
    theirs, _, mine = model.rpartition(":")
    return short == mine and (not dist or not theirs or _norm(dist) == _norm(theirs))


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed_ref(registry: Registry, kind: str, name: str, dist: str | None = None) -> PluginRef:
    """The plugin ``NAME`` (or ``DIST:NAME``) of an installed distribution's entry point, never an import path
    or a local file. ``dist`` (recorded in the file) picks one of two distributions that register ``NAME``.

    Raises:
        PluginError: no installed distribution registers it, or it cannot be used (clash, incompatible).
    """
    from .errors import PluginError

    qualifier, _, short = name.rpartition(":")
    hits = [r for r in registry.refs(kind) if r.source == "entry-point" and r.name == short]
    if qualifier:
        hits = [r for r in hits if _norm(r.dist or "") == _norm(qualifier)]
    elif dist and len(hits) > 1:
        hits = [r for r in hits if _norm(r.dist or "") == _norm(dist)] or hits
    if not hits:
        why = f"package {qualifier!r} does not register it" if qualifier else "no installed package registers it"
        raise PluginError(f"{kind} {name!r} is not installed ({why})", hint=f"install {dist or qualifier or 'the package that provides it'}")
    if len(hits) > 1:
        raise PluginError(f"{kind} {name!r} is registered by both {' and '.join(str(r.dist) for r in hits)}", hint="uninstall one of them")
    return registry.usable(hits[0], allow_conflict=bool(qualifier or dist))


def _local_ref(registry: Registry, name: str, where: str) -> PluginRef:
    hits = [r for r in registry.refs("model") if r.source == "local" and r.name == name]
    if not hits:
        raise CheckpointError(f"{where} was trained with the local plugin {name!r}, and no {name}.py is in the plugin folders here",
                              hint=f"put {name}.py into ./plugins or a folder of LIGHTPLUG_PLUGIN_PATH; the path recorded in the file is never loaded")
    return registry.usable(hits[0], allow_conflict=True)


def resolve_model(info: dict[str, Any], where: str, allowed: Consent | None = None, registry: Registry | None = None) -> LoadedPlugin:
    """Load the model plugin a file's ``plugin`` section names, as the trust rule allows.

    Args:
        info: the ``plugin`` section (``name``, ``dist``, ``source``, ``target``), read from the file.
        where: how messages name the file (``checkpoint PATH``, ``store:NAME``).
        allowed: the user's consent (default: :func:`consent` with nothing named, ``$LIGHTPLUG_TRUST_CODE`` read).

    Raises:
        UntrustedCode: an import path or a local plugin the user did not name (one line saying how to allow it),
            or ``model=`` names other code than the file's.
        CheckpointError: the plugin is not installed or cannot be loaded.
    """
    from .registry import PluginRef, get_registry

    allowed = allowed or consent()
    registry = registry or get_registry()
    kind, code = recorded_code(info, where)
    what = {"path": "an import path", "local": "a local plugin file", "installed": f"from {info.get('dist') or 'an installed package'}"}[kind]
    if allowed.model and not same_code(info, allowed.model):
        fix = f"to load this checkpoint, {allowed.ask(code)}" if kind != "installed" else f"drop model= or give model={code}"
        raise UntrustedCode(f"{where} was trained with model={code} ({what}); model={allowed.model} names other code: {fix}")
    if kind != "installed" and not (allowed.model or allowed.trust_code):
        raise UntrustedCode(f"{where} was trained with model={code}, {what}; lightplug runs it only if you name it: {allowed.ask(code)}")
    try:
        if kind == "installed":
            ref = installed_ref(registry, "model", code, info.get("dist"))
        elif kind == "local":
            ref = _local_ref(registry, code, where)
        else:
            ref = PluginRef("model", code, code, "path")
        return registry.load(ref)
    except CheckpointError:
        raise
    except LightplugError as exc:
        raise CheckpointError(f"{where} was trained with model {code!r} ({info.get('dist') or info.get('source')}), which cannot be loaded here: "
                              f"{exc.message}", hint=exc.hint or f"install {info.get('dist') or 'that plugin'}") from exc


def code_value_problem(spec: Any, value: Any, allowed: Consent | None) -> str | None:
    """Why a code-typed field's ``value`` read from a file (or sent to the web UI) may not be used, or None.

    A value other than the field's default is an import path that the file chose; only ``trust_code``
    allows it (``allowed=None``: nothing is allowed, as in the web UI).
    """
    if getattr(spec, "type", None) != "code" and getattr(spec, "item_type", None) != "code":
        return None
    if value is None or value == spec.default or (allowed is not None and allowed.trust_code):
        return None
    key = f"{spec.group}.{spec.name}"
    if allowed is None:
        return f"{key}={value}: an import path; the web UI imports nothing it is sent, so it launches this field's default ({spec.default}) only"
    return f"sets {key}={value}, an import path; lightplug imports it only if you allow it: {allowed.ask_trust()}"


def check_code_values(schema: Schema, values: dict[str, Any], where: str, allowed: Consent | None = None) -> None:
    """Refuse values of code-typed fields that a file recorded, unless they are the defaults or ``trust_code`` allows them.

    Raises:
        UntrustedCode: one line naming the key, the value and how to allow it.
    """
    allowed = allowed or consent()
    for spec in schema.fields:
        why = code_value_problem(spec, values.get(spec.name), allowed)
        if why:
            raise UntrustedCode(f"{where} {why}")
