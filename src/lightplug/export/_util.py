"""Small helpers the export modules share: one-line causes and the deprecation notices torch prints on
every export (ignored by their exact text, never by category)."""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator

__all__ = ["EXPECTED_WARNINGS", "first_line", "expected_warnings_ignored"]

#: Notices that every export with torch 2.9+ triggers and that no user can act on.
EXPECTED_WARNINGS = re.compile(r"You are using the legacy TorchScript-based ONNX export"
                               r"|`torch\.jit\.(trace|trace_method|save|load)` is (deprecated|not supported)")


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 240 characters of it)."""
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {line[:240]}" if line else type(exc).__name__


@contextlib.contextmanager
def expected_warnings_ignored() -> Iterator[None]:
    """Ignore :data:`EXPECTED_WARNINGS` inside the block; every other warning is shown as usual."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=EXPECTED_WARNINGS.pattern)
        yield
