"""The error types a user can cause; the CLI prints each as one line and exits with code 2."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LightplugError", "ConfigError", "PluginError", "CheckpointError", "DataError", "Interrupted", "in_chain", "stop_behind"]


class LightplugError(Exception):
    """Base class of every error caused by user input (config, plugin, checkpoint, data).

    Args:
        message: what is wrong and where (key, file, plugin, package).
        hint: how to fix it; printed after the message.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if not self.hint:
            return self.message
        if "\n" in self.message:  # a list of problems: the hint is about all of them, not the last line
            return f"{self.message}\n{self.hint}"
        return f"{self.message} ({self.hint})"


class ConfigError(LightplugError):
    """A composed config breaks a rule: type, range, choice, unknown key or group option.

    ``problems`` holds one line per bad field so that all of them are reported at once.
    """

    def __init__(self, message: str, hint: str | None = None, problems: list[str] | None = None) -> None:
        super().__init__(message, hint)
        self.problems = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return super().__str__()
        if len(self.problems) == 1:
            return self.problems[0]
        return "\n".join([f"{len(self.problems)} problems in the config:"] + [f"  {p}" for p in self.problems])


class PluginError(LightplugError):
    """A plugin cannot be found, imported, validated or built."""


class CheckpointError(LightplugError):
    """A checkpoint file is missing, damaged, unsafe, foreign or does not fit the plugin."""


class DataError(LightplugError):
    """Input data is missing, empty or unreadable."""


class Interrupted(LightplugError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint; the message says how to resume."""

    def __init__(self, message: str, hint: str | None = None, signal_number: int = 2, at_once: bool = False) -> None:
        super().__init__(message, hint)
        self.exit_code = 128 + signal_number
        self.at_once = at_once  # a second signal: raised from wherever the program was, nothing was shut down


def in_chain(exc: BaseException, match: Callable[[BaseException], bool], depth: int = 10) -> BaseException | None:
    """The first exception of ``exc``'s chain (itself, then what it was raised from or while handling) that ``match``
    accepts, or None: a library's own error often sits on top of the one that matters."""
    seen: BaseException | None = exc
    for _ in range(depth):
        if seen is None:
            return None
        if match(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def stop_behind(exc: BaseException) -> Interrupted | None:
    """The :class:`Interrupted` that ``exc`` was raised while handling, if any: a second Ctrl-C inside a library's
    write (``torch.save``) makes the library's cleanup raise its own error ("unexpected pos ...") on top of the stop."""
    found = in_chain(exc, lambda e: isinstance(e, Interrupted))
    return found if isinstance(found, Interrupted) else None
