"""argparse as every ``lightplug`` command uses it: a mistake is one :class:`ConfigError` line that names the
argument (with the closest valid choice or option), never a usage dump; ``--help`` is argparse's own."""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from ..errors import ConfigError

__all__ = ["ArgumentParser", "one_line_errors", "positive_int", "parse_key_values"]


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors raise :class:`ConfigError` (exit code 2, one line)."""

    def error(self, message: str) -> NoReturn:
        found = re.fullmatch(r"unrecognized arguments: (.*)", message)
        if found:
            first = found.group(1).split()[0]
            options = sorted({o for a in self._actions for o in a.option_strings if o.startswith("--")})
            close = difflib.get_close_matches(first.split("=")[0], options, n=1)
            did = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"{self.prog}: unknown argument {found.group(1)} ({did}see `{self.prog} --help`)")
        found = re.fullmatch(r"argument ([^:]+): (.*)", message, flags=re.S)
        if found:
            option, reason = found.group(1).split("/")[0], found.group(2)
            value = re.fullmatch(r"expected (.*), got (.*)", reason) or re.fullmatch(r"invalid (\w+) value: (.*)", reason)
            message = f"{option} {value.group(2)}: expected {value.group(1)}" if value else f"{option}: {reason}"
        raise ConfigError(f"{self.prog}: {message.strip().splitlines()[0]} (see `{self.prog} --help`)")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is not None and value not in choices:
            names = [str(c) for c in choices]
            close = difflib.get_close_matches(str(value), names, n=1)
            did = f" (did you mean {close[0]}?)" if close else ""
            where = action.option_strings[0] + " " if action.option_strings else ""
            raise ConfigError(f"{self.prog}: {where}{value!r}: not one of {', '.join(names)}{did}")
        super()._check_value(action, value)


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give a parser built elsewhere (Hydra's) the one-line errors of :class:`ArgumentParser`."""
    parser.__class__ = ArgumentParser
    return parser


def positive_int(text: str) -> int:
    """An argparse ``type`` for a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value}")
    return value


def parse_key_values(argv: list[str], keys: Mapping[str, Callable[[str], Any]], rules: Mapping[str, str], aliases: Mapping[str, str],
                     command: str) -> tuple[dict[str, Any], list[str]]:
    """``key=value`` arguments of ``lightplug export``-style commands -> (typed values, problems, one line each).

    A key may be spelled with leading ``+``/``-`` or by an alias; an unknown key names the closest one; a value its
    parser refuses says why, with ``rules[key]`` (what the key takes) beside it.
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    for arg in argv:
        key, sep, text = arg.partition("=")
        key = key.strip().lstrip("+-")
        key = aliases.get(key, key)
        if not sep:
            problems.append(f"{arg}: expected key=value (e.g. ckpt=PATH; see `lightplug {command} --help`)")
        elif key not in keys:
            close = difflib.get_close_matches(key, list(keys), n=1)
            problems.append(f"{key}: unknown key ({f'did you mean {close[0]}?' if close else 'keys: ' + ', '.join(keys)})")
        else:
            try:
                values[key] = keys[key](text.strip())
            except ValueError as exc:
                reason = str(exc).splitlines()[0]
                if reason.startswith(("invalid literal", "could not convert")):  # int('abc'), float('x'): say what was expected
                    reason = "not a number"
                problems.append(f"{key}={text}: {reason}" + (f" ({rules[key]})" if key in rules else ""))
    return values, problems
