"""Shell completion, Hydra's way: ``eval "$(lightplug train -sc install=bash)"`` (zsh: the same; fish:
``lightplug train -sc install=fish | source``).

Hydra's install script calls the program by its first word with ``-sc query=SHELL`` and the line typed so far in
``COMP_LINE``, that is ``lightplug -sc query=bash`` with ``COMP_LINE="lightplug train model=m"``. This module answers
that query: the command names after ``lightplug``, and after ``lightplug train`` Hydra's own completion of groups,
options and keys, with every installed plugin as an option of ``model=`` and the chosen plugins' fields under
``model.`` and ``data.``. Other commands take file names (the shell's default).
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import sys

from ..errors import LightplugError

__all__ = ["main"]

_SHELLS = ("bash", "zsh", "fish")


def _program() -> str:
    """The name the shell knows the command by (``lightplug``, also under ``python -m lightplug``)."""
    from .train import program_name

    return os.path.basename(program_name())


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:  # an open quote while typing
        return line.split()


def _commands(prefix: str) -> list[str]:
    from .main import _COMMANDS

    return sorted(c for c in _COMMANDS if c.startswith(prefix))


def _train_query(shell: str, rest: str) -> int:
    """Hydra's completion of the ``train`` part of the line, with the plugins registered as options."""
    from ..config.preflight import parse_overrides
    from ..config.store import register
    from ..registry import get_registry
    from ..schema import Schema
    from .train import _choices, data_for_models, register_configs, run_hydra

    registry = get_registry()
    words = _words(rest)
    current = "" if rest.endswith(" ") or not words else words[-1]
    done = words if current == "" else words[:-1]
    implied: list[str] = []
    try:
        parse_overrides(done)
        implied = data_for_models(done, registry)  # the data the run would use, so that `data.` completes its fields
        chosen = _choices(done + implied)
    except LightplugError:
        chosen = {}
    for name in registry.names("model"):  # every model is an option of model=, even one never loaded
        register("model", name, Schema([]))
    with contextlib.suppress(LightplugError):
        register_configs(registry, chosen)
    prefix = implied + ([] if "model" in chosen or current.lstrip("+~").startswith("model") else ["~model"])  # keys complete without a model
    os.environ["COMP_LINE"] = " ".join([_program(), *prefix, rest])
    run_hydra(["-sc", f"query={shell}"])
    return 0


def main(args: list[str]) -> int:
    """``lightplug -sc install=SHELL | uninstall=SHELL | query=SHELL``; returns the exit code."""
    action, _, shell = (args[0] if args else "").partition("=")
    if action not in ("install", "uninstall", "query") or shell not in _SHELLS:
        print(f"usage: eval \"$({_program()} -sc install=bash)\" (shells: {', '.join(_SHELLS)}; also uninstall=SHELL)", file=sys.stderr)
        return 2
    if action != "query":
        from .train import run_hydra

        run_hydra(["-sc", f"{action}={shell}"])
        return 0
    line = os.environ.get("COMP_LINE", "")
    words = _words(line)
    if len(words) <= 1 or (len(words) == 2 and not line.endswith(" ")):  # the command itself
        matches = _commands(words[1] if len(words) == 2 else "")
        print(("\n" if shell == "fish" else " ").join(matches))
        return 0
    if words[1] != "train":
        return 0
    rest = line.split("train", 1)[1].lstrip()
    out = io.StringIO()
    with contextlib.redirect_stderr(out):  # a half-typed line must never print an error into the prompt
        try:
            return _train_query(shell, rest)
        except (Exception, SystemExit):  # noqa: BLE001 - completion offers nothing rather than fail
            return 0
