"""``key=value`` arguments of ``lightplug test`` and ``lightplug predict``, and finding the checkpoint a
command means (``ckpt=PATH`` or ``run=RUN_DIR ckpt=best|last``). Nothing here imports torch."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError

__all__ = ["parse_options", "parse_value", "resolve_checkpoint", "output_file", "accelerator_choice", "ACCELERATORS", "cli_consent"]

#: The accelerators ``lightplug test`` takes (Lightning's names); whether one is present is known once torch is loaded.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def parse_value(text: str) -> Any:
    """A command-line value as YAML reads it: ``3`` -> 3, ``0.5`` -> 0.5, ``true`` -> True, ``[1,2]`` -> [1, 2].

    Example:
        >>> parse_value("3"), parse_value("[0.5, 0.5]"), parse_value("digits")
        (3, [0.5, 0.5], 'digits')
    """
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_options(args: list[str], known: dict[str, str], command: str, prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """Split ``key=value`` arguments into a dict, refusing unknown keys (all of them at once).

    Args:
        args: the command's arguments.
        known: key -> help, for the messages.
        command: the command's name, for the messages.
        prefixes: dotted prefixes accepted with any key (``data.`` takes ``data.batch_size=8``).

    Raises:
        ConfigError: an argument without ``=``, or an unknown key (with the closest known one).
    """
    out: dict[str, str] = {}
    problems = []
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+")
        if not sep or not key:
            problems.append(f"{arg}: expected key=value ({command} takes {', '.join(known)})")
        elif key in known or any(key.startswith(p) and len(key) > len(p) for p in prefixes):
            out[key] = value
        else:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"did you mean {close[0]}?" if close else f"{command} takes {', '.join(known)}"
            problems.append(f"{key}: unknown option of {command} ({hint})")
    if problems:
        raise ConfigError(f"invalid arguments of {command}", problems=problems)
    return out


def resolve_checkpoint(opts: dict[str, str], command: str) -> Path:
    """The checkpoint file that ``ckpt=PATH``, or ``run=RUN_DIR`` with ``ckpt=best|last`` (default best), names.

    Raises:
        ConfigError: neither ``ckpt`` nor ``run`` was given.
        CheckpointError: the file or the run folder does not exist.
    """
    ckpt, run = opts.get("ckpt"), opts.get("run")
    if run:
        folder = Path(run)
        if not folder.is_dir():
            raise CheckpointError(f"run={run}: no such run folder")
        which = ckpt or "best"
        if which in ("best", "last"):
            path = folder / "checkpoints" / f"{which}.ckpt"
            if not path.is_file():
                found = sorted(p.name for p in (folder / "checkpoints").glob("*.ckpt")) if (folder / "checkpoints").is_dir() else []
                raise CheckpointError(f"run={run}: no checkpoints/{which}.ckpt (found: {', '.join(found) or 'none'})",
                                      hint="the run may have stopped before its first validation")
            return path
        path = Path(which) if Path(which).is_absolute() or Path(which).is_file() else folder / "checkpoints" / which
        if not path.is_file():
            raise CheckpointError(f"ckpt={which}: no such checkpoint in {folder / 'checkpoints'}")
        return path
    if ckpt and ckpt.startswith("store:"):  # a published model; read_checkpoint resolves it
        return Path(ckpt)
    if not ckpt:
        raise ConfigError(f"{command}: no checkpoint given", hint=f"add ckpt=PATH, or run=RUN_DIR [ckpt=best|last]: lightplug {command} ckpt=outputs/.../checkpoints/best.ckpt")
    if ckpt in ("best", "last"):
        raise ConfigError(f"ckpt={ckpt} needs run=RUN_DIR", hint=f"lightplug {command} run=outputs/DATE/TIME ckpt={ckpt}")
    path = Path(ckpt)
    if path.is_dir():  # a run folder given as ckpt=
        return resolve_checkpoint({"run": str(path)}, command)
    if not path.is_file():
        raise CheckpointError(f"ckpt={ckpt}: no such checkpoint file")
    return path


def output_file(key: str, text: str, example: str) -> Path:
    """The file ``key=text`` names, refused before any work when it cannot be written: empty, an existing folder,
    a path through a file, or a folder without write permission. Missing folders are fine (they are created).

    Args:
        key: the option (``output``).
        text: its value.
        example: a file name for the hint (``preds.csv``).

    Raises:
        ConfigError: naming ``key``, the value and the reason.
    """
    import os

    if not text.strip():
        raise ConfigError(f"{key}=: empty", hint=f"give a file name, e.g. {key}={example}")
    path = Path(text).expanduser()
    if path.is_dir():
        raise ConfigError(f"{key}={text}: is a folder, not a file", hint=f"give a file name, e.g. {key}={Path(text) / example}")
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}={text}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={text}: cannot write in {probe.resolve()} (permission denied)", hint=f"choose another {key}=")
    return path


def accelerator_choice(text: str) -> str:
    """``accelerator=`` of ``lightplug test``: one of :data:`ACCELERATORS` (close matches for typos).

    Raises:
        ConfigError: not an accelerator name.
    """
    value = text.strip().lower()
    if value not in ACCELERATORS:
        close = difflib.get_close_matches(value, list(ACCELERATORS), n=1)
        did = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"accelerator={text}: not one of {', '.join(ACCELERATORS)}" + (f" ({did.strip()})" if did else ""))
    return value


def cli_consent(opts: dict[str, str]) -> Any:
    """The consent given on the command line: ``model=CODE`` and ``trust_code=true|false`` (see :mod:`lightplug.trust`).

    Raises:
        ConfigError: ``trust_code`` is not true or false.
    """
    from ..trust import consent

    trust = None
    if "trust_code" in opts:
        trust = parse_value(opts["trust_code"])
        if not isinstance(trust, bool):
            raise ConfigError(f"trust_code={opts['trust_code']}: expected true or false")
    return consent(opts.get("model") or None, trust)
