"""The ``lightplug`` command: a thin dispatcher; each command lives in its own module and imports what
it needs when it runs, so ``lightplug --help`` and ``lightplug models`` stay instant."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable

from ..errors import Interrupted, LightplugError, stop_behind

__all__ = ["main"]

_COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module:function, one-line help)
    "models": ("lightplug.cli.models:main_models", "list model plugins, `models show NAME` for one"),
    "data": ("lightplug.cli.models:main_data", "list data plugins, `data show NAME` for one"),
    "callbacks": ("lightplug.cli.models:main_callbacks", "list callback plugins"),
    "train": ("lightplug.cli.train:main", "train a model: lightplug train model=NAME [key=value ...]"),
    "test": ("lightplug.cli.test:main", "a checkpoint's metrics on the test split: lightplug test ckpt=PATH | run=RUN_DIR"),
    "predict": ("lightplug.cli.predict:main", "predictions for files: lightplug predict ckpt=PATH|model=FILE.onnx input=FILE_OR_DIR"),
    "results": ("lightplug.cli.results:main", "the worst validation cases of a run: lightplug results RUN_DIR [--worst 20]"),
    "doctor": ("lightplug.cli.doctor:main", "versions, accelerators and every plugin's status, for bug reports"),
    "new-plugin": ("lightplug.cli.new_plugin:main", "write a ready-to-install plugin package"),
    "check-plugin": ("lightplug.cli.check_plugin:main", "check a plugin against the contract"),
    "export": ("lightplug.cli.export:main", "export a checkpoint (ONNX fp32/int8/fp16, OpenVINO, .pt2, TorchScript), verified and timed"),
    "benchmark": ("lightplug.cli.benchmark:main", "every export format's size, task metric and speed: lightplug benchmark run=RUN_DIR"),
    "runs": ("lightplug.cli.runs:main", "list, show and compare recorded runs"),
    "ui": ("lightplug.cli.ui:main", "a local web UI: forms from plugin schemas, launch and watch runs"),
    "store": ("lightplug.cli.store:main", "publish, list and load trained models by name and version"),
}


def _usage() -> str:
    width = max(map(len, _COMMANDS))
    lines = [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in _COMMANDS.items()]
    return (
        "usage: lightplug [--debug] COMMAND [ARGS]\n\n"
        "Train, validate, export and compare PyTorch models that ship as pip packages.\n\n"
        "commands:\n" + "\n".join(lines) + "\n\n"
        "`lightplug COMMAND --help` shows a command's options; `lightplug train --help` shows the config groups.\n"
        "--debug prints the full traceback of an error."
    )


def _load(target: str) -> Callable[[list[str]], int]:
    import importlib

    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def _exit_at_once_on_another_signal(code: int) -> None:
    """After an interrupt the process only has to exit. A further Ctrl-C or SIGTERM while it shuts down
    (loggers flushing, finalizers running) ends it at once with ``code``, instead of raising KeyboardInterrupt
    inside a finalizer, which Python reports with a traceback."""
    import signal

    def stop(signum: int, frame: object) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a stream in the middle of a write: exit anyway
                pass
        os._exit(code)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, stop)
        except (ValueError, OSError):  # not the main thread (lightplug.cli.main.main called from a thread)
            return


#: Set when a second SIGINT/SIGTERM stopped training at once: :func:`run` then leaves without the interpreter's shutdown.
_EXIT_AT_ONCE = False


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lightplug`` command; returns (and exits with) the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("LIGHTPLUG_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        from .. import __version__

        print(f"lightplug {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command in ("-sc", "--shell-completion"):  # what Hydra's completion script calls: `lightplug -sc query=bash`
        command = "-sc"
    if command not in _COMMANDS and command != "-sc":
        import difflib

        close = difflib.get_close_matches(command, list(_COMMANDS), n=1)
        hint = f"did you mean `lightplug {close[0]}`?" if close else "see `lightplug --help`"
        print(f"error: unknown command {command!r} ({hint})", file=sys.stderr)
        return 2
    try:
        code = _load(_COMMANDS[command][0] if command != "-sc" else "lightplug.cli.completion:main")(rest)
    except Exception as raised:  # noqa: BLE001 - only lightplug's errors (or a stop wrapped by a library) are handled here
        exc = raised if isinstance(raised, LightplugError) else stop_behind(raised)
        if exc is None and isinstance(raised, OSError) and raised.filename is not None:
            if debug:  # a path the system refuses (/proc, a name too long, a full disk): the path and why, one line
                traceback.print_exc()
            print(f"error: {raised.filename}: {raised.strerror or raised}", file=sys.stderr)
            return 2
        if exc is None:
            raise
        if isinstance(exc, Interrupted):
            _exit_at_once_on_another_signal(exc.exit_code)
            global _EXIT_AT_ONCE
            _EXIT_AT_ONCE = exc.at_once
        if debug:
            traceback.print_exc()
        if not (isinstance(exc, Interrupted) and os.environ.get("LOCAL_RANK", "0") != "0"):  # rank 0 tells how to resume
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        _exit_at_once_on_another_signal(130)
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def run() -> None:
    """Console-script wrapper: exit with :func:`main`'s code (quietly when the reader of a pipe is gone)."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `lightplug models | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    if _EXIT_AT_ONCE:  # stopped by a second signal in the middle of anything: the interpreter's shutdown could meet a
        sys.stderr.flush()  # native thread still calling into Python (seen: abort, "write to closed file"); skip it
        os._exit(code)
    sys.exit(code)


def _argparser(prog: str, description: str) -> argparse.ArgumentParser:
    from ._args import ArgumentParser

    return ArgumentParser(prog=f"lightplug {prog}", description=description)
