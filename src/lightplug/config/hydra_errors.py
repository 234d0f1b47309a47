"""Hydra's and OmegaConf's exceptions as one-line :class:`ConfigError` messages."""

from __future__ import annotations

import difflib
import re

from ..errors import ConfigError

__all__ = ["from_hydra"]


def _first(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def from_hydra(exc: BaseException, options: dict[str, list[str]] | None = None) -> ConfigError:
    """Translate a composition error into a message that names the key and says what to do.

    Args:
        exc: what Hydra raised.
        options: group -> available options, for close matches.
    """
    options = options or {}
    text = str(exc)
    cause = exc.__cause__
    key = getattr(cause, "full_key", None)
    m = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if m:
        group, value = m.group(1), m.group(2)
        avail = options.get(group) or re.findall(r"^\t(\S+)$", text, flags=re.M)
        close = difflib.get_close_matches(value, avail, n=1)
        did = f"did you mean {close[0]}? " if close else ""
        return ConfigError(f"{group}={value}: no such option ({did}available: {', '.join(avail)})")
    m = re.search(r"You must specify '([^']+)'", text)
    if m:
        group = m.group(1)
        avail = options.get(group) or re.findall(r"^\t(\S+)$", text, flags=re.M)
        return ConfigError(f"no {group} chosen: add {group}=NAME (available: {', '.join(avail) or 'none installed'})")
    if key and cause is not None:
        reason = _first(str(cause))
        if "not in" in reason or "Key '" in reason:
            siblings = [str(k) for k in (getattr(cause, "parent_node", None) or []) if str(k) != "hydra" and not str(k).startswith("_")]
            close = difflib.get_close_matches(str(key).rsplit(".", 1)[-1], siblings, n=1)
            prefix = str(key).rsplit(".", 1)[0] + "." if "." in str(key) else ""
            hint = f"did you mean {prefix}{close[0]}?" if close else "check the spelling; `lightplug models show NAME` lists a model's keys"
            return ConfigError(f"{key}: unknown key", hint=hint)
        m = re.search(r"Value '(.*)' of type '(\w+)' could not be converted to (\w+)", reason)
        if m:
            return ConfigError(f"{key}={m.group(1)}: expected {m.group(3).lower()}")
        return ConfigError(f"{key}: {reason}")
    m = re.search(r"Could not override '([^']+)'", text)
    if m:
        return ConfigError(f"{m.group(1)}: unknown key", hint=f"to add a new key write +{m.group(1)}=VALUE")
    m = re.search(r"Could not append to config\. An item is already at '([^']+)'", text)
    if m:
        return ConfigError(f"{m.group(1)} is already set: write {m.group(1)}=VALUE without '+'")
    return ConfigError(_first(text) + (f": {_first(str(cause))}" if cause else ""))
