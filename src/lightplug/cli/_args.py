"""argparse as every ``lightplug`` command uses it: a mistake is one :class:`ConfigError` line that names the
argument (with the closest valid choice or option), never a usage dump; ``--help`` is argparse's own."""

from __future__ import annotations

import argparse
import difflib
import re
from typing import Any, NoReturn

from ..errors import ConfigError

__all__ = ["ArgumentParser", "one_line_errors", "positive_int"]


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
